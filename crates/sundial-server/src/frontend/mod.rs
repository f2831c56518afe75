//! The frontend role: gRPC services. Validates requests, resolves namespaces, calls the
//! history role and turns its errors into gRPC statuses. Thin by design.

pub mod activity_ops_service;
pub mod batch_service;
pub mod health;
pub mod nexus_service;
pub mod operator_service;
pub mod queries;
pub mod reset_service;
pub mod schedule_service;
pub mod test_service;
pub mod update_service;
pub mod update_status;
pub mod visibility_service;
pub mod workflow_options_service;
pub mod workflow_service;

use crate::error::ServiceError;
use std::time::Duration;
use sundial_engine::validate::MAX_ID_LENGTH;

/// Longest a long poll waits before answering empty (the SDKs' own deadline is about 70 s).
pub const MAX_LONG_POLL: Duration = Duration::from_secs(60);
/// Longest a history long poll waits before answering with an empty page.
pub const HISTORY_LONG_POLL: Duration = Duration::from_secs(20);
/// Largest gRPC message accepted.
pub const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;

/// How long a long poll may wait: the client's gRPC deadline less a margin (so that the
/// empty answer arrives before the client gives up), capped.
pub fn long_poll_wait<T>(request: &tonic::Request<T>) -> Duration {
    wait_within_deadline(request, Duration::from_millis(1000))
}

/// How long a call may wait for a worker: up to the client's deadline (less `margin`), capped.
pub fn wait_within_deadline<T>(request: &tonic::Request<T>, margin: Duration) -> Duration {
    let client = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    match client {
        Some(d) => d
            .saturating_sub(margin)
            .clamp(Duration::from_millis(100), MAX_LONG_POLL),
        None => MAX_LONG_POLL,
    }
}

/// The checks on the workflow execution a request names, made before anything is looked up,
/// with the reference server's messages. The workflow id is always required; an RPC adds the
/// checks on the run id and the caller's identity where the reference server makes them
/// (not every RPC does, and a request with several faults is refused for the first one, in
/// the order workflow id, run id, identity).
#[must_use = "nothing is checked until `check` is called"]
pub(crate) struct ExecutionChecks<'a> {
    workflow_id: &'a str,
    run_id: Option<&'a str>,
    identity: Option<&'a str>,
}

impl<'a> ExecutionChecks<'a> {
    /// Requires `workflow_id` to be set.
    pub(crate) fn workflow_id(workflow_id: &'a str) -> ExecutionChecks<'a> {
        ExecutionChecks {
            workflow_id,
            run_id: None,
            identity: None,
        }
    }

    /// Also requires `run_id` to be empty (the current run) or a UUID.
    pub(crate) fn run_id(self, run_id: &'a str) -> ExecutionChecks<'a> {
        ExecutionChecks {
            run_id: Some(run_id),
            ..self
        }
    }

    /// Also requires the caller's `identity` to be within [`MAX_ID_LENGTH`].
    pub(crate) fn identity(self, identity: &'a str) -> ExecutionChecks<'a> {
        ExecutionChecks {
            identity: Some(identity),
            ..self
        }
    }

    /// Makes the checks; the first that fails is the error.
    pub(crate) fn check(self) -> Result<(), ServiceError> {
        if self.workflow_id.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "WorkflowId is not set on request.".into(),
            ));
        }
        if let Some(run_id) = self.run_id
            && !run_id.is_empty()
            && uuid::Uuid::parse_str(run_id).is_err()
        {
            return Err(ServiceError::InvalidArgument(
                "RunId is not valid UUID.".into(),
            ));
        }
        match self.identity {
            Some(identity) => check_length("identity", identity),
            None => Ok(()),
        }
    }
}

/// Refuses a `value` longer than [`MAX_ID_LENGTH`] bytes, naming it as `what` in the reference
/// server's words.
pub(crate) fn check_length(what: &str, value: &str) -> Result<(), ServiceError> {
    if value.len() > MAX_ID_LENGTH {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} exceeds length limit. Length={} Limit={MAX_ID_LENGTH}",
            value.len()
        )));
    }
    Ok(())
}

/// Parses the `grpc-timeout` header value (an integer and a unit letter).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    // At most 8 digits by the gRPC spec; larger values saturate rather than overflow.
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("70S"), Some(Duration::from_secs(70)));
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(
            parse_grpc_timeout("18446744073709551615H"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
