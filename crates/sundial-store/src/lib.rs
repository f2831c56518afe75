//! Durable storage behind one narrow trait.
//!
//! The store knows rows, not workflows: executions (a state blob per run), their append-only
//! history, and namespaces. Encoding is the engine's business. Every write goes through
//! [`Store::commit`], which resolves only after the batch is durable; implementations group
//! concurrent batches into one transaction (group commit).

mod sqlite;

pub use sqlite::SqliteStore;

use thiserror::Error;
use tokio::sync::oneshot;

/// A storage failure. The write it belongs to did not happen.
#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    #[error("storage is shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// One run's row: identity, status and the engine's encoded state.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub namespace: String,
    pub workflow_id: String,
    pub run_id: String,
    pub status: i32,
    pub state: Vec<u8>,
}

/// One encoded history event of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub run_id: String,
    pub event_id: i64,
    pub data: Vec<u8>,
}

/// One namespace's encoded description.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub name: String,
    pub data: Vec<u8>,
}

/// Everything one transition writes; applied atomically.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub executions: Vec<ExecutionRow>,
    pub events: Vec<EventRow>,
    pub namespaces: Vec<NamespaceRow>,
}

/// Resolves when the batch is durable (or failed).
pub type CommitReceipt = oneshot::Receiver<Result<(), StoreError>>;

/// The storage contract. Reads are blocking and meant for cold paths (start-up, cache misses).
pub trait Store: Send + Sync + 'static {
    /// Queues `batch` for the next group commit.
    fn commit(&self, batch: WriteBatch) -> CommitReceipt;
    fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError>;
    /// Every run whose status is `status` (used at start-up to rebuild running executions).
    fn load_executions_with_status(&self, status: i32) -> Result<Vec<ExecutionRow>, StoreError>;
    /// A run by id, or the latest run of the workflow id when `run_id` is `None`.
    fn load_execution(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Option<ExecutionRow>, StoreError>;
    /// The run's events with ids `>= from_event_id`, in order.
    fn load_events(&self, run_id: &str, from_event_id: i64) -> Result<Vec<Vec<u8>>, StoreError>;
}
