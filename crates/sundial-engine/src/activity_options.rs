//! UpdateActivityOptions and the option rules the other activity actions share: which
//! update-mask paths apply, how masked fields merge into an activity's current options, and
//! how the result is normalized (as a ScheduleActivityTask command's options are) before it
//! replaces them. New options take effect for the running attempt's deadlines and for every
//! later attempt; a waiting attempt is offered again on its (possibly new) task queue.

use crate::activity_ops::{ACTIVITY_NOT_FOUND, ActivityTarget, WORKFLOW_COMPLETED};
use crate::api::{
    activity::v1::ActivityOptions, common::v1::RetryPolicy, taskqueue::v1::TaskQueue,
};
use crate::retry;
use crate::state::ActivityInfo;
use crate::{Effect, EngineError, Transition, time};
use prost_wkt_types::Duration;

/// UpdateActivityOptions: `paths` are the update mask's, in either spelling
/// (`retry_policy.maximum_attempts` or `retryPolicy.maximumAttempts`).
#[derive(Debug, Clone, Default)]
pub struct UpdateOptionsRequest {
    pub options: Option<ActivityOptions>,
    pub paths: Vec<String>,
    pub restore_original: bool,
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
}

pub(crate) fn original_options(
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

/// An activity's four timeouts in milliseconds, normalized (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActivityTimeouts {
    pub schedule_to_close: i64,
    pub schedule_to_start: i64,
    pub start_to_close: i64,
    pub heartbeat: i64,
}

impl ActivityTimeouts {
    /// The timeouts of a ScheduleActivityTask command as the reference server normalizes
    /// them (unset or zero is none): schedule-to-close is capped by the run timeout
    /// (`run_timeout_ms`, 0: none) and is the run timeout when none is given; schedule-to-start
    /// and start-to-close are capped by schedule-to-close and are it when not given;
    /// heartbeat is capped by start-to-close. The error is the reference server's message
    /// for a negative timeout, or for neither start-to-close nor schedule-to-close.
    pub(crate) fn normalized(
        schedule_to_close: &Option<Duration>,
        schedule_to_start: &Option<Duration>,
        start_to_close: &Option<Duration>,
        heartbeat: &Option<Duration>,
        run_timeout_ms: i64,
    ) -> Result<ActivityTimeouts, String> {
        for (d, name) in [
            (schedule_to_close, "ScheduleToCloseTimeout"),
            (schedule_to_start, "ScheduleToStartTimeout"),
            (start_to_close, "StartToCloseTimeout"),
            (heartbeat, "HeartbeatTimeout"),
        ] {
            if time::is_negative(d.as_ref()) {
                return Err(format!("Invalid {name} on ScheduleActivityTaskCommand."));
            }
        }
        let mut schedule_to_close = time::duration_ms(schedule_to_close.as_ref());
        let mut schedule_to_start = time::duration_ms(schedule_to_start.as_ref());
        let mut start_to_close = time::duration_ms(start_to_close.as_ref());
        let mut heartbeat = time::duration_ms(heartbeat.as_ref());
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
            return Err(
                "A valid StartToClose or ScheduleToCloseTimeout is not set on ScheduleActivityTaskCommand."
                    .into(),
            );
        }
        if start_to_close > 0 && heartbeat > start_to_close {
            heartbeat = start_to_close;
        }
        Ok(ActivityTimeouts {
            schedule_to_close,
            schedule_to_start,
            start_to_close,
            heartbeat,
        })
    }
}

/// Options as a ScheduleActivityTask command's would be normalized: timeouts capped by the
/// run timeout and by schedule-to-close, heartbeat by start-to-close, the retry policy's
/// defaults filled in, an empty queue the workflow's.
pub(crate) fn normalize_options(
    o: &ActivityOptions,
    run_timeout_ms: i64,
    workflow_queue: &str,
) -> Result<ActivityOptions, EngineError> {
    let bad = |m: String| EngineError::InvalidArgument(m);
    let timeouts = ActivityTimeouts::normalized(
        &o.schedule_to_close_timeout,
        &o.schedule_to_start_timeout,
        &o.start_to_close_timeout,
        &o.heartbeat_timeout,
        run_timeout_ms,
    )
    .map_err(bad)?;
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
        schedule_to_close_timeout: Some(time::duration(timeouts.schedule_to_close)),
        schedule_to_start_timeout: Some(time::duration(timeouts.schedule_to_start)),
        start_to_close_timeout: Some(time::duration(timeouts.start_to_close)),
        heartbeat_timeout: Some(time::duration(timeouts.heartbeat)),
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
pub(crate) fn apply_options(a: &mut ActivityInfo, o: &ActivityOptions) {
    if a.fixed_retry_expiration_ms == 0 {
        a.fixed_retry_expiration_ms = match a.retry_expiration_ms() {
            0 => -1,
            at => at,
        };
    }
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
