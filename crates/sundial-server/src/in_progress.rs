//! What runs have in progress, for time skipping: while anything is, virtual time moves only
//! at the wall clock's pace (as the Java test server locks its timer for every outstanding
//! workflow task and activity).

use crate::clock::Clock;
use crate::virtual_clock::Work;
use sundial_engine::ExecutionState;

/// The run's outstanding work: its workflow task (scheduled or started), and its activity
/// attempts that are started or ready to dispatch (an attempt waiting out its retry backoff
/// is not in progress: its retry is a deadline to skip to). Nothing once the run is closed.
pub fn in_progress(state: &ExecutionState, now_ms: i64) -> Work {
    if !state.is_running() {
        return Work::default();
    }
    let activities = state
        .activities
        .iter()
        .filter(|a| a.is_started() || a.attempt_scheduled_time_ms <= now_ms)
        .count();
    Work {
        workflow_task: state.workflow_task.is_some(),
        activities: u32::try_from(activities).unwrap_or(u32::MAX),
    }
}

/// Tells a virtual clock what the run whose state was just installed has in progress;
/// nothing with the wall clock.
pub fn note(clock: &Clock, state: &ExecutionState) {
    if let Some(v) = clock.as_virtual() {
        v.set_work(&state.run_id, in_progress(state, v.now_ms()));
    }
}
