//! TerminateWorkflowExecution: closes the run at once, recording who and why.

use crate::api::{
    common::v1::Payloads,
    enums::v1::{WorkflowExecutionStatus, WorkflowTaskFailedCause},
    history::v1::{
        WorkflowExecutionTerminatedEventAttributes, WorkflowTaskFailedEventAttributes,
        history_event::Attributes,
    },
};
use crate::{EngineError, Transition};

impl Transition<'_> {
    /// A started workflow task is failed first (cause ForceCloseCommand) and buffered events are
    /// written, so the history stays well formed; then WorkflowExecutionTerminated closes it.
    pub fn terminate(
        &mut self,
        reason: &str,
        details: Option<Payloads>,
        identity: &str,
    ) -> Result<(), EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(
                "workflow execution already completed".into(),
            ));
        }
        if let Some(wt) = self.state.workflow_task.take()
            && wt.is_started()
            && !wt.unwritten
        {
            self.append(Attributes::WorkflowTaskFailedEventAttributes(
                WorkflowTaskFailedEventAttributes {
                    scheduled_event_id: wt.scheduled_event_id,
                    started_event_id: wt.started_event_id,
                    cause: WorkflowTaskFailedCause::ForceCloseCommand as i32,
                    identity: "history-service".to_string(),
                    ..Default::default()
                },
            ));
        }
        self.flush_buffer();
        let id = self.append(Attributes::WorkflowExecutionTerminatedEventAttributes(
            WorkflowExecutionTerminatedEventAttributes {
                reason: if reason.is_empty() {
                    "terminated by user via frontend".to_string()
                } else {
                    reason.to_string()
                },
                details,
                identity: identity.to_string(),
            },
        ));
        self.close(WorkflowExecutionStatus::Terminated, id);
        Ok(())
    }
}
