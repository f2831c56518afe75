//! The timer loop: one ordered index of deadlines and one task that sleeps until the next is
//! due, then hands it to the history role. Deadlines are derived from execution state, so the
//! index is rebuilt at start-up and never persisted on its own.

use std::collections::BTreeMap;
use sundial_engine::{Deadline, DeadlineKind};
use tokio::sync::mpsc;

/// A due deadline of one run.
#[derive(Debug, Clone)]
pub struct Fired {
    pub run_id: String,
    pub kind: DeadlineKind,
}

/// Handle to add deadlines to the loop.
#[derive(Clone)]
pub struct Timers {
    add: mpsc::UnboundedSender<(String, Deadline)>,
    /// Deadlines in the index (for metrics), updated by the loop.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Timers {
    /// Starts the loop; due deadlines come out of the returned receiver.
    pub fn start(now_ms: fn() -> i64) -> (Timers, mpsc::UnboundedReceiver<Fired>) {
        let (add, mut incoming) = mpsc::unbounded_channel::<(String, Deadline)>();
        let (fired_tx, fired_rx) = mpsc::unbounded_channel();
        let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = pending.clone();
        tokio::spawn(async move {
            let mut index: BTreeMap<(i64, u64), (String, DeadlineKind)> = BTreeMap::new();
            let mut seq = 0u64;
            loop {
                let now = now_ms();
                while let Some(entry) = index.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let (run_id, kind) = entry.remove();
                    if fired_tx.send(Fired { run_id, kind }).is_err() {
                        return;
                    }
                }
                count.store(index.len(), std::sync::atomic::Ordering::Relaxed);
                let sleep_ms = index.keys().next().map(|(at, _)| (at - now).max(0) as u64);
                let sleep = async {
                    match sleep_ms {
                        Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    added = incoming.recv() => match added {
                        Some((run_id, deadline)) => {
                            seq += 1;
                            index.insert((deadline.at_ms, seq), (run_id, deadline.kind));
                            while let Ok((run_id, deadline)) = incoming.try_recv() {
                                seq += 1;
                                index.insert((deadline.at_ms, seq), (run_id, deadline.kind));
                            }
                        }
                        None => return,
                    },
                    _ = sleep => {}
                }
            }
        });
        (Timers { add, pending }, fired_rx)
    }

    /// Deadlines waiting to fire (as of the loop's last turn).
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn add(&self, run_id: &str, deadline: Deadline) {
        let _ = self.add.send((run_id.to_string(), deadline));
    }
}
