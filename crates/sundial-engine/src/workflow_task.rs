//! Workflow task lifecycle: started by a poller, failed by a worker, timed out by a deadline.
//! Completion (with commands) lives in `commands.rs`.

use crate::api::enums::v1::SuggestContinueAsNewReason;
use crate::api::{
    enums::v1::{TimeoutType, WorkflowTaskFailedCause},
    failure::v1::Failure,
    history::v1::{
        WorkflowTaskFailedEventAttributes, WorkflowTaskStartedEventAttributes,
        WorkflowTaskTimedOutEventAttributes, history_event::Attributes,
    },
};
use crate::{Effect, EngineError, Persist, Transition};

/// Who is taking a task: recorded in the task's started event.
#[derive(Debug, Default, Clone)]
pub struct Poller {
    pub identity: String,
    pub request_id: String,
    pub build_id: String,
}

impl Poller {
    pub(crate) fn version_stamp(&self) -> Option<crate::api::common::v1::WorkerVersionStamp> {
        (!self.build_id.is_empty()).then(|| crate::api::common::v1::WorkerVersionStamp {
            build_id: self.build_id.clone(),
            use_versioning: false,
        })
    }
}

/// Identifies one dispatch of a workflow task (carried in its task token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowTaskRef {
    pub scheduled_event_id: i64,
    pub seq: i64,
}

fn not_found() -> EngineError {
    EngineError::NotFound("Workflow task not found.".into())
}

impl crate::ExecutionState {
    /// Checks that `task` is the run's started workflow task (what a completion or failure of
    /// it needs): NotFound otherwise, with the reference server's messages.
    pub fn check_started_workflow_task(&self, task: WorkflowTaskRef) -> Result<(), EngineError> {
        if !self.is_running() {
            return Err(EngineError::NotFound(
                "Workflow execution already completed.".into(),
            ));
        }
        match &self.workflow_task {
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
}

impl Transition<'_> {
    /// Hands the scheduled workflow task to a poller, numbering the dispatch anew (its token's
    /// number). The start is written before the poller sees it (`Persist::Written`): the
    /// WorkflowTaskStarted event id it is shown is never given to another event, and after a
    /// crash of the process the task is still the poller's (its token stays valid; the
    /// start-to-close timeout decides). A speculative task's start stays
    /// in memory, as in the reference server: a crash forgets it with the updates it carried.
    #[allow(deprecated)] // worker_version: still what the reference server records
    pub fn start_workflow_task(
        &mut self,
        task: WorkflowTaskRef,
        poller: &Poller,
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
        let speculative = wt.speculative;
        let events = self.state.next_event_id - 1 + if wt.unwritten { 2 } else { 1 };
        let (count_limit, size_limit) = (
            self.limits.suggest_continue_as_new_events,
            self.limits.suggest_continue_as_new_bytes,
        );
        let mut reasons = Vec::new();
        if size_limit > 0 && self.state.history_size_bytes >= size_limit {
            reasons.push(SuggestContinueAsNewReason::HistorySizeTooLarge as i32);
        }
        if count_limit > 0 && events >= count_limit {
            reasons.push(SuggestContinueAsNewReason::TooManyHistoryEvents as i32);
        }
        if self.updates_near_total_limit() {
            reasons.push(SuggestContinueAsNewReason::TooManyUpdates as i32);
        }
        let attributes =
            Attributes::WorkflowTaskStartedEventAttributes(WorkflowTaskStartedEventAttributes {
                scheduled_event_id: task.scheduled_event_id,
                identity: poller.identity.clone(),
                request_id: poller.request_id.clone(),
                suggest_continue_as_new: !reasons.is_empty(),
                suggest_continue_as_new_reasons: reasons,
                history_size_bytes: self.state.history_size_bytes,
                worker_version: poller.version_stamp(),
                ..Default::default()
            });
        let started = if wt.unwritten {
            let mut event = self.build_event(attributes);
            event.event_id = task.scheduled_event_id + 1;
            let id = event.event_id;
            if let Some(wt) = self.state.workflow_task.as_mut() {
                wt.pending_events.push(event);
            }
            id
        } else {
            self.append(attributes)
        };
        let now = self.now;
        // The started task gets a dispatch number of its own, at least this process's floor:
        // a token handed out by an earlier process whose start was lost (a power loss before
        // the unsynced write reached the disk) never names this start.
        let seq = self.state.next_task_seq.max(self.task_seq_floor);
        self.state.next_task_seq = seq.saturating_add(1);
        if let Some(wt) = self.state.workflow_task.as_mut() {
            wt.seq = seq;
            wt.started_event_id = started;
            wt.started_time_ms = now;
            wt.identity = poller.identity.clone();
            wt.build_id = poller.build_id.clone();
        }
        self.persist = if speculative {
            Persist::Nothing
        } else {
            Persist::Written
        };
        Ok(())
    }

    /// RespondWorkflowTaskCompleted with `return_new_workflow_task`: the workflow task this
    /// completion scheduled is started for the same worker and handed back in the reply
    /// instead of going through a queue; the start is committed with the completion. Returns
    /// whether there was such a task.
    pub fn start_inline_workflow_task(&mut self, poller: &Poller) -> Result<bool, EngineError> {
        let Some(next) = self.state.workflow_task.clone() else {
            return Ok(false);
        };
        if next.is_started() {
            return Ok(false);
        }
        self.effects
            .retain(|e| !matches!(e, Effect::DispatchWorkflowTask { .. }));
        let next = WorkflowTaskRef {
            scheduled_event_id: next.scheduled_event_id,
            seq: next.seq,
        };
        self.start_workflow_task(next, poller)?;
        self.persist = Persist::Synced;
        Ok(true)
    }

    /// Checks that `task` is the started workflow task.
    pub(crate) fn check_started_workflow_task(
        &self,
        task: WorkflowTaskRef,
    ) -> Result<(), EngineError> {
        self.state.check_started_workflow_task(task)
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
        // A failed speculative task is written (Scheduled, Started, then Failed), as the
        // reference server does: a workflow task failure must be visible in history.
        self.write_speculative_task_events();
        let Some(wt) = self.state.workflow_task.take() else {
            return;
        };
        if wt.unwritten {
            // A failed retry leaves no trace; the next attempt is unwritten too.
            self.state.sticky_task_queue.clear();
            self.flush_buffer();
            self.schedule_workflow_task(wt.attempt + 1);
            return;
        }
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
        if started {
            // A started speculative task that timed out is written, then its timeout.
            self.write_speculative_task_events();
        }
        let wt = self.state.workflow_task.take().expect("checked above");
        if wt.unwritten {
            self.state.sticky_task_queue.clear();
            self.flush_buffer();
            let attempt = if started { wt.attempt + 1 } else { wt.attempt };
            self.schedule_workflow_task_with(attempt, wt.speculative && !started);
            return;
        }
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

    /// Writes the Scheduled/Started events of a speculative workflow task (one that delivers
    /// updates only) that is about to fail or time out, so the failure is recorded in history
    /// and the retry is an ordinary second attempt.
    fn write_speculative_task_events(&mut self) {
        if self
            .state
            .workflow_task
            .as_ref()
            .is_some_and(|wt| wt.speculative && wt.unwritten)
        {
            self.write_pending_task_events();
            if let Some(wt) = self.state.workflow_task.as_mut() {
                wt.speculative = false;
            }
        }
    }

    /// ResetStickyTaskQueue: forget the worker's sticky queue; a task waiting there is offered
    /// on the normal queue.
    pub fn reset_stickiness(&mut self) {
        self.persist = Persist::Nothing;
        if let Some(wt) = self.state.workflow_task.clone()
            && wt.sticky
            && !wt.is_started()
        {
            self.redirect_to_normal_queue(WorkflowTaskRef {
                scheduled_event_id: wt.scheduled_event_id,
                seq: wt.seq,
            });
        }
        self.state.sticky_task_queue.clear();
    }

    /// The worker behind the sticky queue is gone: offer the scheduled task on the workflow's
    /// normal queue instead (the next worker gets the full history). Memory only.
    pub fn redirect_to_normal_queue(&mut self, task: WorkflowTaskRef) {
        self.persist = Persist::Nothing;
        let normal = self.state.task_queue.clone();
        let Some(wt) = self.state.workflow_task.as_mut() else {
            return;
        };
        if wt.seq != task.seq || wt.is_started() || !wt.sticky {
            return;
        }
        wt.sticky = false;
        wt.task_queue = normal.clone();
        let scheduled_event_id = wt.scheduled_event_id;
        self.state.sticky_task_queue.clear();
        self.effects.push(crate::Effect::DispatchWorkflowTask {
            task_queue: normal,
            scheduled_event_id,
            seq: task.seq,
        });
    }
}
