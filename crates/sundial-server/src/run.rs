//! One run in memory: its cached state and history ([`RunEntry`]) behind the lock of its
//! handle ([`RunHandle`]). The history driver (`history.rs`) is the only writer of an entry:
//! whoever holds the lock carries out the run's current transition.

use crate::run_events::RunEvents;
use crate::updates::UpdateRegistry;
use std::collections::HashSet;
use std::sync::Arc;
use sundial_engine::{Deadline, Effect, ExecutionState, Wake};
use sundial_store::{RESUME_AT_START, RowVersion};
use tokio::sync::watch;

/// One run's cached state and history. Guarded by its handle's lock.
pub struct RunEntry {
    pub state: ExecutionState,
    /// The run's history, encoded; loaded from the store on first use.
    pub events: RunEvents,
    /// What the store holds of this run: the version its next write expects. Events with ids
    /// from `persisted.next_event_id` on exist only in memory (a started task not yet
    /// committed).
    pub(crate) persisted: RowVersion,
    /// Deadlines already handed to the timer loop.
    pub(crate) registered: HashSet<Deadline>,
    /// Updates admitted and not yet accepted or rejected (memory only).
    pub updates: parking_lot::Mutex<UpdateRegistry>,
    /// The run is closed and its removal from the cache is scheduled.
    pub(crate) eviction_scheduled: bool,
    /// The run is in the history driver's queue of idle runs (candidates for eviction).
    pub(crate) idle_queued: bool,
    /// A transition that committed nothing changed the state (it differs from the store's
    /// until the next commit).
    pub(crate) unsaved: bool,
}

/// The handle of one run: its lock and a signal that fires on every change.
pub struct RunHandle {
    pub run_id: String,
    pub namespace: String,
    pub workflow_id: String,
    pub(crate) entry: Arc<tokio::sync::Mutex<RunEntry>>,
    pub(crate) progress: watch::Sender<i64>,
}

/// The run's lock, held by whoever carries out its current transition.
pub(crate) type EntryGuard = tokio::sync::OwnedMutexGuard<RunEntry>;

/// The version a state as this server writes it has (it was just committed).
pub(crate) fn stored_version(state: &ExecutionState) -> RowVersion {
    RowVersion {
        version: state.state_transition_count,
        next_event_id: state.next_event_id,
        status: state.status,
        wake_at: wake_column(state),
    }
}

/// The state's entry in the store's wake index ([`sundial_store::ExecutionRow::wake_at`]),
/// as the engine decides it ([`ExecutionState::wake`]).
pub(crate) fn wake_column(state: &ExecutionState) -> Option<i64> {
    match state.wake() {
        Wake::AtStart => Some(RESUME_AT_START),
        Wake::At(at_ms) => Some(at_ms),
        Wake::OnDemand => None,
    }
}

impl RunEntry {
    /// One past the last event that is in the store: history readers see only these, so a
    /// client is never shown an event a crash could take back.
    pub fn committed_next_event_id(&self) -> i64 {
        self.persisted.next_event_id
    }

    /// Whether the entry holds nothing that lives only in memory, so that dropping it and
    /// loading the run from the store again gives the same entry: a running run whose
    /// workflow task, if any, is written and not started (unwritten attempts, speculative
    /// tasks and started events live here); whose ready work is only
    /// tasks already in their queues (which name the run by id and load it when a poller
    /// takes them), not work for other runs; with no admitted update and nothing a
    /// transition changed without committing, its wake index entry included (a run written
    /// before the index existed stays until its next write). While it is out of memory, the
    /// timer loop keeps its deadlines up to the horizon (all of them when its entry is "at
    /// start") and the wake index stands for the rest.
    pub(crate) fn is_idle(&self, now_ms: i64) -> bool {
        self.state.is_running()
            && self
                .state
                .workflow_task
                .as_ref()
                .is_none_or(|wt| !wt.is_started() && !wt.unwritten && !wt.speculative)
            && !self.unsaved
            && self.persisted == stored_version(&self.state)
            && self.updates.lock().is_empty()
            && self.state.ready_tasks(now_ms).iter().all(|effect| {
                matches!(
                    effect,
                    Effect::DispatchWorkflowTask { .. } | Effect::DispatchActivityTask { .. }
                )
            })
    }
}

impl RunHandle {
    /// The handle of a run this server just committed as `state`.
    pub(crate) fn new(state: ExecutionState, events: RunEvents) -> Arc<RunHandle> {
        RunHandle::loaded(stored_version(&state), state, events)
    }

    /// The handle of a run the store holds at version `persisted` with `state`. Its
    /// deadlines are not registered yet.
    pub(crate) fn loaded(
        persisted: RowVersion,
        state: ExecutionState,
        events: RunEvents,
    ) -> Arc<RunHandle> {
        let next = state.next_event_id;
        let closed = !state.is_running();
        Arc::new(RunHandle {
            run_id: state.run_id.clone(),
            namespace: state.namespace.clone(),
            workflow_id: state.workflow_id.clone(),
            progress: watch::channel(next).0,
            entry: Arc::new(tokio::sync::Mutex::new(RunEntry {
                events,
                persisted,
                registered: HashSet::new(),
                updates: parking_lot::Mutex::new(Default::default()),
                eviction_scheduled: closed,
                idle_queued: false,
                unsaved: false,
                state,
            })),
        })
    }

    /// The entry of a handle nobody else can see yet (just created).
    pub(crate) fn fresh_entry(&self) -> EntryGuard {
        self.entry
            .clone()
            .try_lock_owned()
            .expect("a new handle is not shared yet")
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.progress.subscribe()
    }

    /// Wakes everyone waiting on this run (after in-memory changes such as update outcomes).
    pub fn notify(&self) {
        self.progress.send_modify(|_| {});
    }
}
