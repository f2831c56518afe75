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

/// Workflow tasks and activity tasks of the same queue name are separate queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Workflow,
    Activity,
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
    /// Workflow tasks: dispatch sequence. Activities: attempt. Queries: the query id.
    pub seq_or_attempt: i64,
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

#[derive(Default)]
struct Queue {
    tasks: VecDeque<QueuedTask>,
    pollers: VecDeque<oneshot::Sender<Lease>>,
    /// Identity and last poll time (ms) of recent pollers.
    poller_seen: HashMap<String, i64>,
}

/// All task queues of the server.
#[derive(Default)]
pub struct Matching {
    queues: Mutex<HashMap<QueueKey, Queue>>,
    me: Mutex<Weak<Matching>>,
    /// Set at shutdown: polls answer empty at once instead of waiting.
    closed: std::sync::atomic::AtomicBool,
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
            match poller.send(lease) {
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

    /// Waits up to `wait` for a task. `None` when nothing came in time. The task returns to
    /// the front of its queue if the lease is dropped without [`Lease::take`] (the poller went
    /// away before the task was started).
    pub async fn poll(
        &self,
        key: QueueKey,
        identity: &str,
        now_ms: i64,
        wait: Duration,
    ) -> Option<Lease> {
        let receiver = {
            let mut queues = self.queues.lock();
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return None;
            }
            let queue = queues.entry(key.clone()).or_default();
            queue.poller_seen.insert(identity.to_string(), now_ms);
            if let Some(task) = queue.tasks.pop_front() {
                return Some(self.lease(&key, task));
            }
            queue.pollers.retain(|p| !p.is_closed());
            let (tx, rx) = oneshot::channel();
            queue.pollers.push_back(tx);
            rx
        };
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(lease)) => Some(lease),
            _ => None,
        }
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
                let waiting = q.pollers.iter().filter(|p| !p.is_closed()).count();
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
        }
    }

    #[tokio::test]
    async fn queued_task_goes_to_next_poller() {
        let m = Matching::new();
        m.add(key(), task(1));
        let got = m.poll(key(), "w", 0, Duration::from_millis(10)).await;
        assert_eq!(got.map(Lease::take), Some(task(1)));
        let none = m.poll(key(), "w", 0, Duration::from_millis(10)).await;
        assert!(none.is_none());
    }

    #[tokio::test]
    async fn waiting_poller_gets_new_task() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", 0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        m.add(key(), task(2));
        assert_eq!(poll.await.unwrap().map(Lease::take), Some(task(2)));
    }

    #[tokio::test]
    async fn close_answers_waiting_and_later_polls() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", 0, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            m.summary(),
            vec![("ns".to_string(), TaskKind::Activity, 0, 1)]
        );
        m.close();
        assert!(poll.await.unwrap().is_none());
        let later = tokio::time::timeout(
            Duration::from_secs(1),
            m.poll(key(), "w", 0, Duration::from_secs(30)),
        );
        assert!(later.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn task_sent_to_vanished_poller_is_requeued() {
        let m = Matching::new();
        let m2 = m.clone();
        let poll =
            tokio::spawn(async move { m2.poll(key(), "w", 0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        poll.abort();
        let _ = poll.await;
        m.add(key(), task(3));
        assert_eq!(m.backlog(&key()), 1);
    }

    #[tokio::test]
    async fn a_task_leased_but_not_taken_goes_back_to_the_front() {
        let m = Matching::new();
        m.add(key(), task(1));
        m.add(key(), task(2));
        let lease = m.poll(key(), "w", 0, Duration::from_millis(10)).await;
        drop(lease);
        let again = m.poll(key(), "w", 0, Duration::from_millis(10)).await;
        assert_eq!(again.map(Lease::take), Some(task(1)));
        assert_eq!(m.backlog(&key()), 1);
    }
}
