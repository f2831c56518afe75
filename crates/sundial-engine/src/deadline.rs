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
}

/// An instant (Unix ms) and what is due then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deadline {
    pub at_ms: i64,
    pub kind: DeadlineKind,
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
                if attempt > 1 || a.attempt_scheduled_time_ms > a.scheduled_time_ms {
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
