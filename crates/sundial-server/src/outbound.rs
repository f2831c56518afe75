//! Effects that reach another run: starting children, external signals and cancellation
//! requests, telling a parent that its child closed, and parent close policies.
//!
//! Each runs as a task of its own after the source run's transition was committed, so no run's
//! lock is held while another's is taken. Each is idempotent (request ids derived from the
//! source run and event), and each is derived from state, so after a restart the same work is
//! found again (`ExecutionState::ready_tasks`) and redone without duplicates.

// Commands carry `namespace`, deprecated in the API but still how a target namespace is named.
#![allow(deprecated)]

use crate::error::ServiceError;
use crate::history::History;
use crate::run::RunHandle;
use crate::tokens::{CALLBACK_TOKEN_HEADER, NexusCallbackToken};
use std::sync::Arc;
use std::time::Duration;
use sundial_engine::api::common::v1::callback;
use sundial_engine::api::{
    common::v1::WorkflowExecution,
    enums::v1::{ParentClosePolicy, StartChildWorkflowExecutionFailedCause},
    history::v1::HistoryEvent,
};
use sundial_engine::{Effect, ParentInfo, Signal};

/// First delay before an outbound effect that failed is tried again.
const RETRY_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between two tries: the delay doubles after every failure up to this.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Failures after which each further failure is logged as an error, not a warning.
const RETRY_LOUD_AFTER: u32 = 10;

/// Capped exponential backoff: `initial`, doubling after each failure, never above `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const OUTBOUND: Backoff = Backoff {
        initial: RETRY_INITIAL,
        max: RETRY_MAX,
    };

    /// The delay after the `failures`-th failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Runs `attempt` until it succeeds, waiting `sleep(backoff.delay(n))` after the n-th failure.
/// It never gives up: a cross-run effect that was committed must happen, so a failure that
/// lasts (storage down, target overloaded) is retried, and logged, until it passes. Returns
/// the number of failures.
pub async fn retry_until_settled<F, Fut, S, SFut>(
    backoff: Backoff,
    what: &str,
    mut attempt: F,
    sleep: S,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ServiceError>>,
    S: Fn(Duration) -> SFut,
    SFut: std::future::Future<Output = ()>,
{
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(()) => return failures,
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff.delay(failures);
                if failures > RETRY_LOUD_AFTER {
                    tracing::error!(what, failures, ?delay, error = %e, "outbound effect still failing; retrying");
                } else {
                    tracing::warn!(what, failures, ?delay, error = %e, "outbound effect failed; retrying");
                }
                sleep(delay).await;
            }
        }
    }
}

/// Performs one outbound effect of run `run_id`, retrying failures until it settles.
/// Starts the worker that carries out the work `history`'s transitions leave for other runs,
/// each item as a task of its own, until the server shuts down (the queue closes with
/// `history`).
pub fn start_worker(history: &Arc<History>) {
    let Some(mut queue) = history.take_cross_run_queue() else {
        return;
    };
    let history = Arc::downgrade(history);
    tokio::spawn(async move {
        while let Some(work) = queue.recv().await {
            let Some(history) = history.upgrade() else {
                return;
            };
            tokio::spawn(async move {
                perform(history, work.run_id, work.effect).await;
                drop(work.hold);
            });
        }
    });
}

async fn perform(history: Arc<History>, run_id: String, effect: Effect) {
    let what = format!("{effect:?} of run {run_id}");
    let attempt = || {
        let history = history.clone();
        let (run_id, effect) = (&run_id, &effect);
        async move {
            // Loaded again if it left the cache meanwhile (a closed child telling its parent).
            match history.run_by_id(run_id).await? {
                Some(source) => perform_once(&history, &source, effect).await,
                // Deleted meanwhile: nothing is left to do for it.
                None => Ok(()),
            }
        }
    };
    retry_until_settled(Backoff::OUTBOUND, &what, attempt, tokio::time::sleep).await;
}

async fn perform_once(
    history: &History,
    source: &Arc<RunHandle>,
    effect: &Effect,
) -> Result<(), ServiceError> {
    match effect {
        Effect::StartChild { initiated_event_id } => {
            start_child(history, source, *initiated_event_id).await
        }
        Effect::SignalExternal { initiated_event_id } => {
            signal_external(history, source, *initiated_event_id).await
        }
        Effect::CancelExternal { initiated_event_id } => {
            cancel_external(history, source, *initiated_event_id).await
        }
        Effect::NotifyParent => notify_parent(history, source).await,
        Effect::ApplyParentClosePolicy {
            namespace,
            workflow_id,
            run_id,
            policy,
        } => apply_close_policy(history, source, namespace, workflow_id, run_id, *policy).await,
        Effect::CheckChild { initiated_event_id } => {
            check_child(history, source, *initiated_event_id).await
        }
        Effect::CheckParent => check_parent(history, source).await,
        Effect::InvokeCallbacks => invoke_callbacks(history, source).await,
        Effect::CheckNexusOperation { scheduled_event_id } => {
            check_nexus_operation(history, source, *scheduled_event_id).await
        }
        Effect::DispatchWorkflowTask { .. }
        | Effect::DispatchActivityTask { .. }
        | Effect::DispatchNexusTask { .. } => Ok(()),
    }
}

/// Ignores outcomes that mean "nothing left to do" (a run already closed or gone).
fn settled(result: Result<(), ServiceError>) -> Result<(), ServiceError> {
    match result {
        Err(ServiceError::NotFound(_)) | Err(ServiceError::FailedPrecondition(_)) => Ok(()),
        other => other,
    }
}

/// Runs `op` in one transition on `run`, [`settled`].
async fn settle_on(
    history: &History,
    run: &Arc<RunHandle>,
    op: impl FnOnce(&mut sundial_engine::Transition<'_>) -> Result<(), sundial_engine::EngineError>,
) -> Result<(), ServiceError> {
    settled(history.transition(run, op, |_, ()| ()).await)
}

/// The run `run_id` of `workflow_id` (None: its current run); None when there is no such run.
async fn existing_run(
    history: &History,
    namespace: &str,
    workflow_id: &str,
    run_id: Option<&str>,
) -> Result<Option<Arc<RunHandle>>, ServiceError> {
    match history.handle(namespace, workflow_id, run_id).await {
        Ok(handle) => Ok(Some(handle)),
        Err(ServiceError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn start_child(
    history: &History,
    parent: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(parent, |entry| entry.state.child_start(initiated_event_id))
        .await?;
    let Some((request, parent_info)) = found else {
        return Ok(());
    };
    let started = history
        .start_workflow_with_parent(&request, None, Some(parent_info))
        .await;
    let outcome = match started {
        Ok(outcome) => {
            history
                .transition(
                    parent,
                    |t| t.child_started(initiated_event_id, &outcome.run_id),
                    |_, ()| (),
                )
                .await
        }
        Err(e) => {
            let cause = match e {
                ServiceError::AlreadyStarted { .. } => {
                    StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists
                }
                ServiceError::NamespaceNotFound(_) => {
                    StartChildWorkflowExecutionFailedCause::NamespaceNotFound
                }
                other => return settled(Err(other)),
            };
            history
                .transition(
                    parent,
                    move |t| t.child_start_failed(initiated_event_id, cause),
                    |_, ()| (),
                )
                .await
        }
    };
    settled(outcome)
}

/// The child run `child` closed: record it on its parent.
async fn notify_parent(history: &History, child: &Arc<RunHandle>) -> Result<(), ServiceError> {
    let found = history
        .read(child, |entry| {
            let st = &entry.state;
            let parent = st.parent.clone()?;
            if st.is_running() || !st.new_execution_run_id.is_empty() {
                return None;
            }
            let close = match entry.events.get(st.close_event_id) {
                Ok(close) => close?,
                Err(e) => return Some(Err(e)),
            };
            Some(Ok((parent, st.first_execution_run_id.clone(), close)))
        })
        .await?
        .transpose()?;
    let Some((parent, first_run_id, close)) = found else {
        return Ok(());
    };
    deliver_child_close(history, &parent, &first_run_id, &close).await
}

/// Records the child's close on the parent run it names; if that run no longer has it
/// pending (a reset replaced the run, and its new run took the child over), on the workflow
/// id's current run, provided that run took this child over from the named one.
async fn deliver_child_close(
    history: &History,
    parent: &ParentInfo,
    child_run_id: &str,
    close: &HistoryEvent,
) -> Result<(), ServiceError> {
    let initiated = parent.initiated_event_id;
    let named = existing_run(
        history,
        &parent.namespace,
        &parent.workflow_id,
        Some(&parent.run_id),
    )
    .await?;
    if let Some(handle) = &named {
        let pending = history
            .read(handle, |e| {
                e.state.is_running() && e.state.child(initiated).is_some()
            })
            .await?;
        if pending {
            return settle_on(history, handle, |t| {
                t.child_closed(initiated, child_run_id, close)
            })
            .await;
        }
    }
    let Some(current) = existing_run(history, &parent.namespace, &parent.workflow_id, None).await?
    else {
        return Ok(());
    };
    if current.run_id == parent.run_id {
        return Ok(());
    }
    let from_run_id = parent.run_id.as_str();
    settle_on(history, &current, |t| {
        t.child_closed_taken_over(initiated, from_run_id, child_run_id, close)
    })
    .await
}

async fn apply_close_policy(
    history: &History,
    parent: &RunHandle,
    namespace: &str,
    workflow_id: &str,
    run_id: &str,
    policy: i32,
) -> Result<(), ServiceError> {
    let Some(child) = existing_run(history, namespace, workflow_id, None).await? else {
        return Ok(());
    };
    // The child may have continued as new: act on its current run if it is still the same chain.
    let same_chain = history
        .read(&child, |e| {
            e.state.first_execution_run_id == run_id || e.state.run_id == run_id
        })
        .await?;
    if !same_chain {
        return Ok(());
    }
    if policy == ParentClosePolicy::RequestCancel as i32 {
        let external = (
            0,
            WorkflowExecution {
                workflow_id: parent.workflow_id.clone(),
                run_id: parent.run_id.clone(),
            },
        );
        let request_id = format!("{}/close-policy", parent.run_id);
        settle_on(history, &child, |t| {
            t.request_cancel("", "history-service", &request_id, Some(external))
        })
        .await
    } else {
        settle_on(history, &child, |t| {
            t.terminate("by parent close policy", None, "history-service")
        })
        .await
    }
}

async fn signal_external(
    history: &History,
    source: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(source, |entry| {
            entry.state.external_signal(initiated_event_id).cloned()
        })
        .await?;
    let Some(info) = found else { return Ok(()) };
    let command = info.command.unwrap_or_default();
    let target = command.execution.clone().unwrap_or_default();
    let signal = Signal {
        name: command.signal_name.clone(),
        input: command.input.clone(),
        header: command.header.clone(),
        identity: String::new(),
        request_id: format!("{}/{}", source.run_id, initiated_event_id),
        external: Some(WorkflowExecution {
            workflow_id: source.workflow_id.clone(),
            run_id: source.run_id.clone(),
        }),
    };
    let delivered = deliver(
        history,
        &command.namespace,
        &target.workflow_id,
        &target.run_id,
        |t| t.signal(signal),
    )
    .await?;
    settle_on(history, source, |t| {
        t.external_signal_done(initiated_event_id, delivered)
    })
    .await
}

async fn cancel_external(
    history: &History,
    source: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(source, |entry| {
            entry.state.external_cancel(initiated_event_id).cloned()
        })
        .await?;
    let Some(info) = found else { return Ok(()) };
    let command = info.command.unwrap_or_default();
    let external = (
        initiated_event_id,
        WorkflowExecution {
            workflow_id: source.workflow_id.clone(),
            run_id: source.run_id.clone(),
        },
    );
    let request_id = format!("{}/{}", source.run_id, initiated_event_id);
    let reason = command.reason.clone();
    let delivered = deliver(
        history,
        &command.namespace,
        &command.workflow_id,
        &command.run_id,
        |t| t.request_cancel(&reason, "", &request_id, Some(external)),
    )
    .await?;
    settle_on(history, source, |t| {
        t.external_cancel_done(initiated_event_id, delivered)
    })
    .await
}

/// Runs `op` on the target run; false when the target does not exist or is closed.
async fn deliver(
    history: &History,
    namespace: &str,
    workflow_id: &str,
    run_id: &str,
    op: impl FnOnce(&mut sundial_engine::Transition<'_>) -> Result<(), sundial_engine::EngineError>,
) -> Result<bool, ServiceError> {
    let Some(handle) = existing_run(history, namespace, workflow_id, Some(run_id)).await? else {
        return Ok(false);
    };
    match history.transition(&handle, op, |_, ()| ()).await {
        Ok(()) => Ok(true),
        Err(ServiceError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// After a restart: a started child may have closed while its parent was not told.
async fn check_child(
    history: &History,
    parent: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(parent, |entry| {
            entry.state.child(initiated_event_id).cloned()
        })
        .await?;
    let Some(child) = found else { return Ok(()) };
    let command = child.command.unwrap_or_default();
    match existing_run(history, &command.namespace, &command.workflow_id, None).await? {
        Some(handle) => notify_parent(history, &handle).await,
        None => Ok(()),
    }
}

/// After a restart: this run's parent may have closed, its close policy not yet applied.
async fn check_parent(history: &History, child: &Arc<RunHandle>) -> Result<(), ServiceError> {
    let Some(parent) = history.read(child, |e| e.state.parent.clone()).await? else {
        return Ok(());
    };
    let Some(handle) = existing_run(
        history,
        &parent.namespace,
        &parent.workflow_id,
        Some(&parent.run_id),
    )
    .await?
    else {
        return Ok(());
    };
    // A run a reset terminated applies no close policy (the new run may have taken the
    // child over).
    let (parent_running, reset) = history
        .read(&handle, |e| {
            (e.state.is_running(), !e.state.reset_new_run_id.is_empty())
        })
        .await?;
    if parent_running || reset || parent.close_policy == ParentClosePolicy::Abandon as i32 {
        return Ok(());
    }
    apply_close_policy(
        history,
        &handle,
        &child.namespace,
        &child.workflow_id,
        &child.run_id,
        parent.close_policy,
    )
    .await
}

/// The run `handler`, backing Nexus operations, closed: its outcome goes to each operation its
/// start's completion callbacks name (on the caller's run, through the callback token this
/// server gave the handler). Repeated deliveries change nothing.
async fn invoke_callbacks(history: &History, handler: &Arc<RunHandle>) -> Result<(), ServiceError> {
    let found = history
        .read(handler, |entry| {
            let st = &entry.state;
            if st.is_running()
                || !st.new_execution_run_id.is_empty()
                || st.completion_callbacks.is_empty()
            {
                return None;
            }
            let close = match entry.events.get(st.close_event_id) {
                Ok(close) => close?,
                Err(e) => return Some(Err(e)),
            };
            Some(Ok((st.completion_callbacks.clone(), close)))
        })
        .await?
        .transpose()?;
    let Some((callbacks, close)) = found else {
        return Ok(());
    };
    let Some(outcome) = sundial_engine::nexus::handler_outcome(&close) else {
        return Ok(());
    };
    for callback in &callbacks {
        let Some(callback::Variant::Nexus(target)) = &callback.variant else {
            continue;
        };
        let header = |name: &str| {
            (target.header.iter())
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let Some(token) = header(CALLBACK_TOKEN_HEADER).and_then(NexusCallbackToken::decode_string)
        else {
            tracing::warn!(run_id = %handler.run_id, url = %target.url, "completion callback without a callback token of this server; skipped");
            continue;
        };
        let operation_token = header("nexus-operation-token")
            .unwrap_or_default()
            .to_string();
        let Some(caller) = existing_run(
            history,
            &token.namespace,
            &token.workflow_id,
            Some(&token.run_id),
        )
        .await?
        else {
            continue;
        };
        let outcome = outcome.clone();
        settle_on(history, &caller, |t| {
            t.nexus_handler_closed(token.scheduled_event_id, &operation_token, outcome)
        })
        .await?;
    }
    Ok(())
}

/// After a restart: the workflow backing a started Nexus operation may have closed while its
/// callback was lost; its chain's current run delivers it again if so.
async fn check_nexus_operation(
    history: &History,
    caller: &Arc<RunHandle>,
    scheduled_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(caller, |entry| {
            entry
                .state
                .nexus_operation(scheduled_event_id)
                .and_then(|op| op.handler_workflow.clone())
        })
        .await?;
    let Some(handler) = found else { return Ok(()) };
    match existing_run(history, &handler.namespace, &handler.workflow_id, None).await? {
        Some(current) => invoke_callbacks(history, &current).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::OUTBOUND;
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(5), Duration::from_millis(1600));
        assert_eq!(b.delay(8), Duration::from_secs(10));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    /// An effect whose target keeps failing far longer than any fixed number of tries is
    /// retried until it passes (the loop this replaced gave up silently after 30 tries).
    #[tokio::test]
    async fn effects_are_retried_until_they_settle() {
        let calls = Mutex::new(0u32);
        let slept = Mutex::new(Vec::new());
        let failures = retry_until_settled(
            Backoff::OUTBOUND,
            "test",
            || {
                let n = {
                    let mut calls = calls.lock();
                    *calls += 1;
                    *calls
                };
                async move {
                    if n <= 100 {
                        Err(ServiceError::Unavailable("storage error".into()))
                    } else {
                        Ok(())
                    }
                }
            },
            |d| {
                slept.lock().push(d);
                async {}
            },
        )
        .await;
        assert_eq!(failures, 100);
        assert_eq!(*calls.lock(), 101);
        let slept = slept.lock();
        assert_eq!(slept.len(), 100);
        assert_eq!(slept[0], Duration::from_millis(100));
        assert!(slept.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(slept[99], Duration::from_secs(10));
    }
}
