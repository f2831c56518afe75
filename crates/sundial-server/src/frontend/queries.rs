//! Queries: answered by a worker, in memory only. The caller waits up to its own deadline.
//!
//! As in the reference server, a query sees every event that came before it. While the run
//! has a workflow task scheduled or started (or none completed yet), the query is *buffered*:
//! it rides on every workflow task of the run handed out (`queries` of the poll response) and
//! is answered in that task's completion (`query_results`). Once the run has no workflow task
//! (and completed one), or is closed, a query still unanswered is sent directly, as a query
//! task on the workflow's queue carrying the whole history (the worker may not cache the run)
//! and answered with RespondQueryTaskCompleted.

use crate::error::ServiceError;
use crate::history::History;
use crate::matching::{QueueKey, QueuedTask, TaskKind};
use crate::run::RunHandle;
use crate::tokens::TaskToken;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use sundial_engine::ExecutionState;
use sundial_engine::api::{
    enums::v1::{QueryRejectCondition, QueryResultType, WorkflowExecutionStatus},
    query::v1::{WorkflowQuery, WorkflowQueryResult},
    workflowservice::v1::{QueryWorkflowResponse, RespondQueryTaskCompletedRequest},
};
use tokio::sync::oneshot;

struct Pending {
    query: WorkflowQuery,
    reply: oneshot::Sender<RespondQueryTaskCompletedRequest>,
    /// The run the query was sent to: an answer must name it.
    namespace: String,
    workflow_id: String,
    run_id: String,
    /// Waiting to ride on the run's workflow tasks (see the module's documentation).
    buffered: bool,
}

/// Whether a query can be sent to a worker directly now, given the run's state.
#[derive(Debug, PartialEq)]
enum Readiness {
    /// Send it as a query task: no event can be ahead of it.
    Direct,
    /// Buffer it: a workflow task is scheduled or started, or none completed yet.
    Buffer,
    /// Refuse it, with the reference server's message (FailedPrecondition, the code of its
    /// WorkflowNotReady).
    Refuse(&'static str),
}

/// After this many attempts of a failing workflow task, queries that arrive fail at once:
/// they would fail on the failing task too (the reference's
/// `failQueryWorkflowTaskAttemptCount`). A query already buffered keeps waiting as the
/// attempts go on, as on the reference: a later attempt may complete (attempts from the
/// fourth on get a longer timeout) and answer it.
const FAILING_TASK_ATTEMPTS: i32 = 3;

/// What to do with a query on `state`; `arriving`: whether it was just received (not yet
/// buffered).
fn readiness(state: &ExecutionState, now_ms: i64, wait: Duration, arriving: bool) -> Readiness {
    let completed_one = state.last_completed_wt_started_event_id > 0;
    if !state.is_running() {
        return if completed_one {
            Readiness::Direct
        } else {
            Readiness::Refuse("Workflow execution closed before WorkflowTaskStarted event")
        };
    }
    match &state.workflow_task {
        Some(wt) if arriving && wt.attempt >= FAILING_TASK_ATTEMPTS => {
            Readiness::Refuse("Unable to query workflow due to Workflow Task in failed state.")
        }
        Some(_) => Readiness::Buffer,
        None if completed_one => Readiness::Direct,
        None if state.backoff_until_ms > now_ms + wait.as_millis() as i64 => {
            // The first workflow task waits for a backoff (cron, retry) beyond the caller's
            // deadline.
            Readiness::Refuse("Workflow task is not scheduled yet.")
        }
        None => Readiness::Buffer,
    }
}

/// Queries waiting for a worker's answer. A query task's id is random (64 bits from the
/// thread's cryptographic generator) and bound to the namespace and run it was sent to, so
/// only the worker that was handed the task can answer it: a guessed id, or a real one sent
/// with another namespace or run, is NotFound.
#[derive(Default)]
pub struct Queries {
    pending: Mutex<HashMap<u64, Pending>>,
}

/// The reference server's answer to a query task it does not know.
const QUERY_NOT_FOUND: &str = "query task not found, or already expired";

/// Whether the reject condition turns the query away for a run in `status`.
pub fn rejects(condition: i32, status: i32) -> bool {
    let running = status == WorkflowExecutionStatus::Running as i32;
    match QueryRejectCondition::try_from(condition) {
        Ok(QueryRejectCondition::NotOpen) => !running,
        Ok(QueryRejectCondition::NotCompletedCleanly) => {
            !running && status != WorkflowExecutionStatus::Completed as i32
        }
        _ => false,
    }
}

/// Removes the pending query when the asking call ends, however it ends, and its task from
/// the queue if no worker took it yet (a queue nobody polls would keep it forever).
struct Registration<'a> {
    queries: &'a Queries,
    id: u64,
    matching: &'a crate::matching::Matching,
    key: QueueKey,
    task: QueuedTask,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.queries.pending.lock().remove(&self.id);
        self.matching.withdraw(&self.key, &self.task);
    }
}

impl Queries {
    /// The query of a pending query task (`None` once the asker gave up).
    pub fn query_of(&self, id: u64) -> Option<WorkflowQuery> {
        self.pending.lock().get(&id).map(|p| p.query.clone())
    }

    /// Queries buffered for `run_id`, by id, to hand out with one of its workflow tasks.
    pub fn buffered_for(&self, run_id: &str) -> HashMap<String, WorkflowQuery> {
        self.pending
            .lock()
            .iter()
            .filter(|(_, p)| p.buffered && p.run_id == run_id)
            .map(|(id, p)| (id.to_string(), p.query.clone()))
            .collect()
    }

    /// The answers a workflow task completion carries for the queries it was handed; the
    /// token must name the run they were buffered for. Unknown ids are ignored (the query
    /// was answered otherwise, or its caller gave up).
    pub fn answer_buffered(
        &self,
        token: &TaskToken,
        results: &HashMap<String, WorkflowQueryResult>,
    ) {
        if results.is_empty() {
            return;
        }
        let mut queries = self.pending.lock();
        for (id, result) in results {
            let Ok(id) = id.parse::<u64>() else { continue };
            let matches = queries.get(&id).is_some_and(|p| {
                p.namespace == token.namespace
                    && p.workflow_id == token.workflow_id
                    && p.run_id == token.run_id
            });
            if !matches {
                continue;
            }
            if let Some(p) = queries.remove(&id) {
                let _ = p.reply.send(RespondQueryTaskCompletedRequest {
                    completed_type: result.result_type,
                    query_result: result.answer.clone(),
                    error_message: result.error_message.clone(),
                    failure: result.failure.clone(),
                    ..Default::default()
                });
            }
        }
    }

    /// Marks a pending query buffered or not; false if it is no longer pending (answered).
    fn set_buffered(&self, id: u64, buffered: bool) -> bool {
        match self.pending.lock().get_mut(&id) {
            Some(p) => {
                p.buffered = buffered;
                true
            }
            None => false,
        }
    }

    /// Sends the query to a worker of the run's task queue and waits for the answer.
    pub async fn ask(
        &self,
        history: &History,
        handle: &RunHandle,
        task_queue: &str,
        query: WorkflowQuery,
        wait: Duration,
    ) -> Result<QueryWorkflowResponse, ServiceError> {
        let (reply, mut answer) = oneshot::channel();
        let pending = Pending {
            query,
            reply,
            namespace: handle.namespace.clone(),
            workflow_id: handle.workflow_id.clone(),
            run_id: handle.run_id.clone(),
            buffered: false,
        };
        let id = self.register(pending);
        let key = QueueKey {
            namespace: handle.namespace.clone(),
            name: task_queue.to_string(),
            kind: TaskKind::Workflow,
        };
        let task = QueuedTask {
            run_id: handle.run_id.clone(),
            scheduled_event_id: 0,
            seq_or_attempt: id as i64,
            query: true,
            nexus_cancel: false,
        };
        let _registration = Registration {
            queries: self,
            id,
            matching: history.matching(),
            key: key.clone(),
            task: task.clone(),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let timed_out = || {
            ServiceError::DeadlineExceeded(
                "query timed out: no worker answered it in time (is a worker polling the workflow's task queue?)"
                    .into(),
            )
        };
        // Buffered until the run has no workflow task, or answered on one.
        let mut progress = handle.subscribe();
        let mut answered = None;
        let mut arriving = true;
        loop {
            progress.borrow_and_update();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let now = history.clock().now_ms();
            let ready = history
                .read(handle, |e| readiness(&e.state, now, remaining, arriving))
                .await?;
            arriving = false;
            match ready {
                Readiness::Direct => break,
                Readiness::Refuse(message) => {
                    return Err(ServiceError::FailedPrecondition(message.into()));
                }
                Readiness::Buffer => {}
            }
            self.set_buffered(id, true);
            tokio::select! {
                got = &mut answer => match got {
                    Ok(got) => {
                        answered = Some(got);
                        break;
                    }
                    Err(_) => return Err(timed_out()),
                },
                changed = tokio::time::timeout_at(deadline, progress.changed()) => {
                    if !matches!(changed, Ok(Ok(()))) {
                        return Err(timed_out());
                    }
                }
            }
        }
        let answered = match answered {
            Some(answered) => answered,
            None => {
                if self.set_buffered(id, false) {
                    history.matching().add(key, task);
                }
                // Answered on a workflow task meanwhile, or by the worker the task goes to.
                match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(answered)) => answered,
                    _ => return Err(timed_out()),
                }
            }
        };
        if answered.completed_type == QueryResultType::Answered as i32 {
            Ok(QueryWorkflowResponse {
                query_result: answered.query_result,
                ..Default::default()
            })
        } else {
            let message = if answered.error_message.is_empty() {
                answered
                    .failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_default()
            } else {
                answered.error_message.clone()
            };
            Err(ServiceError::QueryFailed {
                message,
                failure: answered.failure.map(Box::new),
            })
        }
    }

    /// Files a pending query under a fresh random id (never 0, which marks a non-query token).
    fn register(&self, pending: Pending) -> u64 {
        let mut queries = self.pending.lock();
        loop {
            let id = uuid::Uuid::new_v4().as_u64_pair().0;
            if id != 0 && !queries.contains_key(&id) {
                queries.insert(id, pending);
                return id;
            }
        }
    }

    /// Number of queries waiting for an answer.
    pub fn pending_count(&self) -> usize {
        self.pending.lock().len()
    }

    /// A worker's answer to the query task its token names. The token's namespace and run
    /// must be those the query was sent to.
    pub fn answer(
        &self,
        token: &TaskToken,
        answer: RespondQueryTaskCompletedRequest,
    ) -> Result<(), ServiceError> {
        let mut queries = self.pending.lock();
        let matches = queries.get(&token.query_id).is_some_and(|p| {
            p.namespace == token.namespace
                && p.workflow_id == token.workflow_id
                && p.run_id == token.run_id
        });
        if !matches {
            return Err(ServiceError::NotFound(QUERY_NOT_FOUND.into()));
        }
        if let Some(p) = queries.remove(&token.query_id) {
            let _ = p.reply.send(answer);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(
        ns: &str,
        run: &str,
    ) -> (Pending, oneshot::Receiver<RespondQueryTaskCompletedRequest>) {
        let (reply, rx) = oneshot::channel();
        (
            Pending {
                query: WorkflowQuery::default(),
                reply,
                namespace: ns.into(),
                workflow_id: "wf".into(),
                run_id: run.into(),
                buffered: false,
            },
            rx,
        )
    }

    fn token(ns: &str, run: &str, query_id: u64) -> TaskToken {
        TaskToken {
            namespace: ns.into(),
            workflow_id: "wf".into(),
            run_id: run.into(),
            query_id,
            ..Default::default()
        }
    }

    #[test]
    fn only_the_named_query_task_can_be_answered() {
        let queries = Queries::default();
        let (p, mut rx) = pending("a", "run-1");
        let id = queries.register(p);
        let (p2, _rx2) = pending("a", "run-1");
        let other = queries.register(p2);
        assert_ne!(id, other);
        assert!(id > 2 || other > 2, "ids are random, not a counter");
        let answer = RespondQueryTaskCompletedRequest::default();
        for forged in [
            token("b", "run-1", id),
            token("a", "run-2", id),
            token("a", "run-1", id ^ 1),
            token("a", "run-1", 1),
        ] {
            let refused = queries.answer(&forged, answer.clone());
            assert!(
                matches!(&refused, Err(ServiceError::NotFound(m)) if m == QUERY_NOT_FOUND),
                "{forged:?}"
            );
        }
        assert!(rx.try_recv().is_err(), "no forged answer got through");
        queries
            .answer(&token("a", "run-1", id), answer.clone())
            .unwrap();
        assert!(rx.try_recv().is_ok());
        assert_eq!(queries.pending_count(), 1);
        assert!(queries.answer(&token("a", "run-1", id), answer).is_err());
    }

    #[test]
    fn reject_conditions() {
        let (running, completed, failed) = (1, 2, 3);
        assert!(!rejects(QueryRejectCondition::NotOpen as i32, running));
        assert!(rejects(QueryRejectCondition::NotOpen as i32, completed));
        assert!(!rejects(
            QueryRejectCondition::NotCompletedCleanly as i32,
            completed
        ));
        assert!(rejects(
            QueryRejectCondition::NotCompletedCleanly as i32,
            failed
        ));
        assert!(!rejects(QueryRejectCondition::None as i32, failed));
    }
}
