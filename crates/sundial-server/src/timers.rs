//! The timer loop: one ordered index of what is due and one task that sleeps until the next
//! is due, then hands it to the history role.
//!
//! Two kinds of entry: the deadlines of runs (derived from their state) and wake-ups of runs
//! that are out of memory, read from the store's wake index ahead of time
//! (`wakeups.rs`). The loop holds every deadline of the runs in memory and, of the runs out
//! of memory, only those up to the [`Timers::horizon`]: past it, the store's wake index
//! stands for them until the horizon reaches them.
//!
//! With a virtual clock, the earliest entry is the loop's [`Target`], and every change on its
//! way to the loop and every fired entry until its transition is done carries a [`Hold`], so
//! time never skips past an entry the loop has not seen yet.

use crate::clock::{Clock, Hold, Target};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use sundial_engine::{Deadline, DeadlineKind};
use tokio::sync::mpsc;

/// What is due for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// One of its deadlines.
    Deadline(DeadlineKind),
    /// Its entry in the wake index: load it, and its deadlines take over.
    Wake,
}

/// A due entry of one run.
#[derive(Debug)]
pub struct Fired {
    pub run_id: String,
    pub due: Due,
    /// Keeps virtual time still until the entry's transition is done (drop it then).
    pub hold: Hold,
}

/// What the loop is told.
enum Change {
    Add(String, i64, Due, Hold),
    /// The deadline left the run's state, or the run left memory with it past the horizon:
    /// it is forgotten instead of firing.
    Cancel(String, i64, Due, Hold),
}

/// One entry of the index: due time, what, whose.
type Entry = (i64, Due, String);

/// Handle to add deadlines to the loop.
#[derive(Clone)]
pub struct Timers {
    changes: mpsc::UnboundedSender<Change>,
    /// Entries in the index (for metrics), updated by the loop.
    pending: Arc<AtomicUsize>,
    /// Wake-ups in the index, updated by the loop.
    wakes: Arc<AtomicUsize>,
    /// See [`Timers::horizon`].
    horizon: Arc<AtomicI64>,
    clock: Clock,
}

impl Timers {
    /// Starts the loop; due entries come out of the returned receiver.
    pub fn start(clock: Clock) -> (Timers, mpsc::UnboundedReceiver<Fired>) {
        let (changes, mut incoming) = mpsc::unbounded_channel::<Change>();
        let (fired_tx, fired_rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let wakes = Arc::new(AtomicUsize::new(0));
        let (count, wake_count) = (pending.clone(), wakes.clone());
        let loop_clock = clock.clone();
        tokio::spawn(async move {
            let clock = loop_clock;
            let mut index: BTreeSet<Entry> = BTreeSet::new();
            let mut wakes_held = 0usize;
            let mut target: Target = clock.target();
            // Holds of changes applied, released once the target reflects them.
            let mut applied: Vec<Hold> = Vec::new();
            // Applies one change; tells whether it added (+1) or removed (-1) a wake-up.
            let apply = |index: &mut BTreeSet<Entry>, applied: &mut Vec<Hold>, change| {
                let (changed, due, sign) = match change {
                    Change::Add(run_id, at_ms, due, hold) => {
                        applied.push(hold);
                        (index.insert((at_ms, due, run_id)), due, 1isize)
                    }
                    Change::Cancel(run_id, at_ms, due, hold) => {
                        applied.push(hold);
                        (index.remove(&(at_ms, due, run_id)), due, -1)
                    }
                };
                match (changed, due) {
                    (true, Due::Wake) => sign,
                    _ => 0,
                }
            };
            loop {
                let now = clock.now_ms();
                while let Some(first) = index.first() {
                    if first.0 > now {
                        break;
                    }
                    let Some((_, due, run_id)) = index.pop_first() else {
                        break;
                    };
                    if due == Due::Wake {
                        wakes_held = wakes_held.saturating_sub(1);
                    }
                    let fired = Fired {
                        run_id,
                        due,
                        hold: clock.hold(),
                    };
                    if fired_tx.send(fired).is_err() {
                        return;
                    }
                }
                count.store(index.len(), Ordering::Relaxed);
                wake_count.store(wakes_held, Ordering::Relaxed);
                let next = index.first().map(|(at_ms, _, _)| *at_ms);
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
                            let mut delta = apply(&mut index, &mut applied, change);
                            while let Ok(change) = incoming.try_recv() {
                                delta += apply(&mut index, &mut applied, change);
                            }
                            wakes_held = wakes_held.saturating_add_signed(delta);
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
                wakes,
                horizon: Arc::new(AtomicI64::new(i64::MIN)),
                clock,
            },
            fired_rx,
        )
    }

    /// Entries waiting to fire (as of the loop's last turn).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Wake-ups waiting to fire (as of the loop's last turn).
    pub fn wakes_pending(&self) -> usize {
        self.wakes.load(Ordering::Relaxed)
    }

    pub fn add(&self, run_id: &str, deadline: Deadline) {
        self.send_add(run_id, deadline.at_ms, Due::Deadline(deadline.kind));
    }

    /// Forgets a deadline the run no longer has (or keeps only in the store, past the
    /// horizon).
    pub fn cancel(&self, run_id: &str, deadline: Deadline) {
        let hold = self.clock.hold();
        let _ = self.changes.send(Change::Cancel(
            run_id.to_string(),
            deadline.at_ms,
            Due::Deadline(deadline.kind),
            hold,
        ));
    }

    /// Loads the run at `at_ms` (its entry in the wake index).
    pub fn wake(&self, run_id: &str, at_ms: i64) {
        self.send_add(run_id, at_ms, Due::Wake);
    }

    fn send_add(&self, run_id: &str, at_ms: i64, due: Due) {
        let hold = self.clock.hold();
        let _ = self
            .changes
            .send(Change::Add(run_id.to_string(), at_ms, due, hold));
    }

    /// Up to this time (Unix ms) the loop holds what is due for every running run, in
    /// memory or not: the wake index has been read that far. A run leaving memory takes its
    /// deadlines past the horizon out of the loop; the index brings the run back in time.
    /// Never decreases.
    pub fn horizon(&self) -> i64 {
        self.horizon.load(Ordering::SeqCst)
    }

    /// Moves the horizon to `at_ms` (before the index is read up to it).
    pub fn advance_horizon(&self, at_ms: i64) {
        self.horizon.fetch_max(at_ms, Ordering::SeqCst);
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

    #[tokio::test]
    async fn a_wake_up_fires_once_and_is_counted_until_then() {
        let (timers, mut fired) = Timers::start(Clock::Wall);
        let at = crate::clock::wall_ms() + 50;
        timers.wake("a", at);
        timers.wake("a", at);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(timers.wakes_pending(), 1, "one entry per run and time");
        let first = tokio::time::timeout(std::time::Duration::from_secs(2), fired.recv()).await;
        let first = first.unwrap().unwrap();
        assert_eq!((first.run_id.as_str(), first.due), ("a", Due::Wake));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(fired.try_recv().is_err(), "a wake-up fired twice");
        assert_eq!(timers.wakes_pending(), 0);
    }

    #[test]
    fn the_horizon_only_moves_forward() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let (timers, _fired) = Timers::start(Clock::Wall);
        assert_eq!(timers.horizon(), i64::MIN);
        timers.advance_horizon(10);
        timers.advance_horizon(5);
        assert_eq!(timers.horizon(), 10);
    }
}
