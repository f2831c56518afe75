//! The update RPCs: UpdateWorkflowExecution, PollWorkflowExecutionUpdate and update-with-start
//! (ExecuteMultiOperation). An update is admitted to its run, delivered on a workflow task, and
//! the caller waits up to its deadline for the stage it asked for.

use super::workflow_service::Frontend;
use crate::error::ServiceError;
use crate::history::RunHandle;
use crate::updates;
use std::sync::Arc;
use std::time::Duration;
use sundial_engine::EngineError;
use sundial_engine::api::{
    common::v1::WorkflowExecution,
    enums::v1::UpdateWorkflowExecutionLifecycleStage as Stage,
    update::v1::{Outcome, Request, UpdateRef},
    workflowservice::v1::{
        ExecuteMultiOperationRequest, ExecuteMultiOperationResponse,
        PollWorkflowExecutionUpdateRequest, PollWorkflowExecutionUpdateResponse,
        UpdateWorkflowExecutionRequest, UpdateWorkflowExecutionResponse,
        execute_multi_operation_request::operation::Operation as Op,
        execute_multi_operation_response::{
            Response as MultiResponse, response::Response as MultiReply,
        },
    },
};
use sundial_engine::validate::MAX_ID_LENGTH;

/// The stage a caller waits for (ACCEPTED when it names none).
fn wanted_stage(stage: i32) -> i32 {
    if stage == Stage::Unspecified as i32 {
        Stage::Accepted as i32
    } else {
        stage
    }
}

impl Frontend {
    /// Admits `request` to the run (once per update id) and waits for `stage`.
    async fn admit_and_wait(
        &self,
        handle: &Arc<RunHandle>,
        request: Request,
        stage: i32,
        wait: Duration,
    ) -> Result<(i32, Option<Outcome>), ServiceError> {
        let update_id = request
            .meta
            .as_ref()
            .map(|m| m.update_id.clone())
            .unwrap_or_default();
        let mut progress = handle.subscribe();
        self.history
            .transition_with(
                handle,
                |entry, t| {
                    let known = updates::status(entry, &update_id)
                        .map_err(|e| EngineError::FailedPrecondition(e.to_string()))?;
                    if known.is_some() {
                        t.update_already_known();
                        return Ok(());
                    }
                    if !t.state.is_running() {
                        return Err(EngineError::NotFound(
                            "workflow execution already completed".into(),
                        ));
                    }
                    let mut registry = entry.updates.lock();
                    t.check_update_admission(registry.waiting_count())?;
                    registry.admit(request);
                    drop(registry);
                    t.request_update_task();
                    Ok(())
                },
                |_, ()| (),
            )
            .await?;
        self.wait_for_stage(handle, &update_id, wanted_stage(stage), wait, &mut progress)
            .await
    }

    async fn wait_for_stage(
        &self,
        handle: &Arc<RunHandle>,
        update_id: &str,
        stage: i32,
        wait: Duration,
        progress: &mut tokio::sync::watch::Receiver<i64>,
    ) -> Result<(i32, Option<Outcome>), ServiceError> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let (status, running) = self
                .history
                .read(handle, |entry| {
                    (updates::status(entry, update_id), entry.state.is_running())
                })
                .await?;
            let status = status?;
            let Some((current, outcome)) = status else {
                return Err(ServiceError::NotFound(format!(
                    "update {update_id} not found"
                )));
            };
            if current >= stage {
                return Ok((current, outcome));
            }
            if !running {
                return Err(ServiceError::NotFound(
                    "workflow execution already completed".into(),
                ));
            }
            match tokio::time::timeout_at(until, progress.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok((current, None)),
            }
        }
    }

    pub(super) async fn update(
        &self,
        req: UpdateWorkflowExecutionRequest,
        wait: Duration,
    ) -> Result<UpdateWorkflowExecutionResponse, ServiceError> {
        let WorkflowExecution {
            workflow_id,
            run_id,
        } = req.workflow_execution.clone().unwrap_or_default();
        let handle = self.run_by_id(&req.namespace, &workflow_id, &run_id)?;
        let request = req.request.clone().unwrap_or_default();
        let update_id = self.check_update_request(&request)?;
        let stage = req.wait_policy.map_or(0, |p| p.lifecycle_stage);
        let (stage, outcome) = self.admit_and_wait(&handle, request, stage, wait).await?;
        Ok(UpdateWorkflowExecutionResponse {
            update_ref: Some(UpdateRef {
                workflow_execution: Some(WorkflowExecution {
                    workflow_id,
                    run_id: handle.run_id.clone(),
                }),
                update_id,
            }),
            outcome,
            stage,
            ..Default::default()
        })
    }

    /// An update request's id, once its id, name and input are checked.
    fn check_update_request(&self, request: &Request) -> Result<String, ServiceError> {
        let update_id = request
            .meta
            .as_ref()
            .map(|m| m.update_id.clone())
            .unwrap_or_default();
        if update_id.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "Update ID is not set on request.".into(),
            ));
        }
        if request.input.as_ref().is_none_or(|i| i.name.is_empty()) {
            return Err(ServiceError::InvalidArgument(
                "Update name is not set on request.".into(),
            ));
        }
        if update_id.len() > MAX_ID_LENGTH {
            return Err(ServiceError::InvalidArgument(
                "UpdateId length exceeds limit.".into(),
            ));
        }
        if request
            .input
            .as_ref()
            .is_some_and(|i| i.name.len() > MAX_ID_LENGTH)
        {
            return Err(ServiceError::InvalidArgument(
                "Update name length exceeds limit.".into(),
            ));
        }
        self.check_blob(request.input.as_ref().and_then(|i| i.args.as_ref()))?;
        Ok(update_id)
    }

    pub(super) async fn poll_update(
        &self,
        req: PollWorkflowExecutionUpdateRequest,
        wait: Duration,
    ) -> Result<PollWorkflowExecutionUpdateResponse, ServiceError> {
        let update_ref = req.update_ref.clone().unwrap_or_default();
        let execution = update_ref.workflow_execution.clone().unwrap_or_default();
        let handle = self.run_by_id(&req.namespace, &execution.workflow_id, &execution.run_id)?;
        let stage = wanted_stage(req.wait_policy.map_or(0, |p| p.lifecycle_stage));
        let mut progress = handle.subscribe();
        let (stage, outcome) = self
            .wait_for_stage(&handle, &update_ref.update_id, stage, wait, &mut progress)
            .await?;
        Ok(PollWorkflowExecutionUpdateResponse {
            outcome,
            stage,
            update_ref: Some(UpdateRef {
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: execution.workflow_id,
                    run_id: handle.run_id.clone(),
                }),
                update_id: update_ref.update_id,
            }),
        })
    }

    /// Update-with-start: ExecuteMultiOperation with a StartWorkflow and an UpdateWorkflow.
    pub(super) async fn update_with_start(
        &self,
        req: ExecuteMultiOperationRequest,
        wait: Duration,
    ) -> Result<ExecuteMultiOperationResponse, ServiceError> {
        let namespace = req.namespace;
        let mut operations = req.operations.into_iter().map(|o| o.operation);
        let (Some(Some(Op::StartWorkflow(start))), Some(Some(Op::UpdateWorkflow(update))), None) =
            (operations.next(), operations.next(), operations.next())
        else {
            return Err(ServiceError::InvalidArgument(
                "ExecuteMultiOperation takes exactly two operations: StartWorkflow then UpdateWorkflow".into(),
            ));
        };
        // The outer namespace is the one authorization checked; the operations may not name
        // another.
        if start.namespace != namespace || update.namespace != namespace {
            return Err(ServiceError::InvalidArgument(
                "Namespace of the operations must match the request's namespace.".into(),
            ));
        }
        self.namespaces.check(&start.namespace)?;
        let update_target = update.workflow_execution.clone().unwrap_or_default();
        if update_target.workflow_id != start.workflow_id {
            return Err(ServiceError::InvalidArgument(
                "the update's workflow id must be the started workflow's id".into(),
            ));
        }
        self.check_blob(start.input.as_ref())?;
        let mut start = start;
        self.history
            .visibility
            .validate(&start.namespace, start.search_attributes.as_mut())?;
        let first_update = update.request.clone().unwrap_or_default();
        self.check_update_request(&first_update)?;
        let started = self
            .history
            .start_workflow_with_update(&start, first_update)
            .await?;
        let mut update = update;
        update.workflow_execution = Some(WorkflowExecution {
            workflow_id: start.workflow_id.clone(),
            run_id: started.run_id.clone(),
        });
        let update_reply = self.update(update, wait).await?;
        Ok(ExecuteMultiOperationResponse {
            responses: vec![
                MultiResponse {
                    response: Some(MultiReply::StartWorkflow(
                        sundial_engine::api::workflowservice::v1::StartWorkflowExecutionResponse {
                            run_id: started.run_id,
                            started: started.started,
                            ..Default::default()
                        },
                    )),
                },
                MultiResponse {
                    response: Some(MultiReply::UpdateWorkflow(update_reply)),
                },
            ],
        })
    }
}
