//! Workflow task lifecycle: started by a poller, failed by a worker, timed out by a deadline.
//! Completion (with commands) lives in `commands.rs`.

use crate::api::{
    enums::v1::{TimeoutType, WorkflowTaskFailedCause},
    failure::v1::Failure,
    history::v1::{
        WorkflowTaskFailedEventAttributes, WorkflowTaskStartedEventAttributes,
        WorkflowTaskTimedOutEventAttributes, history_event::Attributes,
    },
};
use crate::{EngineError, Transition};

/// Identifies one dispatch of a workflow task (carried in its task token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowTaskRef {
    pub scheduled_event_id: i64,
    pub seq: i64,
}

fn not_found() -> EngineError {
    EngineError::NotFound("Workflow task not found.".into())
}

impl Transition<'_> {
    /// Hands the scheduled workflow task to a poller. Kept in memory only (`persist = false`):
    /// a crash before the next commit returns the task to "scheduled".
    pub fn start_workflow_task(
        &mut self,
        task: WorkflowTaskRef,
        identity: &str,
        request_id: &str,
    ) -> Result<(), EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(
                "Workflow execution already completed.".into(),
            ));
        }
        let wt = self.state.workflow_task.as_ref().ok_or_else(not_found)?;
        if wt.scheduled_event_id != task.scheduled_event_id || wt.seq != task.seq || wt.is_started()
        {
            return Err(not_found());
        }
        let history_size_bytes = self.state.history_size_bytes;
        let started = self.append(Attributes::WorkflowTaskStartedEventAttributes(
            WorkflowTaskStartedEventAttributes {
                scheduled_event_id: task.scheduled_event_id,
                identity: identity.to_string(),
                request_id: request_id.to_string(),
                history_size_bytes,
                ..Default::default()
            },
        ));
        let now = self.now;
        if let Some(wt) = self.state.workflow_task.as_mut() {
            wt.started_event_id = started;
            wt.started_time_ms = now;
            wt.identity = identity.to_string();
        }
        self.persist = false;
        Ok(())
    }

    /// Checks that `task` is the started workflow task.
    pub(crate) fn check_started_workflow_task(
        &self,
        task: WorkflowTaskRef,
    ) -> Result<(), EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(
                "Workflow execution already completed.".into(),
            ));
        }
        match &self.state.workflow_task {
            Some(wt)
                if wt.scheduled_event_id == task.scheduled_event_id
                    && wt.seq == task.seq
                    && wt.is_started() =>
            {
                Ok(())
            }
            _ => Err(not_found()),
        }
    }

    /// RespondWorkflowTaskFailed: writes WorkflowTaskFailed, the buffered events, and a new
    /// workflow task with the next attempt.
    pub fn fail_workflow_task(
        &mut self,
        task: WorkflowTaskRef,
        cause: i32,
        failure: Option<Failure>,
        identity: &str,
    ) -> Result<(), EngineError> {
        self.check_started_workflow_task(task)?;
        self.workflow_task_failed(cause, failure, identity);
        Ok(())
    }

    pub(crate) fn workflow_task_failed(
        &mut self,
        cause: i32,
        failure: Option<Failure>,
        identity: &str,
    ) {
        let Some(wt) = self.state.workflow_task.take() else {
            return;
        };
        self.append(Attributes::WorkflowTaskFailedEventAttributes(
            WorkflowTaskFailedEventAttributes {
                scheduled_event_id: wt.scheduled_event_id,
                started_event_id: wt.started_event_id,
                cause,
                failure,
                identity: identity.to_string(),
                ..Default::default()
            },
        ));
        // A worker that failed the task may have a broken cache: go back to the normal queue.
        self.state.sticky_task_queue.clear();
        self.flush_buffer();
        let attempt = if cause == WorkflowTaskFailedCause::UnhandledCommand as i32 {
            1
        } else {
            wt.attempt + 1
        };
        self.schedule_workflow_task(attempt);
    }

    /// A workflow task deadline fired: start-to-close of a started task, or schedule-to-start of
    /// a task waiting on a sticky queue. Stale deadlines change nothing.
    pub(crate) fn workflow_task_timed_out(&mut self, task: WorkflowTaskRef, started: bool) {
        let Some(wt) = self.state.workflow_task.as_ref() else {
            return;
        };
        if wt.scheduled_event_id != task.scheduled_event_id || wt.seq != task.seq {
            return;
        }
        if started != wt.is_started() {
            return;
        }
        let due = if started {
            wt.started_time_ms + wt.timeout_ms
        } else {
            wt.scheduled_time_ms + self.state.sticky_schedule_to_start_ms
        };
        if self.now < due || (!started && !wt.sticky) {
            return;
        }
        let wt = self.state.workflow_task.take().expect("checked above");
        let timeout_type = if started {
            TimeoutType::StartToClose
        } else {
            TimeoutType::ScheduleToStart
        };
        self.append(Attributes::WorkflowTaskTimedOutEventAttributes(
            WorkflowTaskTimedOutEventAttributes {
                scheduled_event_id: wt.scheduled_event_id,
                started_event_id: wt.started_event_id,
                timeout_type: timeout_type as i32,
            },
        ));
        self.state.sticky_task_queue.clear();
        self.flush_buffer();
        let attempt = if started { wt.attempt + 1 } else { wt.attempt };
        self.schedule_workflow_task(attempt);
    }
}
