//! Operator actions on a run's pending activities: PauseActivity, UnpauseActivity,
//! ResetActivity and UpdateActivityOptions (and their `...Execution` forms), with the
//! reference server's rules.
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

use crate::api::{
    activity::v1::ActivityOptions, common::v1::RetryPolicy, failure::v1::Failure,
    taskqueue::v1::TaskQueue,
};
use crate::retry::{self, RetryDecision};
use crate::state::{ActivityInfo, ActivityPauseInfo};
use crate::{Effect, EngineError, Transition, time};

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

/// UpdateActivityOptions: `paths` are the update mask's, in either spelling
/// (`retry_policy.maximum_attempts` or `retryPolicy.maximumAttempts`).
#[derive(Debug, Clone, Default)]
pub struct UpdateOptionsRequest {
    pub options: Option<ActivityOptions>,
    pub paths: Vec<String>,
    pub restore_original: bool,
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

/// The options an activity was scheduled with, from its ActivityTaskScheduled event: the
/// caller looks them up (the engine does not read history).
pub type OriginalOptions<'a> = &'a dyn Fn(i64) -> Option<ActivityOptions>;

/// Update-mask paths UpdateActivityOptions applies (camel case, as the reference compares
/// them). Other paths are ignored by UpdateActivityOptions and refused by its
/// `...Execution` form.
pub const SUPPORTED_PATHS: [&str; 11] = [
    "taskQueue.name",
    "scheduleToCloseTimeout",
    "scheduleToStartTimeout",
    "startToCloseTimeout",
    "heartbeatTimeout",
    "retryPolicy",
    "retryPolicy.initialInterval",
    "retryPolicy.backoffCoefficient",
    "retryPolicy.maximumInterval",
    "retryPolicy.maximumAttempts",
    "priority",
];

/// A mask path in the camel-case form the reference compares (`retry_policy.initial_interval`
/// -> `retryPolicy.initialInterval`).
pub fn camel_path(path: &str) -> String {
    path.split('.')
        .map(|part| {
            let mut out = String::with_capacity(part.len());
            let mut upper = false;
            for c in part.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Transition<'_> {
    /// The scheduled event ids of the pending activities `target` names. NotFound when there
    /// is none, or the run is closed.
    fn targets(&self, target: &ActivityTarget) -> Result<Vec<i64>, EngineError> {
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

    fn pending_mut(&mut self, scheduled_event_id: i64) -> Result<&mut ActivityInfo, EngineError> {
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

    /// UpdateActivityOptions: merges the masked fields into each target's current options
    /// (or restores the scheduled ones), normalizes them as a ScheduleActivityTask command's
    /// are, and returns the last target's new options. They apply to the running attempt's
    /// deadlines and to every later attempt.
    pub fn update_activity_options(
        &mut self,
        target: &ActivityTarget,
        request: &UpdateOptionsRequest,
        original: OriginalOptions<'_>,
    ) -> Result<ActivityOptions, EngineError> {
        let paths: Vec<String> = request.paths.iter().map(|p| camel_path(p)).collect();
        if request.restore_original && !paths.is_empty() {
            return Err(EngineError::InvalidArgument(
                "Both UpdateMask and RestoreOriginal are provided".into(),
            ));
        }
        if !request.restore_original && request.options.is_none() {
            if !self.state.is_running() {
                return Err(EngineError::NotFound(WORKFLOW_COMPLETED.into()));
            }
            return Err(EngineError::InvalidArgument(
                "ActivityOptions are not provided".into(),
            ));
        }
        let ids = self.targets(target)?;
        let now = self.now;
        let mut last = ActivityOptions::default();
        for id in ids {
            let run_timeout = self.state.run_timeout_ms;
            let workflow_queue = self.state.task_queue.clone();
            let wanted = if request.restore_original {
                original_options(original, id)?
            } else {
                let current = self
                    .state
                    .activity(id)
                    .map(current_options)
                    .ok_or_else(|| EngineError::NotFound(ACTIVITY_NOT_FOUND.into()))?;
                let from = request.options.clone().unwrap_or_default();
                merge_options(current, &from, &paths)?
            };
            let merged = normalize_options(&wanted, run_timeout, &workflow_queue)?;
            let a = self.pending_mut(id)?;
            apply_options(a, &merged);
            let dispatch = !a.is_started() && !a.paused && a.attempt_scheduled_time_ms <= now;
            let (queue, attempt) = (a.task_queue.clone(), a.attempt);
            if dispatch {
                // The task may wait on the old queue: offer it on the (new) one.
                self.effects.push(Effect::DispatchActivityTask {
                    task_queue: queue,
                    scheduled_event_id: id,
                    attempt,
                });
            }
            last = merged;
        }
        Ok(last)
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

    /// Whether a poller of `queue` may start this activity: after UpdateActivityOptions moved
    /// it to another queue, a task left on the old one is stale (NotFound, dropped).
    pub fn check_activity_queue(
        &self,
        scheduled_event_id: i64,
        queue: &str,
    ) -> Result<(), EngineError> {
        match self.state.activity(scheduled_event_id) {
            Some(a) if a.task_queue != queue => {
                Err(EngineError::NotFound("Activity task not found.".into()))
            }
            _ => Ok(()),
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
    let mut json = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        for c in item.chars() {
            match c {
                '"' => json.push_str("\\\""),
                '\\' => json.push_str("\\\\"),
                c if (c as u32) < 0x20 => json.push_str(&format!("\\u{:04x}", c as u32)),
                c => json.push(c),
            }
        }
        json.push('"');
    }
    json.push(']');
    crate::api::common::v1::Payload {
        metadata: [
            ("encoding".to_string(), b"json/plain".to_vec()),
            ("type".to_string(), b"KeywordList".to_vec()),
        ]
        .into_iter()
        .collect(),
        data: json.into_bytes(),
        ..Default::default()
    }
}

fn unpause(a: &mut ActivityInfo) {
    a.paused = false;
    a.pause_info = None;
}

fn original_options(
    original: OriginalOptions<'_>,
    scheduled_event_id: i64,
) -> Result<ActivityOptions, EngineError> {
    original(scheduled_event_id)
        .ok_or_else(|| EngineError::InvalidArgument("ActivityTaskScheduledEvent not found".into()))
}

/// The activity's options as DescribeWorkflowExecution shows them.
pub fn current_options(a: &ActivityInfo) -> ActivityOptions {
    let policy = a.retry_policy.clone().unwrap_or_default();
    ActivityOptions {
        task_queue: Some(TaskQueue {
            name: a.task_queue.clone(),
            kind: 0,
            normal_name: a.task_queue.clone(),
        }),
        schedule_to_close_timeout: Some(time::duration(a.schedule_to_close_ms)),
        schedule_to_start_timeout: Some(time::duration(a.schedule_to_start_ms)),
        start_to_close_timeout: Some(time::duration(a.start_to_close_ms)),
        heartbeat_timeout: Some(time::duration(a.heartbeat_timeout_ms)),
        retry_policy: Some(RetryPolicy {
            initial_interval: policy.initial_interval,
            backoff_coefficient: policy.backoff_coefficient,
            maximum_interval: policy.maximum_interval,
            maximum_attempts: policy.maximum_attempts,
            non_retryable_error_types: Vec::new(),
        }),
        // Shown empty, as the reference does (priorities are not supported).
        priority: Some(Default::default()),
        ..Default::default()
    }
}

/// `into` with the fields `paths` name taken from `from`.
fn merge_options(
    mut into: ActivityOptions,
    from: &ActivityOptions,
    paths: &[String],
) -> Result<ActivityOptions, EngineError> {
    let has = |p: &str| paths.iter().any(|x| x == p);
    let missing = |what: &str| EngineError::InvalidArgument(format!("{what} is not provided"));
    if has("taskQueue.name") {
        let queue = from
            .task_queue
            .as_ref()
            .ok_or_else(|| missing("TaskQueue"))?;
        into.task_queue.get_or_insert_with(Default::default).name = queue.name.clone();
    }
    if has("scheduleToCloseTimeout") {
        into.schedule_to_close_timeout = from.schedule_to_close_timeout;
    }
    if has("scheduleToStartTimeout") {
        into.schedule_to_start_timeout = from.schedule_to_start_timeout;
    }
    if has("startToCloseTimeout") {
        into.start_to_close_timeout = from.start_to_close_timeout;
    }
    if has("heartbeatTimeout") {
        into.heartbeat_timeout = from.heartbeat_timeout;
    }
    if has("priority") {
        into.priority = from.priority.clone();
    }
    if has("retryPolicy") {
        into.retry_policy = Some(
            from.retry_policy
                .clone()
                .ok_or_else(|| missing("RetryPolicy"))?,
        );
    }
    let retry_fields = [
        "retryPolicy.initialInterval",
        "retryPolicy.backoffCoefficient",
        "retryPolicy.maximumInterval",
        "retryPolicy.maximumAttempts",
    ];
    if retry_fields.iter().any(|p| has(p)) {
        let src = from
            .retry_policy
            .as_ref()
            .ok_or_else(|| missing("RetryPolicy"))?;
        let dst = into.retry_policy.get_or_insert_with(Default::default);
        if has("retryPolicy.initialInterval") {
            dst.initial_interval = src.initial_interval;
        }
        if has("retryPolicy.backoffCoefficient") {
            dst.backoff_coefficient = src.backoff_coefficient;
        }
        if has("retryPolicy.maximumInterval") {
            dst.maximum_interval = src.maximum_interval;
        }
        if has("retryPolicy.maximumAttempts") {
            dst.maximum_attempts = src.maximum_attempts;
        }
    }
    Ok(into)
}

/// Options as a ScheduleActivityTask command's would be normalized: timeouts capped by the
/// run timeout and by schedule-to-close, heartbeat by start-to-close, the retry policy's
/// defaults filled in, an empty queue the workflow's.
fn normalize_options(
    o: &ActivityOptions,
    run_timeout_ms: i64,
    workflow_queue: &str,
) -> Result<ActivityOptions, EngineError> {
    let bad = |m: String| EngineError::InvalidArgument(m);
    for (d, name) in [
        (&o.schedule_to_close_timeout, "ScheduleToCloseTimeout"),
        (&o.schedule_to_start_timeout, "ScheduleToStartTimeout"),
        (&o.start_to_close_timeout, "StartToCloseTimeout"),
        (&o.heartbeat_timeout, "HeartbeatTimeout"),
    ] {
        if time::is_negative(d.as_ref()) {
            return Err(bad(format!(
                "Invalid {name} on ScheduleActivityTaskCommand."
            )));
        }
    }
    let mut schedule_to_close = time::duration_ms(o.schedule_to_close_timeout.as_ref());
    let mut schedule_to_start = time::duration_ms(o.schedule_to_start_timeout.as_ref());
    let mut start_to_close = time::duration_ms(o.start_to_close_timeout.as_ref());
    let mut heartbeat = time::duration_ms(o.heartbeat_timeout.as_ref());
    if run_timeout_ms > 0 && (schedule_to_close == 0 || schedule_to_close > run_timeout_ms) {
        schedule_to_close = run_timeout_ms;
    }
    if schedule_to_close > 0 {
        if schedule_to_start == 0 || schedule_to_start > schedule_to_close {
            schedule_to_start = schedule_to_close;
        }
        if start_to_close == 0 || start_to_close > schedule_to_close {
            start_to_close = schedule_to_close;
        }
    } else if start_to_close == 0 {
        return Err(bad(
            "A valid StartToClose or ScheduleToCloseTimeout is not set on ScheduleActivityTaskCommand."
                .into(),
        ));
    }
    if start_to_close > 0 && heartbeat > start_to_close {
        heartbeat = start_to_close;
    }
    let policy = retry::normalize(o.retry_policy.as_ref()).map_err(bad)?;
    let queue = match o.task_queue.as_ref().map(|q| q.name.as_str()) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => workflow_queue.to_string(),
    };
    if queue.len() > crate::validate::MAX_ID_LENGTH {
        return Err(bad("TaskQueue length exceeds limit.".into()));
    }
    Ok(ActivityOptions {
        task_queue: Some(TaskQueue {
            name: queue.clone(),
            kind: 0,
            normal_name: queue,
        }),
        schedule_to_close_timeout: Some(time::duration(schedule_to_close)),
        schedule_to_start_timeout: Some(time::duration(schedule_to_start)),
        start_to_close_timeout: Some(time::duration(start_to_close)),
        heartbeat_timeout: Some(time::duration(heartbeat)),
        retry_policy: Some(RetryPolicy {
            non_retryable_error_types: Vec::new(),
            ..policy
        }),
        priority: o.priority.clone(),
        ..Default::default()
    })
}

/// Puts normalized options on the activity. The non-retryable error types are the
/// activity's own (ActivityOptions does not carry them).
fn apply_options(a: &mut ActivityInfo, o: &ActivityOptions) {
    a.task_queue = o
        .task_queue
        .as_ref()
        .map(|q| q.name.clone())
        .unwrap_or_else(|| a.task_queue.clone());
    a.schedule_to_close_ms = time::duration_ms(o.schedule_to_close_timeout.as_ref());
    a.schedule_to_start_ms = time::duration_ms(o.schedule_to_start_timeout.as_ref());
    a.start_to_close_ms = time::duration_ms(o.start_to_close_timeout.as_ref());
    a.heartbeat_timeout_ms = time::duration_ms(o.heartbeat_timeout.as_ref());
    if let Some(new) = &o.retry_policy {
        let kept = a
            .retry_policy
            .as_ref()
            .map(|p| p.non_retryable_error_types.clone())
            .unwrap_or_default();
        a.retry_policy = Some(RetryPolicy {
            non_retryable_error_types: kept,
            ..new.clone()
        });
    }
}
