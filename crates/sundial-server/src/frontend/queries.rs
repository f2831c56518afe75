//! Queries: answered by a worker through a query task that lives in memory only. The caller
//! waits for the worker's RespondQueryTaskCompleted, up to its own deadline.

use crate::error::ServiceError;
use crate::history::{History, RunHandle};
use crate::matching::{QueueKey, QueuedTask, TaskKind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use sundial_engine::api::{
    enums::v1::{QueryRejectCondition, QueryResultType, WorkflowExecutionStatus},
    query::v1::WorkflowQuery,
    workflowservice::v1::{QueryWorkflowResponse, RespondQueryTaskCompletedRequest},
};
use tokio::sync::oneshot;

struct Pending {
    query: WorkflowQuery,
    reply: oneshot::Sender<RespondQueryTaskCompletedRequest>,
}

/// Queries waiting for a worker's answer.
#[derive(Default)]
pub struct Queries {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

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

/// Removes the pending query when the asking call ends, however it ends.
struct Registration<'a> {
    queries: &'a Queries,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.queries.pending.lock().remove(&self.id);
    }
}

impl Queries {
    /// The query of a pending query task (`None` once the asker gave up).
    pub fn query_of(&self, id: u64) -> Option<WorkflowQuery> {
        self.pending.lock().get(&id).map(|p| p.query.clone())
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, answer) = oneshot::channel();
        self.pending.lock().insert(id, Pending { query, reply });
        let _registration = Registration { queries: self, id };
        history.matching().add(
            QueueKey {
                namespace: handle.namespace.clone(),
                name: task_queue.to_string(),
                kind: TaskKind::Workflow,
            },
            QueuedTask {
                run_id: handle.run_id.clone(),
                scheduled_event_id: 0,
                seq_or_attempt: id as i64,
                query: true,
            },
        );
        let answered = match tokio::time::timeout(wait, answer).await {
            Ok(Ok(answered)) => answered,
            _ => {
                return Err(ServiceError::DeadlineExceeded(
                    "query timed out: no worker answered it in time (is a worker polling the workflow's task queue?)"
                        .into(),
                ));
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

    /// A worker's answer to query task `id`.
    pub fn answer(
        &self,
        id: u64,
        answer: RespondQueryTaskCompletedRequest,
    ) -> Result<(), ServiceError> {
        let pending = self.pending.lock().remove(&id);
        match pending {
            Some(p) => {
                let _ = p.reply.send(answer);
                Ok(())
            }
            None => Err(ServiceError::NotFound(
                "query not found: it was answered already or timed out".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
