//! The scheduler role: drives every schedule's state machine (`sundial-schedule`) with the
//! clock, persists each record before acting on it, and performs the workflow starts, cancels
//! and terminations the machine asks for through the history role.
//!
//! Invariants:
//! - One task per schedule, and one lock per schedule: operations on a schedule (RPCs, time,
//!   workflow closes) are applied one at a time, each committed before its effects.
//! - Everything a schedule will do is derived from its record, so after a restart the same
//!   record yields the same starts (same request ids, so none happens twice), the times
//!   missed while the server was down (within the catch-up window), and a fresh look at
//!   the workflows it had running.
//! - A schedule's [`Target`] is its next wake-up time, set under the schedule's lock after
//!   each step and marked due whenever something wakes the task early, so virtual time (the
//!   test server) never skips past an action the schedule has not taken.

use crate::clock::Target;
use crate::error::ServiceError;
use crate::history::History;
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use sundial_engine::api::common::v1::{Payloads, WorkflowExecution};
use sundial_engine::api::enums::v1::WorkflowExecutionStatus as Status;
use sundial_engine::api::failure::v1::Failure;
use sundial_engine::api::history::v1::history_event::Attributes;
use sundial_schedule::{Plan, ScheduleError, ScheduleMachine, ScheduleRecord};
use sundial_store::{ScheduleRow, Store, WriteBatch};
use tokio::sync::Notify;

/// How long after a failed storage write or start a schedule tries again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Most plan rounds one wake-up runs (a start may free the buffer for the next).
const MAX_ROUNDS: usize = 8;

type Key = (String, String);

/// One schedule: its machine (`None` once deleted) and the signal that wakes its task.
pub struct ScheduleHandle {
    pub namespace: String,
    pub schedule_id: String,
    machine: Arc<tokio::sync::Mutex<Option<ScheduleMachine>>>,
    wake: Notify,
    /// When the schedule's task wants to wake up next (for virtual time).
    target: Mutex<WakeTarget>,
}

/// A schedule task's next wake-up, and whether it was nudged since its step began.
struct WakeTarget {
    at: Target,
    nudged: bool,
}

impl WakeTarget {
    fn new(mut at: Target) -> Mutex<WakeTarget> {
        // Due until the task's first step has looked at the schedule.
        at.set_due();
        Mutex::new(WakeTarget { at, nudged: true })
    }
}

impl ScheduleHandle {
    /// Wakes the schedule's task to look at a change now.
    fn nudge(&self) {
        let mut target = self.target.lock();
        target.at.set_due();
        target.nudged = true;
        drop(target);
        self.wake.notify_one();
    }
}

pub struct Scheduler {
    me: Weak<Scheduler>,
    history: Arc<History>,
    store: Arc<dyn Store>,
    schedules: Mutex<HashMap<Key, Arc<ScheduleHandle>>>,
    /// (namespace, workflow id) of workflows schedules are waiting on, to their schedule id.
    watched: Mutex<HashMap<Key, String>>,
}

/// Commits a schedule's record (`None`: its deletion).
async fn commit_record(
    store: &Arc<dyn Store>,
    fence: sundial_store::ShardFence,
    record: Option<&ScheduleRecord>,
    key: &Key,
) -> Result<(), ServiceError> {
    let batch = WriteBatch {
        fence: Some(fence),
        schedules: vec![ScheduleRow {
            namespace: key.0.clone(),
            schedule_id: key.1.clone(),
            data: record.map(|r| r.encode_to_vec()),
        }],
        ..Default::default()
    };
    store
        .commit(batch)
        .await
        .map_err(|_| ServiceError::Unavailable("storage is shut down".into()))??;
    Ok(())
}

impl From<ScheduleError> for ServiceError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::InvalidArgument(m) => ServiceError::InvalidArgument(m),
            ScheduleError::Conflict => ServiceError::FailedPrecondition(e.to_string()),
        }
    }
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("schedule not found".into())
}

/// How a workflow's chain ended, if it has.
struct Closed {
    status: Status,
    result: Option<Payloads>,
    failure: Option<Failure>,
}

impl Scheduler {
    /// Loads every schedule and starts driving them.
    pub async fn start(
        history: Arc<History>,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Scheduler>, ServiceError> {
        let scheduler = Arc::new_cyclic(|me| Scheduler {
            me: me.clone(),
            history: history.clone(),
            store: store.clone(),
            schedules: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&scheduler);
        history.on_close(Box::new(move |state| {
            // A run that continues (continue-as-new, retry, cron) has not ended its chain.
            if !state.new_execution_run_id.is_empty() {
                return;
            }
            if let Some(scheduler) = weak.upgrade() {
                scheduler.workflow_closed(&state.namespace, &state.workflow_id);
            }
        }));
        for row in store.load_schedules().await? {
            let Some(data) = row.data else { continue };
            let record = ScheduleRecord::decode(data.as_slice()).map_err(|e| {
                ServiceError::Internal(format!("corrupt schedule {}: {e}", row.schedule_id))
            })?;
            scheduler.install(ScheduleMachine::from_record(record));
        }
        Ok(scheduler)
    }

    /// The current time by the server's clock.
    fn now(&self) -> i64 {
        self.history.clock().now_ms()
    }

    fn install(&self, machine: ScheduleMachine) -> Arc<ScheduleHandle> {
        let handle = Arc::new(ScheduleHandle {
            namespace: machine.record.namespace.clone(),
            schedule_id: machine.record.schedule_id.clone(),
            machine: Arc::new(tokio::sync::Mutex::new(Some(machine))),
            wake: Notify::new(),
            target: WakeTarget::new(self.history.clock().target()),
        });
        self.schedules.lock().insert(
            (handle.namespace.clone(), handle.schedule_id.clone()),
            handle.clone(),
        );
        if let Some(me) = self.me.upgrade() {
            let task_handle = handle.clone();
            tokio::spawn(async move { me.drive(task_handle).await });
        }
        handle
    }

    /// Number of schedules loaded (for the start-up log).
    pub fn len(&self) -> usize {
        self.schedules.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn workflow_closed(&self, namespace: &str, workflow_id: &str) {
        let key = (namespace.to_string(), workflow_id.to_string());
        let Some(schedule_id) = self.watched.lock().get(&key).cloned() else {
            return;
        };
        if let Some(handle) = self.get(namespace, &schedule_id) {
            handle.nudge();
        }
    }

    pub fn get(&self, namespace: &str, schedule_id: &str) -> Option<Arc<ScheduleHandle>> {
        self.schedules
            .lock()
            .get(&(namespace.to_string(), schedule_id.to_string()))
            .cloned()
    }

    /// Every schedule of a namespace, in id order.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<ScheduleHandle>> {
        let mut handles: Vec<_> = self
            .schedules
            .lock()
            .values()
            .filter(|h| h.namespace == namespace)
            .cloned()
            .collect();
        handles.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
        handles
    }

    async fn commit(&self, record: Option<&ScheduleRecord>, key: &Key) -> Result<(), ServiceError> {
        let fence = self.history.fence(&key.0, &key.1)?;
        commit_record(&self.store, fence, record, key).await
    }

    /// Itself, to carry out a committed change in a task of its own.
    fn me(&self) -> Result<Arc<Scheduler>, ServiceError> {
        self.me
            .upgrade()
            .ok_or_else(|| ServiceError::Unavailable("the server is shutting down".into()))
    }

    /// CreateSchedule: commits the new schedule (and applies an initial patch) before replying.
    pub async fn create(
        &self,
        machine: ScheduleMachine,
        initial_patch: Option<sundial_engine::api::schedule::v1::SchedulePatch>,
    ) -> Result<(), ServiceError> {
        let key = (
            machine.record.namespace.clone(),
            machine.record.schedule_id.clone(),
        );
        let mut machine = machine;
        if let Some(patch) = &initial_patch {
            machine.patch(patch, self.now());
        }
        {
            let mut schedules = self.schedules.lock();
            if schedules.contains_key(&key) {
                return Err(ServiceError::ScheduleAlreadyExists(key.1.clone()));
            }
            // Reserve the id while the record commits.
            schedules.insert(
                key.clone(),
                Arc::new(ScheduleHandle {
                    namespace: key.0.clone(),
                    schedule_id: key.1.clone(),
                    machine: Arc::new(tokio::sync::Mutex::new(None)),
                    wake: Notify::new(),
                    target: WakeTarget::new(self.history.clock().target()),
                }),
            );
        }
        let me = self.me()?;
        crate::detached::run_detached(async move {
            if let Err(e) = me.commit(Some(&machine.record), &key).await {
                me.schedules.lock().remove(&key);
                return Err(e);
            }
            me.install(machine);
            Ok(())
        })
        .await
    }

    /// Applies `op` to a schedule under its lock, commits the record if `op` changed it, and
    /// wakes the schedule's task to act on the change.
    pub async fn modify<T>(
        &self,
        namespace: &str,
        schedule_id: &str,
        op: impl FnOnce(&mut ScheduleMachine, i64) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError>
    where
        T: Send + 'static,
    {
        let handle = self.get(namespace, schedule_id).ok_or_else(not_found)?;
        let mut guard = handle.machine.clone().lock_owned().await;
        let machine = guard.as_mut().ok_or_else(not_found)?;
        let now = self.now();
        // Time up to now is processed under the schedule as it was.
        let plan = machine.advance(now);
        let before = machine.record.clone();
        let result = op(machine, now)?;
        if machine.record == before && plan.starts.is_empty() {
            handle.nudge();
            return Ok(result);
        }
        let key = (namespace.to_string(), schedule_id.to_string());
        let store = self.store.clone();
        let fence = self.history.fence(&key.0, &key.1)?;
        crate::detached::run_detached(async move {
            let committed = match guard.as_ref() {
                Some(machine) => commit_record(&store, fence, Some(&machine.record), &key).await,
                None => Err(not_found()),
            };
            if committed.is_err() {
                *guard = Some(ScheduleMachine::from_record(before));
            }
            drop(guard);
            handle.nudge();
            committed.map(|()| result)
        })
        .await
    }

    /// Reads a schedule under its lock.
    pub async fn read<T>(
        &self,
        namespace: &str,
        schedule_id: &str,
        f: impl FnOnce(&ScheduleMachine) -> T,
    ) -> Result<T, ServiceError> {
        let handle = self.get(namespace, schedule_id).ok_or_else(not_found)?;
        let guard = handle.machine.lock().await;
        let machine = guard.as_ref().ok_or_else(not_found)?;
        Ok(f(machine))
    }

    /// DeleteSchedule: the record goes; workflows it started keep running.
    pub async fn delete(&self, namespace: &str, schedule_id: &str) -> Result<(), ServiceError> {
        let handle = self.get(namespace, schedule_id).ok_or_else(not_found)?;
        let mut guard = handle.machine.clone().lock_owned().await;
        if guard.is_none() {
            return Err(not_found());
        }
        let key = (namespace.to_string(), schedule_id.to_string());
        let me = self.me()?;
        crate::detached::run_detached(async move {
            me.commit(None, &key).await?;
            *guard = None;
            drop(guard);
            me.schedules.lock().remove(&key);
            me.watched.lock().retain(|_, s| *s != key.1);
            handle.nudge();
            Ok(())
        })
        .await
    }

    /// The task of one schedule: act, then sleep until the next action time or a change.
    async fn drive(self: Arc<Self>, handle: Arc<ScheduleHandle>) {
        loop {
            let wake_at = match self.step(&handle).await {
                Step::Deleted => return,
                Step::Wake(at) => at,
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = self.history.clock().wait_until(at) => {}
                        _ = handle.wake.notified() => {}
                    }
                }
                None => handle.wake.notified().await,
            }
        }
    }

    /// One wake-up: look at the running workflows, advance, commit, act; repeat while acting
    /// changes what comes next.
    async fn step(&self, handle: &ScheduleHandle) -> Step {
        let mut guard = handle.machine.lock().await;
        let Some(machine) = guard.as_mut() else {
            handle.target.lock().at.set(None);
            return Step::Deleted;
        };
        handle.target.lock().nudged = false;
        let step = self.advance_and_act(handle, machine).await;
        // Under the schedule's lock; a nudge during the step keeps the target due, as the
        // task steps again at once.
        if let Step::Wake(at) = step {
            let mut target = handle.target.lock();
            if !target.nudged {
                target.at.set(at);
            }
        }
        step
    }

    /// The body of [`Scheduler::step`], under the schedule's lock.
    async fn advance_and_act(
        &self,
        handle: &ScheduleHandle,
        machine: &mut ScheduleMachine,
    ) -> Step {
        let key = (handle.namespace.clone(), handle.schedule_id.clone());
        let mut wake_at = None;
        for _ in 0..MAX_ROUNDS {
            self.refresh_running(machine).await;
            let plan = machine.advance(self.now());
            wake_at = plan.wake_at_ms;
            if self.commit(Some(&machine.record), &key).await.is_err() {
                return Step::Wake(Some(self.now() + RETRY_DELAY.as_millis() as i64));
            }
            if plan.starts.is_empty() && plan.cancel.is_empty() && plan.terminate.is_empty() {
                break;
            }
            let retry = self.perform(machine, &plan).await;
            if self.commit(Some(&machine.record), &key).await.is_err() || retry {
                return Step::Wake(Some(self.now() + RETRY_DELAY.as_millis() as i64));
            }
            if plan.terminate.is_empty() && plan.starts.is_empty() {
                // Cancels take effect when the workflows close; their close wakes us.
                break;
            }
        }
        Step::Wake(wake_at)
    }

    /// Performs a plan's starts, cancels and terminations. Returns true when something must
    /// be tried again later.
    async fn perform(&self, machine: &mut ScheduleMachine, plan: &Plan) -> bool {
        let mut retry = false;
        let namespace = machine.record.namespace.clone();
        let schedule_id = machine.record.schedule_id.clone();
        for start in &plan.starts {
            let Some(request) = machine.start_request(start) else {
                machine.start_failed(&start.request_id);
                continue;
            };
            match self.history.start_workflow(&request, None).await {
                Ok(outcome) => {
                    let execution = WorkflowExecution {
                        workflow_id: request.workflow_id.clone(),
                        run_id: outcome.run_id,
                    };
                    self.watched.lock().insert(
                        (namespace.clone(), request.workflow_id.clone()),
                        schedule_id.clone(),
                    );
                    machine.start_succeeded(&start.request_id, execution, self.now());
                }
                Err(
                    e @ (ServiceError::AlreadyStarted { .. }
                    | ServiceError::InvalidArgument(_)
                    | ServiceError::NamespaceNotFound(_)),
                ) => {
                    tracing::warn!(
                        schedule_id,
                        workflow_id = request.workflow_id,
                        error = %e,
                        "scheduled start dropped"
                    );
                    machine.start_failed(&start.request_id);
                }
                Err(e) => {
                    tracing::warn!(schedule_id, error = %e, "scheduled start failed; will retry");
                    retry = true;
                }
            }
        }
        let identity = format!("temporal-scheduler-{namespace}-{schedule_id}");
        for execution in &plan.cancel {
            let reason = "cancelled by schedule overlap policy";
            let request_id = format!("{}-cancel-{}", machine.record.incarnation, execution.run_id);
            self.on_latest_run(&namespace, execution, |t| {
                t.request_cancel(reason, &identity, &request_id, None)
            })
            .await;
        }
        for execution in &plan.terminate {
            let reason = "terminated by schedule overlap policy";
            self.on_latest_run(&namespace, execution, |t| {
                t.terminate(reason, None, &identity)
            })
            .await;
        }
        retry
    }

    async fn on_latest_run(
        &self,
        namespace: &str,
        execution: &WorkflowExecution,
        op: impl FnOnce(&mut sundial_engine::Transition<'_>) -> Result<(), sundial_engine::EngineError>,
    ) {
        let Ok(run) = self
            .history
            .handle(namespace, &execution.workflow_id, None)
            .await
        else {
            return;
        };
        if let Err(e) = self.history.transition(&run, op, |_, ()| ()).await {
            tracing::debug!(workflow_id = execution.workflow_id, error = %e, "overlap policy action");
        }
    }

    /// Marks the schedule's running workflows that have closed as such.
    async fn refresh_running(&self, machine: &mut ScheduleMachine) {
        let namespace = machine.record.namespace.clone();
        for execution in machine.running_workflows() {
            let key = (namespace.clone(), execution.workflow_id.clone());
            match self.closed(&namespace, &execution.workflow_id).await {
                Some(closed) => {
                    machine.workflow_closed(
                        &execution.workflow_id,
                        closed.status,
                        closed.result,
                        closed.failure,
                    );
                    self.watched.lock().remove(&key);
                }
                None => {
                    self.watched
                        .lock()
                        .insert(key, machine.record.schedule_id.clone());
                }
            }
        }
    }

    /// How the workflow's latest run ended, or `None` while it runs (or cannot be read).
    async fn closed(&self, namespace: &str, workflow_id: &str) -> Option<Closed> {
        let run = match self.history.handle(namespace, workflow_id, None).await {
            Ok(run) => run,
            // Deleted: nothing to wait for.
            Err(ServiceError::NotFound(_)) => {
                return Some(Closed {
                    status: Status::Terminated,
                    result: None,
                    failure: None,
                });
            }
            Err(_) => return None,
        };
        self.history
            .read(&run, |entry| {
                let state = &entry.state;
                if state.is_running() {
                    return None;
                }
                let close = entry.events.get(state.close_event_id).ok().flatten();
                let (result, failure) = match close.as_ref().and_then(|e| e.attributes.as_ref()) {
                    Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => {
                        (a.result.clone(), None)
                    }
                    Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
                        (None, a.failure.clone())
                    }
                    _ => (None, None),
                };
                Some(Closed {
                    status: Status::try_from(state.status).unwrap_or(Status::Terminated),
                    result,
                    failure,
                })
            })
            .await
            .ok()
            .flatten()
    }
}

enum Step {
    Deleted,
    Wake(Option<i64>),
}
