//! Operator actions on a run's pending activities: PauseActivity, UnpauseActivity and
//! ResetActivity (and their `...Execution` forms), with the reference server's rules, and the
//! targeting they share with UpdateActivityOptions (`activity_options.rs`).
//!
//! Invariants:
//! - These actions change the run's state only, never its history (the reference server
//!   writes no event for them either).
//! - A paused activity has no deadlines and is never dispatched (see `deadline.rs`); an
//!   attempt already running when it was paused continues, its heartbeats report the pause,
//!   and when it fails the next attempt is counted but waits, whatever the retry policy's
//!   attempt limit, until the activity is unpaused.
//! - Whatever needs randomness (jitter) is chosen by the caller and passed in, so every
//!   transition here stays a function of its inputs.

use crate::activity_options::{
    OriginalOptions, apply_options, normalize_options, original_options,
};
use crate::api::{common::v1::RetryPolicy, failure::v1::Failure};
use crate::retry::{self, RetryDecision};
use crate::state::{ActivityInfo, ActivityPauseInfo};
use crate::{Effect, EngineError, Transition};
use sundial_proto::json_payload::{json_payload, json_string};

/// The reference server's answer for an activity id (or type) that matches no pending activity.
pub const ACTIVITY_NOT_FOUND: &str =
    "Can't find pending activity with such ID. Invalid activityID or activity already completed";
/// The reference server's answer for an action on a closed run.
pub const WORKFLOW_COMPLETED: &str = "workflow execution already completed";

/// The system search attribute that lists the types of a run's paused activities
/// (`property:activityType=<type>`), as the reference server keeps it.
pub const PAUSE_INFO_ATTRIBUTE: &str = "TemporalPauseInfo";

/// Which pending activities an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityTarget {
    Id(String),
    Type(String),
    All,
}

/// PauseActivity.
#[derive(Debug, Clone, Default)]
pub struct PauseRequest {
    pub identity: String,
    pub reason: String,
    /// A repeated pause with the same request id succeeds without a change.
    pub request_id: String,
}

/// UnpauseActivity.
#[derive(Debug, Clone, Default)]
pub struct UnpauseRequest {
    pub reset_attempts: bool,
    pub reset_heartbeat: bool,
    pub jitter: Jitter,
}

/// ResetActivity.
#[derive(Debug, Clone, Default)]
pub struct ResetRequest {
    pub reset_heartbeat: bool,
    pub keep_paused: bool,
    pub jitter: Jitter,
    /// Restore the options the activity was scheduled with.
    pub restore_original_options: bool,
}

/// A random delay of at most `max_ms` before a rescheduled attempt is dispatched. `seed` is
/// drawn by the caller; each activity gets its own offset from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    pub max_ms: i64,
    pub seed: u64,
}

impl Jitter {
    fn offset_ms(&self, scheduled_event_id: i64) -> i64 {
        if self.max_ms <= 0 {
            return 0;
        }
        let mixed = (self.seed ^ (scheduled_event_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (mixed % self.max_ms as u64) as i64
    }
}

impl Transition<'_> {
    /// The scheduled event ids of the pending activities `target` names. NotFound when there
    /// is none, or the run is closed.
    pub(crate) fn targets(&self, target: &ActivityTarget) -> Result<Vec<i64>, EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(WORKFLOW_COMPLETED.into()));
        }
        let ids: Vec<i64> = self
            .state
            .activities
            .iter()
            .filter(|a| match target {
                ActivityTarget::Id(id) => &a.activity_id == id,
                ActivityTarget::Type(t) => &a.activity_type == t,
                ActivityTarget::All => true,
            })
            .map(|a| a.scheduled_event_id)
            .collect();
        if ids.is_empty() {
            return Err(EngineError::NotFound(ACTIVITY_NOT_FOUND.into()));
        }
        Ok(ids)
    }

    pub(crate) fn pending_mut(
        &mut self,
        scheduled_event_id: i64,
    ) -> Result<&mut ActivityInfo, EngineError> {
        self.state
            .activity_mut(scheduled_event_id)
            .ok_or_else(|| EngineError::NotFound(ACTIVITY_NOT_FOUND.into()))
    }

    /// PauseActivity. An activity already paused by another request is FailedPrecondition
    /// ("activity is already paused"), as on the reference server.
    pub fn pause_activities(
        &mut self,
        target: &ActivityTarget,
        request: &PauseRequest,
    ) -> Result<(), EngineError> {
        let now = self.now;
        for id in self.targets(target)? {
            let a = self.pending_mut(id)?;
            if a.paused {
                let same = a
                    .pause_info
                    .as_ref()
                    .is_some_and(|p| p.request_id == request.request_id);
                if same {
                    continue;
                }
                return Err(EngineError::FailedPrecondition(
                    "activity is already paused".into(),
                ));
            }
            a.paused = true;
            a.pause_info = Some(ActivityPauseInfo {
                pause_time_ms: now,
                identity: request.identity.clone(),
                reason: request.reason.clone(),
                request_id: request.request_id.clone(),
            });
        }
        self.refresh_pause_info();
        Ok(())
    }

    /// UnpauseActivity. Activities that are not paused are left alone; a paused one that is
    /// not running is dispatched again (after the jitter, if any).
    pub fn unpause_activities(
        &mut self,
        target: &ActivityTarget,
        request: &UnpauseRequest,
    ) -> Result<(), EngineError> {
        for id in self.targets(target)? {
            let a = self.pending_mut(id)?;
            if !a.paused {
                continue;
            }
            unpause(a);
            if request.reset_attempts {
                a.attempt = 1;
            }
            if request.reset_heartbeat {
                a.heartbeat_details = None;
                a.last_heartbeat_time_ms = 0;
            }
            if !a.is_started() {
                let at = self.now + request.jitter.offset_ms(id);
                self.reschedule(id, at);
            }
        }
        self.refresh_pause_info();
        Ok(())
    }

    /// ResetActivity: the attempt count starts over at 1. A running attempt continues and its
    /// heartbeats report the reset; otherwise the activity is dispatched again at once
    /// (after the jitter), unless it stays paused.
    pub fn reset_activities(
        &mut self,
        target: &ActivityTarget,
        request: &ResetRequest,
        original: OriginalOptions<'_>,
    ) -> Result<(), EngineError> {
        let ids = self.targets(target)?;
        for id in ids {
            let restored = if request.restore_original_options {
                Some(original_options(original, id)?)
            } else {
                None
            };
            let run_timeout = self.state.run_timeout_ms;
            let workflow_queue = self.state.task_queue.clone();
            let a = self.pending_mut(id)?;
            let was_paused = a.paused;
            a.attempt = 1;
            a.reset_requested = true;
            if request.reset_heartbeat {
                a.reset_heartbeats = true;
            }
            if let Some(options) = restored {
                let merged = normalize_options(&options, run_timeout, &workflow_queue)?;
                apply_options(a, &merged);
            }
            if was_paused && !request.keep_paused {
                unpause(a);
            }
            if a.is_started() || a.paused {
                continue;
            }
            if request.reset_heartbeat {
                a.heartbeat_details = None;
                a.last_heartbeat_time_ms = 0;
            }
            let at = self.now + request.jitter.offset_ms(id);
            self.reschedule(id, at);
        }
        self.refresh_pause_info();
        Ok(())
    }

    /// Sets the TemporalPauseInfo search attribute from the paused activities (removed when
    /// there are none). Called where an operator action changes whether an activity is paused,
    /// as the reference updates it.
    fn refresh_pause_info(&mut self) {
        let mut entries: Vec<String> = self
            .state
            .activities
            .iter()
            .filter(|a| a.paused)
            .map(|a| format!("property:activityType={}", a.activity_type))
            .collect();
        entries.sort();
        entries.dedup();
        let present = self
            .state
            .search_attributes
            .as_ref()
            .is_some_and(|s| s.indexed_fields.contains_key(PAUSE_INFO_ATTRIBUTE));
        if entries.is_empty() {
            if present && let Some(attrs) = self.state.search_attributes.as_mut() {
                attrs.indexed_fields.remove(PAUSE_INFO_ATTRIBUTE);
                if attrs.indexed_fields.is_empty() {
                    self.state.search_attributes = None;
                }
            }
            return;
        }
        let payload = keyword_list(&entries);
        self.state
            .search_attributes
            .get_or_insert_with(Default::default)
            .indexed_fields
            .insert(PAUSE_INFO_ATTRIBUTE.to_string(), payload);
    }

    /// Schedules the activity's current attempt again for `at`: the previous attempt's
    /// started markers go, a heartbeat reset asked for by ResetActivity takes effect, and
    /// the attempt is offered to pollers now if `at` is not in the future (otherwise its
    /// ActivityRetry deadline does it).
    fn reschedule(&mut self, scheduled_event_id: i64, at: i64) {
        let now = self.now;
        let Some(a) = self.state.activity_mut(scheduled_event_id) else {
            return;
        };
        a.attempt_scheduled_time_ms = at;
        a.started_time_ms = 0;
        a.started_identity.clear();
        a.started_request_id.clear();
        a.started_build_id.clear();
        if a.reset_heartbeats {
            a.heartbeat_details = None;
            a.last_heartbeat_time_ms = 0;
        }
        a.reset_requested = false;
        a.reset_heartbeats = false;
        if at <= now {
            let (task_queue, attempt) = (a.task_queue.clone(), a.attempt);
            self.effects.push(Effect::DispatchActivityTask {
                task_queue,
                scheduled_event_id,
                attempt,
            });
        }
    }

    /// A paused activity's attempt failed: the next attempt is counted but not dispatched
    /// (the reference retries a paused activity whatever its attempt limit, as long as the
    /// failure is retryable). Returns false when the failure must close the activity as usual.
    pub(crate) fn paused_attempt_failed(
        &mut self,
        scheduled_event_id: i64,
        failure: &Failure,
        identity: &str,
    ) -> bool {
        let now = self.now;
        let Some(a) = self.state.activity(scheduled_event_id) else {
            return false;
        };
        if !a.paused || a.cancel_requested {
            return false;
        }
        let policy = a.retry_policy.clone().unwrap_or_default();
        if !retryable(&policy, failure) {
            return false;
        }
        let Some(a) = self.state.activity_mut(scheduled_event_id) else {
            return false;
        };
        a.attempt += 1;
        a.last_attempt_complete_time_ms = now;
        a.started_time_ms = 0;
        a.last_failure = Some(failure.clone());
        a.last_worker_identity = identity.to_string();
        a.started_identity.clear();
        a.started_request_id.clear();
        true
    }
}

/// Whether the policy would retry `failure` at all (non-retryable types, timeouts that are
/// not retried), leaving attempt limits and the schedule-to-close deadline aside.
fn retryable(policy: &RetryPolicy, failure: &Failure) -> bool {
    // Attempt 0 is below any attempt limit and no expiration is given: what remains of the
    // decision is the failure's own retryability.
    matches!(
        retry::decide(policy, 0, failure, 0, 0),
        RetryDecision::Retry { .. }
    )
}

/// A KeywordList search attribute value: a JSON array of strings.
fn keyword_list(items: &[String]) -> crate::api::common::v1::Payload {
    let items: Vec<String> = items.iter().map(|item| json_string(item)).collect();
    json_payload(format!("[{}]", items.join(",")), "KeywordList")
}

fn unpause(a: &mut ActivityInfo) {
    a.paused = false;
    a.pause_info = None;
}
