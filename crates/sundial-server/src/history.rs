//! The history role: owns the executions. Each run has one handle whose lock makes it the
//! run's single writer; a transition is computed on a copy of the state, committed, and only
//! then installed, followed by its effects (task dispatch, deadlines) and the reply.
//!
//! Invariant: what a run's entry holds is what the store holds, plus at most the started
//! markers of tasks that need no commit (see `sundial_engine::state`). Once a commit is queued,
//! committing it and installing its outcome run to the end in a task of their own
//! ([`run_detached`]), whether or not the caller still waits; a failed commit installs
//! nothing, and a write the store refuses as stale (a version conflict) reloads the run from
//! the store.

use crate::clock::{Clock, Hold};
use crate::detached::run_detached;
use crate::error::ServiceError;
use crate::matching::{Lease, Matching, QueueKey, QueuedTask, TaskKind};
use crate::run::{EntryGuard, RunEntry, RunHandle, stored_version, wake_column};
use crate::run_events::RunEvents;
use crate::timers::{Due, Timers};
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use sundial_engine::api::enums::v1::WorkflowExecutionStatus;
use sundial_engine::api::history::v1::HistoryEvent;
use sundial_engine::api::workflowservice::v1::StartWorkflowExecutionRequest;
use sundial_engine::start_policy::{self, StartDecision};
use sundial_engine::{
    Deadline, Effect, EngineError, ExecutionState, Inputs, Limits, Persist, Signal, StartParams,
    Transition, WorkflowTaskRef,
};
use sundial_store::{
    Durability, EventRow, ExecutionRow, RowVersion, ShardFence, Store, StoreError, WriteBatch,
};
use tokio::sync::mpsc;

mod reset_run;
mod wakeups;
pub use reset_run::ResetRequest;

/// How long a closed run stays cached after it closed.
const CLOSED_RUN_CACHE_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a sticky queue whose worker shut down is remembered.
const GONE_STICKY_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);

/// Number of locks that serialise starts of the same workflow id.
const START_LOCK_SHARDS: usize = 64;
/// Runs kept in memory unless configured otherwise (`history.hostLevelCacheMaxSize`).
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// How far ahead the wake index is read unless configured otherwise.
pub const DEFAULT_WAKE_LOOKAHEAD: std::time::Duration = std::time::Duration::from_secs(60);
/// Idle runs one change may evict: eviction keeps pace with loading without a long pause.
const EVICTIONS_PER_CHANGE: usize = 4;
/// Runs read per page at start-up ([`History::recover`]).
const RESUME_PAGE: usize = 1000;
/// How soon idle runs that were in use are looked at again.
const CACHE_SWEEP_DELAY: std::time::Duration = std::time::Duration::from_millis(50);
/// How many more ids than cached runs the idle queue may hold before it is pruned.
const IDLE_QUEUE_SLACK: usize = 1024;
/// Evictions after which freed memory is handed back to the system, at most once per
/// [`TRIM_INTERVAL`].
const TRIM_AFTER_EVICTIONS: usize = 1024;
const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Idle runs one sweep may look at.
const CACHE_SWEEP_BUDGET: usize = 4096;

/// What to do about the workflow id's latest run before starting a new one.
enum Existing {
    Done(Box<StartOutcome>),
    Signal(Arc<RunHandle>),
    /// Attach the start to the running run (USE_EXISTING with `on_conflict_options`).
    Attach(Arc<RunHandle>),
    Terminate(Arc<RunHandle>),
    Start,
}

/// A transition's result, ready to install once committed.
struct Outcome {
    state: ExecutionState,
    /// New events as (event id, encoding).
    encoded: Vec<(i64, Vec<u8>)>,
    effects: Vec<Effect>,
}

/// A run created by a commit (a start, or the next run of a chain).
struct NewRun {
    state: ExecutionState,
    events: Vec<(i64, Vec<u8>)>,
    effects: Vec<Effect>,
    /// Update-with-start: the update, admitted before the first workflow task can be taken,
    /// so that task delivers it.
    initial_update: Option<sundial_engine::api::update::v1::Request>,
}

/// What a start request came to.
pub struct StartOutcome {
    pub run_id: String,
    pub started: bool,
    /// The first workflow task, already started, when eager start was requested.
    pub eager_task: Option<sundial_engine::api::workflowservice::v1::PollWorkflowTaskQueueResponse>,
}

pub struct History {
    store: Arc<dyn Store>,
    runs: Mutex<HashMap<String, Arc<RunHandle>>>,
    latest: Mutex<HashMap<(String, String), String>>,
    start_locks: Vec<Arc<tokio::sync::Mutex<()>>>,
    matching: Arc<Matching>,
    timers: Timers,
    /// Thresholds passed to every transition.
    pub limits: Limits,
    /// Itself, for effects that run as tasks of their own.
    me: std::sync::OnceLock<std::sync::Weak<History>>,
    /// Sticky queues whose worker said it shut down: their tasks go to the normal queue.
    /// Remembered for [`GONE_STICKY_MEMORY`] after the ShutdownWorker: later dispatches to a
    /// forgotten one time out on it (sticky schedule-to-start) and move to the normal queue.
    gone_sticky_queues: Mutex<HashMap<(String, String), std::time::Instant>>,
    /// Search attribute registry; builds visibility records.
    pub visibility: Arc<crate::visibility::SearchAttributes>,
    /// Told about every run that closes, once, after the close is committed.
    close_listener: std::sync::OnceLock<CloseListener>,
    /// Where committed transitions leave work for other runs ([`CrossRunWork`]).
    cross_run: mpsc::UnboundedSender<CrossRunWork>,
    /// The other end, until the cross-run worker takes it ([`History::take_cross_run_queue`]).
    cross_run_queue: Mutex<Option<mpsc::UnboundedReceiver<CrossRunWork>>>,
    /// Where transitions read the time.
    clock: Clock,
    /// The shards this server writes, and the fence of each write.
    ownership: Arc<crate::ownership::Ownership>,
    /// How many runs `runs` may hold before idle ones are evicted.
    cache_limit: std::sync::atomic::AtomicUsize,
    /// How far ahead of the clock the wake index is read, in ms (`wakeups.rs`).
    wake_lookahead_ms: std::sync::atomic::AtomicI64,
    /// Running runs that were idle ([`RunEntry::is_idle`]) when last changed or loaded,
    /// oldest first: the candidates for eviction. Each is queued at most once
    /// (`RunEntry::idle_queued`).
    idle: Mutex<std::collections::VecDeque<String>>,
    /// A sweep of the idle queue is on its way ([`History::schedule_sweep`]).
    sweep_scheduled: std::sync::atomic::AtomicBool,
    /// Runs evicted since freed memory was last handed back ([`History::release_freed_memory`]).
    evicted_since_trim: std::sync::atomic::AtomicUsize,
    last_trim: Mutex<std::time::Instant>,
    /// The least dispatch number of the workflow tasks this process starts
    /// ([`Inputs::task_seq_floor`]): its start time in microseconds, above every number an
    /// earlier process handed out (a dispatch takes longer than that).
    task_seq_floor: i64,
}

/// What an attempt to evict an idle run found.
enum Eviction {
    /// Out of memory now.
    Evicted,
    /// No longer cached, or no longer idle: it leaves the idle queue.
    Settled,
    /// In use right now (locked, or its handle held or watched): try again later.
    Busy,
}

/// Work a committed transition left for another run (start a child, signal or cancel an
/// external workflow, tell a parent its child closed, apply a parent close policy): one of the
/// run's effects, carried out by the cross-run worker (`outbound.rs`), which reports the
/// outcome back to `run_id` as a transition of its own.
#[derive(Debug)]
pub struct CrossRunWork {
    pub run_id: String,
    pub effect: Effect,
    /// Keeps virtual time still until the work is carried out (drop it then).
    pub hold: Hold,
}

/// Called with the state of a run that just closed (see [`History::on_close`]).
pub type CloseListener = Box<dyn Fn(&ExecutionState) + Send + Sync>;

/// A new run id: a UUID (version 7) that starts with its creation time, so the store's
/// tables keyed by run id (history, executions, visibility) grow at their end instead of
/// dirtying a random page per insert.
fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Adds one run's state and new events (event id, encoding) to a batch: a new run when
/// `previous` is `None`, else the write that replaces version `previous`.
fn add_run(
    batch: &mut WriteBatch,
    state: &ExecutionState,
    previous: Option<RowVersion>,
    events: impl Iterator<Item = (i64, Vec<u8>)>,
) {
    batch.executions.push(ExecutionRow {
        namespace: state.namespace.clone(),
        workflow_id: state.workflow_id.clone(),
        run_id: state.run_id.clone(),
        status: state.status,
        next_event_id: state.next_event_id,
        version: state.state_transition_count,
        previous,
        state: state.encode_to_vec(),
        wake_at: wake_column(state),
    });
    batch.events.extend(events.map(|(event_id, data)| EventRow {
        run_id: state.run_id.clone(),
        event_id,
        data,
    }));
}

/// Events as (event id, encoding): what both the store and the run's cache keep.
fn encode_all(events: &[HistoryEvent]) -> Vec<(i64, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.event_id, e.encode_to_vec()))
        .collect()
}

fn decode_state(row: &ExecutionRow) -> Result<ExecutionState, ServiceError> {
    ExecutionState::decode(row.state.as_slice())
        .map_err(|e| ServiceError::Internal(format!("corrupt state of run {}: {e}", row.run_id)))
}

/// A loaded row as the version the store holds and its state.
fn decode_row(row: &ExecutionRow) -> Result<(RowVersion, ExecutionState), ServiceError> {
    Ok((row.written_version(), decode_state(row)?))
}

impl History {
    pub fn new(
        store: Arc<dyn Store>,
        matching: Arc<Matching>,
        timers: Timers,
        limits: Limits,
        visibility: Arc<crate::visibility::SearchAttributes>,
        clock: Clock,
        ownership: Arc<crate::ownership::Ownership>,
    ) -> Arc<History> {
        let (cross_run, cross_run_queue) = mpsc::unbounded_channel();
        let history = Arc::new(History {
            cross_run,
            cross_run_queue: Mutex::new(Some(cross_run_queue)),
            store,
            runs: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            start_locks: (0..START_LOCK_SHARDS)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            matching,
            timers,
            limits,
            me: std::sync::OnceLock::new(),
            gone_sticky_queues: Mutex::new(HashMap::new()),
            visibility,
            close_listener: std::sync::OnceLock::new(),
            clock,
            ownership,
            cache_limit: std::sync::atomic::AtomicUsize::new(DEFAULT_CACHE_SIZE),
            wake_lookahead_ms: std::sync::atomic::AtomicI64::new(
                DEFAULT_WAKE_LOOKAHEAD.as_millis() as i64,
            ),
            idle: Mutex::new(std::collections::VecDeque::new()),
            sweep_scheduled: std::sync::atomic::AtomicBool::new(false),
            evicted_since_trim: std::sync::atomic::AtomicUsize::new(0),
            last_trim: Mutex::new(std::time::Instant::now()),
            task_seq_floor: i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros(),
            )
            .unwrap_or(i64::MAX),
        });
        let _ = history.me.set(Arc::downgrade(&history));
        history
    }

    /// Sets how many runs stay in memory (at least 1); idle running runs beyond it are
    /// evicted, oldest idle first, and loaded again by whatever needs them next.
    pub fn limit_cache(&self, runs: usize) {
        self.cache_limit
            .store(runs.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets how far ahead of the clock the wake index is read (at least 1 ms): the longer,
    /// the more sleeping runs' deadlines stay in memory after they leave it; the shorter,
    /// the more often the index is read.
    pub fn set_wake_lookahead(&self, lookahead: std::time::Duration) {
        let ms = i64::try_from(lookahead.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        self.wake_lookahead_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The timer loop's handle.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Runs in memory (running and recently closed).
    pub fn cached_runs(&self) -> usize {
        self.runs.lock().len()
    }

    /// Where the server reads the time.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The fence for writing the rows of `namespace` named `id` (see [`crate::ownership`]).
    pub fn fence(&self, namespace: &str, id: &str) -> Result<ShardFence, ServiceError> {
        self.ownership.fence(namespace, id)
    }

    /// The queue of work for other runs, for the one worker that carries it out (`None` once
    /// taken).
    pub fn take_cross_run_queue(&self) -> Option<mpsc::UnboundedReceiver<CrossRunWork>> {
        self.cross_run_queue.lock().take()
    }

    /// Resumes running executions after a start: the runs with work to hand out are loaded,
    /// a page of [`RESUME_PAGE`] at a time (their deadlines go back to the timer loop and
    /// their ready tasks back to the queues, after which those whose only work is queued
    /// tasks may leave memory again, so a large backlog is read but not held), and the wake
    /// index is read ahead of time for the others, which stay in the store until something
    /// of theirs is due or a request names them. Returns how many were loaded.
    pub async fn recover(&self) -> Result<usize, ServiceError> {
        const _: () =
            assert!(WorkflowExecutionStatus::Running as i32 == sundial_store::RUNNING_STATUS);
        let mut count = 0;
        for slots in self.ownership.owned_slots() {
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .store
                    .load_runs_to_resume(slots.clone(), after.as_deref(), RESUME_PAGE)
                    .await?;
                let full = page.len() == RESUME_PAGE;
                after = page.last().map(|row| row.run_id.clone());
                count += page.len();
                for row in page {
                    let (persisted, state) = decode_row(&row)?;
                    let handle = RunHandle::loaded(persisted, state, RunEvents::unloaded());
                    let mut entry = handle.fresh_entry();
                    self.install(&handle);
                    let ready = entry.state.ready_tasks(self.clock.now_ms());
                    self.after_change(&handle, &mut entry, ready);
                }
                if !full {
                    break;
                }
            }
        }
        self.start_wake_reader().await?;
        Ok(count)
    }

    /// Itself, to hand work to tasks of their own.
    fn me(&self) -> Result<Arc<History>, ServiceError> {
        self.me
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| ServiceError::Unavailable("the server is shutting down".into()))
    }

    /// Replaces a run's entry with what the store holds (after the store refused a write as
    /// stale): the state, its version, its ready tasks and deadlines.
    async fn reload(&self, handle: &RunHandle, entry: &mut RunEntry) -> Result<(), ServiceError> {
        let row = self
            .store
            .load_execution(&handle.namespace, &handle.workflow_id, Some(&handle.run_id))
            .await?
            .ok_or_else(|| Self::not_found(&handle.workflow_id, Some(&handle.run_id)))?;
        let (persisted, state) = decode_row(&row)?;
        tracing::warn!(run_id = %handle.run_id, "run reloaded from the store after a refused write");
        entry.persisted = persisted;
        entry.unsaved = false;
        entry.state = state;
        entry.events = RunEvents::unloaded();
        let ready = entry.state.ready_tasks(self.clock.now_ms());
        self.after_change(handle, entry, ready);
        Ok(())
    }

    fn install(&self, handle: &Arc<RunHandle>) {
        self.runs
            .lock()
            .insert(handle.run_id.clone(), handle.clone());
        self.latest.lock().insert(
            (handle.namespace.clone(), handle.workflow_id.clone()),
            handle.run_id.clone(),
        );
    }

    fn not_found(workflow_id: &str, run_id: Option<&str>) -> ServiceError {
        match run_id {
            Some(run_id) => ServiceError::NotFound(format!(
                "workflow execution not found for workflow ID \"{workflow_id}\" and run ID \"{run_id}\""
            )),
            None => ServiceError::NotFound(format!("workflow not found for ID: {workflow_id}")),
        }
    }

    /// The handle of a run (`run_id`), or of the workflow id's latest run.
    pub async fn handle(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Arc<RunHandle>, ServiceError> {
        let run_id = run_id.filter(|r| !r.is_empty());
        let cached = match run_id {
            Some(run_id) => self.runs.lock().get(run_id).cloned(),
            None => {
                let latest = self
                    .latest
                    .lock()
                    .get(&(namespace.to_string(), workflow_id.to_string()))
                    .cloned();
                latest.and_then(|run_id| self.runs.lock().get(&run_id).cloned())
            }
        };
        if let Some(handle) = cached {
            if handle.namespace != namespace || handle.workflow_id != workflow_id {
                return Err(Self::not_found(workflow_id, run_id));
            }
            return Ok(handle);
        }
        let Some(row) = self
            .store
            .load_execution(namespace, workflow_id, run_id)
            .await?
        else {
            return Err(Self::not_found(workflow_id, run_id));
        };
        let (persisted, state) = decode_row(&row)?;
        Ok(self.cache_loaded(persisted, state, run_id.is_none()))
    }

    /// Puts a run loaded from the store (at version `persisted`) into the cache unless
    /// another load already did, as the workflow id's latest run when `latest`. A closed run
    /// leaves again after a grace period; a running one has its deadlines registered (the
    /// loop kept only those up to the horizon) and joins the idle queue, as it was idle when
    /// evicted.
    fn cache_loaded(
        &self,
        persisted: RowVersion,
        state: ExecutionState,
        latest: bool,
    ) -> Arc<RunHandle> {
        let run_id = state.run_id.clone();
        let running = state.is_running();
        if !running {
            self.schedule_eviction(&run_id);
        }
        let (handle, inserted) = {
            let mut runs = self.runs.lock();
            let mut inserted = false;
            let handle = runs
                .entry(run_id.clone())
                .or_insert_with(|| {
                    inserted = true;
                    let handle = RunHandle::loaded(persisted, state, RunEvents::unloaded());
                    if running {
                        let mut entry = handle.fresh_entry();
                        self.sync_deadlines(&handle, &mut entry);
                        entry.idle_queued = true;
                    }
                    handle
                })
                .clone();
            if latest {
                self.latest.lock().insert(
                    (handle.namespace.clone(), handle.workflow_id.clone()),
                    handle.run_id.clone(),
                );
            }
            (handle, inserted)
        };
        if inserted && running {
            self.idle.lock().push_back(run_id);
            self.shrink_cache(EVICTIONS_PER_CHANGE);
        }
        handle
    }

    /// A run by id alone, loaded from the store when it is not in memory (for what knows
    /// only the id: a fired deadline, a queued task, work for another run). `None` when the
    /// store has no such run.
    pub async fn run_by_id(&self, run_id: &str) -> Result<Option<Arc<RunHandle>>, ServiceError> {
        if let Some(handle) = self.runs.lock().get(run_id).cloned() {
            return Ok(Some(handle));
        }
        let Some(row) = self.store.load_run(run_id).await? else {
            return Ok(None);
        };
        let (persisted, state) = decode_row(&row)?;
        Ok(Some(self.cache_loaded(persisted, state, false)))
    }

    /// Queues a run that just became idle as a candidate for eviction, then evicts idle
    /// runs while the cache is over its limit.
    fn note_idle(&self, handle: &RunHandle, entry: &mut RunEntry) {
        if !entry.idle_queued && entry.is_idle(self.clock.now_ms()) {
            entry.idle_queued = true;
            let mut idle = self.idle.lock();
            idle.push_back(handle.run_id.clone());
            // Runs that closed and left (or were deleted) stay queued until looked at; while
            // the cache is under its limit nobody looks, so forget them now and then.
            if idle.len() > IDLE_QUEUE_SLACK {
                let runs = self.runs.lock();
                if idle.len() > runs.len() + IDLE_QUEUE_SLACK {
                    idle.retain(|run_id| runs.contains_key(run_id));
                }
            }
        }
        self.shrink_cache(EVICTIONS_PER_CHANGE);
    }

    /// Evicts up to `budget` idle runs while more than the limit are cached, each candidate
    /// looked at once per call. Candidates in use right now go back to the queue, and a
    /// sweep shortly after tries again (the run that just became idle is always in use by
    /// the change that made it so).
    fn shrink_cache(&self, budget: usize) {
        let limit = self.cache_limit.load(std::sync::atomic::Ordering::Relaxed);
        let candidates = self.idle.lock().len().min(budget);
        let mut retry = false;
        let mut evicted = 0;
        for _ in 0..candidates {
            if self.runs.lock().len() <= limit {
                break;
            }
            let Some(run_id) = self.idle.lock().pop_front() else {
                break;
            };
            match self.try_evict(&run_id) {
                Eviction::Busy => {
                    self.idle.lock().push_back(run_id);
                    retry = true;
                }
                Eviction::Evicted => evicted += 1,
                Eviction::Settled => {}
            }
        }
        if retry || (self.runs.lock().len() > limit && !self.idle.lock().is_empty()) {
            self.schedule_sweep();
        }
        self.release_freed_memory(evicted);
    }

    /// Hands memory freed by evictions back to the system now and then: glibc's allocator
    /// keeps freed chunks inside its heaps, so without this the resident size would stay at
    /// its peak however many runs left the cache.
    fn release_freed_memory(&self, evicted: usize) {
        use std::sync::atomic::Ordering;
        let since = self
            .evicted_since_trim
            .fetch_add(evicted, Ordering::Relaxed)
            + evicted;
        if since < TRIM_AFTER_EVICTIONS {
            return;
        }
        let mut last = self.last_trim.lock();
        if last.elapsed() < TRIM_INTERVAL {
            return;
        }
        *last = std::time::Instant::now();
        self.evicted_since_trim.store(0, Ordering::Relaxed);
        // Off the caller's path: this runs inside a change, and trimming a large heap takes
        // milliseconds.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only returns free memory of the allocator's heaps to the
            // system; it takes no pointers and is safe to call from any thread at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    }

    /// Runs [`History::shrink_cache`] again in a moment (once, however often asked).
    fn schedule_sweep(&self) {
        use std::sync::atomic::Ordering;
        if self.sweep_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(history) = self.me() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(CACHE_SWEEP_DELAY).await;
            history.sweep_scheduled.store(false, Ordering::Release);
            history.shrink_cache(CACHE_SWEEP_BUDGET);
        });
    }

    /// Drops an idle run from memory. Only a run nobody holds, locks or watches can go, so
    /// no second copy of it can appear: whoever needs it next loads it from the store, under
    /// the cache's lock, into the one handle everyone then shares.
    fn try_evict(&self, run_id: &str) -> Eviction {
        let mut runs = self.runs.lock();
        let Some(handle) = runs.get(run_id) else {
            return Eviction::Settled;
        };
        if Arc::strong_count(handle) > 1 || handle.progress.receiver_count() > 0 {
            return Eviction::Busy;
        }
        {
            let Ok(mut entry) = handle.entry.try_lock() else {
                return Eviction::Busy;
            };
            entry.idle_queued = false;
            if !entry.is_idle(self.clock.now_ms()) {
                return Eviction::Settled;
            }
            // Past the horizon the wake index stands for the run, unless its entry is "at
            // start" (a task in a queue): only start-up reads those, so the loop keeps all
            // of its deadlines.
            if entry.persisted.wake_at != Some(sundial_store::RESUME_AT_START) {
                let horizon = self.timers.horizon();
                for deadline in entry.registered.iter().filter(|d| d.at_ms > horizon) {
                    self.timers.cancel(run_id, *deadline);
                }
            }
        }
        let Some(handle) = runs.remove(run_id) else {
            return Eviction::Settled;
        };
        let key = (handle.namespace.clone(), handle.workflow_id.clone());
        let mut latest = self.latest.lock();
        if latest.get(&key).is_some_and(|r| r == run_id) {
            latest.remove(&key);
        }
        Eviction::Evicted
    }

    async fn ensure_events(&self, entry: &mut RunEntry) -> Result<(), ServiceError> {
        if entry.events.is_loaded() {
            return Ok(());
        }
        let rows = self.store.load_events(&entry.state.run_id, 1).await?;
        entry.events.load(rows);
        Ok(())
    }

    /// Reads a run's entry with its history loaded.
    pub async fn read<T>(
        &self,
        handle: &RunHandle,
        f: impl FnOnce(&RunEntry) -> T,
    ) -> Result<T, ServiceError> {
        let mut entry = handle.entry.lock().await;
        self.ensure_events(&mut entry).await?;
        Ok(f(&entry))
    }

    /// Runs one transition on `handle`: compute on a copy, commit, install, perform effects.
    /// `finish` builds the reply from the installed entry, still under the run's lock.
    ///
    /// The caller may give up at any point: before the transition is computed nothing has
    /// happened; after, commit, install and `finish` are carried out regardless.
    pub async fn transition<R, T>(
        &self,
        handle: &Arc<RunHandle>,
        op: impl FnOnce(&mut Transition<'_>) -> Result<R, EngineError>,
        finish: impl FnOnce(&RunEntry, R) -> T + Send + 'static,
    ) -> Result<T, ServiceError>
    where
        R: Send + 'static,
        T: Send + 'static,
    {
        self.transition_with(handle, |_, t| op(t), finish).await
    }

    /// Like [`History::transition`], with the run's entry visible to `op` (for in-memory
    /// bookkeeping that goes with the transition, such as admitted updates).
    pub async fn transition_with<R, T>(
        &self,
        handle: &Arc<RunHandle>,
        op: impl FnOnce(&RunEntry, &mut Transition<'_>) -> Result<R, EngineError>,
        finish: impl FnOnce(&RunEntry, R) -> T + Send + 'static,
    ) -> Result<T, ServiceError>
    where
        R: Send + 'static,
        T: Send + 'static,
    {
        self.run_transition(handle, op, finish, None).await
    }

    /// The one path of every transition. `creates` is a run to create in the same commit,
    /// with the start lock of its workflow id (released once it is installed).
    async fn run_transition<R, T>(
        &self,
        handle: &Arc<RunHandle>,
        op: impl FnOnce(&RunEntry, &mut Transition<'_>) -> Result<R, EngineError>,
        finish: impl FnOnce(&RunEntry, R) -> T + Send + 'static,
        creates: Option<(NewRun, tokio::sync::OwnedMutexGuard<()>)>,
    ) -> Result<T, ServiceError>
    where
        R: Send + 'static,
        T: Send + 'static,
    {
        let mut entry = handle.entry.clone().lock_owned().await;
        // Virtual time stands still until everything below is installed (a closing run and
        // the next run of its chain are installed one after the other).
        let in_flight = self.clock.hold();
        self.ensure_events(&mut entry).await?;
        let mut state = entry.state.clone();
        let now = self.clock.now_ms();
        let inputs = Inputs {
            now,
            limits: self.limits,
            new_run_id: new_run_id(),
            pending_update_ids: entry.updates.lock().waiting_ids(),
            task_seq_floor: self.task_seq_floor,
        };
        let mut t = Transition::with_inputs(&mut state, inputs);
        let result = op(&entry, &mut t)?;
        let decided = t.finish()?;
        if decided.terminated_by_history_limit {
            tracing::warn!(run_id = %handle.run_id, "history limit exceeded: workflow terminated");
        }
        let persist = decided.persist;
        // A run that continues (continue-as-new, retry) is created in the same commit.
        let next = decided.next_run.map(|next| NewRun {
            events: encode_all(&next.events),
            state: next.state,
            effects: next.effects,
            initial_update: None,
        });
        let (next, start_guard) = match creates {
            Some((run, guard)) => (Some(run), Some(guard)),
            None => (next, None),
        };
        let outcome = Outcome {
            state,
            encoded: encode_all(&decided.events),
            effects: decided.effects,
        };
        if persist == Persist::Nothing && next.is_none() {
            // Nothing to commit: installed at once, with no await before the reply.
            entry.unsaved |= outcome.state != entry.state;
            self.install_outcome(handle, &mut entry, outcome);
            return Ok(finish(&entry, result));
        }
        let mut batch = WriteBatch {
            durability: match (persist, &next) {
                (Persist::Written, None) => Durability::Written,
                _ => Durability::Synced,
            },
            fence: Some(self.fence(&handle.namespace, &handle.workflow_id)?),
            ..WriteBatch::default()
        };
        let persisted = entry.persisted.next_event_id;
        let unsaved = (persisted..).zip(
            entry
                .events
                .encoded(persisted, i64::MAX)
                .map(<[u8]>::to_vec),
        );
        add_run(
            &mut batch,
            &outcome.state,
            Some(entry.persisted),
            unsaved.chain(outcome.encoded.iter().cloned()),
        );
        let before = &entry.state;
        let after = &outcome.state;
        if before.status != after.status
            || before.search_attributes != after.search_attributes
            || before.memo != after.memo
        {
            batch.visibility.push(self.visibility.row(after));
        }
        if let Some(next) = &next {
            add_run(&mut batch, &next.state, None, next.events.iter().cloned());
            batch.visibility.push(self.visibility.row(&next.state));
        }
        let history = self.me()?;
        let handle = handle.clone();
        run_detached(async move {
            let _start_guard = start_guard;
            let _in_flight = in_flight;
            if let Err(e) = history.commit(batch).await {
                if matches!(e, ServiceError::Conflict(_)) {
                    history.reload(&handle, &mut entry).await?;
                }
                return Err(e);
            }
            entry.persisted = stored_version(&outcome.state);
            entry.unsaved = false;
            history.install_outcome(&handle, &mut entry, outcome);
            // The next run is findable before the closed one's lock is released, so a start
            // of the same workflow id that waited on that lock sees it running.
            if let Some(next) = next {
                history.install_new_run(next);
            }
            Ok(finish(&entry, result))
        })
        .await
    }

    /// Puts a transition's outcome in place: state, events, deadlines, tasks, wake-ups.
    fn install_outcome(&self, handle: &RunHandle, entry: &mut RunEntry, outcome: Outcome) {
        entry.state = outcome.state;
        for (event_id, data) in outcome.encoded {
            entry.events.push(event_id, data);
        }
        self.after_change(handle, entry, outcome.effects);
    }

    /// Makes a committed new run findable and performs its first effects.
    fn install_new_run(&self, run: NewRun) -> (Arc<RunHandle>, EntryGuard) {
        let handle = RunHandle::new(run.state, RunEvents::from_encoded(run.events));
        let mut entry = handle.fresh_entry();
        if let Some(update) = run.initial_update {
            entry.updates.lock().admit(update);
        }
        self.install(&handle);
        self.after_change(&handle, &mut entry, run.effects);
        (handle, entry)
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), ServiceError> {
        let result = self
            .store
            .commit(batch)
            .await
            .unwrap_or(Err(StoreError::Closed));
        Ok(result?)
    }

    /// Hands the timer loop the deadlines the run's state has and takes back those it no
    /// longer has.
    fn sync_deadlines(&self, handle: &RunHandle, entry: &mut RunEntry) {
        let deadlines = entry.state.deadlines();
        entry.registered.retain(|d| {
            let kept = deadlines.contains(d);
            if !kept {
                self.timers.cancel(&handle.run_id, *d);
            }
            kept
        });
        for deadline in deadlines {
            if entry.registered.insert(deadline) {
                self.timers.add(&handle.run_id, deadline);
            }
        }
    }

    fn after_change(&self, handle: &RunHandle, entry: &mut RunEntry, effects: Vec<Effect>) {
        self.sync_deadlines(handle, entry);
        for effect in effects {
            self.dispatch(&handle.namespace, &handle.run_id, effect);
        }
        // Last, after the deadlines and tasks above are registered.
        crate::in_progress::note(&self.clock, &entry.state);
        handle.progress.send_replace(entry.state.next_event_id);
        if !entry.state.is_running() && !entry.eviction_scheduled {
            entry.eviction_scheduled = true;
            self.schedule_eviction(&handle.run_id);
            if let Some(listener) = self.close_listener.get() {
                listener(&entry.state);
            }
        }
        self.note_idle(handle, entry);
    }

    /// Registers the one listener told about runs as they close (the scheduler's).
    pub fn on_close(&self, listener: CloseListener) {
        let _ = self.close_listener.set(listener);
    }

    /// A closed run leaves the cache after a grace period (clients usually read its result
    /// right away); later reads load it from the store again.
    fn schedule_eviction(&self, run_id: &str) {
        let Some(history) = self.me.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(CLOSED_RUN_CACHE_TIME).await;
            let removed = history.runs.lock().remove(&run_id);
            if let Some(handle) = removed {
                let key = (handle.namespace.clone(), handle.workflow_id.clone());
                let mut latest = history.latest.lock();
                if latest.get(&key) == Some(&run_id) {
                    latest.remove(&key);
                }
            }
        });
    }

    /// ShutdownWorker named its sticky queue: tasks waiting there, and later ones, are offered on
    /// their workflow's normal queue.
    pub fn sticky_queue_gone(&self, namespace: &str, queue: &str) {
        {
            let mut gone = self.gone_sticky_queues.lock();
            let now = std::time::Instant::now();
            gone.retain(|_, at| now.duration_since(*at) < GONE_STICKY_MEMORY);
            gone.insert((namespace.to_string(), queue.to_string()), now);
        }
        let key = QueueKey {
            namespace: namespace.to_string(),
            name: queue.to_string(),
            kind: TaskKind::Workflow,
        };
        for task in self.matching.drain(&key) {
            self.redirect(task.run_id, task.seq_or_attempt);
        }
    }

    fn redirect(&self, run_id: String, seq: i64) {
        let Some(history) = self.me.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        tokio::spawn(async move {
            let Ok(Some(handle)) = history.run_by_id(&run_id).await else {
                return;
            };
            let task = WorkflowTaskRef {
                scheduled_event_id: 0,
                seq,
            };
            let _ = history
                .transition(
                    &handle,
                    |t| {
                        t.redirect_to_normal_queue(task);
                        Ok(())
                    },
                    |_, ()| (),
                )
                .await;
        });
    }

    fn dispatch(&self, namespace: &str, run_id: &str, effect: Effect) {
        let mut namespace = namespace;
        let mut nexus_cancel = false;
        let (name, kind, scheduled_event_id, seq_or_attempt) = match &effect {
            Effect::DispatchWorkflowTask {
                task_queue,
                scheduled_event_id,
                seq,
            } => {
                let gone = self
                    .gone_sticky_queues
                    .lock()
                    .contains_key(&(namespace.to_string(), task_queue.clone()));
                if gone {
                    self.redirect(run_id.to_string(), *seq);
                    return;
                }
                (
                    task_queue.clone(),
                    TaskKind::Workflow,
                    *scheduled_event_id,
                    *seq,
                )
            }
            Effect::DispatchActivityTask {
                task_queue,
                scheduled_event_id,
                attempt,
            } => (
                task_queue.clone(),
                TaskKind::Activity,
                *scheduled_event_id,
                i64::from(*attempt),
            ),
            Effect::DispatchNexusTask {
                namespace: target_namespace,
                task_queue,
                scheduled_event_id,
                cancel,
                attempt,
            } => {
                namespace = target_namespace;
                nexus_cancel = *cancel;
                (
                    task_queue.clone(),
                    TaskKind::Nexus,
                    *scheduled_event_id,
                    i64::from(*attempt),
                )
            }
            _ => {
                // Work for another run: the cross-run worker (`outbound.rs`) carries it out
                // and reports back with a transition of this run. Nobody takes the queue only
                // in unit tests of this module.
                let _ = self.cross_run.send(CrossRunWork {
                    run_id: run_id.to_string(),
                    effect,
                    hold: self.clock.hold(),
                });
                return;
            }
        };
        self.matching.add(
            QueueKey {
                namespace: namespace.to_string(),
                name,
                kind,
            },
            QueuedTask {
                run_id: run_id.to_string(),
                scheduled_event_id,
                seq_or_attempt,
                query: false,
                nexus_cancel,
            },
        );
    }

    fn start_lock(&self, namespace: &str, workflow_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (namespace, workflow_id).hash(&mut hasher);
        self.start_locks[(hasher.finish() as usize) % START_LOCK_SHARDS].clone()
    }

    /// StartWorkflowExecution (and SignalWithStart when `signal` is set), with request-id
    /// idempotency and the id reuse/conflict policies.
    pub async fn start_workflow(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
    ) -> Result<StartOutcome, ServiceError> {
        self.start_inner(req, signal, None, None).await
    }

    /// Update-with-start: a run this creates has `update` admitted before its first workflow
    /// task can be taken; a running run it finds (USE_EXISTING) is left for the caller to
    /// admit the update to.
    pub async fn start_workflow_with_update(
        &self,
        req: &StartWorkflowExecutionRequest,
        update: sundial_engine::api::update::v1::Request,
    ) -> Result<StartOutcome, ServiceError> {
        self.start_inner(req, None, None, Some(update)).await
    }

    /// StartWorkflowExecution for a child workflow (`parent` set) or a plain start.
    ///
    /// Starts of one workflow id are serialised by a lock held until the new run is
    /// installed (also when the caller gives up meanwhile), so two starts never both see "no
    /// running run"; the store's one-running-run rule backs this up.
    pub async fn start_workflow_with_parent(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
        parent: Option<sundial_engine::ParentInfo>,
    ) -> Result<StartOutcome, ServiceError> {
        self.start_inner(req, signal, parent, None).await
    }

    /// The one start path: client starts, signal-with-start, update-with-start and children.
    async fn start_inner(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
        parent: Option<sundial_engine::ParentInfo>,
        update: Option<sundial_engine::api::update::v1::Request>,
    ) -> Result<StartOutcome, ServiceError> {
        sundial_engine::start::validate_start(req)?;
        let guard = self
            .start_lock(&req.namespace, &req.workflow_id)
            .lock_owned()
            .await;
        match self.existing_run_decision(req, signal.is_some()).await? {
            Existing::Done(outcome) => Ok(*outcome),
            Existing::Signal(handle) => {
                let signal = signal.expect("decided on a signal");
                self.transition(&handle, |t| t.signal(signal), |_, ()| ())
                    .await?;
                Ok(StartOutcome {
                    run_id: handle.run_id.clone(),
                    started: false,
                    eager_task: None,
                })
            }
            Existing::Attach(handle) => {
                self.transition(&handle, |t| t.attach_start(req), |_, ()| ())
                    .await?;
                Ok(StartOutcome {
                    run_id: handle.run_id.clone(),
                    started: false,
                    eager_task: None,
                })
            }
            Existing::Terminate(handle) => {
                // The old run's termination and the new run are one commit.
                let run = self.new_run(req, signal, parent, update)?;
                let reason = start_policy::TERMINATED_BY_NEW_START;
                let run_id = run.state.run_id.clone();
                self.run_transition(
                    &handle,
                    |_, t| t.terminate(reason, None, &req.identity),
                    |_, ()| (),
                    Some((run, guard)),
                )
                .await?;
                let eager_task = match req.request_eager_execution {
                    true => {
                        let created = self
                            .handle(&req.namespace, &req.workflow_id, Some(&run_id))
                            .await?;
                        self.read(&created, crate::responses::workflow_task)
                            .await??
                    }
                    false => None,
                };
                Ok(StartOutcome {
                    run_id,
                    started: true,
                    eager_task,
                })
            }
            Existing::Start => {
                let run = self.new_run(req, signal, parent, update)?;
                self.create_run(run, req.request_eager_execution, guard)
                    .await
            }
        }
    }

    /// The start policies' decision ([`start_policy::decide`]) against the workflow id's
    /// current run, resolved to the handle it acts on.
    async fn existing_run_decision(
        &self,
        req: &StartWorkflowExecutionRequest,
        with_signal: bool,
    ) -> Result<Existing, ServiceError> {
        let existing = match self.handle(&req.namespace, &req.workflow_id, None).await {
            Ok(existing) => existing,
            Err(ServiceError::NotFound(_)) => return Ok(Existing::Start),
            Err(e) => return Err(e),
        };
        let entry = existing.entry.lock().await;
        let st = &entry.state;
        if !st.is_running() {
            // It may have just continued as new: its successor is installed before its lock
            // was released, so look again if the latest run changed meanwhile.
            let latest = self
                .latest
                .lock()
                .get(&(req.namespace.clone(), req.workflow_id.clone()))
                .cloned();
            if latest.is_some_and(|l| l != existing.run_id) {
                drop(entry);
                return Box::pin(self.existing_run_decision(req, with_signal)).await;
            }
        }
        let outcome = |started| {
            Existing::Done(Box::new(StartOutcome {
                run_id: st.run_id.clone(),
                started,
                eager_task: None,
            }))
        };
        Ok(match start_policy::decide(req, st, with_signal) {
            StartDecision::Start => Existing::Start,
            StartDecision::Deduplicated => outcome(true),
            StartDecision::UseExisting => outcome(false),
            StartDecision::SignalExisting => Existing::Signal(existing.clone()),
            StartDecision::AttachToExisting => Existing::Attach(existing.clone()),
            StartDecision::TerminateExisting => Existing::Terminate(existing.clone()),
            StartDecision::AlreadyStarted => {
                return Err(ServiceError::AlreadyStarted {
                    workflow_id: st.workflow_id.clone(),
                    run_id: st.run_id.clone(),
                    start_request_id: st.start_request_id.clone(),
                });
            }
        })
    }

    /// The first state, events and effects of a run a start request creates (with the first
    /// workflow task already started when eager start was requested).
    fn new_run(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
        parent: Option<sundial_engine::ParentInfo>,
        initial_update: Option<sundial_engine::api::update::v1::Request>,
    ) -> Result<NewRun, ServiceError> {
        let now = self.clock.now_ms();
        let params = StartParams {
            request: req,
            run_id: new_run_id(),
            now,
            signal,
            continuation: None,
            parent,
        };
        let (state, events, effects) =
            sundial_engine::start::start_execution(params, self.limits, self.task_seq_floor)?;
        Ok(NewRun {
            events: encode_all(&events),
            state,
            effects,
            initial_update,
        })
    }

    /// Commits and installs a new run; `start_guard` (the workflow id's start lock) is
    /// released once it is installed.
    async fn create_run(
        &self,
        run: NewRun,
        eager: bool,
        start_guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<StartOutcome, ServiceError> {
        let mut batch = WriteBatch {
            fence: Some(self.fence(&run.state.namespace, &run.state.workflow_id)?),
            ..WriteBatch::default()
        };
        add_run(&mut batch, &run.state, None, run.events.iter().cloned());
        batch.visibility.push(self.visibility.row(&run.state));
        let history = self.me()?;
        run_detached(async move {
            let _start_guard = start_guard;
            if let Err(e) = history.commit(batch).await {
                if let ServiceError::Conflict(_) = e {
                    return Err(history.running_elsewhere(&run.state).await.unwrap_or(e));
                }
                return Err(e);
            }
            let run_id = run.state.run_id.clone();
            let (_, entry) = history.install_new_run(run);
            let eager_task = if eager {
                crate::responses::workflow_task(&entry)?
            } else {
                None
            };
            Ok(StartOutcome {
                run_id,
                started: true,
                eager_task,
            })
        })
        .await
    }

    /// After the store refused a new run: the running run it holds for the workflow id, as
    /// the error a start reports.
    async fn running_elsewhere(&self, state: &ExecutionState) -> Option<ServiceError> {
        let row = self
            .store
            .load_execution(&state.namespace, &state.workflow_id, None)
            .await
            .ok()??;
        (row.status == sundial_store::RUNNING_STATUS).then(|| ServiceError::AlreadyStarted {
            workflow_id: row.workflow_id,
            run_id: row.run_id,
            start_request_id: String::new(),
        })
    }

    /// Carries out what the timer loop found due: a deadline's transition, or the load of a
    /// run out of memory whose wake index entry came due (its deadlines then take over). A
    /// run out of memory is loaded again for either. On failure it is tried again in 1 s.
    pub async fn fire(&self, run_id: &str, due: Due) {
        let result = match (self.run_by_id(run_id).await, due) {
            (Ok(None), _) | (Ok(Some(_)), Due::Wake) => return,
            (Ok(Some(handle)), Due::Deadline(kind)) => {
                self.transition(
                    &handle,
                    |t| {
                        t.fire_deadline(kind);
                        Ok(())
                    },
                    |_, ()| (),
                )
                .await
            }
            (Err(e), _) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(run_id, ?due, error = %e, "due entry failed; retrying in 1s");
            let timers = self.timers.clone();
            let run = run_id.to_string();
            let clock = self.clock.clone();
            // Virtual time waits for the retry too.
            let hold = self.clock.hold();
            tokio::spawn(async move {
                let _hold = hold;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let at_ms = clock.now_ms();
                match due {
                    Due::Deadline(kind) => timers.add(&run, Deadline { at_ms, kind }),
                    Due::Wake => timers.wake(&run, at_ms),
                }
            });
        }
    }

    /// Waits for a task from a queue and returns the run it belongs to, or `None` on timeout.
    /// The task goes back to its queue unless the caller takes it from the lease (once the
    /// task's start is carried out, or it turned out stale).
    pub async fn next_task(
        &self,
        key: QueueKey,
        identity: &str,
        worker_key: &str,
        wait: std::time::Duration,
    ) -> Option<(Arc<RunHandle>, Lease)> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let remaining = until.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return None;
            }
            let task = self
                .matching
                .poll(
                    key.clone(),
                    identity,
                    worker_key,
                    self.clock.now_ms(),
                    remaining,
                )
                .await?;
            match self.run_by_id(&task.task().run_id).await {
                Ok(Some(handle)) => return Some((handle, task)),
                // The run is gone (deleted): its task is stale.
                Ok(None) => {
                    task.take();
                }
                // The store cannot say now: the task goes back to its queue.
                Err(e) => {
                    tracing::warn!(error = %e, "loading a queued task's run failed");
                    return None;
                }
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// DeleteWorkflowExecution: the run leaves the cache and the store (history, state,
    /// visibility). A running run is terminated first.
    pub async fn delete_run(&self, handle: &Arc<RunHandle>) -> Result<(), ServiceError> {
        let running = self.read(handle, |e| e.state.is_running()).await?;
        if running {
            self.transition(
                handle,
                |t| t.terminate("Delete workflow execution", None, "history-service"),
                |_, ()| (),
            )
            .await?;
        }
        let batch = WriteBatch {
            deleted_runs: vec![handle.run_id.clone()],
            fence: Some(self.fence(&handle.namespace, &handle.workflow_id)?),
            ..Default::default()
        };
        let history = self.me()?;
        let handle = handle.clone();
        run_detached(async move {
            history.commit(batch).await?;
            history.runs.lock().remove(&handle.run_id);
            let key = (handle.namespace.clone(), handle.workflow_id.clone());
            let mut latest = history.latest.lock();
            if latest.get(&key) == Some(&handle.run_id) {
                latest.remove(&key);
            }
            Ok(())
        })
        .await
    }

    pub fn matching(&self) -> &Matching {
        &self.matching
    }

    /// The server's time (Unix ms; virtual under the test server's time skipping).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A history role over `store` (wall clock, default limits, every shard), for unit tests.
#[cfg(test)]
pub(crate) async fn history_over(store: Arc<dyn Store>) -> Arc<History> {
    let (timers, _fired) = Timers::start(Clock::Wall);
    let visibility = Arc::new(
        crate::visibility::SearchAttributes::load(store.clone())
            .await
            .expect("search attributes of the test store"),
    );
    let ownership = Arc::new(
        crate::ownership::Ownership::take_all(&*store, 0)
            .await
            .expect("the test store's shards"),
    );
    History::new(
        store,
        Matching::new(),
        timers,
        Limits::default(),
        visibility,
        Clock::Wall,
        ownership,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use sundial_engine::api::{
        common::v1::WorkflowType, taskqueue::v1::TaskQueue,
        workflowservice::v1::StartWorkflowExecutionRequest,
    };
    use sundial_store::testing::Fault;
    use sundial_store::{FaultyStore, SqliteStore};

    use super::history_over;

    fn start_request(workflow_id: &str) -> StartWorkflowExecutionRequest {
        StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_id: workflow_id.into(),
            workflow_type: Some(WorkflowType { name: "T".into() }),
            task_queue: Some(TaskQueue {
                name: "q".into(),
                ..Default::default()
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        }
    }

    fn signal(n: usize) -> Signal {
        Signal {
            name: format!("s{n}"),
            input: None,
            header: None,
            identity: "test".into(),
            request_id: format!("signal-{n}"),
            external: None,
        }
    }

    async fn signal_run(
        history: &History,
        handle: &Arc<RunHandle>,
        n: usize,
    ) -> Result<(), ServiceError> {
        history
            .transition(handle, move |t| t.signal(signal(n)), |_, ()| ())
            .await
    }

    /// A history over a fault-injecting in-memory store, with one run of workflow "wf" started.
    async fn started_run() -> (Arc<FaultyStore>, Arc<History>, Arc<RunHandle>) {
        let faulty = FaultyStore::new(Arc::new(SqliteStore::open(None).unwrap()));
        let history = history_over(faulty.clone()).await;
        let started = history
            .start_workflow(&start_request("wf"), None)
            .await
            .unwrap();
        let handle = history
            .handle("default", "wf", Some(&started.run_id))
            .await
            .unwrap();
        (faulty, history, handle)
    }

    /// What the store holds of the run equals what its entry holds.
    async fn assert_memory_matches_store(history: &History, handle: &Arc<RunHandle>) {
        let entry = handle.entry.lock().await;
        let row = history
            .store
            .load_execution("default", &handle.workflow_id, Some(&handle.run_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(decode_state(&row).unwrap(), entry.state);
        assert_eq!(entry.persisted, row.written_version());
        let stored = history.store.load_events(&handle.run_id, 1).await.unwrap();
        assert_eq!(stored.len() as i64, entry.state.next_event_id - 1);
    }

    #[tokio::test]
    async fn a_transition_whose_caller_gives_up_mid_commit_is_installed_anyway() {
        let (faulty, history, handle) = started_run().await;
        // The commit is durable but acknowledged late; the caller's deadline passes first.
        faulty.inject(1, Fault::DelayReply(Duration::from_millis(300)), |_| true);
        let abandoned =
            tokio::time::timeout(Duration::from_millis(30), signal_run(&history, &handle, 1)).await;
        assert!(abandoned.is_err(), "the call was expected to time out");
        // The next transition waits for the abandoned one's install, then commits on top of it.
        signal_run(&history, &handle, 2).await.unwrap();
        assert_memory_matches_store(&history, &handle).await;
        let signals = handle.entry.lock().await.state.next_event_id;
        assert_eq!(signals, 5, "started, task scheduled, two signals");
    }

    #[tokio::test]
    async fn a_failed_commit_installs_nothing_and_a_stale_write_reloads_the_run() {
        let (faulty, history, handle) = started_run().await;
        faulty.inject(
            1,
            Fault::Fail(StoreError::Backend("disk on fire".into())),
            |_| true,
        );
        assert!(signal_run(&history, &handle, 1).await.is_err());
        assert_memory_matches_store(&history, &handle).await;
        // Memory falls behind the store (as a lost install would leave it): the store refuses
        // the next write as stale, the run is reloaded, and the retry succeeds.
        let behind = handle.entry.lock().await.state.clone();
        signal_run(&history, &handle, 2).await.unwrap();
        {
            let mut entry = handle.entry.lock().await;
            entry.state = behind.clone();
            entry.persisted = stored_version(&behind);
        }
        let refused = signal_run(&history, &handle, 3).await;
        assert!(
            matches!(refused, Err(ServiceError::Conflict(_))),
            "{refused:?}"
        );
        assert_memory_matches_store(&history, &handle).await;
        signal_run(&history, &handle, 3).await.unwrap();
        assert_memory_matches_store(&history, &handle).await;
    }

    #[tokio::test]
    async fn a_start_whose_caller_gives_up_is_installed_and_keeps_the_id_taken() {
        let faulty = FaultyStore::new(Arc::new(SqliteStore::open(None).unwrap()));
        let history = history_over(faulty.clone()).await;
        faulty.inject(1, Fault::DelayReply(Duration::from_millis(300)), |_| true);
        let abandoned = tokio::time::timeout(
            Duration::from_millis(30),
            history.start_workflow(&start_request("wf"), None),
        )
        .await;
        assert!(abandoned.is_err());
        let second = history.start_workflow(&start_request("wf"), None).await;
        assert!(
            matches!(second, Err(ServiceError::AlreadyStarted { .. })),
            "the abandoned start owns the id: {:?}",
            second.err()
        );
        let handle = history.handle("default", "wf", None).await.unwrap();
        assert_memory_matches_store(&history, &handle).await;
    }

    #[tokio::test]
    async fn runs_waiting_in_a_queue_leave_the_cache_and_the_poll_loads_them_back() {
        let history = history_over(Arc::new(SqliteStore::open(None).unwrap())).await;
        history.limit_cache(1);
        let mut run_ids = Vec::new();
        for i in 0..5 {
            let started = history
                .start_workflow(&start_request(&format!("wf{i}")), None)
                .await
                .unwrap();
            run_ids.push(started.run_id);
        }
        // Nobody polls: each run's only work is its task in the queue, so it may leave.
        tokio::time::sleep(CACHE_SWEEP_DELAY * 4).await;
        assert!(
            history.cached_runs() <= 1,
            "{} cached",
            history.cached_runs()
        );
        let key = QueueKey {
            namespace: "default".into(),
            name: "q".into(),
            kind: TaskKind::Workflow,
        };
        for run_id in &run_ids {
            let (handle, lease) = history
                .next_task(key.clone(), "poller", "", Duration::from_secs(1))
                .await
                .expect("every queued task is handed out");
            assert_eq!(&handle.run_id, run_id);
            // The run loaded again is the one the queued task was dispatched for.
            let entry = handle.entry.lock().await;
            let task = entry.state.workflow_task.as_ref().expect("still scheduled");
            assert_eq!(lease.task().scheduled_event_id, task.scheduled_event_id);
            assert_eq!(lease.task().seq_or_attempt, task.seq);
            assert!(!task.is_started());
            lease.take();
        }
    }

    #[tokio::test]
    async fn start_up_queues_a_backlog_larger_than_a_page_without_holding_it() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(None).unwrap());
        let backlog = RESUME_PAGE * 2 + 7;
        {
            let before = history_over(store.clone()).await;
            for i in 0..backlog {
                before
                    .start_workflow(&start_request(&format!("wf{i}")), None)
                    .await
                    .unwrap();
            }
        }
        // A new process on the same store: every run's task is queued again, read page by
        // page, and the runs leave memory once their tasks are in the queue.
        let history = history_over(store).await;
        history.limit_cache(10);
        assert_eq!(history.recover().await.unwrap(), backlog);
        let key = QueueKey {
            namespace: "default".into(),
            name: "q".into(),
            kind: TaskKind::Workflow,
        };
        assert_eq!(history.matching.backlog(&key), backlog);
        tokio::time::sleep(CACHE_SWEEP_DELAY * 4).await;
        assert!(
            history.cached_runs() <= 10,
            "{} cached",
            history.cached_runs()
        );
    }
}
