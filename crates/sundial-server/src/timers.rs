//! The timer loop: one ordered index of deadlines and one task that sleeps until the next is
//! due, then hands it to the history role. Deadlines are derived from execution state, so the
//! index is rebuilt at start-up and never persisted on its own.
//!
//! With a virtual clock, the earliest deadline is the loop's [`Target`], and every change on
//! its way to the loop and every fired deadline until its transition is done carries a
//! [`Hold`], so time never skips past a deadline the loop has not seen yet.

use crate::clock::{Clock, Hold, Target};
use std::collections::BTreeSet;
use sundial_engine::{Deadline, DeadlineKind};
use tokio::sync::mpsc;

/// A due deadline of one run.
#[derive(Debug)]
pub struct Fired {
    pub run_id: String,
    pub kind: DeadlineKind,
    /// Keeps virtual time still until the deadline's transition is done (drop it then).
    pub hold: Hold,
}

/// What the loop is told.
enum Change {
    Add(String, Deadline, Hold),
    /// The deadline left the run's state: it is forgotten instead of firing stale.
    Cancel(String, Deadline, Hold),
}

/// Handle to add deadlines to the loop.
#[derive(Clone)]
pub struct Timers {
    changes: mpsc::UnboundedSender<Change>,
    /// Deadlines in the index (for metrics), updated by the loop.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    clock: Clock,
}

impl Timers {
    /// Starts the loop; due deadlines come out of the returned receiver.
    pub fn start(clock: Clock) -> (Timers, mpsc::UnboundedReceiver<Fired>) {
        let (changes, mut incoming) = mpsc::unbounded_channel::<Change>();
        let (fired_tx, fired_rx) = mpsc::unbounded_channel();
        let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = pending.clone();
        let loop_clock = clock.clone();
        tokio::spawn(async move {
            let clock = loop_clock;
            // Ordered by due time; one entry per (deadline, run).
            let mut index: BTreeSet<(Deadline, String)> = BTreeSet::new();
            let mut target: Target = clock.target();
            // Holds of changes applied, released once the target reflects them.
            let mut applied: Vec<Hold> = Vec::new();
            let apply = |index: &mut BTreeSet<(Deadline, String)>,
                         applied: &mut Vec<Hold>,
                         change: Change| match change {
                Change::Add(run_id, deadline, hold) => {
                    index.insert((deadline, run_id));
                    applied.push(hold);
                }
                Change::Cancel(run_id, deadline, hold) => {
                    index.remove(&(deadline, run_id));
                    applied.push(hold);
                }
            };
            loop {
                let now = clock.now_ms();
                while let Some(first) = index.first() {
                    if first.0.at_ms > now {
                        break;
                    }
                    let Some((deadline, run_id)) = index.pop_first() else {
                        break;
                    };
                    let fired = Fired {
                        run_id,
                        kind: deadline.kind,
                        hold: clock.hold(),
                    };
                    if fired_tx.send(fired).is_err() {
                        return;
                    }
                }
                count.store(index.len(), std::sync::atomic::Ordering::Relaxed);
                let next = index.first().map(|(d, _)| d.at_ms);
                target.set(next);
                applied.clear();
                let sleep = async {
                    match next {
                        Some(at_ms) => clock.wait_until(at_ms).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    change = incoming.recv() => match change {
                        Some(change) => {
                            apply(&mut index, &mut applied, change);
                            while let Ok(change) = incoming.try_recv() {
                                apply(&mut index, &mut applied, change);
                            }
                        }
                        None => return,
                    },
                    _ = sleep => {}
                }
            }
        });
        (
            Timers {
                changes,
                pending,
                clock,
            },
            fired_rx,
        )
    }

    /// Deadlines waiting to fire (as of the loop's last turn).
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn add(&self, run_id: &str, deadline: Deadline) {
        let hold = self.clock.hold();
        let _ = self
            .changes
            .send(Change::Add(run_id.to_string(), deadline, hold));
    }

    /// Forgets a deadline the run no longer has.
    pub fn cancel(&self, run_id: &str, deadline: Deadline) {
        let hold = self.clock.hold();
        let _ = self
            .changes
            .send(Change::Cancel(run_id.to_string(), deadline, hold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancelled_deadline_is_forgotten_and_never_fires() {
        let (timers, mut fired) = Timers::start(Clock::Wall);
        let soon = Deadline {
            at_ms: crate::clock::wall_ms() + 50,
            kind: DeadlineKind::WorkflowRunTimeout,
        };
        let year = Deadline {
            at_ms: crate::clock::wall_ms() + 365 * 86_400_000,
            ..soon
        };
        timers.add("a", soon);
        timers.add("b", soon);
        timers.add("c", year);
        timers.cancel("a", soon);
        timers.cancel("c", year);
        let first = tokio::time::timeout(std::time::Duration::from_secs(2), fired.recv()).await;
        assert_eq!(first.unwrap().unwrap().run_id, "b");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(fired.try_recv().is_err(), "a cancelled deadline fired");
        assert_eq!(timers.pending(), 0, "the year-long deadline is still held");
    }
}
