//! Durable storage behind one narrow trait.
//!
//! The store knows rows, not workflows: executions (a state blob per run), their append-only
//! history, namespaces and the cluster's other registries (search attributes, Nexus
//! endpoints). Encoding is the engine's business. Every write goes through [`Store::commit`],
//! which resolves only after the batch is durable; implementations group concurrent batches
//! into one transaction (group commit).

mod checkpoint;
#[cfg(test)]
mod contract_tests;
pub mod fuzzing;
mod group;
pub mod list_query;
mod page_token;
mod postgres;
mod postgres_query;
pub mod predicate;
#[cfg(test)]
mod predicate_tests;
pub(crate) mod query_sql;
pub mod shard;
mod sqlite;
pub mod sqlite_query;
pub mod testing;

pub use postgres::{PostgresOptions, PostgresStore};
pub use predicate::{Attr, Predicate};
pub use shard::{ShardFence, ShardLease};
pub use sqlite::SqliteStore;
pub use testing::FaultyStore;

use thiserror::Error;
use tokio::sync::oneshot;

/// A storage failure. The write it belongs to did not happen.
#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    /// A conditional write found the row in another version than it expected (or a second
    /// running run of the workflow id): nothing of the batch was written.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// A conditional write named a run the store does not hold (deleted since it was read):
    /// nothing of the batch was written.
    #[error("not found: {0}")]
    NotFound(String),
    /// The batch's [`ShardFence`] names an epoch the shard's lease has moved past (another
    /// node took the shard) or a shard the rows do not belong to: nothing of the batch was
    /// written, and no write under that fence ever will be.
    #[error("shard ownership lost: {0}")]
    OwnershipLost(String),
    /// The backend cannot hold a value of the batch or query (PostgreSQL text cannot hold the
    /// NUL character): the request is at fault, not the backend, and nothing was written.
    #[error("{0}")]
    InvalidInput(String),
    /// The store stopped accepting writes after a failure that may have lost pages (a failed
    /// fsync): what is on disk can only be trusted after a restart re-reads it.
    #[error("storage failed and refuses writes until restarted: {0}")]
    Failed(String),
    /// The backend cannot be reached (a lost database connection): nothing of the write
    /// happened, and the same request may succeed once the backend is back.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage is shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The `status` of a run that has not closed (Temporal's `WORKFLOW_EXECUTION_STATUS_RUNNING`).
pub const RUNNING_STATUS: i32 = 1;

/// One run's row: identity, status, version and the engine's encoded state.
///
/// Writes are conditional: a row with `previous: None` creates the run and is refused if the
/// run exists or if another run of the same workflow id is running (one running run per
/// workflow id); a row with `previous: Some(v)` replaces the run only if the store still
/// holds version `v` (its `version` and `next_event_id`). A refused row fails its whole batch
/// with [`StoreError::Conflict`] and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub namespace: String,
    pub workflow_id: String,
    pub run_id: String,
    /// Temporal's `WorkflowExecutionStatus` as an integer ([`RUNNING_STATUS`] while open).
    pub status: i32,
    /// One past the last event of the run's history once this write is applied.
    pub next_event_id: i64,
    /// Increases with every write of the run (the state's transition count).
    pub version: i64,
    /// The version this write replaces; `None` creates the run.
    pub previous: Option<RowVersion>,
    pub state: Vec<u8>,
    /// The run's entry in the wake index: when the server must look at it again on its own.
    /// `None`: only when a request names it; `Some(`[`RESUME_AT_START`]`)`: as soon as a
    /// server starts (or takes its shard); `Some(t)`, `t >= 1`: at Unix ms `t`. Only running
    /// runs are in the index. Rows written before the index existed read as
    /// `Some(RESUME_AT_START)`.
    pub wake_at: Option<i64>,
}

/// The wake index's value for a run that must be loaded when a server starts.
pub const RESUME_AT_START: i64 = 0;
/// The earliest wake time: a page of [`Store::load_wakeups`] starts at least here, which
/// both leaves out [`RESUME_AT_START`] and gives the index scan its lower bound (a row-value
/// bound alone would make SQLite scan from the index's start).
pub const FIRST_WAKE_TIME: i64 = 1;

/// A run's place in the wake index: its wake time, then its id (the index's order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WakeKey {
    pub at_ms: i64,
    pub run_id: String,
}

impl WakeKey {
    /// Where a page of [`Store::load_wakeups`] that comes after `after` starts: the time
    /// (at least [`FIRST_WAKE_TIME`]) and the run id, both exclusive together.
    pub fn page_start(after: Option<&WakeKey>) -> (i64, &str) {
        match after {
            Some(key) => (key.at_ms.max(FIRST_WAKE_TIME), key.run_id.as_str()),
            None => (FIRST_WAKE_TIME, ""),
        }
    }
}

/// What a conditional write expects to find in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowVersion {
    pub version: i64,
    pub next_event_id: i64,
    pub status: i32,
    /// The run's wake index entry (not compared: a backend uses it to leave an unchanged
    /// entry alone).
    pub wake_at: Option<i64>,
}

impl ExecutionRow {
    /// The version this row leaves in the store (what the next write of the run expects).
    pub fn written_version(&self) -> RowVersion {
        RowVersion {
            version: self.version,
            next_event_id: self.next_event_id,
            status: self.status,
            wake_at: self.wake_at,
        }
    }
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

/// One run's visibility record: what list and count queries filter on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisibilityRow {
    pub namespace: String,
    pub run_id: String,
    pub workflow_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: i32,
    pub start_time_ms: i64,
    pub execution_time_ms: i64,
    /// `None` while running.
    pub close_time_ms: Option<i64>,
    pub history_length: i64,
    /// Close time minus execution time, in nanoseconds (`None` while running).
    pub execution_duration_ns: Option<i64>,
    pub parent_workflow_id: Option<String>,
    pub parent_run_id: Option<String>,
    pub root_run_id: Option<String>,
    pub root_workflow_id: Option<String>,
    /// Custom search attributes as a JSON object (Datetime values as Unix ms).
    pub search_attributes_json: String,
    /// The encoded `WorkflowExecutionInfo` returned by list calls.
    pub info: Vec<u8>,
}

/// A custom search attribute registered (`Some(type)`) or removed (`None`) in a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchAttributeRow {
    pub namespace: String,
    pub name: String,
    /// `IndexedValueType` as i32.
    pub value_type: Option<i32>,
}

/// One schedule's encoded record (`Some`), or its deletion (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub namespace: String,
    pub schedule_id: String,
    pub data: Option<Vec<u8>>,
}

/// One part of a batch operation job, written (`Some`) or deleted (`None`). Part
/// [`BATCH_JOB_RECORD`] is the job's record (small, rewritten as it progresses); parts from 1 on
/// are its target pages, written once when the job starts. The store keeps the bytes opaque.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJobRow {
    pub namespace: String,
    pub job_id: String,
    pub part: i64,
    pub data: Option<Vec<u8>>,
}

/// The part of a batch job that holds its record.
pub const BATCH_JOB_RECORD: i64 = 0;

/// One Nexus endpoint of the cluster, by its name: written (`Some`, the encoded
/// `temporal.api.nexus.v1.Endpoint`, opaque to the store) or deleted (`None`). A cluster-wide
/// row like a namespace (no shard owns it, no fence guards it); one row per name, so a
/// rename is the old name's deletion and the new name's write in one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct NexusEndpointRow {
    pub name: String,
    pub data: Option<Vec<u8>>,
}

/// Everything one transition writes; applied atomically.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub executions: Vec<ExecutionRow>,
    pub events: Vec<EventRow>,
    pub namespaces: Vec<NamespaceRow>,
    pub visibility: Vec<VisibilityRow>,
    pub search_attributes: Vec<SearchAttributeRow>,
    /// Runs deleted with everything they own (DeleteWorkflowExecution).
    pub deleted_runs: Vec<String>,
    /// Schedules written or deleted.
    pub schedules: Vec<ScheduleRow>,
    /// Batch operation jobs' parts written or deleted.
    pub batch_jobs: Vec<BatchJobRow>,
    /// Nexus endpoints written or deleted, applied in order (cluster-wide rows).
    pub nexus_endpoints: Vec<NexusEndpointRow>,
    /// The shard and lease epoch the batch is written under. Required when the batch writes
    /// shard-owned rows (runs, their events and visibility, deletions, schedules, batch jobs),
    /// all of which must belong to that shard; `None` only for cluster-wide rows (namespaces,
    /// search attributes, Nexus endpoints), which a batch with a fence may carry too. See
    /// [`shard`].
    pub fence: Option<ShardFence>,
    /// What the commit waits for before the batch counts as committed.
    pub durability: Durability,
}

/// What a commit waits for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The disk has the batch (fsync): it survives a crash of the machine.
    #[default]
    Synced,
    /// The operating system has the batch (written, not synced): it survives a crash of the
    /// process, and a crash of the machine may lose it (with nothing written after it). The
    /// next synced commit makes it as durable as that commit. For writes whose loss the server
    /// recovers from (a workflow task's start), to spare a sync per task.
    Written,
}

/// A bound value of a query: a literal of a filter, or one part of a page's sort key.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Float(f64),
}

/// A list query as a backend runs it: the resolved filter ([`Predicate`], the one meaning of
/// the query language) and the order. Each backend writes its own SQL for it.
#[derive(Debug, Clone, Default)]
pub struct VisibilityQuery {
    /// `None` matches every run of the namespace.
    pub filter: Option<Predicate>,
    /// Attributes to order by, `true` for descending; empty: the reference's default order
    /// (running runs first, then by close time and start time, newest first). Every order
    /// ends with the run id, descending, so the order is total.
    pub order_by: Vec<(Attr, bool)>,
}

/// Where a page of a list starts: the sort key of the last run of the page before it. Pages
/// read by key (not by offset) neither skip nor repeat runs while runs start and close.
#[derive(Debug, Clone, PartialEq)]
pub struct PageKey {
    /// One value per order attribute of the query (the default order has three).
    pub values: Vec<SqlValue>,
    pub run_id: String,
}

/// One page of a list: encoded `WorkflowExecutionInfo`s, and where the next page starts
/// (`None`: this was the last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisibilityPage {
    pub infos: Vec<Vec<u8>>,
    pub next: Option<PageKey>,
}

/// Told about every group commit, by the writer, after the group's callers were answered (so
/// an observer never delays a reply). Used for metrics; the store does not depend on them.
pub trait CommitObserver: Send + Sync + 'static {
    /// `batches` are the transitions the group held; `ok` whether the transaction committed.
    fn group_committed(
        &self,
        batches: &mut dyn Iterator<Item = &WriteBatch>,
        elapsed: std::time::Duration,
        ok: bool,
    );
}

/// Resolves when the batch is durable (or failed).
pub type CommitReceipt = oneshot::Receiver<Result<(), StoreError>>;

/// The storage contract, the same for every backend (`contract_tests.rs` runs one suite
/// against each).
///
/// Commits: each batch is applied atomically or not at all, and a batch that cannot be applied
/// fails alone (other batches committed in the same group are unaffected). Once a write fails
/// in a way that may have lost data (an fsync error), every later commit fails with
/// [`StoreError::Failed`] and [`Store::healthy`] stays false. While the backend cannot be
/// reached, commits and reads fail with [`StoreError::Unavailable`] and `healthy` is false.
///
/// Reads are async and never block the caller's thread (a backend with blocking IO runs it
/// on threads of its own).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Queues `batch` for the next group commit.
    fn commit(&self, batch: WriteBatch) -> CommitReceipt;
    /// False while commits fail (since the last failed group, until one succeeds) and for good
    /// after [`StoreError::Failed`].
    fn healthy(&self) -> bool;
    async fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError>;
    /// One page of the running runs in `slots` whose wake is [`RESUME_AT_START`], in run id
    /// order (creation order for the time-ordered ids the server makes), those after
    /// `after_run_id`, at most `limit` (used at start-up, and when a node takes a shard, to
    /// hand out their work again, a page at a time). The other running runs are found
    /// through [`Store::load_wakeups`] or when a request names them.
    async fn load_runs_to_resume(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after_run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError>;
    /// One page of the wake index: running runs in `slots` whose wake time is a time (not
    /// [`RESUME_AT_START`]), at most `until_ms`, and whose key comes after `after`, in key
    /// order, at most `limit` of them.
    async fn load_wakeups(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after: Option<&WakeKey>,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WakeKey>, StoreError>;
    /// A run by id, or the workflow id's current run (the one created last, as its
    /// current-execution row names it) when `run_id` is `None`.
    async fn load_execution(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Option<ExecutionRow>, StoreError>;
    /// A run by id alone (a run that left the server's cache, found again by what knows
    /// only its id: a deadline that fires, a task in a queue).
    async fn load_run(&self, run_id: &str) -> Result<Option<ExecutionRow>, StoreError>;
    /// The run's events with ids `>= from_event_id`, in order.
    async fn load_events(
        &self,
        run_id: &str,
        from_event_id: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Every schedule's record.
    async fn load_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError>;
    /// Every batch job's record (part [`BATCH_JOB_RECORD`]), by namespace and job id.
    async fn load_batch_jobs(&self) -> Result<Vec<BatchJobRow>, StoreError>;
    /// One batch job's parts after its record (its target pages), in part order.
    async fn load_batch_job_pages(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<Vec<BatchJobRow>, StoreError>;
    /// How many shards the database is partitioned into (fixed when it was created).
    fn shard_count(&self) -> u32;
    /// Every shard's lease, by shard.
    async fn load_shard_leases(&self) -> Result<Vec<ShardLease>, StoreError>;
    /// Takes `shard` for `owner` until `now_ms + lease_ms` if the lease is free, expired or
    /// already `owner`'s ([`ShardLease::can_be_taken_by`]), raising its epoch: from then on
    /// every write fenced with an earlier epoch fails with [`StoreError::OwnershipLost`].
    /// `None` when another owner holds it.
    async fn acquire_shard(
        &self,
        shard: u32,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ShardFence>, StoreError>;
    /// Extends the lease `fence` was taken under to `now_ms + lease_ms`;
    /// [`StoreError::OwnershipLost`] when its epoch has moved on.
    async fn renew_shard(
        &self,
        fence: ShardFence,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<(), StoreError>;
    /// Every registered custom search attribute: (namespace, name, type).
    async fn load_search_attributes(&self) -> Result<Vec<(String, String, i32)>, StoreError>;
    /// Every Nexus endpoint of the cluster, by name (each row's `data` is `Some`).
    async fn load_nexus_endpoints(&self) -> Result<Vec<NexusEndpointRow>, StoreError>;
    /// Up to `limit` of the namespace's runs matching `query`, in its order, starting after
    /// `after` (the first page when `None`).
    async fn list_visibility(
        &self,
        namespace: &str,
        query: &VisibilityQuery,
        limit: usize,
        after: Option<&PageKey>,
    ) -> Result<VisibilityPage, StoreError>;
    /// Number of matching runs, in total (one row, status 0) or per execution status.
    async fn count_visibility(
        &self,
        namespace: &str,
        filter: Option<&Predicate>,
        by_status: bool,
    ) -> Result<Vec<(i32, i64)>, StoreError>;
    /// Up to `limit` closed runs of `namespace` that closed before `closed_before_ms`, oldest
    /// first: (workflow id, run id). Retention deletes them.
    async fn closed_runs_before(
        &self,
        namespace: &str,
        closed_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;
}

/// The sort key of a list query: what each backend orders by and pages on. One entry per
/// order attribute; the run id, descending, follows them all.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// 0 for a running run (no close time), 1 for a closed one.
    Closed { desc: bool },
    /// An attribute's value, with missing values read as 0 (numbers) or '' (text).
    Attr { attr: Attr, desc: bool },
}

impl VisibilityQuery {
    /// The query's sort key, the reference's default when it names no order.
    pub fn sort_keys(&self) -> Vec<SortKey> {
        if self.order_by.is_empty() {
            let system = |name: &str, column: &'static str| Attr {
                name: name.to_string(),
                column: predicate::Column::System(column),
                ty: predicate::AttrType::Datetime,
            };
            return vec![
                SortKey::Closed { desc: false },
                SortKey::Attr {
                    attr: system("CloseTime", "close_time"),
                    desc: true,
                },
                SortKey::Attr {
                    attr: system("StartTime", "start_time"),
                    desc: true,
                },
            ];
        }
        self.order_by
            .iter()
            .map(|(attr, desc)| SortKey::Attr {
                attr: attr.clone(),
                desc: *desc,
            })
            .collect()
    }
}
