//! The frame of one transition: it appends events to the execution's history (or buffers them
//! while a workflow task is started) and collects the effects the caller performs after the
//! commit.

use crate::api::{
    enums::v1::{EventType, TaskQueueKind, WorkflowExecutionStatus},
    history::v1::{HistoryEvent, WorkflowTaskScheduledEventAttributes, history_event::Attributes},
    taskqueue::v1::TaskQueue,
};
use crate::state::{ExecutionState, WorkflowTaskInfo};
use crate::time;
use crate::{EngineError, StartParams};
use prost::Message;

/// Placeholder for `started_event_id` in a buffered activity outcome: patched on flush to the
/// id given to the activity's buffered ActivityTaskStarted event.
pub(crate) const BUFFERED_STARTED: i64 = -1;

/// Work the caller performs after the transition is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Offer the workflow task to pollers of `task_queue`.
    DispatchWorkflowTask {
        task_queue: String,
        scheduled_event_id: i64,
        seq: i64,
    },
    /// Offer an activity attempt to pollers of `task_queue`.
    DispatchActivityTask {
        task_queue: String,
        scheduled_event_id: i64,
        attempt: i32,
    },
    /// Start the child initiated by event `initiated_event_id`, then report back.
    StartChild { initiated_event_id: i64 },
    /// Deliver the external signal initiated by event `initiated_event_id`, then report back.
    SignalExternal { initiated_event_id: i64 },
    /// Deliver the external cancellation request initiated by `initiated_event_id`.
    CancelExternal { initiated_event_id: i64 },
    /// This run (a child) closed: tell its parent.
    NotifyParent,
    /// This run (a parent) closed: apply the close policy to a child.
    ApplyParentClosePolicy {
        namespace: String,
        workflow_id: String,
        run_id: String,
        policy: i32,
    },
    /// After a restart: ask whether this started child closed meanwhile.
    CheckChild { initiated_event_id: i64 },
    /// After a restart: ask whether this run's parent closed meanwhile.
    CheckParent,
    /// Offer a Nexus operation's start (or cancel) request to pollers of `task_queue` in
    /// `namespace` (the endpoint's target).
    DispatchNexusTask {
        namespace: String,
        task_queue: String,
        scheduled_event_id: i64,
        cancel: bool,
        attempt: i32,
    },
    /// This run (backing a Nexus operation) closed: deliver its outcome to the completion
    /// callbacks of its start.
    InvokeCallbacks,
    /// After a restart: ask whether the workflow backing this started Nexus operation closed
    /// meanwhile (its callback may have been lost with the process).
    CheckNexusOperation { scheduled_event_id: i64 },
}

/// How a transition's outcome is written before it is installed and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Nothing to write: the outcome stays in memory (a no-op, a task redirected, the start
    /// of a speculative workflow task, which the reference server does not persist either).
    Nothing,
    /// Written before the reply without waiting for the disk to sync it: it survives a crash
    /// of the process (kill -9), and after a power loss it may be missing until the next synced
    /// commit would have covered it. A workflow task's start: the worker is shown its
    /// WorkflowTaskStarted event id, which must not be given to another event after a crash;
    /// a power loss returns the task to "scheduled" and its token is refused (the next start
    /// numbers the task from the new process's [`Inputs::task_seq_floor`]).
    Written,
    /// Written and synced to disk before the reply.
    Synced,
}

/// One transition in progress over a state. Build it, call operations on it, then close it
/// with [`Transition::finish`], whose [`Decided`] is all the server carries out.
pub struct Transition<'a> {
    /// The run's state, changed in place (read-only to the server's operations).
    pub state: &'a mut ExecutionState,
    pub now: i64,
    /// Events appended to the history by this transition, ids assigned.
    pub(crate) events: Vec<HistoryEvent>,
    pub(crate) effects: Vec<Effect>,
    /// How the outcome must be written before it is installed and answered.
    pub(crate) persist: Persist,
    /// Thresholds the server is configured with (from [`Inputs`]).
    pub(crate) limits: Limits,
    /// The run id a next run of the chain gets if this transition creates one (from [`Inputs`]).
    pub(crate) new_run_id: String,
    /// The run to create in the same commit (continue-as-new, retry).
    pub(crate) next_run: Option<crate::chain::NextRun>,
    /// Updates admitted and waiting to be delivered to the workflow (from [`Inputs`]).
    pub(crate) pending_update_ids: Vec<String>,
    /// The least dispatch number of a workflow task started here (from [`Inputs`]).
    pub(crate) task_seq_floor: i64,
    /// Last written event id when a speculative workflow task was dropped (0: none was).
    pub dropped_speculative_at: i64,
    /// Ids of pending activities, built on first use by a command that needs them.
    pub(crate) activity_ids: Option<std::collections::HashSet<String>>,
    /// Pending timers by id (started event id), built on first use.
    pub(crate) timer_ids: Option<std::collections::HashMap<String, i64>>,
    /// The Nexus endpoints the completed task's commands name (the completion's input, see
    /// [`Transition::complete_workflow_task_with_endpoints`]).
    pub(crate) nexus_endpoints: crate::nexus::NexusEndpointTargets,
}

/// A finished transition's outcome, closed ([`Transition::finish`]): the new state is the one
/// the transition was given, changed in place.
#[derive(Debug)]
pub struct Decided {
    /// Events appended to the run's history, ids assigned.
    pub events: Vec<HistoryEvent>,
    /// What the server does once the outcome is committed and installed.
    pub effects: Vec<Effect>,
    /// How the outcome must be written (a created next run is always synced).
    pub persist: Persist,
    /// The next run of the chain, created in the same commit.
    pub next_run: Option<CreatedRun>,
    /// The history outgrew the error limits and the run was terminated.
    pub terminated_by_history_limit: bool,
}

/// A run created by a transition of the run it continues: its first state, events and effects.
#[derive(Debug)]
pub struct CreatedRun {
    pub state: ExecutionState,
    pub events: Vec<HistoryEvent>,
    pub effects: Vec<Effect>,
}

/// Server-configured thresholds the engine applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// History length at which WorkflowTaskStarted suggests continue-as-new (0: never).
    pub suggest_continue_as_new_events: i64,
    /// History size in bytes at which it suggests continue-as-new (0: never).
    pub suggest_continue_as_new_bytes: i64,
    /// History length past which a running workflow is terminated (0: no limit).
    pub history_count_error: i64,
    /// History size in bytes past which a running workflow is terminated (0: no limit).
    pub history_size_error_bytes: i64,
    /// Largest payload field a request may carry (checked by the frontend).
    pub blob_size_limit_bytes: i64,
    /// Pending activities past which ScheduleActivityTask fails its workflow task (0: none).
    pub pending_activities: i64,
    /// Pending child workflows past which StartChildWorkflowExecution fails (0: none).
    pub pending_child_executions: i64,
    /// Pending signals to other workflows past which SignalExternalWorkflowExecution fails.
    pub pending_signals: i64,
    /// Pending cancellation requests to other workflows past which
    /// RequestCancelExternalWorkflowExecution fails.
    pub pending_cancel_requests: i64,
    /// Updates admitted or accepted and not completed, per run, past which a new update is
    /// refused with ResourceExhausted (0: no limit).
    pub max_in_flight_updates: i64,
    /// Distinct updates one run may receive (0: no limit).
    pub max_total_updates: i64,
    /// Whether workflows may start children in, signal or cancel workflows of another
    /// namespace (`system.enableCrossNamespaceCommands`).
    pub cross_namespace_commands: bool,
    /// Pending Nexus operations past which ScheduleNexusOperation fails (0: none).
    pub pending_nexus_operations: i64,
}

impl Default for Limits {
    /// Temporal's defaults (`limit.historyCount.suggestContinueAsNew`,
    /// `limit.historySize.suggestContinueAsNew`, `limit.historyCount.error`,
    /// `limit.historySize.error`, `limit.blobSize.error`, `limit.numPendingActivities.error`,
    /// `limit.numPendingChildExecutions.error`, `limit.numPendingSignals.error`,
    /// `limit.numPendingCancelRequests.error`, `history.maxInFlightUpdates`,
    /// `history.maxTotalUpdates`, `system.enableCrossNamespaceCommands`,
    /// `limit.numPendingNexusOperations.error`).
    fn default() -> Self {
        Limits {
            suggest_continue_as_new_events: 4 * 1024,
            suggest_continue_as_new_bytes: 4 * 1024 * 1024,
            history_count_error: 51_200,
            history_size_error_bytes: 50 * 1024 * 1024,
            blob_size_limit_bytes: 2 * 1024 * 1024,
            pending_activities: 2000,
            pending_child_executions: 2000,
            pending_signals: 2000,
            pending_cancel_requests: 2000,
            max_in_flight_updates: 10,
            max_total_updates: 2000,
            cross_namespace_commands: false,
            pending_nexus_operations: 30,
        }
    }
}

/// Everything a transition is given besides the run's state: the operation's own input is the
/// argument of the operation called on the [`Transition`]. Fixed when the transition is built;
/// nothing sets them afterwards.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The time of the transition (Unix milliseconds).
    pub now: i64,
    /// Thresholds the server is configured with.
    pub limits: Limits,
    /// The run id a next run of the chain gets if this transition creates one (continue-as-new,
    /// retry, cron): chosen outside so that the engine stays deterministic.
    pub new_run_id: String,
    /// Updates admitted and waiting to be delivered to the workflow: the server's update
    /// registry keeps them (in memory, as the reference server does), not the run's state.
    pub pending_update_ids: Vec<String>,
    /// The least dispatch number a workflow task gets when it is started (see
    /// [`Transition::start_workflow_task`]): the server passes a number above every one an
    /// earlier process of it handed out (its start time in microseconds).
    pub task_seq_floor: i64,
}

impl<'a> Transition<'a> {
    /// A transition at `now` with default limits and no outside inputs (tests, start-up).
    pub fn new(state: &'a mut ExecutionState, now: i64) -> Self {
        Self::with_inputs(
            state,
            Inputs {
                now,
                ..Inputs::default()
            },
        )
    }

    /// A transition over `state` given `inputs`.
    pub fn with_inputs(state: &'a mut ExecutionState, inputs: Inputs) -> Self {
        let Inputs {
            now,
            limits,
            new_run_id,
            pending_update_ids,
            task_seq_floor,
        } = inputs;
        Transition {
            state,
            now,
            events: Vec::new(),
            effects: Vec::new(),
            persist: Persist::Synced,
            limits,
            new_run_id,
            next_run: None,
            pending_update_ids,
            task_seq_floor,
            dropped_speculative_at: 0,
            activity_ids: None,
            timer_ids: None,
            nexus_endpoints: Default::default(),
        }
    }

    /// Closes the transition: applies the history limits (a run that outgrew them is
    /// terminated), creates the next run of its chain if it continues (continue-as-new, retry,
    /// cron: that run's first transition), and counts the transition in the state when
    /// something is written. Nothing changes the returned outcome afterwards; the server
    /// commits it, installs the state and carries out the effects.
    pub fn finish(mut self) -> Result<Decided, EngineError> {
        let terminated_by_history_limit = self.enforce_history_limits();
        let next_run = match self.next_run.take() {
            Some(next) => {
                let (mut state, events, effects) = crate::start::new_execution(StartParams {
                    request: &next.request,
                    run_id: next.run_id,
                    now: self.now,
                    signal: None,
                    continuation: Some(next.continuation),
                    parent: next.parent,
                })?;
                state.state_transition_count = 1;
                Some(CreatedRun {
                    state,
                    events,
                    effects,
                })
            }
            None => None,
        };
        if self.persist != Persist::Nothing || next_run.is_some() {
            self.state.state_transition_count += 1;
        }
        Ok(Decided {
            events: self.events,
            effects: self.effects,
            persist: self.persist,
            next_run,
            terminated_by_history_limit,
        })
    }

    pub(crate) fn build_event(&self, attributes: Attributes) -> HistoryEvent {
        // Events a worker may ignore (the reference server marks these): they change nothing
        // the workflow's code sees.
        let worker_may_ignore = matches!(
            attributes,
            Attributes::WorkflowExecutionOptionsUpdatedEventAttributes(_)
                | Attributes::NexusOperationCancelRequestCompletedEventAttributes(_)
        );
        HistoryEvent {
            event_id: 0,
            event_time: Some(time::timestamp(self.now)),
            event_type: event_type(&attributes) as i32,
            task_id: 0,
            worker_may_ignore,
            attributes: Some(attributes),
            ..Default::default()
        }
    }

    fn push_event(&mut self, mut event: HistoryEvent) -> i64 {
        let id = self.state.next_event_id;
        event.event_id = id;
        event.task_id = id;
        self.state.next_event_id += 1;
        self.state.history_size_bytes += event.encoded_len() as i64;
        self.events.push(event);
        id
    }

    /// Appends an event to the history now and returns its id.
    /// Writes the events of an unwritten workflow task that is about to be resolved in
    /// history (it completed, or it must be written before a close).
    pub(crate) fn write_pending_task_events(&mut self) {
        let Some(wt) = self.state.workflow_task.as_mut() else {
            return;
        };
        if !wt.unwritten {
            return;
        }
        wt.unwritten = false;
        let events = std::mem::take(&mut wt.pending_events);
        for event in events {
            self.push_event(event);
        }
    }

    /// Puts `metadata` on the event at `index` of this transition's events (if the command
    /// wrote one), keeping `history_size_bytes` the sum of the events' encoded sizes.
    pub(crate) fn set_user_metadata(
        &mut self,
        index: usize,
        metadata: &crate::api::sdk::v1::UserMetadata,
    ) {
        let Some(event) = self.events.get_mut(index) else {
            return;
        };
        let before = event.encoded_len() as i64;
        event.user_metadata = Some(metadata.clone());
        self.state.history_size_bytes += event.encoded_len() as i64 - before;
    }

    pub(crate) fn append(&mut self, attributes: Attributes) -> i64 {
        let event = self.build_event(attributes);
        self.push_event(event)
    }

    /// Records an event caused from outside the workflow (an activity result, a timer): while
    /// a workflow task is started it waits in the buffer, otherwise it is appended.
    pub(crate) fn record(&mut self, attributes: Attributes) {
        let event = self.build_event(attributes);
        self.record_event(event);
    }

    /// [`Transition::record`] for an event built by the caller (links set).
    pub(crate) fn record_event(&mut self, event: HistoryEvent) {
        if self.state.workflow_task_started() {
            self.state.buffered_events.push(event);
            return;
        }
        if self
            .state
            .workflow_task
            .as_ref()
            .is_some_and(|wt| wt.unwritten)
        {
            // An unwritten task's events would take the next ids: drop it; the caller's
            // `ensure_workflow_task` schedules a regular one after this event.
            self.state.workflow_task = None;
        }
        self.push_event(event);
    }

    /// Writes the buffered events. Started events go first, as the reference server orders
    /// them, and outcomes get the id of their started event.
    pub(crate) fn flush_buffer(&mut self) -> bool {
        if self.state.buffered_events.is_empty() {
            return false;
        }
        let buffered = std::mem::take(&mut self.state.buffered_events);
        let (started, rest): (Vec<_>, Vec<_>) = buffered.into_iter().partition(|e| {
            e.event_type == EventType::ActivityTaskStarted as i32
                || e.event_type == EventType::ChildWorkflowExecutionStarted as i32
                || e.event_type == EventType::NexusOperationStarted as i32
        });
        let mut started_ids = std::collections::HashMap::new();
        for event in started {
            let key = match &event.attributes {
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => a.scheduled_event_id,
                Some(Attributes::ChildWorkflowExecutionStartedEventAttributes(a)) => {
                    a.initiated_event_id
                }
                Some(Attributes::NexusOperationStartedEventAttributes(a)) => a.scheduled_event_id,
                _ => 0,
            };
            let id = self.push_event(event);
            started_ids.insert(key, id);
            if let Some(child) = self.state.child_mut(key) {
                child.started_event_id = id;
            }
            if let Some(op) = self.state.nexus_operation_mut(key) {
                op.started_event_id = id;
            }
        }
        for mut event in rest {
            patch_started_id(&mut event, &started_ids);
            self.push_event(event);
        }
        true
    }

    /// Schedules a workflow task unless one exists or the run is closed.
    pub(crate) fn ensure_workflow_task(&mut self) {
        if self.state.workflow_task.is_none()
            && self.state.is_running()
            && self.state.backoff_until_ms <= self.now
        {
            self.schedule_workflow_task(1);
        }
    }

    pub(crate) fn schedule_workflow_task(&mut self, attempt: i32) {
        self.schedule_workflow_task_with(attempt, false);
    }

    pub(crate) fn schedule_workflow_task_with(&mut self, attempt: i32, speculative: bool) {
        let sticky = !self.state.sticky_task_queue.is_empty();
        let queue = if sticky {
            self.state.sticky_task_queue.clone()
        } else {
            self.state.task_queue.clone()
        };
        let task_queue = TaskQueue {
            name: queue.clone(),
            kind: if sticky {
                TaskQueueKind::Sticky
            } else {
                TaskQueueKind::Normal
            } as i32,
            normal_name: if sticky {
                self.state.task_queue.clone()
            } else {
                String::new()
            },
        };
        let timeout = retry_start_to_close_ms(
            self.state.workflow_task_timeout_ms,
            attempt,
            &self.state.run_id,
        );
        let attributes = Attributes::WorkflowTaskScheduledEventAttributes(
            WorkflowTaskScheduledEventAttributes {
                task_queue: Some(task_queue),
                start_to_close_timeout: Some(time::duration(timeout)),
                attempt,
            },
        );
        // Retries are not written until they complete, as the reference server does, so a
        // workflow whose task keeps failing does not grow its history.
        let unwritten = attempt > 1 || speculative;
        let (scheduled_event_id, pending_events) = if unwritten {
            let mut event = self.build_event(attributes);
            event.event_id = self.state.next_event_id;
            (self.state.next_event_id, vec![event])
        } else {
            (self.append(attributes), Vec::new())
        };
        let seq = self.state.next_task_seq;
        self.state.next_task_seq += 1;
        self.state.workflow_task = Some(WorkflowTaskInfo {
            scheduled_event_id,
            started_event_id: 0,
            attempt,
            task_queue: queue.clone(),
            sticky,
            scheduled_time_ms: self.now,
            started_time_ms: 0,
            timeout_ms: timeout,
            seq,
            identity: String::new(),
            unwritten,
            speculative,
            pending_events,
            build_id: String::new(),
        });
        self.effects.push(Effect::DispatchWorkflowTask {
            task_queue: queue,
            scheduled_event_id,
            seq,
        });
    }

    /// Closes the run: writes nothing itself, drops all pending work.
    #[allow(deprecated)] // child namespace: deprecated in the API, still what the command carries
    pub(crate) fn close(&mut self, status: WorkflowExecutionStatus, close_event_id: i64) {
        if self.state.parent.is_some() && self.state.new_execution_run_id.is_empty() {
            self.effects.push(Effect::NotifyParent);
        }
        if !self.state.completion_callbacks.is_empty() && self.state.new_execution_run_id.is_empty()
        {
            self.effects.push(Effect::InvokeCallbacks);
        }
        // Operations still pending are abandoned, as on the reference server.
        self.state.nexus_operations.clear();
        // The reference server applies no close policy when a reset terminates the run, nor
        // to a child a reset took over from another run (the child names that run).
        let closed_by_reset = !self.state.reset_new_run_id.is_empty();
        for child in std::mem::take(&mut self.state.children) {
            let policy = child.command.as_ref().map_or(0, |c| c.parent_close_policy);
            let abandon = policy == crate::api::enums::v1::ParentClosePolicy::Abandon as i32;
            let taken_over = !child.parent_run_id.is_empty();
            if !child.run_id.is_empty() && !abandon && !closed_by_reset && !taken_over {
                let command = child.command.unwrap_or_default();
                self.effects.push(Effect::ApplyParentClosePolicy {
                    namespace: command.namespace,
                    workflow_id: command.workflow_id,
                    run_id: child.run_id,
                    policy,
                });
            }
        }
        self.state.external_signals.clear();
        self.state.external_cancels.clear();
        self.state.status = status as i32;
        self.state.close_time_ms = self.now;
        self.state.close_event_id = close_event_id;
        self.state.workflow_task = None;
        self.state.activities.clear();
        self.state.timers.clear();
        self.state.buffered_events.clear();
        self.state.sticky_task_queue.clear();
    }
}

fn patch_started_id(event: &mut HistoryEvent, started_ids: &std::collections::HashMap<i64, i64>) {
    let slot = match event.attributes.as_mut() {
        Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
            Some((a.scheduled_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ActivityTaskFailedEventAttributes(a)) => {
            Some((a.scheduled_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            Some((a.scheduled_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ActivityTaskCanceledEventAttributes(a)) => {
            Some((a.scheduled_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ChildWorkflowExecutionCompletedEventAttributes(a)) => {
            Some((a.initiated_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ChildWorkflowExecutionFailedEventAttributes(a)) => {
            Some((a.initiated_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ChildWorkflowExecutionCanceledEventAttributes(a)) => {
            Some((a.initiated_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ChildWorkflowExecutionTimedOutEventAttributes(a)) => {
            Some((a.initiated_event_id, &mut a.started_event_id))
        }
        Some(Attributes::ChildWorkflowExecutionTerminatedEventAttributes(a)) => {
            Some((a.initiated_event_id, &mut a.started_event_id))
        }
        _ => None,
    };
    if let Some((scheduled, started)) = slot
        && *started == BUFFERED_STARTED
    {
        *started = started_ids.get(&scheduled).copied().unwrap_or(0);
    }
}

/// The event type that goes with an attributes variant.
pub fn event_type(attributes: &Attributes) -> EventType {
    use Attributes as A;
    match attributes {
        A::WorkflowExecutionStartedEventAttributes(_) => EventType::WorkflowExecutionStarted,
        A::WorkflowExecutionCompletedEventAttributes(_) => EventType::WorkflowExecutionCompleted,
        A::WorkflowExecutionFailedEventAttributes(_) => EventType::WorkflowExecutionFailed,
        A::WorkflowExecutionTimedOutEventAttributes(_) => EventType::WorkflowExecutionTimedOut,
        A::WorkflowTaskScheduledEventAttributes(_) => EventType::WorkflowTaskScheduled,
        A::WorkflowTaskStartedEventAttributes(_) => EventType::WorkflowTaskStarted,
        A::WorkflowTaskCompletedEventAttributes(_) => EventType::WorkflowTaskCompleted,
        A::WorkflowTaskTimedOutEventAttributes(_) => EventType::WorkflowTaskTimedOut,
        A::WorkflowTaskFailedEventAttributes(_) => EventType::WorkflowTaskFailed,
        A::ActivityTaskScheduledEventAttributes(_) => EventType::ActivityTaskScheduled,
        A::ActivityTaskStartedEventAttributes(_) => EventType::ActivityTaskStarted,
        A::ActivityTaskCompletedEventAttributes(_) => EventType::ActivityTaskCompleted,
        A::ActivityTaskFailedEventAttributes(_) => EventType::ActivityTaskFailed,
        A::ActivityTaskTimedOutEventAttributes(_) => EventType::ActivityTaskTimedOut,
        A::ActivityTaskCancelRequestedEventAttributes(_) => EventType::ActivityTaskCancelRequested,
        A::ActivityTaskCanceledEventAttributes(_) => EventType::ActivityTaskCanceled,
        A::TimerStartedEventAttributes(_) => EventType::TimerStarted,
        A::TimerFiredEventAttributes(_) => EventType::TimerFired,
        A::TimerCanceledEventAttributes(_) => EventType::TimerCanceled,
        A::MarkerRecordedEventAttributes(_) => EventType::MarkerRecorded,
        A::WorkflowExecutionSignaledEventAttributes(_) => EventType::WorkflowExecutionSignaled,
        A::WorkflowExecutionTerminatedEventAttributes(_) => EventType::WorkflowExecutionTerminated,
        A::WorkflowExecutionCancelRequestedEventAttributes(_) => {
            EventType::WorkflowExecutionCancelRequested
        }
        A::WorkflowExecutionCanceledEventAttributes(_) => EventType::WorkflowExecutionCanceled,
        A::WorkflowExecutionContinuedAsNewEventAttributes(_) => {
            EventType::WorkflowExecutionContinuedAsNew
        }
        A::UpsertWorkflowSearchAttributesEventAttributes(_) => {
            EventType::UpsertWorkflowSearchAttributes
        }
        A::WorkflowPropertiesModifiedEventAttributes(_) => EventType::WorkflowPropertiesModified,
        A::StartChildWorkflowExecutionInitiatedEventAttributes(_) => {
            EventType::StartChildWorkflowExecutionInitiated
        }
        A::StartChildWorkflowExecutionFailedEventAttributes(_) => {
            EventType::StartChildWorkflowExecutionFailed
        }
        A::ChildWorkflowExecutionStartedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionStarted
        }
        A::ChildWorkflowExecutionCompletedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionCompleted
        }
        A::ChildWorkflowExecutionFailedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionFailed
        }
        A::ChildWorkflowExecutionCanceledEventAttributes(_) => {
            EventType::ChildWorkflowExecutionCanceled
        }
        A::ChildWorkflowExecutionTimedOutEventAttributes(_) => {
            EventType::ChildWorkflowExecutionTimedOut
        }
        A::ChildWorkflowExecutionTerminatedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionTerminated
        }
        A::SignalExternalWorkflowExecutionInitiatedEventAttributes(_) => {
            EventType::SignalExternalWorkflowExecutionInitiated
        }
        A::SignalExternalWorkflowExecutionFailedEventAttributes(_) => {
            EventType::SignalExternalWorkflowExecutionFailed
        }
        A::ExternalWorkflowExecutionSignaledEventAttributes(_) => {
            EventType::ExternalWorkflowExecutionSignaled
        }
        A::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(_) => {
            EventType::RequestCancelExternalWorkflowExecutionInitiated
        }
        A::RequestCancelExternalWorkflowExecutionFailedEventAttributes(_) => {
            EventType::RequestCancelExternalWorkflowExecutionFailed
        }
        A::ExternalWorkflowExecutionCancelRequestedEventAttributes(_) => {
            EventType::ExternalWorkflowExecutionCancelRequested
        }
        A::WorkflowExecutionUpdateAcceptedEventAttributes(_) => {
            EventType::WorkflowExecutionUpdateAccepted
        }
        A::WorkflowExecutionUpdateCompletedEventAttributes(_) => {
            EventType::WorkflowExecutionUpdateCompleted
        }
        A::WorkflowExecutionUpdateAdmittedEventAttributes(_) => {
            EventType::WorkflowExecutionUpdateAdmitted
        }
        A::WorkflowExecutionOptionsUpdatedEventAttributes(_) => {
            EventType::WorkflowExecutionOptionsUpdated
        }
        A::NexusOperationScheduledEventAttributes(_) => EventType::NexusOperationScheduled,
        A::NexusOperationStartedEventAttributes(_) => EventType::NexusOperationStarted,
        A::NexusOperationCompletedEventAttributes(_) => EventType::NexusOperationCompleted,
        A::NexusOperationFailedEventAttributes(_) => EventType::NexusOperationFailed,
        A::NexusOperationCanceledEventAttributes(_) => EventType::NexusOperationCanceled,
        A::NexusOperationTimedOutEventAttributes(_) => EventType::NexusOperationTimedOut,
        A::NexusOperationCancelRequestedEventAttributes(_) => {
            EventType::NexusOperationCancelRequested
        }
        A::NexusOperationCancelRequestCompletedEventAttributes(_) => {
            EventType::NexusOperationCancelRequestCompleted
        }
        A::NexusOperationCancelRequestFailedEventAttributes(_) => {
            EventType::NexusOperationCancelRequestFailed
        }
        _ => EventType::Unspecified,
    }
}

/// Attempts of a workflow task that keep the workflow's own task timeout; later ones get more.
const WORKFLOW_TASK_PLAIN_ATTEMPTS: i32 = 3;
/// What the first slowed-down attempt adds to the timeout; it doubles with each attempt.
const WORKFLOW_TASK_RETRY_INITIAL_MS: i64 = 5_000;
/// The most a retry adds (the reference server's `history.workflowTaskRetryMaxInterval`).
const WORKFLOW_TASK_RETRY_MAX_MS: i64 = 10 * 60_000;

/// The start-to-close timeout of attempt `attempt` of a workflow task, as the reference server
/// slows down a task that keeps failing or timing out: the workflow's task timeout for the
/// first three attempts, then that plus 5 s, 10 s, 20 s, ... (at most 10 min), of which up to
/// a fifth is taken off as jitter. The jitter is drawn from the run id and the attempt, so the
/// transition stays a function of its input. A worker whose cold start outlasts the task
/// timeout thus gets a task it can finish.
pub(crate) fn retry_start_to_close_ms(task_timeout_ms: i64, attempt: i32, run_id: &str) -> i64 {
    if attempt <= WORKFLOW_TASK_PLAIN_ATTEMPTS {
        return task_timeout_ms;
    }
    let doublings = (attempt - WORKFLOW_TASK_PLAIN_ATTEMPTS - 1).min(32) as u32;
    let interval = WORKFLOW_TASK_RETRY_INITIAL_MS
        .saturating_mul(1_i64 << doublings)
        .min(WORKFLOW_TASK_RETRY_MAX_MS);
    let mut mix: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in run_id.bytes().chain(attempt.to_le_bytes()) {
        mix = (mix ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let jitter_span = (interval / 5).max(1);
    let jitter = (mix % jitter_span as u64) as i64;
    task_timeout_ms.saturating_add(interval - jitter_span + jitter)
}

#[cfg(test)]
mod retry_timeout_tests {
    use super::retry_start_to_close_ms;

    #[test]
    fn the_fourth_attempt_on_gets_a_growing_allowance() {
        for attempt in 1..=3 {
            assert_eq!(retry_start_to_close_ms(1_000, attempt, "r"), 1_000);
        }
        let within = |attempt: i32, interval: i64| {
            let t = retry_start_to_close_ms(1_000, attempt, "r") - 1_000;
            assert!(
                t >= interval * 4 / 5 && t < interval,
                "attempt {attempt}: {t}"
            );
        };
        within(4, 5_000);
        within(5, 10_000);
        within(6, 20_000);
        within(20, 600_000);
        within(i32::MAX, 600_000);
        assert_eq!(
            retry_start_to_close_ms(1_000, 7, "r"),
            retry_start_to_close_ms(1_000, 7, "r")
        );
    }
}
