//! Retry policies: defaults, validation and the decision whether (and when) to retry.

use crate::api::{
    common::v1::RetryPolicy,
    enums::v1::{RetryState, TimeoutType},
    failure::v1::{Failure, failure::FailureInfo},
};
use crate::time;

/// Temporal's default initial interval.
pub const DEFAULT_INITIAL_INTERVAL_MS: i64 = 1000;
/// Temporal's default backoff coefficient.
pub const DEFAULT_BACKOFF_COEFFICIENT: f64 = 2.0;
/// Temporal's default maximum interval, as a multiple of the initial interval.
pub const DEFAULT_MAXIMUM_INTERVAL_FACTOR: i64 = 100;

/// Fills unset fields with Temporal's defaults and checks the rest. `None` gets a full default
/// policy (activities always retry by default).
pub fn normalize(policy: Option<&RetryPolicy>) -> Result<RetryPolicy, String> {
    let mut p = policy.cloned().unwrap_or_default();
    if time::is_negative(p.initial_interval.as_ref()) {
        return Err("InitialInterval cannot be negative on retry policy.".into());
    }
    if time::is_negative(p.maximum_interval.as_ref()) {
        return Err("MaximumInterval cannot be negative on retry policy.".into());
    }
    if p.maximum_attempts < 0 {
        return Err("MaximumAttempts cannot be negative on retry policy.".into());
    }
    if p.backoff_coefficient != 0.0 && p.backoff_coefficient < 1.0 {
        return Err("BackoffCoefficient cannot be less than 1 on retry policy.".into());
    }
    let mut initial = time::duration_ms(p.initial_interval.as_ref());
    if initial == 0 {
        initial = DEFAULT_INITIAL_INTERVAL_MS;
    }
    let mut maximum = time::duration_ms(p.maximum_interval.as_ref());
    if maximum == 0 {
        maximum = initial * DEFAULT_MAXIMUM_INTERVAL_FACTOR;
    }
    if maximum < initial {
        return Err("MaximumInterval cannot be less than InitialInterval on retry policy.".into());
    }
    if p.backoff_coefficient == 0.0 {
        p.backoff_coefficient = DEFAULT_BACKOFF_COEFFICIENT;
    }
    p.initial_interval = Some(time::duration(initial));
    p.maximum_interval = Some(time::duration(maximum));
    Ok(p)
}

/// The outcome of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    /// Try again after this many milliseconds.
    Retry { delay_ms: i64 },
    /// Give up; the state says why.
    Stop(RetryState),
}

/// Decides whether `attempt` (the one that just failed with `failure`) is retried.
/// `expiration_ms` is the absolute schedule-to-close deadline (0: none).
pub fn decide(
    policy: &RetryPolicy,
    attempt: i32,
    failure: &Failure,
    now: i64,
    expiration_ms: i64,
) -> RetryDecision {
    match &failure.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info))
            if info.non_retryable || policy.non_retryable_error_types.contains(&info.r#type) =>
        {
            return RetryDecision::Stop(RetryState::NonRetryableFailure);
        }
        Some(FailureInfo::TimeoutFailureInfo(info)) => {
            let retryable = info.timeout_type == TimeoutType::StartToClose as i32
                || info.timeout_type == TimeoutType::Heartbeat as i32;
            if !retryable {
                return RetryDecision::Stop(RetryState::Timeout);
            }
        }
        Some(FailureInfo::CanceledFailureInfo(_)) | Some(FailureInfo::TerminatedFailureInfo(_)) => {
            return RetryDecision::Stop(RetryState::NonRetryableFailure);
        }
        Some(FailureInfo::ServerFailureInfo(info)) if info.non_retryable => {
            return RetryDecision::Stop(RetryState::NonRetryableFailure);
        }
        _ => {}
    }
    if policy.maximum_attempts > 0 && attempt >= policy.maximum_attempts {
        return RetryDecision::Stop(RetryState::MaximumAttemptsReached);
    }
    let delay_ms = next_delay_ms(policy, attempt, failure);
    if expiration_ms > 0 && now + delay_ms >= expiration_ms {
        return RetryDecision::Stop(RetryState::Timeout);
    }
    RetryDecision::Retry { delay_ms }
}

/// Backoff before the attempt after `attempt`: the failure's own `next_retry_delay` if it has
/// one, else `initial * coefficient^(attempt-1)` capped at the maximum interval.
pub fn next_delay_ms(policy: &RetryPolicy, attempt: i32, failure: &Failure) -> i64 {
    if let Some(FailureInfo::ApplicationFailureInfo(info)) = &failure.failure_info {
        let explicit = time::duration_ms(info.next_retry_delay.as_ref());
        if explicit > 0 {
            return explicit;
        }
    }
    let initial = time::duration_ms(policy.initial_interval.as_ref()) as f64;
    let maximum = time::duration_ms(policy.maximum_interval.as_ref()) as f64;
    let exponent = (attempt - 1).clamp(0, 1000);
    let delay = initial * policy.backoff_coefficient.powi(exponent);
    let delay = if maximum > 0.0 {
        delay.min(maximum)
    } else {
        delay
    };
    delay.max(1.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::failure::v1::ApplicationFailureInfo;

    fn app_failure(kind: &str, non_retryable: bool) -> Failure {
        Failure {
            message: "boom".into(),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: kind.into(),
                    non_retryable,
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_temporal() {
        let p = normalize(None).unwrap();
        assert_eq!(time::duration_ms(p.initial_interval.as_ref()), 1000);
        assert_eq!(time::duration_ms(p.maximum_interval.as_ref()), 100_000);
        assert_eq!(p.backoff_coefficient, 2.0);
        assert_eq!(p.maximum_attempts, 0);
    }

    #[test]
    fn rejects_bad_policies() {
        let bad = RetryPolicy {
            backoff_coefficient: 0.5,
            ..Default::default()
        };
        assert!(normalize(Some(&bad)).is_err());
        let bad = RetryPolicy {
            maximum_attempts: -1,
            ..Default::default()
        };
        assert!(normalize(Some(&bad)).is_err());
        let bad = RetryPolicy {
            initial_interval: Some(time::duration(5000)),
            maximum_interval: Some(time::duration(1000)),
            ..Default::default()
        };
        assert!(normalize(Some(&bad)).is_err());
    }

    #[test]
    fn exponential_backoff_is_capped() {
        let p = normalize(Some(&RetryPolicy {
            initial_interval: Some(time::duration(100)),
            maximum_interval: Some(time::duration(500)),
            ..Default::default()
        }))
        .unwrap();
        let f = app_failure("E", false);
        assert_eq!(next_delay_ms(&p, 1, &f), 100);
        assert_eq!(next_delay_ms(&p, 2, &f), 200);
        assert_eq!(next_delay_ms(&p, 3, &f), 400);
        assert_eq!(next_delay_ms(&p, 4, &f), 500);
    }

    #[test]
    fn stops_on_attempts_types_and_expiration() {
        let p = normalize(Some(&RetryPolicy {
            maximum_attempts: 3,
            non_retryable_error_types: vec!["Fatal".into()],
            ..Default::default()
        }))
        .unwrap();
        let f = app_failure("E", false);
        assert_eq!(
            decide(&p, 1, &f, 0, 0),
            RetryDecision::Retry { delay_ms: 1000 }
        );
        assert_eq!(
            decide(&p, 3, &f, 0, 0),
            RetryDecision::Stop(RetryState::MaximumAttemptsReached)
        );
        assert_eq!(
            decide(&p, 1, &app_failure("Fatal", false), 0, 0),
            RetryDecision::Stop(RetryState::NonRetryableFailure)
        );
        assert_eq!(
            decide(&p, 1, &app_failure("E", true), 0, 0),
            RetryDecision::Stop(RetryState::NonRetryableFailure)
        );
        assert_eq!(
            decide(&p, 1, &f, 0, 500),
            RetryDecision::Stop(RetryState::Timeout)
        );
    }
}
