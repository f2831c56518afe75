//! ResetWorkflowExecution: a new run whose history is a prefix of a base run's history, cut
//! at one workflow task, as the reference server builds it.
//!
//! The new run's history is the base run's events `1..finish_event_id` copied verbatim (the
//! chosen workflow task's Scheduled and, if it was started, Started event are the last of
//! them), then a WorkflowTaskStarted if the task was not started (identity `history-service`),
//! WorkflowTaskFailed with cause RESET_WORKFLOW (failure message: the reason, base and new run
//! ids), what it reapplies from after the cut (unless excluded): the base run's signals, and
//! the updates it accepted, as UpdateAdmitted events (origin REAPPLY, the accepted request),
//! in the order they came; then a new workflow task on the workflow's normal queue. The worker replays the prefix and, from the
//! failed task on, decides anew.
//!
//! How the new run's state is built: the state is not kept per event, so it is rebuilt by
//! folding the copied events over the base run's configuration ([`rebuild`]). The
//! configuration (timeouts, retry policy, parent, cron) never changes during a run, so it is
//! taken from the base state; everything that changes with events (pending activities,
//! timers, accepted updates, signal request ids, cancellation, search attributes, memo, the
//! last completed workflow task) is derived from the events alone. A cut inside a Nexus
//! operation is refused (Unimplemented).
//!
//! Cross-run work pending at the cut, as the reference server carries it over (its
//! `history.allowResetWithPendingChildren`, on by default): a child initiated in the prefix
//! and not resolved there is the new run's pending child. Its events the base run recorded
//! after the cut (started, start failed, closed) are copied after the WorkflowTaskFailed, in
//! order with what else is reapplied, whatever is excluded (a close names the copied started
//! event's new id). A started child still names the run that started it as its parent
//! (`ChildInfo::parent_run_id`: the run that wrote the initiated event, told by the reset
//! failures in the prefix); its close, sent there, is passed on to the workflow id's current
//! run if that run took it over from there (`Transition::child_closed_taken_over`). No close
//! policy is applied to such a child, nor by the reset to the children of the run it
//! terminates. A child that never started is started by the new run. Signals and
//! cancellation requests to other workflows pending at the cut are sent again, under the
//! new run's request ids; their outcomes after the cut are not copied.
//!
//! Invariants of the result: the history is dense (`next_event_id` is one past the last
//! event), exactly one workflow task is scheduled and not started, and every pending activity
//! is scheduled (not started) at attempt 1, dispatched again: an ActivityTaskStarted event is
//! only written when its attempt closes, so a pending activity in the prefix never shows one.

use crate::api::{
    command::v1::{
        RequestCancelExternalWorkflowExecutionCommandAttributes,
        SignalExternalWorkflowExecutionCommandAttributes,
        StartChildWorkflowExecutionCommandAttributes,
    },
    common::v1::Payload,
    enums::v1::{
        EventType, ResetReapplyExcludeType, ResetReapplyType, UpdateAdmittedEventOrigin,
        WorkflowExecutionStatus, WorkflowTaskFailedCause,
    },
    failure::v1::{Failure, ResetWorkflowFailureInfo, failure::FailureInfo},
    history::v1::{
        HistoryEvent, StartChildWorkflowExecutionInitiatedEventAttributes,
        WorkflowExecutionUpdateAdmittedEventAttributes, WorkflowTaskFailedEventAttributes,
        WorkflowTaskStartedEventAttributes, history_event::Attributes,
    },
    update::v1::Request as UpdateRequest,
    workflow::v1::ResetPointInfo,
};
use crate::state::{
    AcceptedUpdate, ActivityInfo, AdmittedUpdate, ChildInfo, ExternalCancelInfo,
    ExternalSignalInfo, TimerInfo,
};
use crate::{Effect, EngineError, ExecutionState, Transition, time};
use prost::Message;
use std::collections::{BTreeSet, HashMap};

/// Most reset points a run keeps (the reference server's default).
pub const MAX_RESET_POINTS: usize = 20;

/// Identity of the workflow task failure a reset writes.
pub const RESET_IDENTITY: &str = "history-service";
/// Identity of the termination of the run a reset replaces (the reference server's).
pub const RESETTER_IDENTITY: &str = "history-resetter";

/// What a reset is asked to do.
pub struct ResetParams<'a> {
    /// The state of the run whose history is cut (its configuration is kept).
    pub base: &'a ExecutionState,
    /// The base run's whole history, in event-id order from event 1.
    pub events: &'a [HistoryEvent],
    /// Events `1..finish_event_id` are copied.
    pub finish_event_id: i64,
    pub new_run_id: String,
    /// Becomes the new run's start request id (a repeated reset with it finds the run).
    pub request_id: String,
    pub reason: String,
    /// What of the base run's events after the cut is applied to the new run again.
    pub reapply: Reapply,
    pub now: i64,
}

/// The new run: its state, all its events (copied and new), and what to dispatch.
#[derive(Debug)]
pub struct ResetRun {
    pub state: ExecutionState,
    pub events: Vec<HistoryEvent>,
    pub effects: Vec<Effect>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

/// What a reset applies again to the new run from the base run's events after the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reapply {
    /// Signals (WorkflowExecutionSignaled, copied).
    pub signals: bool,
    /// Updates the base run accepted after the cut (written as UpdateAdmitted, origin REAPPLY).
    pub updates: bool,
}

/// What a reset with these options reapplies, as the reference server combines the
/// deprecated reapply type with the excluded types: type NONE reapplies nothing, type SIGNAL
/// only signals, UNSPECIFIED and ALL_ELIGIBLE everything not excluded (SIGNAL, UPDATE).
/// Unknown enum values are refused.
#[allow(deprecated)] // reset_reapply_type: deprecated in the API, still sent by clients
pub fn reapply_kinds(reapply_type: i32, exclude_types: &[i32]) -> Result<Reapply, EngineError> {
    let kind = ResetReapplyType::try_from(reapply_type)
        .map_err(|_| invalid(format!("Unknown reset reapply type: {reapply_type}")))?;
    for &t in exclude_types {
        ResetReapplyExcludeType::try_from(t)
            .map_err(|_| invalid(format!("Unknown reset reapply exclude type: {t}")))?;
    }
    let excluded = |x: ResetReapplyExcludeType| exclude_types.contains(&(x as i32));
    Ok(match kind {
        ResetReapplyType::None => Reapply::default(),
        ResetReapplyType::Signal => Reapply {
            signals: !excluded(ResetReapplyExcludeType::Signal),
            updates: false,
        },
        ResetReapplyType::Unspecified | ResetReapplyType::AllEligible => Reapply {
            signals: !excluded(ResetReapplyExcludeType::Signal),
            updates: !excluded(ResetReapplyExcludeType::Update),
        },
    })
}

/// Checks the cut the way the reference server does, with its messages: events
/// `1..finish_event_id` must end inside a workflow task (its Scheduled or Started event).
pub fn validate_cut(events: &[HistoryEvent], finish_event_id: i64) -> Result<(), EngineError> {
    let last_event_id = events.last().map_or(0, |e| e.event_id);
    if finish_event_id <= 1 || finish_event_id > last_event_id {
        return Err(invalid(
            "Workflow task finish ID must be > 1 && <= workflow last event ID.",
        ));
    }
    let boundary = events
        .get((finish_event_id - 2) as usize)
        .filter(|e| e.event_id == finish_event_id - 1)
        .is_some_and(|e| {
            e.event_type == EventType::WorkflowTaskScheduled as i32
                || e.event_type == EventType::WorkflowTaskStarted as i32
        });
    if !boundary {
        return Err(invalid(format!(
            "StateRebuilder unable to Rebuild mutable state to event ID: {}, version: 0, this event must be at the boundary",
            finish_event_id - 1
        )));
    }
    Ok(())
}

/// Builds the new run of a reset (see the module documentation).
pub fn reset(params: ResetParams<'_>) -> Result<ResetRun, EngineError> {
    validate_cut(params.events, params.finish_event_id)?;
    let cut = (params.finish_event_id - 1) as usize;
    let (copied, after) = params.events.split_at(cut);
    let mut state = rebuild(params.base, copied, &params)?;
    let last = copied.last().ok_or_else(|| invalid("empty history"))?;
    let (scheduled_event_id, started_event_id) = match &last.attributes {
        Some(Attributes::WorkflowTaskStartedEventAttributes(a)) => {
            (a.scheduled_event_id, last.event_id)
        }
        _ => (last.event_id, 0),
    };
    let mut events = copied.to_vec();
    let mut t = Transition::new(&mut state, params.now);
    let started_event_id = if started_event_id == 0 {
        t.append(Attributes::WorkflowTaskStartedEventAttributes(
            WorkflowTaskStartedEventAttributes {
                scheduled_event_id,
                identity: RESET_IDENTITY.to_string(),
                request_id: "emptyUuid".to_string(),
                ..Default::default()
            },
        ))
    } else {
        started_event_id
    };
    t.append(Attributes::WorkflowTaskFailedEventAttributes(
        WorkflowTaskFailedEventAttributes {
            scheduled_event_id,
            started_event_id,
            cause: WorkflowTaskFailedCause::ResetWorkflow as i32,
            failure: Some(Failure {
                message: params.reason.clone(),
                failure_info: Some(FailureInfo::ResetWorkflowFailureInfo(
                    ResetWorkflowFailureInfo::default(),
                )),
                ..Default::default()
            }),
            identity: RESET_IDENTITY.to_string(),
            base_run_id: params.base.run_id.clone(),
            new_run_id: params.new_run_id.clone(),
            ..Default::default()
        },
    ));
    reapply(&mut t, copied, after, params.reapply);
    t.schedule_workflow_task(1);
    for a in &t.state.activities {
        t.effects.push(Effect::DispatchActivityTask {
            task_queue: a.task_queue.clone(),
            scheduled_event_id: a.scheduled_event_id,
            attempt: a.attempt,
        });
    }
    // Cross-run work still pending. A child that has not started is started by the new run
    // (it becomes its parent); a started one is asked whether it closed meanwhile (its close
    // went to the run it names). Signals and cancellations of other workflows are sent
    // again, as the reference server does, under the new run's request ids.
    let mut cross_run = Vec::new();
    for child in &mut t.state.children {
        let initiated_event_id = child.initiated_event_id;
        cross_run.push(if child.run_id.is_empty() {
            child.parent_run_id.clear();
            Effect::StartChild { initiated_event_id }
        } else {
            Effect::CheckChild { initiated_event_id }
        });
    }
    for s in &t.state.external_signals {
        cross_run.push(Effect::SignalExternal {
            initiated_event_id: s.initiated_event_id,
        });
    }
    for c in &t.state.external_cancels {
        cross_run.push(Effect::CancelExternal {
            initiated_event_id: c.initiated_event_id,
        });
    }
    t.effects.extend(cross_run);
    let (new_events, effects) = (
        std::mem::take(&mut t.events),
        std::mem::take(&mut t.effects),
    );
    events.extend(new_events);
    state.state_transition_count = 1;
    Ok(ResetRun {
        state,
        events,
        effects,
    })
}

impl Transition<'_> {
    /// Terminates the workflow id's current run as a reset replaces it with `new_run_id`
    /// (identity [`RESETTER_IDENTITY`]). As on the reference server, no parent close policy
    /// is applied to its children: the new run may have taken them over.
    pub fn terminate_for_reset(
        &mut self,
        reason: &str,
        new_run_id: &str,
    ) -> Result<(), EngineError> {
        if self.state.is_running() {
            self.state.reset_new_run_id = new_run_id.to_string();
        }
        self.terminate(reason, None, RESETTER_IDENTITY)
    }
}

/// Appends what the reset reapplies from `after` (the base run's events after the cut), in
/// their order: signals as they were, and each update accepted after the cut (or admitted
/// there by an earlier reset) as UpdateAdmitted with origin REAPPLY and its request, once per
/// update id, unless the copied prefix already holds its request.
fn reapply(t: &mut Transition<'_>, copied: &[HistoryEvent], after: &[HistoryEvent], what: Reapply) {
    let mut known: BTreeSet<String> = BTreeSet::new();
    for event in copied {
        if let Some(Attributes::WorkflowExecutionUpdateAdmittedEventAttributes(a)) =
            &event.attributes
            && let Some(id) = a.request.as_ref().and_then(|r| r.meta.as_ref())
        {
            known.insert(id.update_id.clone());
        }
    }
    // Child events get new ids here: a close event names its child's started event by id.
    let mut started_ids: HashMap<i64, i64> = HashMap::new();
    for event in after {
        if let Some(attributes) = &event.attributes
            && let Some(initiated_event_id) = child_event_initiated_id(attributes)
            && t.state.child(initiated_event_id).is_some()
        {
            reapply_child_event(t, initiated_event_id, attributes, &mut started_ids);
            continue;
        }
        match &event.attributes {
            Some(Attributes::WorkflowExecutionSignaledEventAttributes(a)) if what.signals => {
                if !a.request_id.is_empty() {
                    t.state.signal_request_ids.push(a.request_id.clone());
                }
                t.append(Attributes::WorkflowExecutionSignaledEventAttributes(
                    a.clone(),
                ));
            }
            Some(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(a)) if what.updates => {
                if let Some(request) = &a.accepted_request {
                    admit_again(t, &mut known, request);
                }
            }
            Some(Attributes::WorkflowExecutionUpdateAdmittedEventAttributes(a)) if what.updates => {
                if let Some(request) = &a.request {
                    admit_again(t, &mut known, request);
                }
            }
            _ => {}
        }
    }
}

/// The initiated event id a child's later event (started, start failed, closed) names.
fn child_event_initiated_id(attributes: &Attributes) -> Option<i64> {
    use Attributes as A;
    Some(match attributes {
        A::ChildWorkflowExecutionStartedEventAttributes(a) => a.initiated_event_id,
        A::StartChildWorkflowExecutionFailedEventAttributes(a) => a.initiated_event_id,
        A::ChildWorkflowExecutionCompletedEventAttributes(a) => a.initiated_event_id,
        A::ChildWorkflowExecutionFailedEventAttributes(a) => a.initiated_event_id,
        A::ChildWorkflowExecutionCanceledEventAttributes(a) => a.initiated_event_id,
        A::ChildWorkflowExecutionTimedOutEventAttributes(a) => a.initiated_event_id,
        A::ChildWorkflowExecutionTerminatedEventAttributes(a) => a.initiated_event_id,
        _ => return None,
    })
}

/// Copies an event of a child the new run has pending (its start, failure to start, or
/// close, as the base run recorded it after the cut) and applies it to the new run's state.
fn reapply_child_event(
    t: &mut Transition<'_>,
    initiated_event_id: i64,
    attributes: &Attributes,
    started_ids: &mut HashMap<i64, i64>,
) {
    use Attributes as A;
    let mut copy = attributes.clone();
    let started_slot = match &mut copy {
        A::ChildWorkflowExecutionStartedEventAttributes(a) => {
            if t.state
                .child(initiated_event_id)
                .is_some_and(|c| !c.run_id.is_empty())
            {
                return; // started in the prefix already
            }
            let run_id = a
                .workflow_execution
                .as_ref()
                .map(|e| e.run_id.clone())
                .unwrap_or_default();
            let started_event_id = t.append(copy);
            started_ids.insert(initiated_event_id, started_event_id);
            if let Some(child) = t.state.child_mut(initiated_event_id) {
                child.run_id = run_id;
                child.started_event_id = started_event_id;
            }
            return;
        }
        A::StartChildWorkflowExecutionFailedEventAttributes(_) => None,
        A::ChildWorkflowExecutionCompletedEventAttributes(a) => Some(&mut a.started_event_id),
        A::ChildWorkflowExecutionFailedEventAttributes(a) => Some(&mut a.started_event_id),
        A::ChildWorkflowExecutionCanceledEventAttributes(a) => Some(&mut a.started_event_id),
        A::ChildWorkflowExecutionTimedOutEventAttributes(a) => Some(&mut a.started_event_id),
        A::ChildWorkflowExecutionTerminatedEventAttributes(a) => Some(&mut a.started_event_id),
        _ => return,
    };
    if let Some(slot) = started_slot {
        match t.state.child(initiated_event_id) {
            // A close before any start: the reference records none, so neither is it here.
            Some(c) if c.run_id.is_empty() => return,
            Some(c) => {
                *slot = started_ids
                    .get(&initiated_event_id)
                    .copied()
                    .unwrap_or(c.started_event_id)
            }
            None => return,
        }
    }
    t.append(copy);
    t.state.remove_child(initiated_event_id);
}

fn admit_again(t: &mut Transition<'_>, known: &mut BTreeSet<String>, request: &UpdateRequest) {
    let update_id = request
        .meta
        .as_ref()
        .map(|m| m.update_id.clone())
        .unwrap_or_default();
    if update_id.is_empty() || !known.insert(update_id.clone()) {
        return;
    }
    let admitted_event_id = t.append(Attributes::WorkflowExecutionUpdateAdmittedEventAttributes(
        WorkflowExecutionUpdateAdmittedEventAttributes {
            request: Some(request.clone()),
            origin: UpdateAdmittedEventOrigin::Reapply as i32,
        },
    ));
    t.state.admitted_updates.push(AdmittedUpdate {
        update_id,
        admitted_event_id,
    });
}

/// The new run's state before the reset's own events: the base run's configuration with what
/// `copied` (events `1..finish_event_id`) leaves pending.
#[allow(deprecated)] // namespace, control: deprecated in the API, still on the events
fn rebuild(
    base: &ExecutionState,
    copied: &[HistoryEvent],
    params: &ResetParams<'_>,
) -> Result<ExecutionState, EngineError> {
    let now = params.now;
    let started = match copied.first().and_then(|e| e.attributes.as_ref()) {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a,
        _ => {
            return Err(EngineError::FailedPrecondition(
                "the base run's history does not begin with WorkflowExecutionStarted".into(),
            ));
        }
    };
    let mut state = ExecutionState {
        namespace: base.namespace.clone(),
        workflow_id: base.workflow_id.clone(),
        run_id: params.new_run_id.clone(),
        first_execution_run_id: base.first_execution_run_id.clone(),
        workflow_type: base.workflow_type.clone(),
        task_queue: base.task_queue.clone(),
        status: WorkflowExecutionStatus::Running as i32,
        next_event_id: params.finish_event_id,
        start_time_ms: now,
        workflow_task_timeout_ms: base.workflow_task_timeout_ms,
        run_timeout_ms: base.run_timeout_ms,
        execution_timeout_ms: base.execution_timeout_ms,
        run_expiration_ms: if base.run_timeout_ms > 0 {
            now + base.run_timeout_ms
        } else {
            0
        },
        execution_expiration_ms: base.execution_expiration_ms,
        start_request_id: params.request_id.clone(),
        next_task_seq: base.next_task_seq,
        attempt: base.attempt,
        retry_policy: base.retry_policy.clone(),
        cron_schedule: base.cron_schedule.clone(),
        execution_time_ms: now,
        parent: base.parent.clone(),
        input: base.input.clone(),
        header: base.header.clone(),
        memo: started.memo.clone(),
        search_attributes: started.search_attributes.clone(),
        user_metadata: base.user_metadata.clone(),
        reset_points: base
            .reset_points
            .iter()
            .filter(|p| p.first_workflow_task_completed_id < params.finish_event_id)
            .map(|p| ResetPointInfo {
                run_id: params.new_run_id.clone(),
                create_time: Some(time::timestamp(now)),
                ..p.clone()
            })
            .collect(),
        ..Default::default()
    };
    // The run that wrote each event of the prefix, for the children it started: a reset's
    // WorkflowTaskFailed (RESET_WORKFLOW) names the run whose events precede it.
    let markers: Vec<(i64, &str)> = copied
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::WorkflowTaskFailedEventAttributes(a))
                if a.cause == WorkflowTaskFailedCause::ResetWorkflow as i32
                    && !a.base_run_id.is_empty() =>
            {
                Some((e.event_id, a.base_run_id.as_str()))
            }
            _ => None,
        })
        .collect();
    let writer = |event_id: i64| {
        markers
            .iter()
            .find(|(id, _)| *id > event_id)
            .map_or(base.run_id.as_str(), |(_, run)| *run)
            .to_string()
    };
    for event in copied {
        state.history_size_bytes += event.encoded_len() as i64;
        let Some(attributes) = &event.attributes else {
            continue;
        };
        let event_time = event.event_time.as_ref().map_or(now, time::timestamp_ms);
        use Attributes as A;
        match attributes {
            A::ActivityTaskScheduledEventAttributes(a) => {
                state.activities.push(ActivityInfo {
                    scheduled_event_id: event.event_id,
                    activity_id: a.activity_id.clone(),
                    activity_type: a
                        .activity_type
                        .as_ref()
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                    task_queue: a
                        .task_queue
                        .as_ref()
                        .map(|q| q.name.clone())
                        .unwrap_or_else(|| base.task_queue.clone()),
                    schedule_to_close_ms: time::duration_ms(a.schedule_to_close_timeout.as_ref()),
                    schedule_to_start_ms: time::duration_ms(a.schedule_to_start_timeout.as_ref()),
                    start_to_close_ms: time::duration_ms(a.start_to_close_timeout.as_ref()),
                    heartbeat_timeout_ms: time::duration_ms(a.heartbeat_timeout.as_ref()),
                    retry_policy: a.retry_policy.clone(),
                    attempt: 1,
                    scheduled_time_ms: now,
                    attempt_scheduled_time_ms: now,
                    ..Default::default()
                });
            }
            A::ActivityTaskCompletedEventAttributes(a) => {
                state.remove_activity(a.scheduled_event_id);
            }
            A::ActivityTaskFailedEventAttributes(a) => {
                state.remove_activity(a.scheduled_event_id);
            }
            A::ActivityTaskTimedOutEventAttributes(a) => {
                state.remove_activity(a.scheduled_event_id);
            }
            A::ActivityTaskCanceledEventAttributes(a) => {
                state.remove_activity(a.scheduled_event_id);
            }
            A::ActivityTaskCancelRequestedEventAttributes(a) => {
                if let Some(activity) = state.activity_mut(a.scheduled_event_id) {
                    activity.cancel_requested = true;
                    activity.cancel_requested_event_id = event.event_id;
                }
            }
            A::TimerStartedEventAttributes(a) => state.timers.push(TimerInfo {
                timer_id: a.timer_id.clone(),
                started_event_id: event.event_id,
                fire_time_ms: event_time + time::duration_ms(a.start_to_fire_timeout.as_ref()),
            }),
            A::TimerFiredEventAttributes(a) => {
                state.remove_timer(a.started_event_id);
            }
            A::TimerCanceledEventAttributes(a) => {
                state.remove_timer(a.started_event_id);
            }
            A::WorkflowTaskCompletedEventAttributes(a) => {
                state.last_completed_wt_started_event_id = a.started_event_id;
                state.last_wt_completed_event_id = event.event_id;
            }
            A::WorkflowExecutionSignaledEventAttributes(a) if !a.request_id.is_empty() => {
                state.signal_request_ids.push(a.request_id.clone());
            }
            A::WorkflowExecutionCancelRequestedEventAttributes(_) => {
                state.cancel_requested = true;
            }
            A::UpsertWorkflowSearchAttributesEventAttributes(a) => {
                if let Some(upserted) = &a.search_attributes {
                    let merged = state.search_attributes.get_or_insert_with(Default::default);
                    merge(&mut merged.indexed_fields, &upserted.indexed_fields);
                }
            }
            A::WorkflowPropertiesModifiedEventAttributes(a) => {
                if let Some(upserted) = &a.upserted_memo {
                    let merged = state.memo.get_or_insert_with(Default::default);
                    merge(&mut merged.fields, &upserted.fields);
                }
            }
            A::WorkflowExecutionUpdateAdmittedEventAttributes(a) => {
                if let Some(meta) = a.request.as_ref().and_then(|r| r.meta.as_ref()) {
                    state.admitted_updates.push(AdmittedUpdate {
                        update_id: meta.update_id.clone(),
                        admitted_event_id: event.event_id,
                    });
                }
            }
            A::WorkflowExecutionUpdateAcceptedEventAttributes(a) => {
                let update_id = a
                    .accepted_request
                    .as_ref()
                    .and_then(|r| r.meta.as_ref())
                    .map(|m| m.update_id.clone())
                    .unwrap_or_else(|| a.protocol_instance_id.clone());
                state.admitted_updates.retain(|u| u.update_id != update_id);
                state.accepted_updates.push(AcceptedUpdate {
                    update_id,
                    accepted_event_id: event.event_id,
                });
            }
            A::WorkflowExecutionOptionsUpdatedEventAttributes(a) => {
                if a.unset_versioning_override {
                    state.versioning_override = None;
                } else if a.versioning_override.is_some() {
                    state.versioning_override = a.versioning_override.clone();
                }
            }
            A::WorkflowExecutionUpdateCompletedEventAttributes(a) => {
                state
                    .accepted_updates
                    .retain(|u| u.accepted_event_id != a.accepted_event_id);
                state.completed_update_count += 1;
            }
            A::StartChildWorkflowExecutionInitiatedEventAttributes(a) => {
                state.children.push(ChildInfo {
                    initiated_event_id: event.event_id,
                    run_id: String::new(),
                    started_event_id: 0,
                    command: Some(child_command(a)),
                    user_metadata: event.user_metadata.clone(),
                    parent_run_id: writer(event.event_id),
                });
            }
            A::ChildWorkflowExecutionStartedEventAttributes(a) => {
                if let Some(child) = state.child_mut(a.initiated_event_id) {
                    child.run_id = a
                        .workflow_execution
                        .as_ref()
                        .map(|e| e.run_id.clone())
                        .unwrap_or_default();
                    child.started_event_id = event.event_id;
                }
            }
            A::StartChildWorkflowExecutionFailedEventAttributes(a) => {
                state.remove_child(a.initiated_event_id);
            }
            A::ChildWorkflowExecutionCompletedEventAttributes(a) => {
                state.remove_child(a.initiated_event_id);
            }
            A::ChildWorkflowExecutionFailedEventAttributes(a) => {
                state.remove_child(a.initiated_event_id);
            }
            A::ChildWorkflowExecutionCanceledEventAttributes(a) => {
                state.remove_child(a.initiated_event_id);
            }
            A::ChildWorkflowExecutionTimedOutEventAttributes(a) => {
                state.remove_child(a.initiated_event_id);
            }
            A::ChildWorkflowExecutionTerminatedEventAttributes(a) => {
                state.remove_child(a.initiated_event_id);
            }
            A::SignalExternalWorkflowExecutionInitiatedEventAttributes(a) => {
                state.external_signals.push(ExternalSignalInfo {
                    initiated_event_id: event.event_id,
                    command: Some(SignalExternalWorkflowExecutionCommandAttributes {
                        namespace: a.namespace.clone(),
                        execution: a.workflow_execution.clone(),
                        signal_name: a.signal_name.clone(),
                        input: a.input.clone(),
                        control: a.control.clone(),
                        child_workflow_only: a.child_workflow_only,
                        header: a.header.clone(),
                    }),
                });
            }
            A::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(a) => {
                let target = a.workflow_execution.clone().unwrap_or_default();
                state.external_cancels.push(ExternalCancelInfo {
                    initiated_event_id: event.event_id,
                    command: Some(RequestCancelExternalWorkflowExecutionCommandAttributes {
                        namespace: a.namespace.clone(),
                        workflow_id: target.workflow_id,
                        run_id: target.run_id,
                        control: a.control.clone(),
                        child_workflow_only: a.child_workflow_only,
                        reason: a.reason.clone(),
                    }),
                });
            }
            A::ExternalWorkflowExecutionSignaledEventAttributes(a) => {
                state
                    .external_signals
                    .retain(|s| s.initiated_event_id != a.initiated_event_id);
            }
            A::SignalExternalWorkflowExecutionFailedEventAttributes(a) => {
                state
                    .external_signals
                    .retain(|s| s.initiated_event_id != a.initiated_event_id);
            }
            A::ExternalWorkflowExecutionCancelRequestedEventAttributes(a) => {
                state
                    .external_cancels
                    .retain(|c| c.initiated_event_id != a.initiated_event_id);
            }
            A::RequestCancelExternalWorkflowExecutionFailedEventAttributes(a) => {
                state
                    .external_cancels
                    .retain(|c| c.initiated_event_id != a.initiated_event_id);
            }
            A::NexusOperationScheduledEventAttributes(_) => {
                return Err(EngineError::Unimplemented(
                    "reset of a workflow that scheduled Nexus operations is not supported".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(state)
}

/// The command a StartChildWorkflowExecutionInitiated event recorded.
#[allow(deprecated)] // namespace, control: deprecated in the API, still on the event
fn child_command(
    a: &StartChildWorkflowExecutionInitiatedEventAttributes,
) -> StartChildWorkflowExecutionCommandAttributes {
    StartChildWorkflowExecutionCommandAttributes {
        namespace: a.namespace.clone(),
        workflow_id: a.workflow_id.clone(),
        workflow_type: a.workflow_type.clone(),
        task_queue: a.task_queue.clone(),
        input: a.input.clone(),
        workflow_execution_timeout: a.workflow_execution_timeout,
        workflow_run_timeout: a.workflow_run_timeout,
        workflow_task_timeout: a.workflow_task_timeout,
        parent_close_policy: a.parent_close_policy,
        control: a.control.clone(),
        workflow_id_reuse_policy: a.workflow_id_reuse_policy,
        retry_policy: a.retry_policy.clone(),
        cron_schedule: a.cron_schedule.clone(),
        header: a.header.clone(),
        memo: a.memo.clone(),
        search_attributes: a.search_attributes.clone(),
        inherit_build_id: a.inherit_build_id,
        priority: a.priority.clone(),
        ..Default::default()
    }
}

/// Upserts `changes` into `target`; an empty or JSON `null` payload removes the key (as the
/// upsert commands that wrote the events did).
fn merge(target: &mut HashMap<String, Payload>, changes: &HashMap<String, Payload>) {
    for (key, payload) in changes {
        if payload.data.is_empty() || payload.data == b"null" {
            target.remove(key);
        } else {
            target.insert(key.clone(), payload.clone());
        }
    }
}

/// Records the reset point of a workflow task completion: the first completed workflow task
/// of each worker build (build id, else binary checksum), at most [`MAX_RESET_POINTS`] (the
/// oldest go first). Not resettable while cross-run work (children, external signals or
/// cancellations) is pending, as the reference server marks it (an explicit reset to it is
/// still allowed). No build: no point.
pub fn record_reset_point(
    state: &mut ExecutionState,
    build_id: &str,
    binary_checksum: &str,
    completed_event_id: i64,
    now: i64,
) {
    if build_id.is_empty() && binary_checksum.is_empty() {
        return;
    }
    let known = state
        .reset_points
        .iter()
        .any(|p| p.build_id == build_id && binary_checksum_of(p) == binary_checksum);
    if known {
        return;
    }
    if state.reset_points.len() >= MAX_RESET_POINTS {
        state.reset_points.remove(0);
    }
    let resettable = state.children.is_empty()
        && state.external_signals.is_empty()
        && state.external_cancels.is_empty();
    #[allow(deprecated)] // binary_checksum: deprecated, still what older workers send
    state.reset_points.push(ResetPointInfo {
        build_id: build_id.to_string(),
        binary_checksum: binary_checksum.to_string(),
        run_id: state.run_id.clone(),
        first_workflow_task_completed_id: completed_event_id,
        create_time: Some(time::timestamp(now)),
        expire_time: None,
        resettable,
    });
}

#[allow(deprecated)]
fn binary_checksum_of(p: &ResetPointInfo) -> &str {
    &p.binary_checksum
}

#[cfg(test)]
mod tests;
