//! TerminateWorkflowExecution: closes the run at once, recording who and why.

use crate::api::{
    common::v1::Payloads,
    enums::v1::{WorkflowExecutionStatus, WorkflowTaskFailedCause},
    history::v1::{
        WorkflowExecutionTerminatedEventAttributes, WorkflowTaskFailedEventAttributes,
        history_event::Attributes,
    },
};
use crate::{EngineError, Persist, Transition};

/// Termination reasons when a history outgrows its limits (Temporal's words).
pub const HISTORY_COUNT_EXCEEDED: &str = "Workflow history count exceeds limit.";
pub const HISTORY_SIZE_EXCEEDED: &str = "Workflow history size exceeds limit.";

impl Transition<'_> {
    /// Terminates a running workflow whose history (with this transition's events) has
    /// outgrown the error limits, as Temporal does: it could no longer be replayed or stored
    /// sensibly. Returns true when it terminated the run.
    pub fn enforce_history_limits(&mut self) -> bool {
        if !self.state.is_running() {
            return false;
        }
        let count = self.state.next_event_id - 1 + self.state.buffered_events.len() as i64;
        let reason =
            if self.limits.history_count_error > 0 && count > self.limits.history_count_error {
                HISTORY_COUNT_EXCEEDED
            } else if self.limits.history_size_error_bytes > 0
                && self.state.history_size_bytes > self.limits.history_size_error_bytes
            {
                HISTORY_SIZE_EXCEEDED
            } else {
                return false;
            };
        self.persist = Persist::Synced;
        self.terminate(reason, None, "history-service").is_ok()
    }

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
