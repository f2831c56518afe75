//! What a start does when its workflow id already has a run: Temporal's request-id
//! deduplication, workflow id conflict policy (for a running run) and reuse policy (for a
//! closed one), and signal-with-start's "signal the running run instead".
//!
//! Every start that names a workflow id (client start, signal-with-start, update-with-start,
//! child start) is decided here, against the workflow id's current run, before a new run is
//! made; the server carries the decision out.

#![allow(deprecated)] // WorkflowIdReusePolicy::TerminateIfRunning, still sent by older clients

use crate::ExecutionState;
use crate::api::{
    enums::v1::{WorkflowExecutionStatus, WorkflowIdConflictPolicy, WorkflowIdReusePolicy},
    workflowservice::v1::StartWorkflowExecutionRequest,
};

/// The reason written on a run a new start terminates.
pub const TERMINATED_BY_NEW_START: &str =
    "terminated by a new start (workflow id conflict policy TERMINATE_EXISTING)";

/// What a start does about the workflow id's current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// Make the new run.
    Start,
    /// The request repeats the start that made the current run (same request id): answer
    /// with that run as started, make nothing.
    Deduplicated,
    /// USE_EXISTING on a running run: answer with it, not started, make nothing.
    UseExisting,
    /// USE_EXISTING on a running run with `on_conflict_options`: attach the request's id,
    /// completion callbacks and links to it ([`crate::Transition::attach_start`]), then answer
    /// with it, not started.
    AttachToExisting,
    /// Signal-with-start on a running run: signal it instead of starting.
    SignalExisting,
    /// Terminate the running run and make the new one, in one commit.
    TerminateExisting,
    /// Refused with WorkflowExecutionAlreadyStarted naming the current run.
    AlreadyStarted,
}

/// Decides a start against `current`, the workflow id's current run. `with_signal` is set
/// for signal-with-start.
pub fn decide(
    req: &StartWorkflowExecutionRequest,
    current: &ExecutionState,
    with_signal: bool,
) -> StartDecision {
    if !req.request_id.is_empty() && current.start_request_id == req.request_id {
        return StartDecision::Deduplicated;
    }
    let attached =
        !req.request_id.is_empty() && current.attached_request_ids.contains(&req.request_id);
    if current.is_running() && attached {
        return StartDecision::UseExisting;
    }
    if current.is_running() {
        if with_signal {
            return StartDecision::SignalExisting;
        }
        let conflict = WorkflowIdConflictPolicy::try_from(req.workflow_id_conflict_policy)
            .unwrap_or(WorkflowIdConflictPolicy::Unspecified);
        let terminate_if_running =
            req.workflow_id_reuse_policy == WorkflowIdReusePolicy::TerminateIfRunning as i32;
        return match conflict {
            WorkflowIdConflictPolicy::UseExisting
                if req.on_conflict_options.as_ref().is_some_and(|o| {
                    o.attach_request_id || o.attach_completion_callbacks || o.attach_links
                }) =>
            {
                StartDecision::AttachToExisting
            }
            WorkflowIdConflictPolicy::UseExisting => StartDecision::UseExisting,
            WorkflowIdConflictPolicy::TerminateExisting => StartDecision::TerminateExisting,
            _ if terminate_if_running => StartDecision::TerminateExisting,
            _ => StartDecision::AlreadyStarted,
        };
    }
    let reuse = WorkflowIdReusePolicy::try_from(req.workflow_id_reuse_policy)
        .unwrap_or(WorkflowIdReusePolicy::Unspecified);
    let completed = current.status == WorkflowExecutionStatus::Completed as i32;
    match reuse {
        WorkflowIdReusePolicy::RejectDuplicate => StartDecision::AlreadyStarted,
        WorkflowIdReusePolicy::AllowDuplicateFailedOnly if completed => {
            StartDecision::AlreadyStarted
        }
        _ => StartDecision::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::StartDecision::{self, *};
    use super::*;
    use WorkflowExecutionStatus as S;
    use WorkflowIdConflictPolicy as C;
    use WorkflowIdReusePolicy as R;

    fn current(status: S) -> ExecutionState {
        ExecutionState {
            status: status as i32,
            start_request_id: "first".into(),
            ..ExecutionState::default()
        }
    }

    fn request(request_id: &str, reuse: R, conflict: C) -> StartWorkflowExecutionRequest {
        StartWorkflowExecutionRequest {
            request_id: request_id.into(),
            workflow_id_reuse_policy: reuse as i32,
            workflow_id_conflict_policy: conflict as i32,
            ..Default::default()
        }
    }

    /// (current status, request id, reuse, conflict, signal-with-start) -> decision.
    #[test]
    fn decisions_follow_the_reference_servers_policies() {
        #[rustfmt::skip]
        let table: &[(S, &str, R, C, bool, StartDecision)] = &[
            // The same request id is the same start, whatever the run's state or policies.
            (S::Running, "first", R::RejectDuplicate, C::Fail, false, Deduplicated),
            (S::Completed, "first", R::RejectDuplicate, C::Fail, false, Deduplicated),
            (S::Running, "first", R::Unspecified, C::Unspecified, true, Deduplicated),
            // A running run: the conflict policy decides (FAIL by default).
            (S::Running, "", R::Unspecified, C::Unspecified, false, AlreadyStarted),
            (S::Running, "other", R::AllowDuplicate, C::Fail, false, AlreadyStarted),
            (S::Running, "other", R::Unspecified, C::UseExisting, false, UseExisting),
            (S::Running, "other", R::Unspecified, C::TerminateExisting, false, TerminateExisting),
            // The deprecated reuse policy TERMINATE_IF_RUNNING still terminates.
            (S::Running, "other", R::TerminateIfRunning, C::Unspecified, false, TerminateExisting),
            // USE_EXISTING wins over TERMINATE_IF_RUNNING.
            (S::Running, "other", R::TerminateIfRunning, C::UseExisting, false, UseExisting),
            // Signal-with-start signals a running run, whatever the conflict policy.
            (S::Running, "other", R::Unspecified, C::Fail, true, SignalExisting),
            (S::Running, "other", R::Unspecified, C::TerminateExisting, true, SignalExisting),
            // A closed run: the reuse policy decides (ALLOW_DUPLICATE by default).
            (S::Completed, "other", R::Unspecified, C::Unspecified, false, Start),
            (S::Completed, "other", R::RejectDuplicate, C::Unspecified, false, AlreadyStarted),
            (S::Failed, "other", R::RejectDuplicate, C::Unspecified, true, AlreadyStarted),
            (S::Completed, "other", R::AllowDuplicateFailedOnly, C::Fail, false, AlreadyStarted),
            (S::Failed, "other", R::AllowDuplicateFailedOnly, C::Fail, false, Start),
            (S::Terminated, "other", R::AllowDuplicateFailedOnly, C::Fail, false, Start),
            (S::Canceled, "other", R::AllowDuplicateFailedOnly, C::Fail, false, Start),
            (S::TimedOut, "other", R::AllowDuplicate, C::Fail, true, Start),
            (S::ContinuedAsNew, "other", R::TerminateIfRunning, C::Fail, false, Start),
        ];
        for (i, (status, id, reuse, conflict, signal, expected)) in table.iter().enumerate() {
            let got = decide(&request(id, *reuse, *conflict), &current(*status), *signal);
            assert_eq!(
                got, *expected,
                "row {i}: {status:?} {id:?} {reuse:?} {conflict:?}"
            );
        }
    }
}
