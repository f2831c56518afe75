//! Activity lifecycle after scheduling: started by a poller, heartbeats, completion, failure
//! with server-side retries, cancellation, and the four timeouts.
//!
//! With a retry policy (always present: defaults apply), ActivityTaskStarted is written only
//! when the activity closes, right before its outcome, as the reference server does.

use crate::api::{
    common::v1::Payloads,
    enums::v1::{RetryState, TimeoutType},
    failure::v1::{Failure, TimeoutFailureInfo, failure::FailureInfo},
    history::v1::{
        ActivityTaskCanceledEventAttributes, ActivityTaskCompletedEventAttributes,
        ActivityTaskFailedEventAttributes, ActivityTaskStartedEventAttributes,
        ActivityTaskTimedOutEventAttributes, history_event::Attributes,
    },
};
use crate::retry::{self, RetryDecision};
use crate::state::ActivityInfo;
use crate::transition::BUFFERED_STARTED;
use crate::{Effect, EngineError, Transition};
use crate::{Persist, Poller};

/// What a heartbeat's reply tells the worker (RecordActivityTaskHeartbeatResponse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatReply {
    pub cancel_requested: bool,
    pub activity_paused: bool,
    pub activity_reset: bool,
}

/// Identifies an activity attempt (carried in its task token). `attempt == 0` matches any
/// attempt (completion by activity id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityRef {
    pub scheduled_event_id: i64,
    pub attempt: i32,
}

fn not_found() -> EngineError {
    EngineError::NotFound("Activity task not found.".into())
}

impl Transition<'_> {
    fn pending_activity(&self, task: ActivityRef) -> Result<ActivityInfo, EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(
                "Workflow execution already completed.".into(),
            ));
        }
        let a = self
            .state
            .activity(task.scheduled_event_id)
            .ok_or_else(not_found)?;
        if task.attempt != 0 && a.attempt != task.attempt {
            return Err(not_found());
        }
        Ok(a.clone())
    }

    /// Hands the activity attempt to a poller. Committed before the poller sees it: a crash
    /// must not hand the same attempt out a second time while the first worker may still run
    /// it (an activity with one attempt runs at most once); after a restart the attempt stays
    /// started and its start-to-close timeout decides.
    pub fn start_activity(
        &mut self,
        task: ActivityRef,
        poller: &Poller,
    ) -> Result<ActivityInfo, EngineError> {
        let a = self.pending_activity(task)?;
        if a.is_started() || a.paused || a.attempt_scheduled_time_ms > self.now {
            return Err(not_found());
        }
        let now = self.now;
        let info = self
            .state
            .activity_mut(task.scheduled_event_id)
            .expect("checked above");
        info.started_time_ms = now;
        info.last_heartbeat_time_ms = 0;
        info.started_identity = poller.identity.clone();
        info.started_request_id = poller.request_id.clone();
        info.started_build_id = poller.build_id.clone();
        self.persist = Persist::Synced;
        Ok(info.clone())
    }

    /// Records a heartbeat; returns what the worker is told: whether cancellation was
    /// requested, the activity is paused, or it was reset.
    pub fn heartbeat_activity(
        &mut self,
        task: ActivityRef,
        details: Option<Payloads>,
    ) -> Result<HeartbeatReply, EngineError> {
        let a = self.pending_activity(task)?;
        let now = self.now;
        let info = self
            .state
            .activity_mut(a.scheduled_event_id)
            .expect("checked above");
        if info.started_time_ms == 0 {
            // Started before a restart that forgot it: the worker is evidently running it.
            info.started_time_ms = now;
        }
        info.last_heartbeat_time_ms = now;
        if details.is_some() {
            info.heartbeat_details = details;
        }
        Ok(HeartbeatReply {
            cancel_requested: info.cancel_requested,
            activity_paused: info.paused,
            activity_reset: info.reset_requested,
        })
    }

    /// Writes the buffered-or-appended ActivityTaskStarted for a closing activity and returns
    /// the started event id to reference (a placeholder when buffered).
    #[allow(deprecated)] // worker_version: still what the reference server records
    fn record_activity_started(&mut self, a: &ActivityInfo, identity: &str) -> i64 {
        let buffered = self.state.workflow_task_started();
        let identity = if a.started_identity.is_empty() {
            identity
        } else {
            &a.started_identity
        };
        let attributes =
            Attributes::ActivityTaskStartedEventAttributes(ActivityTaskStartedEventAttributes {
                scheduled_event_id: a.scheduled_event_id,
                identity: identity.to_string(),
                request_id: a.started_request_id.clone(),
                attempt: a.attempt,
                last_failure: a.last_failure.clone(),
                ..Default::default()
            });
        self.record(attributes);
        if buffered {
            BUFFERED_STARTED
        } else {
            self.state.next_event_id - 1
        }
    }

    fn close_activity(&mut self, scheduled_event_id: i64) {
        self.state.remove_activity(scheduled_event_id);
        self.ensure_workflow_task();
    }

    /// Closes the pending activity `task` names with the event `outcome` makes from the
    /// activity and its started event id, after its started event (see
    /// [`Self::record_activity_started`]).
    fn close_activity_with(
        &mut self,
        task: ActivityRef,
        identity: &str,
        outcome: impl FnOnce(&ActivityInfo, i64) -> Attributes,
    ) -> Result<(), EngineError> {
        let a = self.pending_activity(task)?;
        let started_event_id = self.record_activity_started(&a, identity);
        self.record(outcome(&a, started_event_id));
        self.close_activity(a.scheduled_event_id);
        Ok(())
    }

    /// RespondActivityTaskCompleted (by token or by id).
    pub fn complete_activity(
        &mut self,
        task: ActivityRef,
        result: Option<Payloads>,
        identity: &str,
    ) -> Result<(), EngineError> {
        self.close_activity_with(task, identity, |a, started_event_id| {
            Attributes::ActivityTaskCompletedEventAttributes(ActivityTaskCompletedEventAttributes {
                result,
                scheduled_event_id: a.scheduled_event_id,
                started_event_id,
                identity: identity.to_string(),
                ..Default::default()
            })
        })
    }

    /// RespondActivityTaskFailed: retried by the server when the policy allows, else closed.
    pub fn fail_activity(
        &mut self,
        task: ActivityRef,
        failure: Failure,
        last_heartbeat_details: Option<Payloads>,
        identity: &str,
    ) -> Result<(), EngineError> {
        let a = self.pending_activity(task)?;
        if last_heartbeat_details.is_some()
            && let Some(info) = self.state.activity_mut(a.scheduled_event_id)
        {
            info.heartbeat_details = last_heartbeat_details;
        }
        self.activity_attempt_failed(a.scheduled_event_id, failure, None, identity);
        Ok(())
    }

    /// RespondActivityTaskCanceled.
    pub fn cancel_activity(
        &mut self,
        task: ActivityRef,
        details: Option<Payloads>,
        identity: &str,
    ) -> Result<(), EngineError> {
        self.close_activity_with(task, identity, |a, started_event_id| {
            Attributes::ActivityTaskCanceledEventAttributes(ActivityTaskCanceledEventAttributes {
                details,
                latest_cancel_requested_event_id: a.cancel_requested_event_id,
                scheduled_event_id: a.scheduled_event_id,
                started_event_id,
                identity: identity.to_string(),
                ..Default::default()
            })
        })
    }

    /// One attempt ended badly (a failure or a retryable timeout). Either schedules the next
    /// attempt or closes the activity with Failed / TimedOut.
    fn activity_attempt_failed(
        &mut self,
        scheduled_event_id: i64,
        failure: Failure,
        timeout: Option<TimeoutType>,
        identity: &str,
    ) {
        if self.paused_attempt_failed(scheduled_event_id, &failure, identity) {
            return;
        }
        let Some(a) = self.state.activity(scheduled_event_id).cloned() else {
            return;
        };
        let policy = a.retry_policy.clone().unwrap_or_default();
        let expiration = a.retry_expiration_ms();
        let decision = if a.cancel_requested {
            RetryDecision::Stop(RetryState::CancelRequested)
        } else {
            retry::decide(&policy, a.attempt, &failure, self.now, expiration)
        };
        match decision {
            RetryDecision::Retry { delay_ms } => {
                let ready_at = self.now + delay_ms;
                let info = self.state.activity_mut(scheduled_event_id).expect("exists");
                info.attempt += 1;
                info.attempt_scheduled_time_ms = ready_at;
                info.last_attempt_complete_time_ms = self.now;
                info.started_time_ms = 0;
                info.last_heartbeat_time_ms = 0;
                info.last_failure = Some(without_heartbeat_details(failure));
                info.last_worker_identity = identity.to_string();
                info.started_identity.clear();
                info.started_request_id.clear();
                // A ResetActivity that reached the attempt ends with it; the heartbeat reset
                // it asked for applies to the next one.
                if info.reset_heartbeats {
                    info.heartbeat_details = None;
                }
                info.reset_requested = false;
                info.reset_heartbeats = false;
                // The next attempt is dispatched when its ActivityRetry deadline fires.
            }
            RetryDecision::Stop(retry_state) => {
                let started_event_id = if a.is_started() || timeout.is_none() {
                    self.record_activity_started(&a, identity)
                } else {
                    0
                };
                let attributes = match timeout {
                    None => Attributes::ActivityTaskFailedEventAttributes(
                        ActivityTaskFailedEventAttributes {
                            failure: Some(failure),
                            scheduled_event_id,
                            started_event_id,
                            identity: identity.to_string(),
                            retry_state: retry_state as i32,
                            ..Default::default()
                        },
                    ),
                    Some(timeout_type) => Attributes::ActivityTaskTimedOutEventAttributes(
                        ActivityTaskTimedOutEventAttributes {
                            failure: Some(no_time_for_retry(failure, timeout_type, retry_state)),
                            scheduled_event_id,
                            started_event_id,
                            retry_state: retry_state as i32,
                        },
                    ),
                };
                self.record(attributes);
                self.close_activity(scheduled_event_id);
            }
        }
    }

    /// A deadline of an activity fired. Stale deadlines change nothing.
    pub(crate) fn activity_deadline(
        &mut self,
        scheduled_event_id: i64,
        attempt: Option<i32>,
        timeout: Option<TimeoutType>,
    ) {
        let Some(a) = self.state.activity(scheduled_event_id).cloned() else {
            return;
        };
        if attempt.is_some_and(|n| n != a.attempt) || a.paused {
            self.persist = Persist::Nothing;
            return;
        }
        let now = self.now;
        if timeout.is_none() {
            // Retry backoff over: offer the attempt to pollers.
            if !a.is_started() && a.attempt_scheduled_time_ms <= now {
                self.effects.push(Effect::DispatchActivityTask {
                    task_queue: a.task_queue.clone(),
                    scheduled_event_id,
                    attempt: a.attempt,
                });
            }
            self.persist = Persist::Nothing;
            return;
        }
        // Whichever timeout fired, the activity's first expired one decides (several can be due
        // at once: they coincide, or the timer loop ran late).
        let Some(timeout_type) = first_expired_timeout(&a, now) else {
            self.persist = Persist::Nothing;
            return;
        };
        let name = match timeout_type {
            TimeoutType::StartToClose => "StartToClose",
            TimeoutType::Heartbeat => "Heartbeat",
            TimeoutType::ScheduleToStart => "ScheduleToStart",
            _ => "ScheduleToClose",
        };
        let failure = Failure {
            message: format!("activity {name} timeout"),
            source: "Server".to_string(),
            cause: a.last_failure.clone().map(Box::new),
            failure_info: Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
                timeout_type: timeout_type as i32,
                last_heartbeat_details: a.heartbeat_details.clone(),
            })),
            ..Default::default()
        };
        let identity = a.started_identity.clone();
        self.activity_attempt_failed(scheduled_event_id, failure, Some(timeout_type), &identity);
    }
}

/// The message of the timeout that closes an activity because its schedule-to-close deadline
/// leaves no room for another attempt (the reference server's wording).
pub const NO_TIME_FOR_RETRY: &str = "Not enough time to schedule next retry before activity ScheduleToClose timeout, giving up retrying";

/// The activity's timeout that is due first at `now`, if any. Ordered by due time; at the same
/// millisecond schedule-to-start goes before schedule-to-close (both count from the scheduled
/// time), schedule-to-close before start-to-close (the start came after the scheduling, even
/// when an eager start shares its millisecond), and start-to-close before heartbeat. This is
/// the order in which the reference server's timer queue processes them.
fn first_expired_timeout(a: &ActivityInfo, now: i64) -> Option<TimeoutType> {
    let mut due: Vec<(i64, u8, TimeoutType)> = Vec::with_capacity(3);
    if a.is_started() {
        if a.start_to_close_ms > 0 {
            due.push((
                a.started_time_ms + a.start_to_close_ms,
                2,
                TimeoutType::StartToClose,
            ));
        }
        if a.heartbeat_timeout_ms > 0 {
            let last = a.last_heartbeat_time_ms.max(a.started_time_ms);
            due.push((last + a.heartbeat_timeout_ms, 3, TimeoutType::Heartbeat));
        }
    } else if a.schedule_to_start_ms > 0 {
        due.push((
            a.attempt_scheduled_time_ms + a.schedule_to_start_ms,
            0,
            TimeoutType::ScheduleToStart,
        ));
    }
    if a.schedule_to_close_ms > 0 {
        due.push((
            a.scheduled_time_ms + a.schedule_to_close_ms,
            1,
            TimeoutType::ScheduleToClose,
        ));
    }
    due.into_iter()
        .filter(|(at, _, _)| *at <= now)
        .min_by_key(|(at, rank, _)| (*at, *rank))
        .map(|(_, _, t)| t)
}

/// Most activities handed back eagerly in one workflow task completion.
pub const MAX_EAGER_ACTIVITIES: usize = 3;

impl Transition<'_> {
    /// Eager activity dispatch: activities this completion scheduled with
    /// `request_eager_execution` on the workflow's own queue are started here and handed back in
    /// the reply instead of going through a queue. Returns their scheduled event ids.
    pub fn start_eager_activities(
        &mut self,
        req: &crate::api::workflowservice::v1::RespondWorkflowTaskCompletedRequest,
        poller: &Poller,
    ) -> Vec<i64> {
        use crate::api::command::v1::command::Attributes as Cmd;
        let persist = self.persist;
        let mut started = Vec::new();
        for command in &req.commands {
            if started.len() >= MAX_EAGER_ACTIVITIES {
                break;
            }
            let Some(Cmd::ScheduleActivityTaskCommandAttributes(a)) = &command.attributes else {
                continue;
            };
            if !a.request_eager_execution {
                continue;
            }
            let Some(info) = self.state.activity_by_id(&a.activity_id) else {
                continue;
            };
            if info.task_queue != self.state.task_queue || info.is_started() || info.attempt != 1 {
                continue;
            }
            let scheduled_event_id = info.scheduled_event_id;
            let task = ActivityRef {
                scheduled_event_id,
                attempt: 1,
            };
            if self.start_activity(task, poller).is_ok() {
                self.effects.retain(|e| {
                    !matches!(e, Effect::DispatchActivityTask { scheduled_event_id: id, .. } if *id == scheduled_event_id)
                });
                started.push(scheduled_event_id);
            }
        }
        self.persist = persist;
        started
    }
}

/// A timeout that ends the activity because its schedule-to-close deadline passed, or leaves
/// no room for another attempt, is reported as a schedule-to-close timeout whichever timeout
/// fired (except schedule-to-start, which stays itself), as the reference server does.
fn no_time_for_retry(mut failure: Failure, fired: TimeoutType, state: RetryState) -> Failure {
    if state == RetryState::Timeout && fired != TimeoutType::ScheduleToStart {
        failure.message = NO_TIME_FOR_RETRY.to_string();
        if let Some(FailureInfo::TimeoutFailureInfo(info)) = failure.failure_info.as_mut() {
            info.timeout_type = TimeoutType::ScheduleToClose as i32;
        }
    }
    failure
}

/// The reference server keeps a timeout's heartbeat details in the heartbeat slot, not in the
/// failure handed to the next attempt.
fn without_heartbeat_details(mut failure: Failure) -> Failure {
    if let Some(FailureInfo::TimeoutFailureInfo(info)) = failure.failure_info.as_mut() {
        info.last_heartbeat_details = None;
    }
    failure
}
