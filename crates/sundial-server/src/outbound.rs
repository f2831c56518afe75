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
use crate::history::{History, RunHandle};
use std::sync::Arc;
use std::time::Duration;
use sundial_engine::api::{
    common::v1::WorkflowExecution, enums::v1::ParentClosePolicy, history::v1::HistoryEvent,
    workflowservice::v1::StartWorkflowExecutionRequest,
};
use sundial_engine::{Effect, ParentInfo, Signal};

/// Delay before an outbound effect that failed for a transient reason is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Performs one outbound effect of run `run_id`, retrying transient failures.
pub async fn perform(history: Arc<History>, run_id: String, effect: Effect) {
    for _ in 0..30 {
        let Some(source) = history.loaded_run(&run_id) else {
            return;
        };
        let result = match &effect {
            Effect::StartChild { initiated_event_id } => {
                start_child(&history, &source, *initiated_event_id).await
            }
            Effect::SignalExternal { initiated_event_id } => {
                signal_external(&history, &source, *initiated_event_id).await
            }
            Effect::CancelExternal { initiated_event_id } => {
                cancel_external(&history, &source, *initiated_event_id).await
            }
            Effect::NotifyParent => notify_parent(&history, &source).await,
            Effect::ApplyParentClosePolicy {
                namespace,
                workflow_id,
                run_id,
                policy,
            } => {
                apply_close_policy(&history, &source, namespace, workflow_id, run_id, *policy).await
            }
            Effect::CheckChild { initiated_event_id } => {
                check_child(&history, &source, *initiated_event_id).await
            }
            Effect::CheckParent => check_parent(&history, &source).await,
            Effect::DispatchWorkflowTask { .. } | Effect::DispatchActivityTask { .. } => Ok(()),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(run_id, ?effect, error = %e, "outbound effect failed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

/// Ignores outcomes that mean "nothing left to do" (a run already closed or gone).
fn settled(result: Result<(), ServiceError>) -> Result<(), ServiceError> {
    match result {
        Err(ServiceError::NotFound(_)) | Err(ServiceError::FailedPrecondition(_)) => Ok(()),
        other => other,
    }
}

async fn start_child(
    history: &History,
    parent: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(parent, |entry| {
            let child = entry
                .state
                .children
                .iter()
                .find(|c| c.initiated_event_id == initiated_event_id)?;
            if !child.run_id.is_empty() {
                return None;
            }
            let root = match &entry.state.parent {
                Some(p) => (p.root_workflow_id.clone(), p.root_run_id.clone()),
                None => (entry.state.workflow_id.clone(), entry.state.run_id.clone()),
            };
            Some((child.command.clone().unwrap_or_default(), root))
        })
        .await?;
    let Some((command, (root_workflow_id, root_run_id))) = found else {
        return Ok(());
    };
    let policy = if command.parent_close_policy == ParentClosePolicy::Unspecified as i32 {
        ParentClosePolicy::Terminate as i32
    } else {
        command.parent_close_policy
    };
    let parent_info = ParentInfo {
        namespace: parent.namespace.clone(),
        workflow_id: parent.workflow_id.clone(),
        run_id: parent.run_id.clone(),
        initiated_event_id,
        close_policy: policy,
        root_workflow_id,
        root_run_id,
    };
    let request = StartWorkflowExecutionRequest {
        namespace: command.namespace.clone(),
        workflow_id: command.workflow_id.clone(),
        workflow_type: command.workflow_type.clone(),
        task_queue: command.task_queue.clone(),
        input: command.input.clone(),
        workflow_execution_timeout: command.workflow_execution_timeout,
        workflow_run_timeout: command.workflow_run_timeout,
        workflow_task_timeout: command.workflow_task_timeout,
        identity: format!("parent:{}", parent.workflow_id),
        request_id: format!("{}/{}", parent.run_id, initiated_event_id),
        workflow_id_reuse_policy: command.workflow_id_reuse_policy,
        retry_policy: command.retry_policy.clone(),
        cron_schedule: command.cron_schedule.clone(),
        memo: command.memo.clone(),
        search_attributes: command.search_attributes.clone(),
        header: command.header.clone(),
        priority: command.priority.clone(),
        ..Default::default()
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
        Err(ServiceError::AlreadyStarted { .. }) | Err(ServiceError::NamespaceNotFound(_)) => {
            history
                .transition(
                    parent,
                    |t| t.child_start_failed(initiated_event_id),
                    |_, ()| (),
                )
                .await
        }
        Err(e) => Err(e),
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

async fn deliver_child_close(
    history: &History,
    parent: &ParentInfo,
    child_run_id: &str,
    close: &HistoryEvent,
) -> Result<(), ServiceError> {
    let handle = match history.handle(&parent.namespace, &parent.workflow_id, Some(&parent.run_id))
    {
        Ok(handle) => handle,
        Err(ServiceError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let initiated = parent.initiated_event_id;
    settled(
        history
            .transition(
                &handle,
                |t| t.child_closed(initiated, child_run_id, close),
                |_, ()| (),
            )
            .await,
    )
}

async fn apply_close_policy(
    history: &History,
    parent: &RunHandle,
    namespace: &str,
    workflow_id: &str,
    run_id: &str,
    policy: i32,
) -> Result<(), ServiceError> {
    let child = match history.handle(namespace, workflow_id, None) {
        Ok(child) => child,
        Err(ServiceError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
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
    let result = if policy == ParentClosePolicy::RequestCancel as i32 {
        let external = (
            0,
            WorkflowExecution {
                workflow_id: parent.workflow_id.clone(),
                run_id: parent.run_id.clone(),
            },
        );
        let request_id = format!("{}/close-policy", parent.run_id);
        history
            .transition(
                &child,
                |t| t.request_cancel("", "history-service", &request_id, Some(external)),
                |_, ()| (),
            )
            .await
    } else {
        history
            .transition(
                &child,
                |t| t.terminate("by parent close policy", None, "history-service"),
                |_, ()| (),
            )
            .await
    };
    settled(result)
}

async fn signal_external(
    history: &History,
    source: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(source, |entry| {
            entry
                .state
                .external_signals
                .iter()
                .find(|s| s.initiated_event_id == initiated_event_id)
                .cloned()
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
    settled(
        history
            .transition(
                source,
                |t| t.external_signal_done(initiated_event_id, delivered),
                |_, ()| (),
            )
            .await,
    )
}

async fn cancel_external(
    history: &History,
    source: &Arc<RunHandle>,
    initiated_event_id: i64,
) -> Result<(), ServiceError> {
    let found = history
        .read(source, |entry| {
            entry
                .state
                .external_cancels
                .iter()
                .find(|s| s.initiated_event_id == initiated_event_id)
                .cloned()
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
    settled(
        history
            .transition(
                source,
                |t| t.external_cancel_done(initiated_event_id, delivered),
                |_, ()| (),
            )
            .await,
    )
}

/// Runs `op` on the target run; false when the target does not exist or is closed.
async fn deliver(
    history: &History,
    namespace: &str,
    workflow_id: &str,
    run_id: &str,
    op: impl FnOnce(&mut sundial_engine::Transition<'_>) -> Result<(), sundial_engine::EngineError>,
) -> Result<bool, ServiceError> {
    let handle = match history.handle(namespace, workflow_id, Some(run_id)) {
        Ok(handle) => handle,
        Err(ServiceError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
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
            entry
                .state
                .children
                .iter()
                .find(|c| c.initiated_event_id == initiated_event_id)
                .cloned()
        })
        .await?;
    let Some(child) = found else { return Ok(()) };
    let command = child.command.unwrap_or_default();
    let handle = match history.handle(&command.namespace, &command.workflow_id, None) {
        Ok(handle) => handle,
        Err(ServiceError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    notify_parent(history, &handle).await
}

/// After a restart: this run's parent may have closed, its close policy not yet applied.
async fn check_parent(history: &History, child: &Arc<RunHandle>) -> Result<(), ServiceError> {
    let Some(parent) = history.read(child, |e| e.state.parent.clone()).await? else {
        return Ok(());
    };
    let handle = match history.handle(&parent.namespace, &parent.workflow_id, Some(&parent.run_id))
    {
        Ok(handle) => handle,
        Err(ServiceError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let parent_running = history.read(&handle, |e| e.state.is_running()).await?;
    if parent_running || parent.close_policy == ParentClosePolicy::Abandon as i32 {
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
