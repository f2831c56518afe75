//! Matching: task queues in memory. A ready task and a waiting poller are paired directly;
//! otherwise the task waits in its queue or the poller waits for a task.
//!
//! Queues hold only *derived* facts (the execution state says the task is scheduled), so they
//! are rebuilt from the store after a restart. A task handed to a poller that vanished before
//! taking it goes back to the front of its queue (see [`Lease`]).

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// Workflow, activity and Nexus tasks of the same queue name are separate queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Workflow,
    Activity,
    /// Requests of Nexus operations (start or cancel), queued in the endpoint's target
    /// namespace; `run_id` is the caller's run.
    Nexus,
}

/// A queue's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKey {
    pub namespace: String,
    pub name: String,
    pub kind: TaskKind,
}

/// A task waiting for a poller: which run, and which dispatch of which task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    pub run_id: String,
    pub scheduled_event_id: i64,
    /// Workflow tasks: dispatch sequence. Activities and Nexus requests: attempt. Queries: the
    /// query id.
    pub seq_or_attempt: i64,
    /// A Nexus task's cancel request (else its start request).
    pub nexus_cancel: bool,
    /// A query task (in memory only; never persisted).
    pub query: bool,
}

/// A task in transit to a poller; if dropped before [`Lease::take`], it is queued again.
pub struct Lease {
    matching: Weak<Matching>,
    key: QueueKey,
    task: Option<QueuedTask>,
}

impl Lease {
    /// The task, still leased.
    pub fn task(&self) -> &QueuedTask {
        self.task
            .as_ref()
            .expect("a lease holds its task until taken")
    }

    /// Takes the task for good: it will not be queued again.
    pub fn take(mut self) -> QueuedTask {
        self.task
            .take()
            .expect("a lease holds its task until taken")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (Some(task), Some(matching)) = (self.task.take(), self.matching.upgrade()) {
            matching.requeue_front(&self.key, task);
        }
    }
}

/// How long a queue remembers a poller that stopped polling (DescribeTaskQueue reports
/// pollers of the last five minutes, as the reference server does).
pub const POLLER_MEMORY_MS: i64 = 5 * 60 * 1000;
/// How often, at most, every queue is looked at for ones nobody needs any more.
const SWEEP_INTERVAL_MS: i64 = 60 * 1000;

/// How long a worker that said it shut down (ShutdownWorker with its instance key) has its
/// later polls answered empty at once, as the reference's matching remembers it (30 s).
pub const SHUT_DOWN_WORKER_MEMORY: Duration = Duration::from_secs(30);

/// A waiting poll: where its task goes, and the worker instance it came from ("" if the
/// worker sent no key).
struct Waiting {
    tx: oneshot::Sender<Lease>,
    worker_key: String,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<QueuedTask>,
    pollers: VecDeque<Waiting>,
    /// Identity and last poll time (ms) of recent pollers.
    poller_seen: HashMap<String, i64>,
    /// Worker deployment versions (deployment name, build id) of recent versioned pollers,
    /// with their last poll time (ms).
    versions_seen: HashMap<(String, String), i64>,
}

impl Queue {
    /// Forgets pollers not seen since `since_ms` and waiting polls that went away; true when
    /// nothing is left (no task, no poll, no poller worth reporting): the queue can go.
    fn sweep(&mut self, since_ms: i64) -> bool {
        self.poller_seen.retain(|_, seen| *seen >= since_ms);
        self.versions_seen.retain(|_, seen| *seen >= since_ms);
        self.pollers.retain(|p| !p.tx.is_closed());
        self.tasks.is_empty()
            && self.pollers.is_empty()
            && self.poller_seen.is_empty()
            && self.versions_seen.is_empty()
    }
}

/// All task queues of the server. A queue exists while it holds tasks or polls, or has seen
/// a poller in the last [`POLLER_MEMORY_MS`]; after that it is forgotten (sticky queues of
/// workers that went away, queues of one-off task queue names), so the map does not grow
/// with every queue name ever used.
#[derive(Default)]
pub struct Matching {
    queues: Mutex<HashMap<QueueKey, Queue>>,
    me: Mutex<Weak<Matching>>,
    /// Set at shutdown: polls answer empty at once instead of waiting.
    closed: std::sync::atomic::AtomicBool,
    /// When every queue was last swept (Unix ms).
    last_sweep_ms: std::sync::atomic::AtomicI64,
    /// Worker instances (namespace, key) whose polls were cancelled by their ShutdownWorker,
    /// with when; kept for [`SHUT_DOWN_WORKER_MEMORY`].
    shut_down_workers: Mutex<HashMap<(String, String), std::time::Instant>>,
}

impl Matching {
    pub fn new() -> Arc<Self> {
        let matching = Arc::new(Matching::default());
        *matching.me.lock() = Arc::downgrade(&matching);
        matching
    }

    fn lease(&self, key: &QueueKey, task: QueuedTask) -> Lease {
        Lease {
            matching: self.me.lock().clone(),
            key: key.clone(),
            task: Some(task),
        }
    }

    /// Offers a task: to the longest-waiting live poller, else to the back of the queue.
    pub fn add(&self, key: QueueKey, task: QueuedTask) {
        self.offer(key, task, false);
    }

    fn requeue_front(&self, key: &QueueKey, task: QueuedTask) {
        self.offer(key.clone(), task, true);
    }

    fn offer(&self, key: QueueKey, task: QueuedTask, front: bool) {
        let mut lease = self.lease(&key, task);
        let mut queues = self.queues.lock();
        let queue = queues.entry(key).or_default();
        while let Some(poller) = queue.pollers.pop_front() {
            match poller.tx.send(lease) {
                Ok(()) => return,
                Err(returned) => lease = returned,
            }
        }
        let task = lease.task.take().expect("lease still holds its task");
        if front {
            queue.tasks.push_front(task);
        } else {
            queue.tasks.push_back(task);
        }
    }

    /// Waits up to `wait` for a task. `None` when nothing came in time, or the poll was
    /// cancelled ([`Matching::cancel_worker_polls`]). The task returns to the front of its
    /// queue if the lease is dropped without [`Lease::take`] (the poller went away before the
    /// task was started). `worker_key` is the polling worker's instance key ("" if none).
    pub async fn poll(
        &self,
        key: QueueKey,
        identity: &str,
        worker_key: &str,
        now_ms: i64,
        wait: Duration,
    ) -> Option<Lease> {
        self.maybe_sweep(now_ms);
        let receiver = {
            let mut queues = self.queues.lock();
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return None;
            }
            if !worker_key.is_empty() && self.is_shut_down(&key.namespace, worker_key) {
                return None;
            }
            let queue = queues.entry(key.clone()).or_default();
            queue.poller_seen.insert(identity.to_string(), now_ms);
            if let Some(task) = queue.tasks.pop_front() {
                return Some(self.lease(&key, task));
            }
            queue.pollers.retain(|p| !p.tx.is_closed());
            let (tx, rx) = oneshot::channel();
            queue.pollers.push_back(Waiting {
                tx,
                worker_key: worker_key.to_string(),
            });
            rx
        };
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(lease)) => Some(lease),
            _ => None,
        }
    }

    /// Whether the worker instance `worker_key` of `namespace` shut down in the last
    /// [`SHUT_DOWN_WORKER_MEMORY`].
    fn is_shut_down(&self, namespace: &str, worker_key: &str) -> bool {
        let gone = self.shut_down_workers.lock();
        gone.get(&(namespace.to_string(), worker_key.to_string()))
            .is_some_and(|at| at.elapsed() < SHUT_DOWN_WORKER_MEMORY)
    }

    /// ShutdownWorker with poll cancellation on: every poll the worker instance `worker_key`
    /// has waiting in `namespace` (any queue, sticky or not) answers empty now, and its polls
    /// for the next [`SHUT_DOWN_WORKER_MEMORY`] answer empty at once, so no task is handed to
    /// a worker that is going away. Returns how many polls were cancelled.
    pub fn cancel_worker_polls(&self, namespace: &str, worker_key: &str) -> usize {
        if worker_key.is_empty() {
            return 0;
        }
        let mut queues = self.queues.lock();
        {
            let mut gone = self.shut_down_workers.lock();
            gone.retain(|_, at| at.elapsed() < SHUT_DOWN_WORKER_MEMORY);
            gone.insert(
                (namespace.to_string(), worker_key.to_string()),
                std::time::Instant::now(),
            );
        }
        let mut cancelled = 0;
        for (key, queue) in queues.iter_mut() {
            if key.namespace != namespace {
                continue;
            }
            let before = queue.pollers.len();
            // Dropping a poll's sender answers it empty.
            queue
                .pollers
                .retain(|p| p.worker_key != worker_key && !p.tx.is_closed());
            cancelled += before - queue.pollers.len();
        }
        cancelled
    }

    /// Sweeps every queue once per [`SWEEP_INTERVAL_MS`] (called on the polling path, so an
    /// idle server does no work).
    fn maybe_sweep(&self, now_ms: i64) {
        use std::sync::atomic::Ordering;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms - last < SWEEP_INTERVAL_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep(now_ms);
    }

    /// Forgets queues nobody needs any more: no task, no waiting poll, and no poller seen in
    /// the last [`POLLER_MEMORY_MS`] before `now_ms`.
    pub fn sweep(&self, now_ms: i64) {
        let since = now_ms - POLLER_MEMORY_MS;
        self.queues.lock().retain(|_, queue| !queue.sweep(since));
    }

    /// Takes back a task nobody polled yet (a query whose caller gave up); true if it was
    /// still waiting.
    pub fn withdraw(&self, key: &QueueKey, task: &QueuedTask) -> bool {
        let mut queues = self.queues.lock();
        let Some(queue) = queues.get_mut(key) else {
            return false;
        };
        let Some(at) = queue.tasks.iter().position(|t| t == task) else {
            return false;
        };
        queue.tasks.remove(at);
        true
    }

    /// Number of queues held (for tests and metrics).
    pub fn queue_count(&self) -> usize {
        self.queues.lock().len()
    }

    /// A versioned worker of deployment version (`deployment_name`, `build_id`) polls the
    /// queue: the version is present in it for [`POLLER_MEMORY_MS`] (what a pinned
    /// versioning override is checked against).
    pub fn note_version(&self, key: &QueueKey, deployment_name: &str, build_id: &str, now_ms: i64) {
        let mut queues = self.queues.lock();
        let queue = queues.entry(key.clone()).or_default();
        queue
            .versions_seen
            .insert((deployment_name.to_string(), build_id.to_string()), now_ms);
    }

    /// Whether a versioned worker of that deployment version polled the queue since `since_ms`.
    pub fn has_version(
        &self,
        key: &QueueKey,
        deployment_name: &str,
        build_id: &str,
        since_ms: i64,
    ) -> bool {
        let queues = self.queues.lock();
        queues.get(key).is_some_and(|q| {
            q.versions_seen
                .get(&(deployment_name.to_string(), build_id.to_string()))
                .is_some_and(|seen| *seen >= since_ms)
        })
    }

    /// Pollers seen on a queue recently: identity and last poll time (Unix ms).
    pub fn pollers(&self, key: &QueueKey, since_ms: i64) -> Vec<(String, i64)> {
        let queues = self.queues.lock();
        let Some(queue) = queues.get(key) else {
            return Vec::new();
        };
        let mut pollers: Vec<_> = queue
            .poller_seen
            .iter()
            .filter(|(_, t)| **t >= since_ms)
            .map(|(i, t)| (i.clone(), *t))
            .collect();
        pollers.sort();
        pollers
    }

    /// Removes and returns every task waiting in a queue.
    pub fn drain(&self, key: &QueueKey) -> Vec<QueuedTask> {
        self.queues
            .lock()
            .get_mut(key)
            .map(|q| q.tasks.drain(..).collect())
            .unwrap_or_default()
    }

    /// Number of tasks waiting in a queue.
    pub fn backlog(&self, key: &QueueKey) -> usize {
        self.queues.lock().get(key).map_or(0, |q| q.tasks.len())
    }

    /// Per queue: namespace, kind, tasks waiting and long polls waiting (for metrics).
    pub fn summary(&self) -> Vec<(String, TaskKind, usize, usize)> {
        self.queues
            .lock()
            .iter()
            .map(|(key, q)| {
                let waiting = q.pollers.iter().filter(|p| !p.tx.is_closed()).count();
                (key.namespace.clone(), key.kind, q.tasks.len(), waiting)
            })
            .collect()
    }

    /// Shutdown: every waiting poll answers empty now, and later polls answer empty at once.
    pub fn close(&self) {
        // Under the queues' lock, so no poll can slip in between the flag and the release.
        let mut queues = self.queues.lock();
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        for queue in queues.values_mut() {
            queue.pollers.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> QueueKey {
        QueueKey {
            namespace: "ns".into(),
            name: "q".into(),
            kind: TaskKind::Activity,
        }
    }

    fn task(n: i64) -> QueuedTask {
        QueuedTask {
            run_id: "r".into(),
            scheduled_event_id: n,
            seq_or_attempt: 1,
            query: false,
            nexus_cancel: false,
        }
    }

    #[tokio::test]
    async fn queued_task_goes_to_next_poller() {
        let m = Matching::new();
        m.add(key(), task(1));
        let got = m.poll(key(), "w", "", 0, Duration::from_millis(10)).await;
        assert_eq!(got.map(Lease::take), Some(task(1)));
        let none = m.poll(key(), "w", "", 0, Duration::from_millis(10)).await;
        assert!(none.is_none());
    }

    #[tokio::test]
    async fn waiting_poller_gets_new_task() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", "", 0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        m.add(key(), task(2));
        assert_eq!(poll.await.unwrap().map(Lease::take), Some(task(2)));
    }

    #[tokio::test]
    async fn close_answers_waiting_and_later_polls() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", "", 0, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            m.summary(),
            vec![("ns".to_string(), TaskKind::Activity, 0, 1)]
        );
        m.close();
        assert!(poll.await.unwrap().is_none());
        let later = tokio::time::timeout(
            Duration::from_secs(1),
            m.poll(key(), "w", "", 0, Duration::from_secs(30)),
        );
        assert!(later.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn queues_nobody_uses_are_forgotten() {
        let m = Matching::new();
        let sticky = |n: usize| QueueKey {
            namespace: "ns".into(),
            name: format!("sticky-{n}"),
            kind: TaskKind::Workflow,
        };
        for n in 0..50 {
            // A worker polls its sticky queue once, then goes away.
            let polled = m.poll(sticky(n), "w", "", 1_000, Duration::from_millis(1));
            assert!(polled.await.is_none());
        }
        m.add(key(), task(1));
        assert_eq!(m.queue_count(), 51);
        // Still reported for a while...
        m.sweep(1_000 + POLLER_MEMORY_MS);
        assert_eq!(m.queue_count(), 51);
        assert_eq!(m.pollers(&sticky(0), 0).len(), 1);
        // ...then forgotten; a queue that holds a task is kept.
        m.sweep(1_001 + POLLER_MEMORY_MS);
        assert_eq!(m.queue_count(), 1);
        assert_eq!(m.backlog(&key()), 1);
        assert!(m.withdraw(&key(), &task(1)));
        assert!(!m.withdraw(&key(), &task(1)));
        m.sweep(1_001 + POLLER_MEMORY_MS);
        assert_eq!(m.queue_count(), 0);
    }

    #[tokio::test]
    async fn a_waiting_poll_keeps_its_queue() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", "", 0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        m.sweep(10 * POLLER_MEMORY_MS);
        assert_eq!(m.queue_count(), 1);
        m.add(key(), task(4));
        assert_eq!(poll.await.unwrap().map(Lease::take), Some(task(4)));
    }

    #[tokio::test]
    async fn task_sent_to_vanished_poller_is_requeued() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", "", 0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        poll.abort();
        let _ = poll.await;
        m.add(key(), task(3));
        assert_eq!(m.backlog(&key()), 1);
    }

    #[tokio::test]
    async fn a_shut_down_workers_polls_answer_empty_and_others_keep_waiting() {
        let m = Matching::new();
        let sticky = QueueKey {
            name: "sticky".into(),
            kind: TaskKind::Workflow,
            ..key()
        };
        let spawn = |key: QueueKey, worker: &'static str| {
            let m = m.clone();
            tokio::spawn(async move { m.poll(key, "w", worker, 0, Duration::from_secs(30)).await })
        };
        let normal = spawn(key(), "worker-a");
        let on_sticky = spawn(sticky.clone(), "worker-a");
        let other = spawn(key(), "worker-b");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(m.cancel_worker_polls("other-ns", "worker-a"), 0);
        assert_eq!(m.cancel_worker_polls("ns", "worker-a"), 2);
        let answered = tokio::time::timeout(Duration::from_secs(1), normal).await;
        assert!(answered.unwrap().unwrap().is_none());
        let answered = tokio::time::timeout(Duration::from_secs(1), on_sticky).await;
        assert!(answered.unwrap().unwrap().is_none());
        // A later poll of the same worker answers at once; the task goes to the other worker.
        let later = tokio::time::timeout(
            Duration::from_secs(1),
            m.poll(key(), "w", "worker-a", 0, Duration::from_secs(30)),
        );
        assert!(later.await.unwrap().is_none());
        m.add(key(), task(7));
        assert_eq!(other.await.unwrap().map(Lease::take), Some(task(7)));
        assert_eq!(
            m.cancel_worker_polls("ns", ""),
            0,
            "no key, nothing to cancel"
        );
    }

    #[tokio::test]
    async fn a_task_leased_but_not_taken_goes_back_to_the_front() {
        let m = Matching::new();
        m.add(key(), task(1));
        m.add(key(), task(2));
        let lease = m.poll(key(), "w", "", 0, Duration::from_millis(10)).await;
        drop(lease);
        let again = m.poll(key(), "w", "", 0, Duration::from_millis(10)).await;
        assert_eq!(again.map(Lease::take), Some(task(1)));
        assert_eq!(m.backlog(&key()), 1);
    }
}
