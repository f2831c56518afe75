//! UpdateWorkflowExecutionOptions (`temporal workflow update-options`): validates the request
//! (`sundial_engine::workflow_options::check_request`), resolves the run and runs one
//! transition (`Transition::update_workflow_options`), which decides the event and the new
//! options. Whether a deployment version is present in the run's task queue comes from
//! matching (versioned workers that polled it recently).

use super::ExecutionChecks;
use super::workflow_service::Frontend;
use crate::error::ServiceError;
use crate::matching::{POLLER_MEMORY_MS, QueueKey, TaskKind};
use sundial_engine::api::{
    deployment::v1::WorkerDeploymentVersion,
    workflowservice::v1::{
        UpdateWorkflowExecutionOptionsRequest, UpdateWorkflowExecutionOptionsResponse,
    },
};
use sundial_engine::workflow_options::{OptionsUpdate, check_request};

impl Frontend {
    pub(super) async fn update_workflow_execution_options_rpc(
        &self,
        req: UpdateWorkflowExecutionOptionsRequest,
    ) -> Result<UpdateWorkflowExecutionOptionsResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let execution = req.workflow_execution.clone().unwrap_or_default();
        ExecutionChecks::workflow_id(&execution.workflow_id)
            .run_id(&execution.run_id)
            .identity(&req.identity)
            .check()?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone());
        check_request(req.workflow_execution_options.as_ref(), paths.as_deref())?;
        let request = OptionsUpdate {
            options: req.workflow_execution_options.unwrap_or_default(),
            paths: paths.unwrap_or_default(),
            identity: req.identity,
        };
        let handle = self.run_of(&req.namespace, Some(&execution)).await?;
        let matching = self.history.matching();
        let since = self.history.now_ms() - POLLER_MEMORY_MS;
        let namespace = req.namespace.clone();
        let (options, update_time) = self
            .history
            .transition(
                &handle,
                |t| {
                    let key = QueueKey {
                        namespace,
                        name: t.state.task_queue.clone(),
                        kind: TaskKind::Workflow,
                    };
                    let present = |v: &WorkerDeploymentVersion| {
                        matching.has_version(&key, &v.deployment_name, &v.build_id, since)
                    };
                    let options = t.update_workflow_options(&request, &present)?;
                    Ok((options, t.now))
                },
                |_, r| r,
            )
            .await?;
        Ok(UpdateWorkflowExecutionOptionsResponse {
            workflow_execution_options: Some(options),
            update_time: Some(sundial_engine::time::timestamp(update_time)),
        })
    }
}
