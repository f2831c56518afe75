//! The history role: owns the executions. Each run has one handle whose lock makes it the
//! run's single writer; a transition is computed on a copy of the state, committed, and only
//! then installed, followed by its effects (task dispatch, deadlines) and the reply.

use crate::clock::now_ms;
use crate::error::ServiceError;
use crate::matching::{Matching, QueueKey, QueuedTask, TaskKind};
use crate::run_events::RunEvents;
use crate::timers::Timers;
use parking_lot::Mutex;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use sundial_engine::api::enums::v1::{
    WorkflowExecutionStatus, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
};
use sundial_engine::api::history::v1::HistoryEvent;
use sundial_engine::api::workflowservice::v1::StartWorkflowExecutionRequest;
use sundial_engine::{
    Deadline, DeadlineKind, Effect, EngineError, ExecutionState, Limits, Signal, StartParams,
    Transition, WorkflowTaskRef,
};
use sundial_store::{EventRow, ExecutionRow, Store, WriteBatch};
use tokio::sync::watch;

/// How long a closed run stays cached after it closed.
const CLOSED_RUN_CACHE_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Number of locks that serialise starts of the same workflow id.
const START_LOCK_SHARDS: usize = 64;

/// One run's cached state and history. Guarded by its handle's lock.
pub struct RunEntry {
    pub state: ExecutionState,
    /// The run's history, encoded; loaded from the store on first use.
    pub events: RunEvents,
    /// Events with ids from here on exist only in memory (a started task not yet committed).
    persisted_next_event_id: i64,
    /// Deadlines already handed to the timer loop.
    registered: HashSet<Deadline>,
    /// Updates admitted and not yet accepted or rejected (memory only).
    pub updates: parking_lot::Mutex<crate::updates::UpdateRegistry>,
    /// The run is closed and its removal from the cache is scheduled.
    eviction_scheduled: bool,
}

/// The handle of one run: its lock and a signal that fires on every change.
pub struct RunHandle {
    pub run_id: String,
    pub namespace: String,
    pub workflow_id: String,
    entry: tokio::sync::Mutex<RunEntry>,
    progress: watch::Sender<i64>,
}

impl RunHandle {
    fn new(state: ExecutionState, events: RunEvents) -> Arc<RunHandle> {
        let next = state.next_event_id;
        let closed = !state.is_running();
        Arc::new(RunHandle {
            run_id: state.run_id.clone(),
            namespace: state.namespace.clone(),
            workflow_id: state.workflow_id.clone(),
            progress: watch::channel(next).0,
            entry: tokio::sync::Mutex::new(RunEntry {
                events,
                persisted_next_event_id: next,
                registered: HashSet::new(),
                updates: parking_lot::Mutex::new(Default::default()),
                eviction_scheduled: closed,
                state,
            }),
        })
    }

    /// Locks the run (for reads that must see a consistent state).
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, RunEntry> {
        self.entry.lock().await
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.progress.subscribe()
    }

    /// Wakes everyone waiting on this run (after in-memory changes such as update outcomes).
    pub fn notify(&self) {
        self.progress.send_modify(|_| {});
    }
}

/// What to do about the workflow id's latest run before starting a new one.
enum Existing {
    Done(Box<StartOutcome>),
    Signal(Arc<RunHandle>),
    Terminate(Arc<RunHandle>),
    Start,
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
    start_locks: Vec<tokio::sync::Mutex<()>>,
    matching: Arc<Matching>,
    timers: Timers,
    /// Thresholds passed to every transition.
    pub limits: Limits,
    /// Itself, for effects that run as tasks of their own.
    me: std::sync::OnceLock<std::sync::Weak<History>>,
    /// Sticky queues whose worker said it shut down: their tasks go to the normal queue.
    gone_sticky_queues: Mutex<HashSet<(String, String)>>,
    /// Search attribute registry; builds visibility records.
    pub visibility: Arc<crate::visibility::SearchAttributes>,
    /// Told about every run that closes, once, after the close is committed.
    close_listener: std::sync::OnceLock<CloseListener>,
}

/// Called with the state of a run that just closed (see [`History::on_close`]).
pub type CloseListener = Box<dyn Fn(&ExecutionState) + Send + Sync>;

/// A new run id: a UUID (version 7) that starts with its creation time, so the store's
/// tables keyed by run id (history, executions, visibility) grow at their end instead of
/// dirtying a random page per insert.
fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Adds one run's state and new events (event id, encoding) to a batch.
fn add_run(
    batch: &mut WriteBatch,
    state: &ExecutionState,
    events: impl Iterator<Item = (i64, Vec<u8>)>,
) {
    batch.executions.push(ExecutionRow {
        namespace: state.namespace.clone(),
        workflow_id: state.workflow_id.clone(),
        run_id: state.run_id.clone(),
        status: state.status,
        state: state.encode_to_vec(),
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

impl History {
    pub fn new(
        store: Arc<dyn Store>,
        matching: Arc<Matching>,
        timers: Timers,
        limits: Limits,
        visibility: Arc<crate::visibility::SearchAttributes>,
    ) -> Arc<History> {
        let history = Arc::new(History {
            store,
            runs: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            start_locks: (0..START_LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            matching,
            timers,
            limits,
            me: std::sync::OnceLock::new(),
            gone_sticky_queues: Mutex::new(HashSet::new()),
            visibility,
            close_listener: std::sync::OnceLock::new(),
        });
        let _ = history.me.set(Arc::downgrade(&history));
        history
    }

    /// Rebuilds running executions after a start: their deadlines go back to the timer loop
    /// and their ready tasks back to the queues.
    pub async fn recover(&self) -> Result<usize, ServiceError> {
        const _: () =
            assert!(WorkflowExecutionStatus::Running as i32 == sundial_store::RUNNING_STATUS);
        let rows = self.store.load_running_executions()?;
        let count = rows.len();
        for row in rows {
            let state = decode_state(&row)?;
            let handle = RunHandle::new(state, RunEvents::unloaded());
            self.install(&handle);
            let mut entry = handle.entry.lock().await;
            let now = now_ms();
            let ready = entry.state.ready_tasks(now);
            self.after_change(&handle, &mut entry, ready);
        }
        Ok(count)
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
    pub fn handle(
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
        let Some(row) = self.store.load_execution(namespace, workflow_id, run_id)? else {
            return Err(Self::not_found(workflow_id, run_id));
        };
        let state = decode_state(&row)?;
        if !state.is_running() {
            self.schedule_eviction(&row.run_id);
        }
        let mut runs = self.runs.lock();
        let handle = runs
            .entry(row.run_id.clone())
            .or_insert_with(|| RunHandle::new(state, RunEvents::unloaded()))
            .clone();
        if run_id.is_none() {
            self.latest.lock().insert(
                (namespace.to_string(), workflow_id.to_string()),
                handle.run_id.clone(),
            );
        }
        Ok(handle)
    }

    fn handle_by_run(&self, run_id: &str) -> Option<Arc<RunHandle>> {
        self.runs.lock().get(run_id).cloned()
    }

    fn ensure_events(&self, entry: &mut RunEntry) -> Result<(), ServiceError> {
        if entry.events.is_loaded() {
            return Ok(());
        }
        let rows = self.store.load_events(&entry.state.run_id, 1)?;
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
        self.ensure_events(&mut entry)?;
        Ok(f(&entry))
    }

    /// Runs one transition on `handle`: compute on a copy, commit, install, perform effects.
    /// `finish` builds the reply from the installed entry, still under the run's lock.
    pub async fn transition<R, T>(
        &self,
        handle: &Arc<RunHandle>,
        op: impl FnOnce(&mut Transition<'_>) -> Result<R, EngineError>,
        finish: impl FnOnce(&RunEntry, R) -> T,
    ) -> Result<T, ServiceError> {
        self.transition_with(handle, |_, t| op(t), finish).await
    }

    /// Like [`History::transition`], with the run's entry visible to `op` (for in-memory
    /// bookkeeping that goes with the transition, such as admitted updates).
    pub async fn transition_with<R, T>(
        &self,
        handle: &Arc<RunHandle>,
        op: impl FnOnce(&RunEntry, &mut Transition<'_>) -> Result<R, EngineError>,
        finish: impl FnOnce(&RunEntry, R) -> T,
    ) -> Result<T, ServiceError> {
        let mut entry = handle.entry.lock().await;
        self.ensure_events(&mut entry)?;
        let mut state = entry.state.clone();
        let now = now_ms();
        let mut t = Transition::new(&mut state, now);
        t.limits = self.limits;
        t.new_run_id = new_run_id();
        t.pending_update_ids = entry.updates.lock().waiting_ids();
        let result = op(&entry, &mut t)?;
        if t.enforce_history_limits() {
            tracing::warn!(run_id = %handle.run_id, "history limit exceeded: workflow terminated");
        }
        let events = std::mem::take(&mut t.events);
        let effects = std::mem::take(&mut t.effects);
        let next_run = t.next_run.take();
        let persist = t.persist;
        // A run that continues (continue-as-new, retry) is created in the same commit.
        let next = match next_run {
            Some(next) => {
                let params = StartParams {
                    request: &next.request,
                    run_id: next.run_id.clone(),
                    now,
                    signal: None,
                    continuation: Some(next.continuation.clone()),
                    parent: next.parent.clone(),
                };
                let (mut next_state, next_events, next_effects) =
                    sundial_engine::new_execution(params)?;
                next_state.state_transition_count = 1;
                Some((next_state, encode_all(&next_events), next_effects))
            }
            None => None,
        };
        let encoded = encode_all(&events);
        if persist || next.is_some() {
            state.state_transition_count += 1;
            let persisted = entry.persisted_next_event_id;
            let unsaved = (persisted..).zip(
                entry
                    .events
                    .encoded(persisted, i64::MAX)
                    .map(<[u8]>::to_vec),
            );
            let mut batch = WriteBatch::default();
            add_run(&mut batch, &state, unsaved.chain(encoded.iter().cloned()));
            let before = &entry.state;
            if before.status != state.status
                || before.search_attributes != state.search_attributes
                || before.memo != state.memo
            {
                batch.visibility.push(self.visibility.row(&state));
            }
            if let Some((next_state, next_events, _)) = &next {
                add_run(&mut batch, next_state, next_events.iter().cloned());
                batch.visibility.push(self.visibility.row(next_state));
            }
            self.commit(batch).await?;
            entry.persisted_next_event_id = state.next_event_id;
        }
        entry.state = state;
        for (event_id, data) in encoded {
            entry.events.push(event_id, data);
        }
        self.after_change(handle, &mut entry, effects);
        let reply = finish(&entry, result);
        drop(entry);
        if let Some((next_state, next_events, next_effects)) = next {
            let next_handle = RunHandle::new(next_state, RunEvents::from_encoded(next_events));
            self.install(&next_handle);
            let mut next_entry = next_handle.entry.lock().await;
            self.after_change(&next_handle, &mut next_entry, next_effects);
        }
        Ok(reply)
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), ServiceError> {
        self.store
            .commit(batch)
            .await
            .map_err(|_| ServiceError::Unavailable("storage is shut down".into()))??;
        Ok(())
    }

    fn after_change(&self, handle: &RunHandle, entry: &mut RunEntry, effects: Vec<Effect>) {
        let deadlines = entry.state.deadlines();
        entry.registered.retain(|d| deadlines.contains(d));
        for deadline in deadlines {
            if entry.registered.insert(deadline) {
                self.timers.add(&handle.run_id, deadline);
            }
        }
        for effect in effects {
            self.dispatch(&handle.namespace, &handle.run_id, effect);
        }
        handle.progress.send_replace(entry.state.next_event_id);
        if !entry.state.is_running() && !entry.eviction_scheduled {
            entry.eviction_scheduled = true;
            self.schedule_eviction(&handle.run_id);
            if let Some(listener) = self.close_listener.get() {
                listener(&entry.state);
            }
        }
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
        self.gone_sticky_queues
            .lock()
            .insert((namespace.to_string(), queue.to_string()));
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
            let Some(handle) = history.handle_by_run(&run_id) else {
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
        let (name, kind, scheduled_event_id, seq_or_attempt) = match effect {
            Effect::DispatchWorkflowTask {
                task_queue,
                scheduled_event_id,
                seq,
            } => {
                let gone = self
                    .gone_sticky_queues
                    .lock()
                    .contains(&(namespace.to_string(), task_queue.clone()));
                if gone {
                    self.redirect(run_id.to_string(), seq);
                    return;
                }
                (task_queue, TaskKind::Workflow, scheduled_event_id, seq)
            }
            Effect::DispatchActivityTask {
                task_queue,
                scheduled_event_id,
                attempt,
            } => (
                task_queue,
                TaskKind::Activity,
                scheduled_event_id,
                i64::from(attempt),
            ),
            outbound => {
                if let Some(history) = self.me.get().and_then(std::sync::Weak::upgrade) {
                    let run_id = run_id.to_string();
                    tokio::spawn(async move {
                        crate::outbound::perform(history, run_id, outbound).await
                    });
                }
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
            },
        );
    }

    /// The handle of a loaded run by id.
    pub fn loaded_run(&self, run_id: &str) -> Option<Arc<RunHandle>> {
        self.handle_by_run(run_id)
    }

    fn start_lock(&self, namespace: &str, workflow_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (namespace, workflow_id).hash(&mut hasher);
        &self.start_locks[(hasher.finish() as usize) % START_LOCK_SHARDS]
    }

    /// StartWorkflowExecution (and SignalWithStart when `signal` is set), with request-id
    /// idempotency and the id reuse/conflict policies.
    pub async fn start_workflow(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
    ) -> Result<StartOutcome, ServiceError> {
        self.start_workflow_with_parent(req, signal, None).await
    }

    /// StartWorkflowExecution for a child workflow (`parent` set) or a plain start.
    pub async fn start_workflow_with_parent(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
        parent: Option<sundial_engine::ParentInfo>,
    ) -> Result<StartOutcome, ServiceError> {
        sundial_engine::start::validate_start(req)?;
        let _guard = self
            .start_lock(&req.namespace, &req.workflow_id)
            .lock()
            .await;
        match self.existing_run_decision(req, signal.is_some()).await? {
            Existing::Done(outcome) => return Ok(*outcome),
            Existing::Signal(handle) => {
                let signal = signal.expect("decided on a signal");
                self.transition(&handle, |t| t.signal(signal), |_, ()| ())
                    .await?;
                return Ok(StartOutcome {
                    run_id: handle.run_id.clone(),
                    started: false,
                    eager_task: None,
                });
            }
            Existing::Terminate(handle) => {
                let reason =
                    "terminated by a new start (workflow id conflict policy TERMINATE_EXISTING)";
                self.transition(
                    &handle,
                    |t| t.terminate(reason, None, &req.identity),
                    |_, ()| (),
                )
                .await?;
            }
            Existing::Start => {}
        }
        self.create_run(req, signal, parent).await
    }

    async fn existing_run_decision(
        &self,
        req: &StartWorkflowExecutionRequest,
        with_signal: bool,
    ) -> Result<Existing, ServiceError> {
        let existing = match self.handle(&req.namespace, &req.workflow_id, None) {
            Ok(existing) => existing,
            Err(ServiceError::NotFound(_)) => return Ok(Existing::Start),
            Err(e) => return Err(e),
        };
        let entry = existing.entry.lock().await;
        let st = &entry.state;
        if !req.request_id.is_empty() && st.start_request_id == req.request_id {
            let outcome = StartOutcome {
                run_id: st.run_id.clone(),
                started: true,
                eager_task: None,
            };
            return Ok(Existing::Done(Box::new(outcome)));
        }
        let already = || ServiceError::AlreadyStarted {
            workflow_id: st.workflow_id.clone(),
            run_id: st.run_id.clone(),
            start_request_id: st.start_request_id.clone(),
        };
        if st.is_running() {
            if with_signal {
                return Ok(Existing::Signal(existing.clone()));
            }
            let conflict = WorkflowIdConflictPolicy::try_from(req.workflow_id_conflict_policy)
                .unwrap_or(WorkflowIdConflictPolicy::Unspecified);
            #[allow(deprecated)]
            let terminate_if_running =
                req.workflow_id_reuse_policy == WorkflowIdReusePolicy::TerminateIfRunning as i32;
            return match conflict {
                WorkflowIdConflictPolicy::UseExisting => {
                    Ok(Existing::Done(Box::new(StartOutcome {
                        run_id: st.run_id.clone(),
                        started: false,
                        eager_task: None,
                    })))
                }
                WorkflowIdConflictPolicy::TerminateExisting => {
                    Ok(Existing::Terminate(existing.clone()))
                }
                _ if terminate_if_running => Ok(Existing::Terminate(existing.clone())),
                _ => Err(already()),
            };
        }
        let reuse = WorkflowIdReusePolicy::try_from(req.workflow_id_reuse_policy)
            .unwrap_or(WorkflowIdReusePolicy::Unspecified);
        let completed = st.status == WorkflowExecutionStatus::Completed as i32;
        match reuse {
            WorkflowIdReusePolicy::RejectDuplicate => Err(already()),
            WorkflowIdReusePolicy::AllowDuplicateFailedOnly if completed => Err(already()),
            _ => Ok(Existing::Start),
        }
    }

    /// Creates, commits and installs a new run.
    async fn create_run(
        &self,
        req: &StartWorkflowExecutionRequest,
        signal: Option<Signal>,
        parent: Option<sundial_engine::ParentInfo>,
    ) -> Result<StartOutcome, ServiceError> {
        let run_id = new_run_id();
        let now = now_ms();
        let params = StartParams {
            request: req,
            run_id: run_id.clone(),
            now,
            signal,
            continuation: None,
            parent,
        };
        let (mut state, mut events, mut effects) = sundial_engine::new_execution(params)?;
        let eager = req.request_eager_execution;
        if eager && let Some(wt) = state.workflow_task.clone() {
            // Eager start: the first workflow task goes back in the reply, started, in the
            // same commit as the start itself.
            let mut t = Transition::new(&mut state, now);
            t.limits = self.limits;
            let task = WorkflowTaskRef {
                scheduled_event_id: wt.scheduled_event_id,
                seq: wt.seq,
            };
            let poller = sundial_engine::Poller {
                identity: req.identity.clone(),
                request_id: req.request_id.clone(),
                build_id: String::new(),
            };
            t.start_workflow_task(task, &poller)?;
            events.append(&mut t.events);
            effects.retain(|e| !matches!(e, Effect::DispatchWorkflowTask { .. }));
        }
        state.state_transition_count = 1;
        let mut batch = WriteBatch::default();
        let encoded = encode_all(&events);
        add_run(&mut batch, &state, encoded.iter().cloned());
        batch.visibility.push(self.visibility.row(&state));
        self.commit(batch).await?;
        let handle = RunHandle::new(state, RunEvents::from_encoded(encoded));
        self.install(&handle);
        let mut entry = handle.entry.lock().await;
        self.after_change(&handle, &mut entry, effects);
        let eager_task = if eager {
            crate::frontend::responses::workflow_task(&entry)?
        } else {
            None
        };
        Ok(StartOutcome {
            run_id,
            started: true,
            eager_task,
        })
    }

    /// A deadline fired for a run.
    pub async fn fire_deadline(&self, run_id: &str, kind: DeadlineKind) {
        let Some(handle) = self.handle_by_run(run_id) else {
            return;
        };
        let result = self
            .transition(
                &handle,
                |t| {
                    t.fire_deadline(kind);
                    Ok(())
                },
                |_, ()| (),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(run_id, ?kind, error = %e, "deadline transition failed; retrying in 1s");
            let timers = self.timers.clone();
            let run = run_id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                timers.add(
                    &run,
                    Deadline {
                        at_ms: now_ms(),
                        kind,
                    },
                );
            });
        }
    }

    /// Waits for a task from a queue and returns the run it belongs to, or `None` on timeout.
    pub async fn next_task(
        &self,
        key: QueueKey,
        identity: &str,
        wait: std::time::Duration,
    ) -> Option<(Arc<RunHandle>, QueuedTask)> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let remaining = until.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return None;
            }
            let task = self
                .matching
                .poll(key.clone(), identity, now_ms(), remaining)
                .await?;
            if let Some(handle) = self.handle_by_run(&task.run_id) {
                return Some((handle, task));
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
            ..Default::default()
        };
        self.commit(batch).await?;
        self.runs.lock().remove(&handle.run_id);
        let key = (handle.namespace.clone(), handle.workflow_id.clone());
        let mut latest = self.latest.lock();
        if latest.get(&key) == Some(&handle.run_id) {
            latest.remove(&key);
        }
        Ok(())
    }

    pub fn matching(&self) -> &Matching {
        &self.matching
    }
}
