//! The update RPCs: UpdateWorkflowExecution, PollWorkflowExecutionUpdate and update-with-start
//! (ExecuteMultiOperation). An update is admitted to its run, delivered on a workflow task, and
//! the caller waits up to its deadline for the stage it asked for.

use super::update_status;
use super::workflow_service::Frontend;
use crate::error::{OpError, ServiceError};
use crate::run::RunHandle;
use std::sync::Arc;
use std::time::Duration;
use sundial_engine::EngineError;
use sundial_engine::api::{
    common::v1::WorkflowExecution,
    enums::v1::{
        UpdateWorkflowExecutionLifecycleStage as Stage, WorkflowExecutionStatus,
        WorkflowIdConflictPolicy,
    },
    update::v1::{Outcome, Request, UpdateRef},
    workflowservice::v1::{
        ExecuteMultiOperationRequest, ExecuteMultiOperationResponse,
        PollWorkflowExecutionUpdateRequest, PollWorkflowExecutionUpdateResponse,
        StartWorkflowExecutionRequest, StartWorkflowExecutionResponse,
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
    /// `first_execution_run_id`, when set, must name the run's chain.
    async fn admit_and_wait(
        &self,
        handle: &Arc<RunHandle>,
        request: Request,
        first_execution_run_id: &str,
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
                    t.check_update_target(first_execution_run_id)?;
                    // An update the run knows, also one aborted by its close, is not admitted
                    // again: the caller waits for what became of it.
                    if !matches!(update_status::status(entry, &update_id), Ok(None)) {
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

    /// Waits until the update reached `stage` (or the deadline passed: then the stage it is
    /// at). A run that closed answers for the updates it did not complete (see
    /// [`update_status::status`]), so nothing waits on a closed run.
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
            let status = self
                .history
                .read(handle, |entry| update_status::status(entry, update_id))
                .await??;
            let Some((current, outcome)) = status else {
                return Err(ServiceError::NotFound(format!(
                    "update {update_id:?} not found"
                )));
            };
            if current >= stage {
                return Ok((current, outcome));
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
        let handle = self
            .run_of(&req.namespace, req.workflow_execution.as_ref())
            .await?;
        let request = req.request.clone().unwrap_or_default();
        let update_id = self.check_update_request(&request)?;
        let stage = req.wait_policy.map_or(0, |p| p.lifecycle_stage);
        let (stage, outcome) = self
            .admit_and_wait(&handle, request, &req.first_execution_run_id, stage, wait)
            .await?;
        Ok(UpdateWorkflowExecutionResponse {
            update_ref: Some(UpdateRef {
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: handle.workflow_id.clone(),
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
        let handle = self
            .run_by_id(&req.namespace, &execution.workflow_id, &execution.run_id)
            .await?;
        // Unlike UpdateWorkflowExecution, a poll naming no stage is not given a default: it
        // answers at once with the stage the update is at, as the reference server does.
        let stage = req.wait_policy.map_or(0, |p| p.lifecycle_stage);
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
    /// Errors are a MultiOperationExecutionFailure naming the operation that failed.
    ///
    /// As the reference server: an update admitted to a running run that then closed for good
    /// before accepting it is tried once more (the retry may start a new run); caught that way
    /// twice, the update's error becomes Aborted, which clients retry.
    pub(super) async fn update_with_start(
        &self,
        req: ExecuteMultiOperationRequest,
        wait: Duration,
    ) -> Result<ExecuteMultiOperationResponse, ServiceError> {
        let (start, update) = self.check_update_with_start(req)?;
        match self.update_with_start_once(&start, &update, wait).await {
            Err(e) if aborted_by_closing(&e) => {}
            other => return other,
        }
        match self.update_with_start_once(&start, &update, wait).await {
            Err(e) if aborted_by_closing(&e) => Err(ServiceError::MultiOperation(vec![
                OpError::Aborted,
                OpError::AbortedRetryable(update_status::ABORTED_BY_CLOSING.into()),
            ])),
            other => other,
        }
    }

    /// The two operations of an update-with-start, checked as the reference frontend checks
    /// them (each error reported on its operation, the other one aborted).
    fn check_update_with_start(
        &self,
        req: ExecuteMultiOperationRequest,
    ) -> Result<
        (
            StartWorkflowExecutionRequest,
            UpdateWorkflowExecutionRequest,
        ),
        ServiceError,
    > {
        let namespace = req.namespace;
        self.namespaces.check(&namespace)?;
        let mut operations = req.operations.into_iter().map(|o| o.operation);
        let (Some(Some(Op::StartWorkflow(start))), Some(Some(Op::UpdateWorkflow(update))), None) =
            (operations.next(), operations.next(), operations.next())
        else {
            return Err(ServiceError::InvalidArgument(
                "Operations have to be exactly [Start, Update].".into(),
            ));
        };
        let invalid = |m: &str| OpError::Failed(Box::new(ServiceError::InvalidArgument(m.into())));
        let mut start = start;
        // The outer namespace is the one authorization checked; the operations may not name
        // another.
        let start_error = if !start.namespace.is_empty() && start.namespace != namespace {
            Some(invalid(
                "Operation namespace did not match request's namespace.",
            ))
        } else if !start.cron_schedule.is_empty() {
            Some(invalid("CronSchedule is not allowed."))
        } else if start.request_eager_execution {
            Some(invalid("RequestEagerExecution is not supported."))
        } else if start
            .workflow_start_delay
            .as_ref()
            .is_some_and(|d| d.seconds > 0 || d.nanos > 0)
        {
            Some(invalid("WorkflowStartDelay is not supported."))
        } else {
            start.namespace.clone_from(&namespace);
            self.check_start_input(
                &start.namespace,
                start.input.as_ref(),
                start.search_attributes.as_mut(),
            )
            .err()
            .map(|e| OpError::Failed(Box::new(e)))
        };
        let target = update.workflow_execution.clone().unwrap_or_default();
        let update_error = if !update.namespace.is_empty() && update.namespace != namespace {
            Some(invalid(
                "Operation namespace did not match request's namespace.",
            ))
        } else if let Err(e) =
            self.check_update_request(&update.request.clone().unwrap_or_default())
        {
            Some(OpError::Failed(Box::new(e)))
        } else if !update.first_execution_run_id.is_empty() {
            Some(invalid("FirstExecutionRunId is not allowed."))
        } else if !target.run_id.is_empty() {
            Some(invalid("RunId is not allowed."))
        } else if start_error.is_none() && target.workflow_id != start.workflow_id {
            Some(invalid(
                "WorkflowId is not consistent with previous operation(s).",
            ))
        } else {
            None
        };
        if start_error.is_some() || update_error.is_some() {
            return Err(ServiceError::MultiOperation(vec![
                start_error.unwrap_or(OpError::Aborted),
                update_error.unwrap_or(OpError::Aborted),
            ]));
        }
        Ok((start, update))
    }

    /// One try of an update-with-start, in the reference server's order: an update the
    /// workflow id's latest run completed is answered from its history (whatever the policies
    /// say); a running run takes the update when the start is a retry of its own start
    /// (request id), when it already knows the update, or under USE_EXISTING; anything else
    /// is a start (conflict and reuse policies apply) with the update admitted to the new run
    /// before its first workflow task.
    async fn update_with_start_once(
        &self,
        start: &StartWorkflowExecutionRequest,
        update: &UpdateWorkflowExecutionRequest,
        wait: Duration,
    ) -> Result<ExecuteMultiOperationResponse, ServiceError> {
        let request = update.request.clone().unwrap_or_default();
        let update_id = request
            .meta
            .as_ref()
            .map(|m| m.update_id.clone())
            .unwrap_or_default();
        let stage = update.wait_policy.map_or(0, |p| p.lifecycle_stage);
        let existing = match self
            .history
            .handle(&start.namespace, &start.workflow_id, None)
            .await
        {
            Ok(handle) => Some(handle),
            Err(ServiceError::NotFound(_)) => None,
            Err(e) => return Err(multi_error(OpError::Failed(Box::new(e)), OpError::Aborted)),
        };
        if let Some(handle) = existing {
            let found = self
                .history
                .read(&handle, |entry| {
                    let st = &entry.state;
                    let attach = st.is_running()
                        && ((!start.request_id.is_empty()
                            && start.request_id == st.start_request_id)
                            || update_status::in_flight(entry, &update_id)
                            || start.workflow_id_conflict_policy
                                == WorkflowIdConflictPolicy::UseExisting as i32);
                    (
                        update_status::completed_outcome(entry, &update_id),
                        attach,
                        st.status,
                    )
                })
                .await
                .map_err(|e| multi_error(OpError::Failed(Box::new(e)), OpError::Aborted))?;
            match found {
                (Ok(Some(outcome)), _, status) => {
                    return Ok(multi_response(
                        &handle,
                        false,
                        status,
                        &update_id,
                        Stage::Completed as i32,
                        outcome,
                    ));
                }
                (Err(e), _, _) => {
                    return Err(multi_error(OpError::Aborted, OpError::Failed(Box::new(e))));
                }
                (Ok(None), true, _) => {
                    let (stage, outcome) = self
                        .admit_and_wait(&handle, request, "", stage, wait)
                        .await
                        .map_err(|e| multi_error(OpError::Aborted, OpError::Failed(Box::new(e))))?;
                    return Ok(multi_response(
                        &handle,
                        false,
                        WorkflowExecutionStatus::Running as i32,
                        &update_id,
                        stage,
                        outcome,
                    ));
                }
                (Ok(None), false, _) => {}
            }
        }
        let started = self
            .history
            .start_workflow_with_update(start, request.clone())
            .await
            .map_err(|e| multi_error(OpError::Failed(Box::new(e)), OpError::Aborted))?;
        let handle = self
            .history
            .handle(&start.namespace, &start.workflow_id, Some(&started.run_id))
            .await
            .map_err(|e| multi_error(OpError::Failed(Box::new(e)), OpError::Aborted))?;
        let start_op = if started.started {
            OpError::Ok
        } else {
            OpError::Aborted
        };
        // A new run has the update admitted already (this finds it); a run the start did not
        // create (a repeated start request, or USE_EXISTING after a race) gets it now.
        let (stage, outcome) = match self.admit_and_wait(&handle, request, "", stage, wait).await {
            Ok(reached) => reached,
            Err(e) => return Err(multi_error(start_op, OpError::Failed(Box::new(e)))),
        };
        Ok(multi_response(
            &handle,
            started.started,
            WorkflowExecutionStatus::Running as i32,
            &update_id,
            stage,
            outcome,
        ))
    }
}

/// An update-with-start whose update (and nothing else) was aborted by a run closing for good
/// before accepting it, the workflow not having been started by this request.
fn aborted_by_closing(e: &ServiceError) -> bool {
    let ServiceError::MultiOperation(ops) = e else {
        return false;
    };
    matches!(
        ops.as_slice(),
        [OpError::Aborted, OpError::Failed(update)]
            if matches!(update.as_ref(), ServiceError::NotFound(m) if m == update_status::ABORTED_BY_CLOSING)
    )
}

fn multi_error(start: OpError, update: OpError) -> ServiceError {
    ServiceError::MultiOperation(vec![start, update])
}

fn multi_response(
    handle: &RunHandle,
    started: bool,
    status: i32,
    update_id: &str,
    stage: i32,
    outcome: Option<Outcome>,
) -> ExecuteMultiOperationResponse {
    let execution = WorkflowExecution {
        workflow_id: handle.workflow_id.clone(),
        run_id: handle.run_id.clone(),
    };
    ExecuteMultiOperationResponse {
        responses: vec![
            MultiResponse {
                response: Some(MultiReply::StartWorkflow(StartWorkflowExecutionResponse {
                    run_id: handle.run_id.clone(),
                    started,
                    status,
                    ..Default::default()
                })),
            },
            MultiResponse {
                response: Some(MultiReply::UpdateWorkflow(
                    UpdateWorkflowExecutionResponse {
                        update_ref: Some(UpdateRef {
                            workflow_execution: Some(execution),
                            update_id: update_id.to_string(),
                        }),
                        outcome,
                        stage,
                        ..Default::default()
                    },
                )),
            },
        ],
    }
}
