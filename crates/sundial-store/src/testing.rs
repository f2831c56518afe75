//! A [`Store`] wrapper that fails or delays chosen commits, for tests of what the layers above
//! do when storage misbehaves: a commit that fails, one that is slow to acknowledge (so the
//! caller can give up while it is durable), a store that stays down for a while.

use crate::{
    BatchJobRow, CommitReceipt, ExecutionRow, NamespaceRow, ScheduleRow, Store, StoreError,
    VisibilityFilter, WriteBatch,
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

    fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        self.inner.load_namespaces()
    }

    fn load_running_executions(&self) -> Result<Vec<ExecutionRow>, StoreError> {
        self.inner.load_running_executions()
    }

    fn load_execution(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Option<ExecutionRow>, StoreError> {
        self.inner.load_execution(namespace, workflow_id, run_id)
    }

    fn load_events(&self, run_id: &str, from_event_id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.load_events(run_id, from_event_id)
    }

    fn load_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        self.inner.load_schedules()
    }

    fn load_search_attributes(&self) -> Result<Vec<(String, String, i32)>, StoreError> {
        self.inner.load_search_attributes()
    }

    fn load_batch_jobs(&self) -> Result<Vec<BatchJobRow>, StoreError> {
        self.inner.load_batch_jobs()
    }

    fn load_batch_job_pages(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<Vec<BatchJobRow>, StoreError> {
        self.inner.load_batch_job_pages(namespace, job_id)
    }

    fn list_visibility(
        &self,
        namespace: &str,
        filter: &VisibilityFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.list_visibility(namespace, filter, limit, offset)
    }

    fn count_visibility(
        &self,
        namespace: &str,
        filter: &VisibilityFilter,
        by_status: bool,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        self.inner.count_visibility(namespace, filter, by_status)
    }

    fn closed_runs_before(
        &self,
        namespace: &str,
        closed_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.inner
            .closed_runs_before(namespace, closed_before_ms, limit)
    }
}
