//! The wake reader: reads the store's wake index ahead of time into the timer loop, so that
//! a run out of memory is loaded when something of its own is due, and a sleeping run costs
//! a row on disk instead of memory.
//!
//! Invariant: for every running run out of memory, either the timer loop holds an entry
//! that fires no later than its earliest deadline (a deadline kept because it was within the
//! horizon when the run left, or a wake-up read from the index), or its index entry lies past
//! what has been read, so a later step finds it.
//!
//! Each step picks a target time (a minute ahead by default, nearer when the index is dense there),
//! moves the loop's horizon to it, and only then reads every entry up to it. A run leaving
//! memory after the horizon moved keeps its deadlines up to the target in the loop; a run
//! that left before had committed its entry, which the read, coming after, finds.

use super::History;
use crate::error::ServiceError;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;
use sundial_store::WakeKey;

/// Entries one read returns at most; a step whose target holds more is cut short.
const PAGE: usize = 4096;
/// Wake-ups in the timer loop beyond which the reader waits for some to fire.
const MAX_WAKES_HELD: usize = 65_536;
/// Pause between steps once the reader is ahead.
const STEP_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before the next step while more is due than one step reads.
const BEHIND_INTERVAL: Duration = Duration::from_millis(20);
/// Pause after a failed read.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How far the index has been read.
struct Cursor {
    /// The slot ranges this server owns.
    slots: Vec<RangeInclusive<u32>>,
    /// Every entry due at or before this time has been handed to the loop.
    read_to: i64,
}

impl Cursor {
    /// The key after which unread entries start.
    fn after(&self) -> Option<WakeKey> {
        (self.read_to != i64::MIN).then(|| WakeKey {
            at_ms: self.read_to.saturating_add(1),
            run_id: String::new(),
        })
    }
}

/// What one step did.
enum Step {
    /// Read up to the target asked for.
    Done,
    /// More is due than one step takes: step again soon.
    Behind,
}

impl History {
    /// Reads the wake index once up to the lookahead (for the whole index with a virtual
    /// clock, which never moves past what the loop holds) and keeps reading it as time
    /// goes by.
    pub(super) async fn start_wake_reader(&self) -> Result<(), ServiceError> {
        let mut cursor = Cursor {
            slots: self.ownership.owned_slots(),
            read_to: i64::MIN,
        };
        if self.clock.as_virtual().is_some() {
            // Time jumps straight to the loop's next entry: everything must be in it, so
            // nothing leaves it either.
            self.timers.advance_horizon(i64::MAX);
            while let Step::Behind = self.read_wakeups(&mut cursor, i64::MAX - 1, false).await? {}
            return Ok(());
        }
        let target = self.wake_target();
        self.read_wakeups(&mut cursor, target, true).await?;
        let me = Arc::downgrade(&self.me()?);
        tokio::spawn(async move {
            loop {
                let Some(history) = me.upgrade() else { return };
                let target = history.wake_target();
                let pause = match history.read_wakeups(&mut cursor, target, true).await {
                    Ok(Step::Done) => STEP_INTERVAL,
                    Ok(Step::Behind) => BEHIND_INTERVAL,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the wake index failed; retrying");
                        RETRY_INTERVAL
                    }
                };
                drop(history);
                tokio::time::sleep(pause).await;
            }
        });
        Ok(())
    }

    /// How far the reader reads now: the clock plus the configured lookahead.
    fn wake_target(&self) -> i64 {
        let lookahead = self
            .wake_lookahead_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        self.clock.now_ms().saturating_add(lookahead)
    }

    /// One step of the reader towards `target`: reads at most about [`PAGE`] entries past
    /// the cursor (more only when they share one millisecond) and hands the runs not in
    /// memory to the timer loop as wake-ups. `paced` (the wall clock): first moves the
    /// horizon to the time it reads up to, and reads nothing while the loop holds
    /// [`MAX_WAKES_HELD`] wake-ups.
    async fn read_wakeups(
        &self,
        cursor: &mut Cursor,
        target: i64,
        paced: bool,
    ) -> Result<Step, ServiceError> {
        if cursor.read_to >= target {
            return Ok(Step::Done);
        }
        if paced && self.timers.wakes_pending() >= MAX_WAKES_HELD {
            return Ok(Step::Behind);
        }
        let after = cursor.after();
        let mut until = target;
        let mut cut_short = false;
        for slots in &cursor.slots {
            let probe = self
                .store
                .load_wakeups(slots.clone(), after.as_ref(), until, PAGE)
                .await?;
            if probe.len() == PAGE
                && let Some(last) = probe.last()
            {
                until = until.min(last.at_ms);
                cut_short = true;
            }
        }
        if paced {
            self.timers.advance_horizon(until);
        }
        for slots in &cursor.slots {
            let mut from = after.clone();
            loop {
                let page = self
                    .store
                    .load_wakeups(slots.clone(), from.as_ref(), until, PAGE)
                    .await?;
                {
                    // A run in memory has every deadline in the loop already.
                    let runs = self.runs.lock();
                    for key in page.iter().filter(|k| !runs.contains_key(&k.run_id)) {
                        self.timers.wake(&key.run_id, key.at_ms);
                    }
                }
                if page.len() < PAGE {
                    break;
                }
                from = page.last().cloned();
            }
        }
        cursor.read_to = until;
        Ok(match cut_short || until < target {
            true => Step::Behind,
            false => Step::Done,
        })
    }
}
