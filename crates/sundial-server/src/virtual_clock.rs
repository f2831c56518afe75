//! Virtual time for the time-skipping test server, after the rule of Temporal's Java test
//! server: time runs at the wall clock's pace, except that when time skipping is unlocked and
//! nothing is in progress, it jumps straight to the earliest time anyone waits for.
//!
//! Invariants:
//! - Virtual time never goes back: it is wall time plus an offset that only grows.
//! - As in the Java test server, one counter decides: the external locks (LockTimeSkipping
//!   minus UnlockTimeSkipping, 1 at start) plus the internal ones (live holds, and one per
//!   outstanding workflow task and activity attempt: [`crate::in_progress`]). The sum never
//!   goes below zero: an unlock that would make it negative fails. An unlock may thus take
//!   back an internal lock (an activity that sleeps the test environment lets time skip
//!   while it runs), as in Java; unlike Java, the next workflow task or activity attempt to
//!   finish pays that back instead of lowering the sum, so the debt never outlives the work
//!   it was taken from (holds come and go around it and pay nothing back).
//! - A jump happens only while that sum is zero and the earliest target lies in the future.
//!   It lands exactly on that target, which is then due: time stays there until the target's
//!   owner has acted and moved it.
//! - The skip rule is evaluated, under one mutex, every time one of its inputs goes down or a
//!   target moves, so no idle moment is missed and no jump races a change.

use crate::wall_clock::wall_ms;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::watch;

/// The lock counter of time skipping went below zero (more unlocks than locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbalanced;

impl std::fmt::Display for Unbalanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unbalanced lock and unlock calls: time skipping is not locked")
    }
}

impl std::error::Error for Unbalanced {}

/// What one run has in progress: each item is an internal lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// A workflow task is scheduled or started.
    pub workflow_task: bool,
    /// Activity attempts started or ready to dispatch.
    pub activities: u32,
}

impl Work {
    fn count(self) -> i64 {
        i64::from(self.workflow_task) + i64::from(self.activities)
    }

    /// How many items of `self` are gone in `now`.
    fn finished_since(self, now: Work) -> i64 {
        i64::from(self.workflow_task && !now.workflow_task)
            + i64::from(self.activities.saturating_sub(now.activities))
    }
}

/// What decides whether time may skip.
#[derive(Default)]
struct Skip {
    /// LockTimeSkipping minus UnlockTimeSkipping (1 at start); negative when unlocks took
    /// back internal locks. Invariant: `external + internal() >= 0`.
    external: i64,
    /// Live [`crate::clock::Hold`]s.
    holds: u64,
    /// What each run with work outstanding has outstanding.
    busy: HashMap<String, Work>,
    /// The sum of `busy`'s counts.
    busy_total: i64,
    /// Times waited for, with how many wait for each.
    targets: BTreeMap<i64, usize>,
}

impl Skip {
    fn internal(&self) -> i64 {
        (self.holds as i64).saturating_add(self.busy_total)
    }

    fn count(&self) -> i64 {
        self.external.saturating_add(self.internal())
    }

    /// After `n` workflow tasks or activity attempts finished: each pays back an unlock
    /// that took an internal lock, if any is left.
    fn finished(&mut self, n: i64) {
        self.external = (self.external + n).min(0).max(self.external);
    }
}

/// A clock whose time is wall time plus a growing offset (see the module invariants).
pub struct VirtualClock {
    /// Virtual minus wall time, in ms.
    offset_ms: AtomicI64,
    skip: Mutex<Skip>,
    /// Bumped at every jump, to wake waiters.
    jumps: watch::Sender<u64>,
}

impl VirtualClock {
    /// A clock at wall time, with time skipping locked once (the test server starts locked;
    /// the SDKs unlock it while they wait for a result).
    pub fn new() -> Arc<VirtualClock> {
        Arc::new(VirtualClock {
            offset_ms: AtomicI64::new(0),
            skip: Mutex::new(Skip {
                external: 1,
                ..Skip::default()
            }),
            jumps: watch::Sender::new(0),
        })
    }

    /// Current virtual time in Unix milliseconds.
    #[inline]
    pub fn now_ms(&self) -> i64 {
        wall_ms().saturating_add(self.offset_ms.load(Ordering::Acquire))
    }

    /// LockTimeSkipping: one more lock.
    pub fn lock(&self) {
        let mut skip = self.skip.lock();
        skip.external = skip.external.saturating_add(1);
    }

    /// UnlockTimeSkipping: one lock fewer; time may skip once none is left, external or
    /// internal. Fails when none is left.
    pub fn unlock(&self) -> Result<(), Unbalanced> {
        let mut skip = self.skip.lock();
        if skip.count() <= 0 {
            return Err(Unbalanced);
        }
        skip.external -= 1;
        self.maybe_skip(&mut skip);
        Ok(())
    }

    /// The lock counter: external plus internal locks.
    pub fn locks(&self) -> i64 {
        self.skip.lock().count()
    }

    pub(crate) fn add_hold(&self) {
        self.skip.lock().holds += 1;
    }

    pub(crate) fn release_hold(&self) {
        let mut skip = self.skip.lock();
        skip.holds = skip.holds.saturating_sub(1);
        self.maybe_skip(&mut skip);
    }

    /// Moves one waiter's target from `from` to `to`.
    pub(crate) fn retarget(&self, from: Option<i64>, to: Option<i64>) {
        let mut skip = self.skip.lock();
        if let Some(at) = from
            && let Some(count) = skip.targets.get_mut(&at)
        {
            *count -= 1;
            if *count == 0 {
                skip.targets.remove(&at);
            }
        }
        if let Some(at) = to {
            *skip.targets.entry(at).or_insert(0) += 1;
        }
        self.maybe_skip(&mut skip);
    }

    /// Records what run `run_id` has in progress now (see [`crate::in_progress`]).
    pub fn set_work(&self, run_id: &str, work: Work) {
        let mut skip = self.skip.lock();
        let before = skip.busy.get(run_id).copied().unwrap_or_default();
        if before == work {
            return;
        }
        if work == Work::default() {
            skip.busy.remove(run_id);
        } else {
            skip.busy.insert(run_id.to_string(), work);
        }
        skip.busy_total += work.count() - before.count();
        skip.finished(before.finished_since(work));
        self.maybe_skip(&mut skip);
    }

    /// Completes once virtual time is `at_ms` or later, by a jump or by the wall clock.
    pub async fn wait_until(&self, at_ms: i64) {
        let mut jumps = self.jumps.subscribe();
        loop {
            let now = self.now_ms();
            if now >= at_ms {
                return;
            }
            let wall_wait = std::time::Duration::from_millis((at_ms - now) as u64);
            tokio::select! {
                _ = jumps.changed() => {}
                _ = tokio::time::sleep(wall_wait) => {}
            }
        }
    }

    /// Jumps to the earliest target if nothing keeps time from skipping.
    fn maybe_skip(&self, skip: &mut Skip) {
        if skip.count() > 0 {
            return;
        }
        let Some((&first, _)) = skip.targets.first_key_value() else {
            return;
        };
        let now = self.now_ms();
        if first <= now {
            return;
        }
        self.offset_ms.fetch_add(first - now, Ordering::AcqRel);
        tracing::debug!(
            to_ms = first,
            skipped_ms = first - now,
            "virtual time skipped"
        );
        self.jumps.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    const DAY: i64 = 86_400_000;
    const ONE_TASK: Work = Work {
        workflow_task: true,
        activities: 0,
    };
    const ONE_ACTIVITY: Work = Work {
        workflow_task: false,
        activities: 1,
    };

    #[tokio::test]
    async fn time_jumps_to_the_earliest_target_only_when_unlocked_and_idle() {
        let clock = Clock::new_virtual();
        let v = clock.as_virtual().unwrap().clone();
        let start = clock.now_ms();
        let mut far = clock.target();
        far.set(Some(start + 30 * DAY));
        let mut near = clock.target();
        near.set(Some(start + DAY));
        assert!(clock.now_ms() < start + DAY, "skipped while locked");
        v.set_work("run", ONE_TASK);
        v.unlock().unwrap();
        assert!(clock.now_ms() < start + DAY, "skipped while a run is busy");
        v.set_work("run", Work::default());
        let now = clock.now_ms();
        assert!(
            now >= start + DAY && now < start + DAY + 1000,
            "no jump to the first target"
        );
        // The due target keeps time where it is until its owner moves it.
        let hold = clock.hold();
        near.set(None);
        assert!(clock.now_ms() < start + 2 * DAY, "skipped under a hold");
        drop(hold);
        assert!(clock.now_ms() >= start + 30 * DAY);
        assert_eq!(v.unlock().err(), Some(Unbalanced));
        far.set(None);
    }

    #[test]
    fn an_unlock_may_take_back_an_internal_lock_as_in_java() {
        let clock = Clock::new_virtual();
        let v = clock.as_virtual().unwrap().clone();
        let start = clock.now_ms();
        let mut target = clock.target();
        target.set(Some(start + DAY));
        v.unlock().unwrap();
        v.set_work("run", ONE_ACTIVITY);
        assert_eq!(v.locks(), 1);
        // The activity sleeps the test environment: time skips while it still runs.
        v.unlock().unwrap();
        assert!(clock.now_ms() >= start + DAY);
        assert_eq!(v.unlock().err(), Some(Unbalanced));
        // A hold coming and going pays nothing back.
        drop(clock.hold());
        assert_eq!(v.locks(), 0);
        // The activity times out and a workflow task follows: the finished activity pays the
        // taken lock back, so time stays still while the workflow task is outstanding.
        v.set_work("run", ONE_TASK);
        assert_eq!(v.locks(), 1);
        v.set_work("run", Work::default());
        assert_eq!(v.locks(), 0);
        v.lock();
        assert_eq!(v.locks(), 1);
    }

    #[tokio::test]
    async fn a_waiter_wakes_at_the_jump() {
        let clock = Clock::new_virtual();
        let v = clock.as_virtual().unwrap().clone();
        let at = clock.now_ms() + 365 * DAY;
        let mut target = clock.target();
        target.set(Some(at));
        let waiter = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.wait_until(at).await })
        };
        v.unlock().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
            .await
            .expect("the waiter did not wake")
            .unwrap();
        assert!(clock.now_ms() >= at);
    }

    #[test]
    fn the_wall_clock_ignores_holds_and_targets() {
        let clock = Clock::Wall;
        let _hold = clock.hold();
        let mut target = clock.target();
        target.set(Some(0));
        assert!(clock.as_virtual().is_none());
        assert!((clock.now_ms() - wall_ms()).abs() < 1000);
    }
}
