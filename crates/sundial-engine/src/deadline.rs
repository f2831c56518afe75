//! Deadlines: every instant at which an execution must be looked at again. They are derived
//! from the state (never stored on their own), so after a restart the same set is rebuilt by
//! calling [`ExecutionState::deadlines`]. A deadline that fires after the state moved on is
//! recognised as stale and ignored.

use crate::Persist;
use crate::state::ExecutionState;
use std::collections::HashSet;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadlineKind {
    UserTimer {
        started_event_id: i64,
    },
    WorkflowTaskScheduleToStart {
        scheduled_event_id: i64,
        seq: i64,
    },
    WorkflowTaskStartToClose {
        scheduled_event_id: i64,
        seq: i64,
    },
    ActivityRetry {
        scheduled_event_id: i64,
        attempt: i32,
    },
    ActivityScheduleToStart {
        scheduled_event_id: i64,
        attempt: i32,
    },
    ActivityStartToClose {
        scheduled_event_id: i64,
        attempt: i32,
    },
    ActivityHeartbeat {
        scheduled_event_id: i64,
        attempt: i32,
    },
    ActivityScheduleToClose {
        scheduled_event_id: i64,
    },
    WorkflowRunTimeout,
    WorkflowExecutionTimeout,
    /// The first workflow task of a retried or delayed run may be scheduled.
    WorkflowBackoff,
    /// A Nexus operation's request attempt: its backoff ended, or its worker's time is up.
    NexusAttempt {
        scheduled_event_id: i64,
        cancel: bool,
        attempt: i32,
    },
    /// A Nexus operation's schedule-to-close, schedule-to-start or start-to-close timeout.
    NexusTimeout {
        scheduled_event_id: i64,
        /// `TimeoutType` as i32.
        timeout_type: i32,
    },
}

/// An instant (Unix ms) and what is due then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deadline {
    pub at_ms: i64,
    pub kind: DeadlineKind,
}

/// When a running run must next be looked at by the server on its own (see
/// [`ExecutionState::wake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// As soon as the server starts: the run has work to hand out or to carry out.
    AtStart,
    /// At this instant (Unix ms, at least 1): the run's earliest deadline.
    At(i64),
    /// Only when a request names it: nothing is due on its own.
    OnDemand,
}

impl ExecutionState {
    /// Every deadline the execution currently has, as a set: the caller compares it with the
    /// deadlines it registered before, in time linear in their number.
    pub fn deadlines(&self) -> HashSet<Deadline> {
        let mut out = HashSet::new();
        if !self.is_running() {
            return out;
        }
        let mut push = |at_ms: i64, kind| {
            out.insert(Deadline { at_ms, kind });
        };
        for timer in &self.timers {
            push(
                timer.fire_time_ms,
                DeadlineKind::UserTimer {
                    started_event_id: timer.started_event_id,
                },
            );
        }
        if let Some(wt) = &self.workflow_task {
            let (scheduled_event_id, seq) = (wt.scheduled_event_id, wt.seq);
            if wt.is_started() {
                push(
                    wt.started_time_ms + wt.timeout_ms,
                    DeadlineKind::WorkflowTaskStartToClose {
                        scheduled_event_id,
                        seq,
                    },
                );
            } else if wt.sticky && self.sticky_schedule_to_start_ms > 0 {
                push(
                    wt.scheduled_time_ms + self.sticky_schedule_to_start_ms,
                    DeadlineKind::WorkflowTaskScheduleToStart {
                        scheduled_event_id,
                        seq,
                    },
                );
            }
        }
        // A paused activity has no deadlines until it is unpaused (as on the reference server).
        for a in self.activities.iter().filter(|a| !a.paused) {
            let (scheduled_event_id, attempt) = (a.scheduled_event_id, a.attempt);
            if a.is_started() {
                if a.start_to_close_ms > 0 {
                    push(
                        a.started_time_ms + a.start_to_close_ms,
                        DeadlineKind::ActivityStartToClose {
                            scheduled_event_id,
                            attempt,
                        },
                    );
                }
                if a.heartbeat_timeout_ms > 0 {
                    let last = a.last_heartbeat_time_ms.max(a.started_time_ms);
                    push(
                        last + a.heartbeat_timeout_ms,
                        DeadlineKind::ActivityHeartbeat {
                            scheduled_event_id,
                            attempt,
                        },
                    );
                }
            } else {
                // Retries wait for their backoff; a first attempt rescheduled by an operator
                // (unpause or reset with jitter) for its delay.
                if a.waits_for_retry() {
                    push(
                        a.attempt_scheduled_time_ms,
                        DeadlineKind::ActivityRetry {
                            scheduled_event_id,
                            attempt,
                        },
                    );
                }
                if a.schedule_to_start_ms > 0 {
                    push(
                        a.attempt_scheduled_time_ms + a.schedule_to_start_ms,
                        DeadlineKind::ActivityScheduleToStart {
                            scheduled_event_id,
                            attempt,
                        },
                    );
                }
            }
            if a.schedule_to_close_ms > 0 {
                push(
                    a.scheduled_time_ms + a.schedule_to_close_ms,
                    DeadlineKind::ActivityScheduleToClose { scheduled_event_id },
                );
            }
        }
        for op in &self.nexus_operations {
            let scheduled_event_id = op.scheduled_event_id;
            if let Some((at_ms, cancel, attempt)) = op.attempt_deadline() {
                push(
                    at_ms,
                    DeadlineKind::NexusAttempt {
                        scheduled_event_id,
                        cancel,
                        attempt,
                    },
                );
            }
            for (at_ms, timeout_type) in op.timeouts() {
                push(
                    at_ms,
                    DeadlineKind::NexusTimeout {
                        scheduled_event_id,
                        timeout_type: timeout_type as i32,
                    },
                );
            }
        }
        if self.run_expiration_ms > 0 {
            push(self.run_expiration_ms, DeadlineKind::WorkflowRunTimeout);
        }
        if self.backoff_until_ms > 0 && self.workflow_task.is_none() {
            push(self.backoff_until_ms, DeadlineKind::WorkflowBackoff);
        }
        if self.execution_expiration_ms > 0 {
            push(
                self.execution_expiration_ms,
                DeadlineKind::WorkflowExecutionTimeout,
            );
        }
        out
    }

    /// When the server must look at the run again without being asked: what the store's
    /// wake index holds for it, so that a run out of memory is found again in time.
    ///
    /// [`Wake::AtStart`] exactly when the run has work that no deadline stands for: its
    /// workflow task, activity attempts ready the moment they were scheduled, work towards
    /// other runs, or a parent to check on. Otherwise its earliest deadline, or
    /// [`Wake::OnDemand`] when it has none (it waits for a request, such as a signal).
    /// Everything [`ExecutionState::ready_tasks`] returns at any time is covered by one of
    /// the two: an attempt waiting out a backoff has its retry deadline.
    pub fn wake(&self) -> Wake {
        if !self.is_running() {
            return Wake::OnDemand;
        }
        let dispatchable_activity = self
            .activities
            .iter()
            .any(|a| !a.is_started() && !a.paused && !a.waits_for_retry());
        if self.workflow_task.is_some()
            || dispatchable_activity
            || !self.children.is_empty()
            || !self.external_signals.is_empty()
            || !self.external_cancels.is_empty()
            || self.parent.is_some()
            || self.nexus_operations.iter().any(nexus_needs_start)
        {
            return Wake::AtStart;
        }
        match self.deadlines().iter().map(|d| d.at_ms).min() {
            Some(at_ms) => Wake::At(at_ms.max(1)),
            None => Wake::OnDemand,
        }
    }

    /// Tasks that should be waiting in a queue right now (used after a restart, when the
    /// in-memory queues are empty): the unstarted workflow task and unstarted activity attempts
    /// whose backoff has passed.
    pub fn ready_tasks(&self, now: i64) -> Vec<crate::Effect> {
        let mut out = Vec::new();
        if !self.is_running() {
            return out;
        }
        if let Some(wt) = &self.workflow_task
            && !wt.is_started()
        {
            out.push(crate::Effect::DispatchWorkflowTask {
                task_queue: wt.task_queue.clone(),
                scheduled_event_id: wt.scheduled_event_id,
                seq: wt.seq,
            });
        }
        for child in &self.children {
            out.push(if child.run_id.is_empty() {
                crate::Effect::StartChild {
                    initiated_event_id: child.initiated_event_id,
                }
            } else {
                crate::Effect::CheckChild {
                    initiated_event_id: child.initiated_event_id,
                }
            });
        }
        for signal in &self.external_signals {
            out.push(crate::Effect::SignalExternal {
                initiated_event_id: signal.initiated_event_id,
            });
        }
        for cancel in &self.external_cancels {
            out.push(crate::Effect::CancelExternal {
                initiated_event_id: cancel.initiated_event_id,
            });
        }
        if self.parent.is_some() {
            out.push(crate::Effect::CheckParent);
        }
        for op in &self.nexus_operations {
            out.extend(ExecutionState::nexus_dispatch(op));
            if op.handler_workflow.is_some() {
                out.push(crate::Effect::CheckNexusOperation {
                    scheduled_event_id: op.scheduled_event_id,
                });
            }
        }
        for a in &self.activities {
            if !a.is_started() && !a.paused && a.attempt_scheduled_time_ms <= now {
                out.push(crate::Effect::DispatchActivityTask {
                    task_queue: a.task_queue.clone(),
                    scheduled_event_id: a.scheduled_event_id,
                    attempt: a.attempt,
                });
            }
        }
        out
    }
}

/// A Nexus operation has a request to hand out, or a handler workflow to check on, after a
/// restart (what [`ExecutionState::ready_tasks`] returns for it).
fn nexus_needs_start(op: &crate::state::NexusOperationInfo) -> bool {
    op.start_dispatchable() || op.cancel_dispatchable() || op.handler_workflow.is_some()
}

impl crate::Transition<'_> {
    /// A deadline fired. Changes the state only when the deadline is still due for the state as
    /// it is now (deadlines are never cancelled, so most stale ones land here harmlessly).
    pub fn fire_deadline(&mut self, kind: DeadlineKind) {
        use crate::api::enums::v1::TimeoutType;
        use crate::workflow_task::WorkflowTaskRef;
        if !self.state.is_running() {
            self.persist = Persist::Nothing;
            return;
        }
        let before = self.state.clone();
        match kind {
            DeadlineKind::UserTimer { started_event_id } => self.fire_user_timer(started_event_id),
            DeadlineKind::WorkflowTaskScheduleToStart {
                scheduled_event_id,
                seq,
            } => self.workflow_task_timed_out(
                WorkflowTaskRef {
                    scheduled_event_id,
                    seq,
                },
                false,
            ),
            DeadlineKind::WorkflowTaskStartToClose {
                scheduled_event_id,
                seq,
            } => self.workflow_task_timed_out(
                WorkflowTaskRef {
                    scheduled_event_id,
                    seq,
                },
                true,
            ),
            DeadlineKind::ActivityRetry {
                scheduled_event_id,
                attempt,
            } => self.activity_deadline(scheduled_event_id, Some(attempt), None),
            DeadlineKind::ActivityScheduleToStart {
                scheduled_event_id,
                attempt,
            } => self.activity_deadline(
                scheduled_event_id,
                Some(attempt),
                Some(TimeoutType::ScheduleToStart),
            ),
            DeadlineKind::ActivityStartToClose {
                scheduled_event_id,
                attempt,
            } => self.activity_deadline(
                scheduled_event_id,
                Some(attempt),
                Some(TimeoutType::StartToClose),
            ),
            DeadlineKind::ActivityHeartbeat {
                scheduled_event_id,
                attempt,
            } => self.activity_deadline(
                scheduled_event_id,
                Some(attempt),
                Some(TimeoutType::Heartbeat),
            ),
            DeadlineKind::ActivityScheduleToClose { scheduled_event_id } => {
                self.activity_deadline(scheduled_event_id, None, Some(TimeoutType::ScheduleToClose))
            }
            DeadlineKind::WorkflowRunTimeout => {
                let at = self.state.run_expiration_ms;
                self.workflow_timed_out(at)
            }
            DeadlineKind::WorkflowExecutionTimeout => {
                let at = self.state.execution_expiration_ms;
                self.workflow_timed_out(at)
            }
            DeadlineKind::NexusAttempt {
                scheduled_event_id,
                cancel,
                attempt,
            } => self.nexus_attempt_due(scheduled_event_id, cancel, attempt),
            DeadlineKind::NexusTimeout {
                scheduled_event_id,
                timeout_type,
            } => self.nexus_timed_out(scheduled_event_id, timeout_type),
            DeadlineKind::WorkflowBackoff => {
                if self.state.backoff_until_ms > 0 && self.now >= self.state.backoff_until_ms {
                    self.state.backoff_until_ms = 0;
                    self.ensure_workflow_task();
                }
            }
        }
        if *self.state == before && self.events.is_empty() {
            self.persist = Persist::Nothing;
        }
    }

    fn fire_user_timer(&mut self, started_event_id: i64) {
        use crate::api::history::v1::{TimerFiredEventAttributes, history_event::Attributes};
        let Some(timer) = self.state.timer(started_event_id).cloned() else {
            return;
        };
        if self.now < timer.fire_time_ms {
            return;
        }
        self.state.remove_timer(started_event_id);
        self.record(Attributes::TimerFiredEventAttributes(
            TimerFiredEventAttributes {
                timer_id: timer.timer_id,
                started_event_id,
            },
        ));
        self.ensure_workflow_task();
    }

    fn workflow_timed_out(&mut self, at_ms: i64) {
        if at_ms == 0 || self.now < at_ms {
            return;
        }
        self.time_out_workflow();
    }
}

#[cfg(test)]
mod wake_tests {
    use super::*;
    use crate::state::{ActivityInfo, ChildInfo, ParentInfo, TimerInfo, WorkflowTaskInfo};

    const RUNNING: i32 = 1;

    fn running() -> ExecutionState {
        ExecutionState {
            status: RUNNING,
            ..Default::default()
        }
    }

    fn timer(fire_time_ms: i64) -> TimerInfo {
        TimerInfo {
            fire_time_ms,
            started_event_id: fire_time_ms,
            ..Default::default()
        }
    }

    fn activity(attempt: i32, scheduled: i64, attempt_scheduled: i64) -> ActivityInfo {
        ActivityInfo {
            scheduled_event_id: 5,
            attempt,
            scheduled_time_ms: scheduled,
            attempt_scheduled_time_ms: attempt_scheduled,
            ..Default::default()
        }
    }

    /// (what the run has) -> its wake index entry.
    #[test]
    fn the_wake_entry_is_at_start_for_work_to_hand_out_else_the_earliest_deadline() {
        let started = ActivityInfo {
            started_time_ms: 2_000,
            start_to_close_ms: 1_000,
            ..activity(1, 1_000, 1_000)
        };
        let paused = ActivityInfo {
            paused: true,
            ..activity(1, 1_000, 1_000)
        };
        let rows: Vec<(&str, ExecutionState, Wake)> = vec![
            (
                "closed",
                ExecutionState {
                    status: 2,
                    timers: vec![timer(5_000)],
                    ..Default::default()
                },
                Wake::OnDemand,
            ),
            ("waits for a signal", running(), Wake::OnDemand),
            (
                "a timer",
                ExecutionState {
                    timers: vec![timer(5_000)],
                    ..running()
                },
                Wake::At(5_000),
            ),
            (
                "a timer and an earlier run timeout",
                ExecutionState {
                    timers: vec![timer(5_000)],
                    run_expiration_ms: 3_000,
                    ..running()
                },
                Wake::At(3_000),
            ),
            (
                "a workflow task",
                ExecutionState {
                    workflow_task: Some(WorkflowTaskInfo::default()),
                    timers: vec![timer(5_000)],
                    ..running()
                },
                Wake::AtStart,
            ),
            (
                "an activity to dispatch",
                ExecutionState {
                    activities: vec![activity(1, 1_000, 1_000)],
                    ..running()
                },
                Wake::AtStart,
            ),
            (
                "an activity waiting out its retry backoff",
                ExecutionState {
                    activities: vec![activity(2, 1_000, 7_000)],
                    ..running()
                },
                Wake::At(7_000),
            ),
            (
                "a started activity",
                ExecutionState {
                    activities: vec![started],
                    ..running()
                },
                Wake::At(3_000),
            ),
            (
                "a paused activity",
                ExecutionState {
                    activities: vec![paused],
                    ..running()
                },
                Wake::OnDemand,
            ),
            (
                "a child",
                ExecutionState {
                    children: vec![ChildInfo::default()],
                    ..running()
                },
                Wake::AtStart,
            ),
            (
                "a parent",
                ExecutionState {
                    parent: Some(ParentInfo::default()),
                    timers: vec![timer(5_000)],
                    ..running()
                },
                Wake::AtStart,
            ),
        ];
        for (case, state, expected) in rows {
            assert_eq!(state.wake(), expected, "{case}");
            // Whatever it has to hand out at any time, a deadline or start-up covers.
            if state.wake() != Wake::AtStart {
                assert!(
                    state.workflow_task.is_none() && state.ready_tasks(i64::MIN).is_empty(),
                    "{case}"
                );
            }
        }
    }
}
