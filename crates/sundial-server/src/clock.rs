//! The server's clock, read in one place so the engine never reads it itself.
//!
//! Production servers read the wall clock ([`Clock::Wall`]: a system-time read, nothing
//! else). The time-skipping test server reads a [`VirtualClock`] instead: wall time plus an
//! offset that jumps forward to the next deadline whenever nothing is in progress. Everything
//! in the server that waits for a time to come (the timer loop, schedules, the test service's
//! sleeps) waits through [`Clock::wait_until`] and says what it waits for with a [`Target`],
//! and everything that is working towards new deadlines says so with a [`Hold`]; with the wall
//! clock both are inert.

use crate::virtual_clock::VirtualClock;
use std::sync::Arc;

pub use crate::wall_clock::wall_ms;

/// Where the server reads the time. Cheap to clone and to read.
#[derive(Clone, Default)]
pub enum Clock {
    /// The system clock (production).
    #[default]
    Wall,
    /// Virtual time that skips ahead when the server is idle (the test server).
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// A new virtual clock, time skipping locked once (as the test server starts).
    pub fn new_virtual() -> Clock {
        Clock::Virtual(VirtualClock::new())
    }

    /// Current time in Unix milliseconds.
    #[inline]
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::Wall => wall_ms(),
            Clock::Virtual(v) => v.now_ms(),
        }
    }

    /// The virtual clock, when time may skip.
    pub fn as_virtual(&self) -> Option<&Arc<VirtualClock>> {
        match self {
            Clock::Wall => None,
            Clock::Virtual(v) => Some(v),
        }
    }

    /// Keeps time from skipping until dropped: taken by whatever is about to act on the
    /// present (a deadline that fired, a deadline change not yet seen by the timer loop, work
    /// for another run in flight).
    pub fn hold(&self) -> Hold {
        Hold(self.as_virtual().map(|v| {
            v.add_hold();
            v.clone()
        }))
    }

    /// A time its owner will wait for (none yet): skipping jumps no further than the earliest
    /// target, and a target that is due keeps time from skipping until its owner moves it.
    pub fn target(&self) -> Target {
        Target {
            clock: self.as_virtual().cloned(),
            at_ms: None,
        }
    }

    /// Completes once the time is `at_ms` or later. Virtual time moves with the wall clock
    /// between jumps, so this also completes when the wall clock gets there.
    pub async fn wait_until(&self, at_ms: i64) {
        match self {
            Clock::Wall => {
                let ms = at_ms.saturating_sub(wall_ms());
                if ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
                }
            }
            Clock::Virtual(v) => v.wait_until(at_ms).await,
        }
    }
}

/// Keeps virtual time from skipping while alive; nothing with the wall clock.
#[must_use = "a hold keeps time from skipping only while it is alive"]
pub struct Hold(Option<Arc<VirtualClock>>);

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hold"
        } else {
            "Hold(wall)"
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            v.release_hold();
        }
    }
}

/// A time someone waits for, registered with the virtual clock while set; nothing with the
/// wall clock. Dropping it forgets the time.
pub struct Target {
    clock: Option<Arc<VirtualClock>>,
    at_ms: Option<i64>,
}

impl Target {
    /// Waits for `at_ms` instead (`None`: for nothing).
    pub fn set(&mut self, at_ms: Option<i64>) {
        if let Some(v) = &self.clock
            && self.at_ms != at_ms
        {
            v.retarget(self.at_ms, at_ms);
            self.at_ms = at_ms;
        }
    }

    /// Marks the target due now: time does not skip until it is set again (its owner is about
    /// to look at what changed).
    pub fn set_due(&mut self) {
        self.set(Some(i64::MIN));
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(v) = &self.clock
            && self.at_ms.is_some()
        {
            v.retarget(self.at_ms, None);
        }
    }
}
