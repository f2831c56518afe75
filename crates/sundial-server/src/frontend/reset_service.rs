//! ResetWorkflowExecution: validation and translation to the history driver's reset
//! (`History::reset_workflow`); the new run's history is the engine's rule
//! (`sundial_engine::reset`).

use super::ExecutionChecks;
use super::workflow_service::Frontend;
use crate::error::ServiceError;
use crate::history::ResetRequest;
use sundial_engine::api::common::v1::WorkflowExecution;
use sundial_engine::api::workflowservice::v1::{
    ResetWorkflowExecutionRequest, ResetWorkflowExecutionResponse,
};
use sundial_engine::validate::MAX_ID_LENGTH;

impl Frontend {
    pub(super) async fn reset_workflow_execution_rpc(
        &self,
        req: ResetWorkflowExecutionRequest,
    ) -> Result<ResetWorkflowExecutionResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let WorkflowExecution {
            workflow_id,
            run_id,
        } = req.workflow_execution.clone().unwrap_or_default();
        ExecutionChecks::workflow_id(&workflow_id).check()?;
        if req.request_id.len() > MAX_ID_LENGTH {
            return Err(ServiceError::InvalidArgument(
                "RequestId length exceeds limit.".into(),
            ));
        }
        if !req.post_reset_operations.is_empty() {
            return Err(ServiceError::Unimplemented(
                "post_reset_operations are not supported by this server".into(),
            ));
        }
        #[allow(deprecated)] // reset_reapply_type: deprecated, still sent by clients
        let reapply = sundial_engine::reset::reapply_kinds(
            req.reset_reapply_type,
            &req.reset_reapply_exclude_types,
        )?;
        let run_id = self
            .history
            .reset_workflow(&ResetRequest {
                namespace: req.namespace,
                workflow_id,
                base_run_id: run_id,
                finish_event_id: req.workflow_task_finish_event_id,
                request_id: req.request_id,
                reason: req.reason,
                reapply,
            })
            .await?;
        Ok(ResetWorkflowExecutionResponse { run_id })
    }
}
