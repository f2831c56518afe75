//! A [`Store`] wrapper that fails or delays chosen commits, for tests of what the layers above
//! do when storage misbehaves: a commit that fails, one that is slow to acknowledge (so the
//! caller can give up while it is durable), a store that stays down for a while.

use crate::{
    BatchJobRow, CommitReceipt, ExecutionRow, NamespaceRow, PageKey, Predicate, ScheduleRow,
    ShardFence, ShardLease, Store, StoreError, VisibilityPage, VisibilityQuery, WriteBatch,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What happens to a commit the rule matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Refused with this error; nothing is written.
    Fail(StoreError),
    /// Written by the inner store, acknowledged only after this long.
    DelayReply(Duration),
}

type Matcher = Box<dyn Fn(&WriteBatch) -> bool + Send + Sync>;

struct Rule {
    matches: Matcher,
    fault: Fault,
    /// How many more commits the rule applies to.
    remaining: usize,
}

/// Wraps a store; commits pass through unless a rule added with [`FaultyStore::inject`]
/// matches them (rules are tried in the order they were added; each applies a number of times).
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    rules: Mutex<Vec<Rule>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(FaultyStore {
            inner,
            rules: Mutex::new(Vec::new()),
        })
    }

    /// Applies `fault` to the next `times` commits for which `matches` is true.
    pub fn inject(
        &self,
        times: usize,
        fault: Fault,
        matches: impl Fn(&WriteBatch) -> bool + Send + Sync + 'static,
    ) {
        self.rules.lock().push(Rule {
            matches: Box::new(matches),
            fault,
            remaining: times,
        });
    }

    /// Forgets every rule not used up yet.
    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    fn fault_for(&self, batch: &WriteBatch) -> Option<Fault> {
        let mut rules = self.rules.lock();
        let index = rules
            .iter()
            .position(|r| r.remaining > 0 && (r.matches)(batch))?;
        rules[index].remaining -= 1;
        let fault = rules[index].fault.clone();
        rules.retain(|r| r.remaining > 0);
        Some(fault)
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    fn commit(&self, batch: WriteBatch) -> CommitReceipt {
        match self.fault_for(&batch) {
            None => self.inner.commit(batch),
            Some(Fault::Fail(error)) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err(error));
                rx
            }
            Some(Fault::DelayReply(delay)) => {
                let written = self.inner.commit(batch);
                let (tx, rx) = oneshot::channel();
                std::thread::spawn(move || {
                    let result = written.blocking_recv().unwrap_or(Err(StoreError::Closed));
                    std::thread::sleep(delay);
                    let _ = tx.send(result);
                });
                rx
            }
        }
    }

    fn healthy(&self) -> bool {
        self.inner.healthy()
    }

    async fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        self.inner.load_namespaces().await
    }

    async fn load_runs_to_resume(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after_run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        self.inner
            .load_runs_to_resume(slots, after_run_id, limit)
            .await
    }

    async fn load_wakeups(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after: Option<&crate::WakeKey>,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::WakeKey>, StoreError> {
        self.inner.load_wakeups(slots, after, until_ms, limit).await
    }

    fn shard_count(&self) -> u32 {
        self.inner.shard_count()
    }

    async fn load_shard_leases(&self) -> Result<Vec<ShardLease>, StoreError> {
        self.inner.load_shard_leases().await
    }

    async fn acquire_shard(
        &self,
        shard: u32,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ShardFence>, StoreError> {
        self.inner
            .acquire_shard(shard, owner, now_ms, lease_ms)
            .await
    }

    async fn renew_shard(
        &self,
        fence: ShardFence,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner.renew_shard(fence, now_ms, lease_ms).await
    }

    async fn load_execution(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Option<ExecutionRow>, StoreError> {
        self.inner
            .load_execution(namespace, workflow_id, run_id)
            .await
    }

    async fn load_run(&self, run_id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        self.inner.load_run(run_id).await
    }

    async fn load_events(
        &self,
        run_id: &str,
        from_event_id: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.load_events(run_id, from_event_id).await
    }

    async fn load_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        self.inner.load_schedules().await
    }

    async fn load_batch_jobs(&self) -> Result<Vec<BatchJobRow>, StoreError> {
        self.inner.load_batch_jobs().await
    }

    async fn load_batch_job_pages(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<Vec<BatchJobRow>, StoreError> {
        self.inner.load_batch_job_pages(namespace, job_id).await
    }

    async fn load_search_attributes(&self) -> Result<Vec<(String, String, i32)>, StoreError> {
        self.inner.load_search_attributes().await
    }

    async fn load_nexus_endpoints(&self) -> Result<Vec<crate::NexusEndpointRow>, StoreError> {
        self.inner.load_nexus_endpoints().await
    }

    async fn list_visibility(
        &self,
        namespace: &str,
        query: &VisibilityQuery,
        limit: usize,
        after: Option<&PageKey>,
    ) -> Result<VisibilityPage, StoreError> {
        self.inner
            .list_visibility(namespace, query, limit, after)
            .await
    }

    async fn count_visibility(
        &self,
        namespace: &str,
        filter: Option<&Predicate>,
        by_status: bool,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        self.inner
            .count_visibility(namespace, filter, by_status)
            .await
    }

    async fn closed_runs_before(
        &self,
        namespace: &str,
        closed_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.inner
            .closed_runs_before(namespace, closed_before_ms, limit)
            .await
    }
}

/// A PostgreSQL database of one test server's own, on `SUNDIAL_TEST_POSTGRES` (default
/// `postgres://postgres@127.0.0.1:5432/test`), dropped (with any connection left to it) when
/// this is dropped. Blocking: safe to use inside or outside an async runtime.
pub struct TestDatabase {
    pub name: String,
    /// What `--db-url` takes.
    pub url: String,
    base: String,
}

impl TestDatabase {
    /// The base URL the test databases are created from.
    pub fn base_url() -> String {
        std::env::var("SUNDIAL_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// True when the tests are asked to run their servers on PostgreSQL
    /// (`SUNDIAL_TEST_BACKEND=postgres`).
    pub fn requested() -> bool {
        std::env::var("SUNDIAL_TEST_BACKEND").as_deref() == Ok("postgres")
    }

    /// Creates a database named after `prefix`, the process and a counter.
    pub fn create(prefix: &str) -> Result<TestDatabase, String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "sundial_{prefix}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let base = Self::base_url();
        let server = base
            .rsplit_once('/')
            .map(|(s, _)| s.to_string())
            .ok_or_else(|| {
                format!("SUNDIAL_TEST_POSTGRES must be a postgres:// URL, not {base}")
            })?;
        // One statement per call: DROP/CREATE DATABASE refuse to run in a transaction.
        run_admin(
            &base,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        run_admin(&base, format!("CREATE DATABASE {name}"))?;
        Ok(TestDatabase {
            url: format!("{server}/{name}"),
            name,
            base,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = run_admin(
            &self.base,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `sql` on `base` from a thread and runtime of its own.
fn run_admin(base: &str, sql: String) -> Result<(), String> {
    let base = base.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("PostgreSQL is not reachable at {base}: {e}"))?;
            tokio::spawn(connection);
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("PostgreSQL at {base} refused {sql:?}: {e}"))
        })
    })
    .join()
    .map_err(|_| "the PostgreSQL admin thread panicked".to_string())?
}
