//! Starting a run: validation of StartWorkflowExecution and the run's first events.

use crate::api::{
    enums::v1::WorkflowExecutionStatus,
    history::v1::{
        HistoryEvent, WorkflowExecutionStartedEventAttributes, history_event::Attributes,
    },
    taskqueue::v1::TaskQueue,
    workflowservice::v1::StartWorkflowExecutionRequest,
};
use crate::{Effect, EngineError, ExecutionState, Transition, retry, time, validate};
use sundial_schedule::workflow_cron::{self, WorkflowCron};

/// Temporal's default workflow task timeout.
pub const DEFAULT_WORKFLOW_TASK_TIMEOUT_MS: i64 = 10_000;
/// Temporal caps the workflow task timeout at two minutes.
pub const MAX_WORKFLOW_TASK_TIMEOUT_MS: i64 = 120_000;
/// Longest workflow id, type name, task queue name or request id accepted.
pub const MAX_ID_LENGTH: usize = validate::MAX_ID_LENGTH;

/// What a new run is started with.
pub struct StartParams<'a> {
    pub request: &'a StartWorkflowExecutionRequest,
    pub run_id: String,
    pub now: i64,
    /// SignalWithStart: the signal, written right after WorkflowExecutionStarted.
    pub signal: Option<crate::Signal>,
    /// Set when this run continues an earlier one (continue-as-new, retry).
    pub continuation: Option<crate::Continuation>,
    /// Set for a child workflow.
    pub parent: Option<crate::ParentInfo>,
}

fn invalid(msg: &str) -> EngineError {
    EngineError::InvalidArgument(msg.to_string())
}

/// Checks a start request the way the reference server does, with its messages.
pub fn validate_start(req: &StartWorkflowExecutionRequest) -> Result<(), EngineError> {
    if req.workflow_id.is_empty() {
        return Err(invalid("WorkflowId is not set on request."));
    }
    if req.workflow_id.len() > MAX_ID_LENGTH {
        return Err(invalid("WorkflowId exceeds length limit."));
    }
    let type_name = req
        .workflow_type
        .as_ref()
        .map(|t| t.name.as_str())
        .unwrap_or("");
    if type_name.is_empty() {
        return Err(invalid("WorkflowType is not set on request."));
    }
    if type_name.len() > MAX_ID_LENGTH {
        return Err(invalid("WorkflowType exceeds length limit."));
    }
    let queue = req
        .task_queue
        .as_ref()
        .map(|t| t.name.as_str())
        .unwrap_or("");
    if queue.is_empty() {
        return Err(invalid("TaskQueue is not set on request."));
    }
    if queue.len() > MAX_ID_LENGTH {
        return Err(invalid("TaskQueue length exceeds limit."));
    }
    if req.request_id.len() > MAX_ID_LENGTH {
        return Err(invalid("RequestId length exceeds limit."));
    }
    if req.identity.len() > MAX_ID_LENGTH {
        return Err(invalid("Identity length exceeds limit."));
    }
    for (d, name) in [
        (
            &req.workflow_execution_timeout,
            "WorkflowExecutionTimeoutSeconds",
        ),
        (&req.workflow_run_timeout, "WorkflowRunTimeoutSeconds"),
        (&req.workflow_task_timeout, "WorkflowTaskTimeoutSeconds"),
        (&req.workflow_start_delay, "WorkflowStartDelaySeconds"),
    ] {
        if let Some(cause) = time::invalid_duration(d.as_ref()) {
            return Err(EngineError::InvalidArgument(format!(
                "An invalid {name} is set on request. cause: {cause}"
            )));
        }
    }
    validate::id_policies(
        req.workflow_id_reuse_policy,
        req.workflow_id_conflict_policy,
    )
    .map_err(EngineError::InvalidArgument)?;
    validate::retry_policy(req.retry_policy.as_ref()).map_err(EngineError::InvalidArgument)?;
    validate::memo(req.memo.as_ref()).map_err(EngineError::InvalidArgument)?;
    validate::search_attributes(req.search_attributes.as_ref())
        .map_err(EngineError::InvalidArgument)?;
    if let Some(policy) = &req.retry_policy {
        retry::normalize(Some(policy)).map_err(EngineError::InvalidArgument)?;
    }
    if !req.cron_schedule.is_empty() {
        WorkflowCron::parse(&req.cron_schedule).map_err(|e| invalid(&e.0))?;
    }
    Ok(())
}

/// A client's start: [`new_execution`], and with `request_eager_execution` (eager workflow
/// start) the first workflow task already started for the caller, in the same commit as the
/// start, instead of dispatched to a queue (numbered from `task_seq_floor`, see
/// [`crate::Inputs::task_seq_floor`]).
pub fn start_execution(
    params: StartParams<'_>,
    limits: crate::Limits,
    task_seq_floor: i64,
) -> Result<(ExecutionState, Vec<HistoryEvent>, Vec<Effect>), EngineError> {
    let req = params.request;
    let now = params.now;
    let (mut state, mut events, mut effects) = new_execution(params)?;
    if req.request_eager_execution
        && let Some(wt) = state.workflow_task.clone()
    {
        let mut t = crate::Transition::with_inputs(
            &mut state,
            crate::Inputs {
                now,
                limits,
                task_seq_floor,
                ..crate::Inputs::default()
            },
        );
        let task = crate::WorkflowTaskRef {
            scheduled_event_id: wt.scheduled_event_id,
            seq: wt.seq,
        };
        let poller = crate::Poller {
            identity: req.identity.clone(),
            request_id: req.request_id.clone(),
            build_id: String::new(),
        };
        t.start_workflow_task(task, &poller)?;
        events.append(&mut t.events);
        effects.retain(|e| !matches!(e, Effect::DispatchWorkflowTask { .. }));
    }
    state.state_transition_count = 1;
    Ok((state, events, effects))
}

/// Creates the state of a new run with its first events (WorkflowExecutionStarted,
/// WorkflowTaskScheduled) and the dispatch of its first workflow task.
pub fn new_execution(
    params: StartParams<'_>,
) -> Result<(ExecutionState, Vec<HistoryEvent>, Vec<Effect>), EngineError> {
    let req = params.request;
    validate_start(req)?;
    let now = params.now;
    let execution_timeout = time::duration_ms(req.workflow_execution_timeout.as_ref());
    let mut run_timeout = time::duration_ms(req.workflow_run_timeout.as_ref());
    if run_timeout == 0 || (execution_timeout > 0 && run_timeout > execution_timeout) {
        run_timeout = execution_timeout;
    }
    let mut task_timeout = time::duration_ms(req.workflow_task_timeout.as_ref());
    if task_timeout == 0 {
        task_timeout = DEFAULT_WORKFLOW_TASK_TIMEOUT_MS;
    }
    task_timeout = task_timeout.min(MAX_WORKFLOW_TASK_TIMEOUT_MS);
    if run_timeout > 0 {
        task_timeout = task_timeout.min(run_timeout);
    }
    let queue = req
        .task_queue
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let first_of_chain = params.continuation.is_none();
    let continuation = params.continuation.unwrap_or_default();
    let mut backoff_ms = continuation.backoff_ms.max(0);
    if first_of_chain && !req.cron_schedule.is_empty() {
        // A cron workflow's first run waits for the schedule's first time (rounded up to
        // whole seconds, as the reference does).
        let cron = WorkflowCron::validate(&req.cron_schedule, now).map_err(|e| invalid(&e.0))?;
        backoff_ms = cron
            .backoff_ms(now, now)
            .ok_or_else(|| invalid(workflow_cron::UNSATISFIABLE))?;
    }
    let start_delay = time::duration_ms(req.workflow_start_delay.as_ref());
    if first_of_chain && start_delay > 0 {
        backoff_ms = backoff_ms.max(start_delay);
    }
    let first_execution_run_id = if continuation.first_execution_run_id.is_empty() {
        params.run_id.clone()
    } else {
        continuation.first_execution_run_id.clone()
    };
    let execution_expiration_ms = if continuation.execution_expiration_ms > 0 {
        continuation.execution_expiration_ms
    } else if execution_timeout > 0 {
        now + execution_timeout
    } else {
        0
    };
    let mut state = ExecutionState {
        namespace: req.namespace.clone(),
        workflow_id: req.workflow_id.clone(),
        run_id: params.run_id.clone(),
        first_execution_run_id: first_execution_run_id.clone(),
        workflow_type: req
            .workflow_type
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        task_queue: queue.clone(),
        status: WorkflowExecutionStatus::Running as i32,
        next_event_id: 1,
        start_time_ms: now,
        workflow_task_timeout_ms: task_timeout,
        run_timeout_ms: run_timeout,
        execution_timeout_ms: execution_timeout,
        run_expiration_ms: if run_timeout > 0 {
            now + backoff_ms + run_timeout
        } else {
            0
        },
        execution_expiration_ms,
        start_request_id: req.request_id.clone(),
        attempt: continuation.attempt.max(1),
        retry_policy: req.retry_policy.clone(),
        cron_schedule: req.cron_schedule.clone(),
        backoff_until_ms: if backoff_ms > 0 { now + backoff_ms } else { 0 },
        execution_time_ms: now + backoff_ms,
        parent: params.parent.clone(),
        input: req.input.clone(),
        header: req.header.clone(),
        memo: req.memo.clone(),
        search_attributes: req.search_attributes.clone(),
        user_metadata: req.user_metadata.clone(),
        completion_callbacks: req.completion_callbacks.clone(),
        ..Default::default()
    };
    let mut t = Transition::new(&mut state, now);
    t.append(Attributes::WorkflowExecutionStartedEventAttributes(
        WorkflowExecutionStartedEventAttributes {
            workflow_type: req.workflow_type.clone(),
            task_queue: Some(TaskQueue {
                name: queue,
                kind: 1,
                normal_name: String::new(),
            }),
            input: req.input.clone(),
            workflow_execution_timeout: time::opt_duration(execution_timeout),
            workflow_run_timeout: time::opt_duration(run_timeout),
            workflow_task_timeout: Some(time::duration(task_timeout)),
            original_execution_run_id: params.run_id.clone(),
            identity: req.identity.clone(),
            first_execution_run_id,
            retry_policy: req.retry_policy.clone(),
            attempt: continuation.attempt.max(1),
            workflow_execution_expiration_time: (execution_expiration_ms > 0)
                .then(|| time::timestamp(execution_expiration_ms)),
            continued_execution_run_id: continuation.previous_run_id.clone(),
            initiator: if first_of_chain && !req.cron_schedule.is_empty() {
                crate::api::enums::v1::ContinueAsNewInitiator::CronSchedule as i32
            } else {
                continuation.initiator
            },
            root_workflow_execution: params.parent.as_ref().map(|p| {
                crate::api::common::v1::WorkflowExecution {
                    workflow_id: p.root_workflow_id.clone(),
                    run_id: p.root_run_id.clone(),
                }
            }),
            // A first run may be handed its predecessor's outcome by its starter (a schedule).
            continued_failure: continuation
                .continued_failure
                .clone()
                .or_else(|| req.continued_failure.clone()),
            last_completion_result: continuation
                .last_completion_result
                .clone()
                .or_else(|| req.last_completion_result.clone()),
            first_workflow_task_backoff: Some(time::duration(backoff_ms)),
            cron_schedule: req.cron_schedule.clone(),
            parent_workflow_namespace: params
                .parent
                .as_ref()
                .map(|p| p.namespace.clone())
                .unwrap_or_default(),
            parent_workflow_execution: params.parent.as_ref().map(|p| {
                crate::api::common::v1::WorkflowExecution {
                    workflow_id: p.workflow_id.clone(),
                    run_id: p.run_id.clone(),
                }
            }),
            parent_initiated_event_id: params.parent.as_ref().map_or(0, |p| p.initiated_event_id),
            memo: req.memo.clone(),
            search_attributes: req.search_attributes.clone(),
            header: req.header.clone(),
            workflow_id: req.workflow_id.clone(),
            priority: req.priority.clone(),
            completion_callbacks: req.completion_callbacks.clone(),
            ..Default::default()
        },
    ));

    if let Some(metadata) = &req.user_metadata {
        t.set_user_metadata(0, metadata);
    }
    if let Some(signal) = params.signal {
        t.signal(signal)?;
    }
    t.ensure_workflow_task();
    let (events, effects) = (t.events, t.effects);
    Ok((state, events, effects))
}
