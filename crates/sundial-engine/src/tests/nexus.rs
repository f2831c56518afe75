//! Nexus operations a run calls (`nexus.rs`): the ScheduleNexusOperation and
//! RequestCancelNexusOperation commands, the handler's answers to start and cancel requests,
//! completion callbacks, retries, timeouts, and the completion callbacks of a run that backs an
//! operation itself.

use super::*;
use crate::api::{
    command::v1::{
        FailWorkflowExecutionCommandAttributes, RequestCancelNexusOperationCommandAttributes,
        ScheduleNexusOperationCommandAttributes,
    },
    common::v1::{Callback, Payload, callback, link},
    enums::v1::{NexusOperationCancellationState, PendingNexusOperationState, TimeoutType},
    failure::v1::{CanceledFailureInfo, NexusHandlerFailureInfo, NexusOperationFailureInfo},
    nexus::v1 as nexus_api,
    workflow::v1::OnConflictOptions,
};
use crate::nexus::{
    HandlerOutcome, NexusEndpointTargets, NexusTarget, NexusTaskRef, OPERATION_FAILED_MESSAGE,
    StartAnswer, handler_error, workflow_event_link,
};
use crate::{CompletionOutcome, EngineError, Limits};

/// The scheduled event id of the operation the first task schedules (events 1-4 are the
/// start, and the first task's scheduled, started and completed events).
const ID: i64 = 5;

/// The endpoints the server's registry knows: only "ep".
fn endpoints() -> NexusEndpointTargets {
    NexusEndpointTargets::from([(
        "ep".to_string(),
        NexusTarget {
            endpoint_id: "ep-id".into(),
            namespace: "handler-ns".into(),
            task_queue: "handler-q".into(),
        },
    )])
}

/// The start (or cancel) request dispatched to the endpoint's queue.
fn dispatch(cancel: bool, attempt: i32) -> Effect {
    Effect::DispatchNexusTask {
        namespace: "handler-ns".into(),
        task_queue: "handler-q".into(),
        scheduled_event_id: ID,
        cancel,
        attempt,
    }
}

fn op_command(endpoint: &str, s2c_ms: i64) -> ScheduleNexusOperationCommandAttributes {
    ScheduleNexusOperationCommandAttributes {
        endpoint: endpoint.into(),
        service: "svc".into(),
        operation: "op".into(),
        schedule_to_close_timeout: time::opt_duration(s2c_ms),
        ..Default::default()
    }
}

fn schedule_op(endpoint: &str, s2c_ms: i64) -> Cmd {
    Cmd::ScheduleNexusOperationCommandAttributes(op_command(endpoint, s2c_ms))
}

fn cancel_op(scheduled_event_id: i64) -> Cmd {
    Cmd::RequestCancelNexusOperationCommandAttributes(
        RequestCancelNexusOperationCommandAttributes { scheduled_event_id },
    )
}

/// Starts the run's workflow task (scheduling one if it has none) and completes it with
/// `commands` under `limits`, the registry knowing [`endpoints`].
fn respond_with(
    run: &mut Run,
    commands: Vec<Cmd>,
    limits: Limits,
) -> (CompletionOutcome, Vec<Effect>) {
    if run.state.workflow_task.is_none() {
        run.step(|t| t.ensure_workflow_task());
    }
    let wt = run.start_wt();
    let req = completion(commands);
    let (r, effects, _) = run.step(|t| {
        t.limits = limits;
        t.complete_workflow_task_with_endpoints(wt, &req, endpoints())
    });
    (r.unwrap(), effects)
}

fn respond(run: &mut Run, commands: Vec<Cmd>) -> (CompletionOutcome, Vec<Effect>) {
    respond_with(run, commands, Limits::default())
}

/// A run whose first task scheduled operation [`ID`] on "ep" with `command`.
fn scheduled_with(command: ScheduleNexusOperationCommandAttributes) -> Run {
    let (mut run, _) = Run::start();
    let (outcome, _) = respond(
        &mut run,
        vec![Cmd::ScheduleNexusOperationCommandAttributes(command)],
    );
    assert!(outcome.rejected.is_none(), "{:?}", outcome.rejected);
    run
}

fn scheduled(s2c_ms: i64) -> Run {
    scheduled_with(op_command("ep", s2c_ms))
}

fn start_task(attempt: i32) -> NexusTaskRef {
    NexusTaskRef {
        scheduled_event_id: ID,
        cancel: false,
        attempt,
    }
}

fn cancel_task(attempt: i32) -> NexusTaskRef {
    NexusTaskRef {
        cancel: true,
        ..start_task(attempt)
    }
}

/// A worker takes attempt `attempt` of the start request and answers it: the answer's
/// outcome, effects and whether it is persisted.
fn answer_start(
    run: &mut Run,
    attempt: i32,
    answer: StartAnswer,
) -> (Result<(), EngineError>, Vec<Effect>, bool) {
    let (r, effects, persist) = run.step(|t| t.nexus_task_dispatched(start_task(attempt)));
    r.unwrap();
    assert!(
        effects.is_empty() && !persist,
        "handing a request out stays in memory"
    );
    run.step(|t| t.nexus_start_answered(start_task(attempt), answer))
}

/// A worker takes attempt `attempt` of the cancel request and answers it.
fn answer_cancel(
    run: &mut Run,
    attempt: i32,
    answer: Result<(), (Failure, bool)>,
) -> (Result<(), EngineError>, Vec<Effect>, bool) {
    run.step(|t| t.nexus_task_dispatched(cancel_task(attempt)))
        .0
        .unwrap();
    run.step(|t| t.nexus_cancel_answered(cancel_task(attempt), answer))
}

/// Operation [`ID`], started asynchronously with token "tok" by workflow `handler-wf`.
fn started(run: &mut Run) -> Vec<Effect> {
    let link = nexus_api::Link {
        url: workflow_event_link(
            "handler-ns",
            "handler-wf",
            "handler-run",
            1,
            E::WorkflowExecutionStarted,
        ),
        r#type: "temporal.api.common.v1.Link.WorkflowEvent".into(),
    };
    let (r, effects, persist) = answer_start(
        run,
        1,
        StartAnswer::Started {
            operation_token: "tok".into(),
            links: vec![link],
        },
    );
    r.unwrap();
    assert!(persist);
    effects
}

fn payload(data: &str) -> Payload {
    Payload {
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A handler error of Nexus type `kind`, as a RespondNexusTaskFailed reports it.
fn handler_failure(kind: &str) -> Failure {
    Failure {
        message: format!("{kind} error"),
        failure_info: Some(FailureInfo::NexusHandlerFailureInfo(
            NexusHandlerFailureInfo {
                r#type: kind.into(),
                retry_behavior: 0,
            },
        )),
        ..Default::default()
    }
}

/// The handler error of type `kind`, retryable as its type says.
fn handler_error_answer(kind: &str) -> StartAnswer {
    let (failure, retryable) = handler_error(Some(&handler_failure(kind)), None).unwrap();
    StartAnswer::HandlerError { failure, retryable }
}

fn canceled_by_handler() -> Failure {
    Failure {
        message: "operation canceled".into(),
        failure_info: Some(FailureInfo::CanceledFailureInfo(
            CanceledFailureInfo::default(),
        )),
        ..Default::default()
    }
}

fn nexus_dispatches(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::DispatchNexusTask { .. }))
        .cloned()
        .collect()
}

fn nexus_deadlines(run: &Run) -> Vec<crate::Deadline> {
    run.state
        .deadlines()
        .into_iter()
        .filter(|d| {
            matches!(
                d.kind,
                DeadlineKind::NexusAttempt { .. } | DeadlineKind::NexusTimeout { .. }
            )
        })
        .collect()
}

/// The last event of type `kind`.
fn last(run: &Run, kind: EventType) -> &HistoryEvent {
    run.history
        .iter()
        .rev()
        .find(|e| e.event_type == kind as i32)
        .unwrap_or_else(|| panic!("no {kind:?} event"))
}

fn last_task_failure(run: &Run) -> crate::api::history::v1::WorkflowTaskFailedEventAttributes {
    match &last(run, E::WorkflowTaskFailed).attributes {
        Some(Attributes::WorkflowTaskFailedEventAttributes(f)) => f.clone(),
        _ => unreachable!(),
    }
}

/// The failure a caller's workflow sees for operation [`ID`] that did not complete: the
/// operation's identity around `cause`.
fn assert_operation_failure(failure: Option<&Failure>, operation_token: &str, cause: &Failure) {
    let failure = failure.expect("a failure");
    assert_eq!(failure.message, OPERATION_FAILED_MESSAGE);
    #[allow(deprecated)] // operation_id: still filled in
    let expected = NexusOperationFailureInfo {
        scheduled_event_id: ID,
        endpoint: "ep".into(),
        service: "svc".into(),
        operation: "op".into(),
        operation_id: operation_token.into(),
        operation_token: operation_token.into(),
    };
    assert_eq!(
        failure.failure_info,
        Some(FailureInfo::NexusOperationExecutionFailureInfo(expected))
    );
    assert_eq!(failure.cause.as_deref(), Some(cause));
}

/// (run timeout, command's schedule-to-close) -> the operation's schedule-to-close.
#[test]
fn scheduling_on_a_known_endpoint_writes_scheduled_and_dispatches_the_start_request() {
    for (run_timeout_ms, s2c_ms, expected_ms) in [
        (0, 0, 0),
        (0, 5_000, 5_000),
        (60_000, 0, 60_000),
        (60_000, 5_000, 5_000),
        (3_000, 5_000, 3_000),
    ] {
        let case = format!("run timeout {run_timeout_ms}, schedule-to-close {s2c_ms}");
        let (mut run, _) = Run::start_with(
            |r| r.workflow_run_timeout = time::opt_duration(run_timeout_ms),
            1_000,
        )
        .unwrap();
        let (outcome, effects) = respond(&mut run, vec![schedule_op("ep", s2c_ms)]);
        assert!(outcome.rejected.is_none(), "{case}");
        assert!(!outcome.new_workflow_task, "{case}");
        assert_eq!(
            run.types()[3..],
            [E::WorkflowTaskCompleted, E::NexusOperationScheduled],
            "{case}"
        );
        let event = &run.history[4];
        assert_eq!(event.event_id, ID, "{case}");
        let Some(Attributes::NexusOperationScheduledEventAttributes(a)) = &event.attributes else {
            panic!("{case}")
        };
        assert_eq!(
            (
                a.endpoint.as_str(),
                a.endpoint_id.as_str(),
                a.service.as_str(),
                a.operation.as_str()
            ),
            ("ep", "ep-id", "svc", "op"),
            "{case}"
        );
        assert_eq!(a.request_id, "run-1-nexus-5", "{case}");
        assert_eq!(a.workflow_task_completed_event_id, 4, "{case}");
        assert_eq!(
            a.schedule_to_close_timeout,
            time::opt_duration(expected_ms),
            "{case}"
        );
        assert_eq!(effects, vec![dispatch(false, 1)], "{case}");
        let op = run.state.nexus_operation(ID).expect("pending").clone();
        assert_eq!(op.state, PendingNexusOperationState::Scheduled as i32);
        assert_eq!((op.attempt, op.schedule_to_close_ms), (1, expected_ms));
        // After a restart the start request is offered again.
        assert_eq!(run.state.ready_tasks(run.now), vec![dispatch(false, 1)]);
        let timeouts: Vec<_> = nexus_deadlines(&run)
            .into_iter()
            .map(|d| (d.at_ms, d.kind))
            .collect();
        let expected: Vec<_> = (expected_ms > 0)
            .then(|| {
                (
                    op.scheduled_time_ms + expected_ms,
                    DeadlineKind::NexusTimeout {
                        scheduled_event_id: ID,
                        timeout_type: TimeoutType::ScheduleToClose as i32,
                    },
                )
            })
            .into_iter()
            .collect();
        assert_eq!(timeouts, expected, "{case}");
    }
}

/// A command the reference refuses -> the task fails with BadScheduleNexusOperationAttributes
/// and this message (after the cause's name), and keeps no operation.
#[test]
fn bad_schedule_commands_fail_the_task_and_keep_no_operation() {
    let negative = ScheduleNexusOperationCommandAttributes {
        start_to_close_timeout: Some(time::duration(-1_000)),
        ..op_command("ep", 0)
    };
    let no_service = ScheduleNexusOperationCommandAttributes {
        service: String::new(),
        ..op_command("ep", 0)
    };
    for (command, message) in [
        (op_command("x", 0), r#"endpoint "x" not found"#),
        (op_command("", 0), "Endpoint is not set on command."),
        (no_service, "Service is not set on command."),
        (negative, "StartToCloseTimeout must not be negative."),
    ] {
        let message = format!("BadScheduleNexusOperationAttributes: {message}");
        let (mut run, _) = Run::start();
        let (outcome, effects) = respond(
            &mut run,
            vec![Cmd::ScheduleNexusOperationCommandAttributes(command)],
        );
        assert_eq!(outcome.rejected.as_deref(), Some(message.as_str()));
        assert_eq!(
            last_task_failure(&run).cause,
            WorkflowTaskFailedCause::BadScheduleNexusOperationAttributes as i32,
            "{message}"
        );
        assert!(run.state.nexus_operations.is_empty(), "{message}");
        assert!(nexus_dispatches(&effects).is_empty(), "{message}");
        assert!(!run.types().contains(&E::NexusOperationScheduled));
    }
}

/// (limit, operations pending from an earlier task, operations the task schedules) ->
/// accepted? A refused task keeps none of its commands.
#[test]
fn scheduling_past_the_pending_limit_fails_the_task() {
    let default = Limits::default().pending_nexus_operations;
    assert_eq!(default, 30, "Temporal's default");
    for (limit, earlier, count, accepted) in [
        (default, 0, 30, true),
        (default, 0, 31, false),
        (default, 30, 1, false),
        (2, 1, 1, true),
        (2, 0, 3, false),
        (0, 0, 31, true),
    ] {
        let case = format!("limit {limit}, {earlier} pending, {count} more");
        let limits = Limits {
            pending_nexus_operations: limit,
            ..Limits::default()
        };
        let (mut run, _) = Run::start();
        if earlier > 0 {
            let (outcome, _) = respond_with(&mut run, vec![schedule_op("ep", 0); earlier], limits);
            assert!(outcome.rejected.is_none(), "{case}");
        }
        let (outcome, effects) = respond_with(&mut run, vec![schedule_op("ep", 0); count], limits);
        if accepted {
            assert!(outcome.rejected.is_none(), "{case}");
            assert_eq!(run.state.nexus_operations.len(), earlier + count, "{case}");
            assert_eq!(nexus_dispatches(&effects).len(), count, "{case}");
        } else {
            let message = format!(
                "PendingNexusOperationsLimitExceeded: the number of pending Nexus operations, {limit}, has reached the per-workflow limit of {limit}"
            );
            assert_eq!(
                outcome.rejected.as_deref(),
                Some(message.as_str()),
                "{case}"
            );
            assert_eq!(
                last_task_failure(&run).cause,
                WorkflowTaskFailedCause::PendingNexusOperationsLimitExceeded as i32,
                "{case}"
            );
            assert_eq!(run.state.nexus_operations.len(), earlier, "{case}");
            assert!(nexus_dispatches(&effects).is_empty(), "{case}");
        }
    }
}

/// A start answer that ends the operation -> its event, then a workflow task; the
/// operation is no longer pending and a repeated answer is refused.
#[test]
fn start_answers_that_end_the_operation_write_its_outcome_and_wake_the_workflow() {
    for (answer, kind) in [
        (
            StartAnswer::Completed(Some(payload("done"))),
            E::NexusOperationCompleted,
        ),
        (StartAnswer::Failed(app_failure()), E::NexusOperationFailed),
        (
            StartAnswer::Canceled(canceled_by_handler()),
            E::NexusOperationCanceled,
        ),
        (handler_error_answer("BAD_REQUEST"), E::NexusOperationFailed),
    ] {
        let mut run = scheduled(0);
        let before = run.history.len();
        let (r, effects, persist) = answer_start(&mut run, 1, answer.clone());
        r.unwrap();
        assert!(persist, "{answer:?}");
        assert_eq!(
            run.types()[before..],
            [kind, E::WorkflowTaskScheduled],
            "{answer:?}"
        );
        assert!(
            matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]),
            "{answer:?}"
        );
        match (&answer, &run.history[before].attributes) {
            (
                StartAnswer::Completed(result),
                Some(Attributes::NexusOperationCompletedEventAttributes(a)),
            ) => {
                assert_eq!((a.scheduled_event_id, &a.result), (ID, result));
                assert_eq!(a.request_id, "run-1-nexus-5");
            }
            (
                StartAnswer::Failed(cause),
                Some(Attributes::NexusOperationFailedEventAttributes(a)),
            ) => assert_operation_failure(a.failure.as_ref(), "", cause),
            (
                StartAnswer::Canceled(cause),
                Some(Attributes::NexusOperationCanceledEventAttributes(a)),
            ) => assert_operation_failure(a.failure.as_ref(), "", cause),
            (
                StartAnswer::HandlerError { failure, retryable },
                Some(Attributes::NexusOperationFailedEventAttributes(a)),
            ) => {
                assert!(!retryable);
                assert_operation_failure(a.failure.as_ref(), "", failure);
            }
            (answer, attributes) => panic!("{answer:?} wrote {attributes:?}"),
        }
        assert!(run.state.nexus_operations.is_empty(), "{answer:?}");
        assert!(nexus_deadlines(&run).is_empty(), "{answer:?}");
        let (r, _, _) = run.step(|t| t.nexus_start_answered(start_task(1), answer.clone()));
        assert!(matches!(r, Err(EngineError::NotFound(_))), "{answer:?}");
    }
}

#[test]
fn an_async_start_records_its_token_and_the_callback_completes_the_operation_once() {
    let mut run = scheduled(0);
    let before = run.history.len();
    let effects = started(&mut run);
    assert_eq!(
        run.types()[before..],
        [E::NexusOperationStarted, E::WorkflowTaskScheduled]
    );
    assert!(
        matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]),
        "no cancel was requested: nothing more is dispatched"
    );
    let event = &run.history[before];
    let Some(Attributes::NexusOperationStartedEventAttributes(a)) = &event.attributes else {
        panic!()
    };
    assert_eq!(
        (a.scheduled_event_id, a.operation_token.as_str()),
        (ID, "tok")
    );
    assert_eq!(a.request_id, "run-1-nexus-5");
    assert!(
        matches!(
            &event.links[..],
            [crate::api::common::v1::Link {
                variant: Some(link::Variant::WorkflowEvent(w)),
                ..
            }] if w.workflow_id == "handler-wf" && w.run_id == "handler-run"
        ),
        "the handler's workflow is linked: {:?}",
        event.links
    );
    let op = run.state.nexus_operation(ID).unwrap().clone();
    assert_eq!(op.state, PendingNexusOperationState::Started as i32);
    assert_eq!(
        (op.operation_token.as_str(), op.started_event_id),
        ("tok", event.event_id)
    );
    assert_eq!(
        op.handler_workflow.as_ref().map(|h| h.workflow_id.as_str()),
        Some("handler-wf")
    );
    // After a restart, the handler's workflow is asked whether it closed meanwhile; no
    // request is offered again.
    let ready = run.state.ready_tasks(run.now);
    assert!(ready.contains(&Effect::CheckNexusOperation {
        scheduled_event_id: ID
    }));
    assert!(nexus_dispatches(&ready).is_empty());
    // The start request was answered: answering it again is refused.
    let (r, _, _) =
        run.step(|t| t.nexus_start_answered(start_task(1), StartAnswer::Completed(None)));
    assert!(matches!(r, Err(EngineError::NotFound(_))));

    respond(&mut run, vec![]);
    let before = run.history.len();
    let outcome = HandlerOutcome::Completed(Some(payload("result")));
    let (r, effects, persist) = run.step(|t| t.nexus_handler_closed(ID, "tok", outcome.clone()));
    r.unwrap();
    assert!(persist);
    assert_eq!(
        run.types()[before..],
        [E::NexusOperationCompleted, E::WorkflowTaskScheduled]
    );
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    let Some(Attributes::NexusOperationCompletedEventAttributes(c)) =
        &run.history[before].attributes
    else {
        panic!()
    };
    assert_eq!(c.result, Some(payload("result")));
    assert!(run.state.nexus_operations.is_empty());
    // The callback delivered again (a retry of the handler's server) changes nothing.
    let events = run.history.len();
    let (r, effects, persist) = run.step(|t| t.nexus_handler_closed(ID, "tok", outcome));
    r.unwrap();
    assert!(effects.is_empty() && !persist);
    assert_eq!(run.history.len(), events);
}

/// The handler's workflow closed before its start was answered: both are recorded.
#[test]
fn a_callback_before_the_start_answer_records_started_then_the_outcome() {
    let mut run = scheduled(0);
    let before = run.history.len();
    let outcome = HandlerOutcome::Failed(app_failure());
    let (r, effects, persist) = run.step(|t| t.nexus_handler_closed(ID, "tok", outcome));
    r.unwrap();
    assert!(persist);
    let written = run.types()[before..].to_vec();
    let started_at = written.iter().position(|e| *e == E::NexusOperationStarted);
    let failed_at = written.iter().position(|e| *e == E::NexusOperationFailed);
    assert!(
        matches!((started_at, failed_at), (Some(s), Some(f)) if s < f),
        "{written:?}"
    );
    assert!(written.contains(&E::WorkflowTaskScheduled));
    let Some(Attributes::NexusOperationFailedEventAttributes(a)) =
        &last(&run, E::NexusOperationFailed).attributes
    else {
        panic!()
    };
    assert_operation_failure(a.failure.as_ref(), "tok", &app_failure());
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    assert!(run.state.nexus_operations.is_empty());
    // The start answer that follows is refused.
    let (r, _, _) =
        run.step(|t| t.nexus_start_answered(start_task(1), StartAnswer::Completed(None)));
    assert!(matches!(r, Err(EngineError::NotFound(_))));
}

/// INTERNAL errors: each costs an attempt, writes nothing and waits a backoff doubling from a
/// second before the next dispatch; a BAD_REQUEST then fails the operation.
#[test]
fn a_retryable_handler_error_writes_nothing_and_redispatches_after_a_backoff() {
    let mut run = scheduled(0);
    let events = run.history.len();
    for (attempt, backoff_ms) in [(1, 1_000), (2, 2_000), (3, 4_000)] {
        let (r, effects, persist) =
            answer_start(&mut run, attempt, handler_error_answer("INTERNAL"));
        r.unwrap();
        assert!(persist, "attempt {attempt}: the state changed");
        assert!(
            effects.is_empty(),
            "attempt {attempt}: nothing dispatched yet"
        );
        assert_eq!(run.history.len(), events, "a retry writes no event");
        let op = run.state.nexus_operation(ID).unwrap().clone();
        assert_eq!(op.state, PendingNexusOperationState::BackingOff as i32);
        assert_eq!(op.attempt, attempt + 1);
        assert_eq!(op.next_attempt_time_ms, run.now + backoff_ms);
        assert_eq!(op.last_attempt_complete_time_ms, run.now);
        assert_eq!(op.last_attempt_failure, Some(handler_failure("INTERNAL")));
        let kind = DeadlineKind::NexusAttempt {
            scheduled_event_id: ID,
            cancel: false,
            attempt: attempt + 1,
        };
        assert_eq!(
            nexus_deadlines(&run),
            vec![crate::Deadline {
                at_ms: op.next_attempt_time_ms,
                kind
            }]
        );
        assert!(nexus_dispatches(&run.state.ready_tasks(run.now + backoff_ms)).is_empty());
        // Too early: nothing happens.
        let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
        assert!(effects.is_empty() && !persist, "attempt {attempt}");
        // The backoff ended: the next attempt is dispatched.
        run.now = op.next_attempt_time_ms - 10;
        let (_, effects, _) = run.step(|t| t.fire_deadline(kind));
        assert_eq!(effects, vec![dispatch(false, attempt + 1)]);
        assert_eq!(
            run.state.nexus_operation(ID).unwrap().state,
            PendingNexusOperationState::Scheduled as i32
        );
        assert_eq!(
            run.state.ready_tasks(run.now),
            vec![dispatch(false, attempt + 1)]
        );
        // The earlier attempt's task is stale.
        let (r, _, _) =
            run.step(|t| t.nexus_start_answered(start_task(attempt), StartAnswer::Completed(None)));
        assert!(matches!(r, Err(EngineError::NotFound(_))));
    }
    let (r, _, _) = answer_start(&mut run, 4, handler_error_answer("BAD_REQUEST"));
    r.unwrap();
    assert_eq!(
        run.types()[events..],
        [E::NexusOperationFailed, E::WorkflowTaskScheduled]
    );
    let Some(Attributes::NexusOperationFailedEventAttributes(a)) = &run.history[events].attributes
    else {
        panic!()
    };
    assert_operation_failure(a.failure.as_ref(), "", &handler_failure("BAD_REQUEST"));
}

#[test]
fn a_worker_that_does_not_answer_within_the_request_timeout_loses_the_attempt() {
    let mut run = scheduled(0);
    let events = run.history.len();
    run.step(|t| t.nexus_task_dispatched(start_task(1)))
        .0
        .unwrap();
    let dispatched = run.now;
    assert!(
        run.state.ready_tasks(run.now).is_empty(),
        "a request with a worker is not offered again"
    );
    let kind = DeadlineKind::NexusAttempt {
        scheduled_event_id: ID,
        cancel: false,
        attempt: 1,
    };
    assert_eq!(
        nexus_deadlines(&run),
        vec![crate::Deadline {
            at_ms: dispatched + crate::nexus::NEXUS_REQUEST_TIMEOUT_MS,
            kind
        }]
    );
    run.now = dispatched + crate::nexus::NEXUS_REQUEST_TIMEOUT_MS - 10;
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(persist && effects.is_empty());
    assert_eq!(run.history.len(), events);
    let op = run.state.nexus_operation(ID).unwrap().clone();
    assert_eq!(op.state, PendingNexusOperationState::BackingOff as i32);
    assert_eq!((op.attempt, op.next_attempt_time_ms), (2, run.now + 1_000));
    assert_eq!(
        op.last_attempt_failure.map(|f| f.message),
        Some("request timed out".into())
    );
    // The late answer of the worker that lost the attempt is refused.
    let (r, _, _) =
        run.step(|t| t.nexus_start_answered(start_task(1), StartAnswer::Completed(None)));
    assert!(matches!(r, Err(EngineError::NotFound(_))));
}

/// RequestCancelNexusOperation on an operation whose start is unanswered: recorded at once,
/// sent once the operation started; the handler's acceptance is recorded.
#[test]
fn cancel_before_the_start_is_recorded_but_sent_only_once_started() {
    let mut run = scheduled(0);
    let (outcome, effects) = respond(&mut run, vec![cancel_op(ID)]);
    assert!(outcome.rejected.is_none());
    assert!(!outcome.new_workflow_task, "nothing the workflow waits for");
    assert_eq!(run.types().last(), Some(&E::NexusOperationCancelRequested));
    let requested = last(&run, E::NexusOperationCancelRequested);
    let requested_event_id = requested.event_id;
    let Some(Attributes::NexusOperationCancelRequestedEventAttributes(a)) = &requested.attributes
    else {
        panic!()
    };
    assert_eq!(
        (a.scheduled_event_id, a.workflow_task_completed_event_id),
        (ID, requested_event_id - 1)
    );
    assert_eq!(
        nexus_dispatches(&effects),
        vec![],
        "not started: no cancel sent (and the start request waits in its queue already)"
    );
    let cancellation = run
        .state
        .nexus_operation(ID)
        .unwrap()
        .cancellation
        .clone()
        .expect("a cancellation");
    assert_eq!(
        cancellation.state,
        NexusOperationCancellationState::Scheduled as i32
    );
    assert_eq!(
        run.state.ready_tasks(run.now),
        vec![dispatch(false, 1)],
        "only the start request waits in its queue"
    );
    let (r, _, _) = run.step(|t| t.nexus_task_dispatched(cancel_task(1)));
    assert!(r.is_err(), "no cancel task exists before the start");

    // The start is answered asynchronously: now the cancel request goes out.
    let effects = started(&mut run);
    assert_eq!(nexus_dispatches(&effects), vec![dispatch(true, 1)]);
    assert!(run.state.ready_tasks(run.now).contains(&dispatch(true, 1)));
    respond(&mut run, vec![]);
    let before = run.history.len();
    let (r, effects, persist) = answer_cancel(&mut run, 1, Ok(()));
    r.unwrap();
    assert!(persist);
    assert_eq!(
        run.types()[before..],
        [
            E::NexusOperationCancelRequestCompleted,
            E::WorkflowTaskScheduled
        ]
    );
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    let Some(Attributes::NexusOperationCancelRequestCompletedEventAttributes(c)) =
        &run.history[before].attributes
    else {
        panic!()
    };
    assert_eq!(
        (c.scheduled_event_id, c.requested_event_id),
        (ID, requested_event_id)
    );
    let op = run
        .state
        .nexus_operation(ID)
        .expect("still pending")
        .clone();
    assert_eq!(
        op.cancellation.unwrap().state,
        NexusOperationCancellationState::Succeeded as i32
    );
    assert!(nexus_dispatches(&run.state.ready_tasks(run.now)).is_empty());
    let (r, _, _) = run.step(|t| t.nexus_cancel_answered(cancel_task(1), Ok(())));
    assert!(matches!(r, Err(EngineError::NotFound(_))), "answered once");
    // The operation's outcome still comes through its callback.
    run.step(|t| {
        t.nexus_handler_closed(ID, "tok", HandlerOutcome::Canceled(canceled_by_handler()))
    })
    .0
    .unwrap();
    assert!(run.types().contains(&E::NexusOperationCanceled));
    assert!(run.state.nexus_operations.is_empty());
}

/// RequestCancelNexusOperation on a started operation dispatches the cancel request with the
/// command; a retryable failure retries it after a backoff, another fails the request.
#[test]
fn cancel_of_a_started_operation_is_sent_at_once_and_retried_like_the_start() {
    let mut run = scheduled(0);
    started(&mut run);
    let (outcome, effects) = respond(&mut run, vec![cancel_op(ID)]);
    assert!(outcome.rejected.is_none());
    assert_eq!(nexus_dispatches(&effects), vec![dispatch(true, 1)]);
    let events = run.history.len();
    let (r, effects, persist) =
        answer_cancel(&mut run, 1, Err((handler_failure("INTERNAL"), true)));
    r.unwrap();
    assert!(persist && effects.is_empty());
    assert_eq!(run.history.len(), events, "a retry writes no event");
    let c = run
        .state
        .nexus_operation(ID)
        .unwrap()
        .cancellation
        .clone()
        .unwrap();
    assert_eq!(c.state, NexusOperationCancellationState::BackingOff as i32);
    assert_eq!((c.attempt, c.next_attempt_time_ms), (2, run.now + 1_000));
    let kind = DeadlineKind::NexusAttempt {
        scheduled_event_id: ID,
        cancel: true,
        attempt: 2,
    };
    assert!(nexus_deadlines(&run).iter().any(|d| d.kind == kind));
    run.now = c.next_attempt_time_ms - 10;
    let (_, effects, _) = run.step(|t| t.fire_deadline(kind));
    assert_eq!(effects, vec![dispatch(true, 2)]);
    let (r, _, _) = answer_cancel(&mut run, 2, Err((handler_failure("BAD_REQUEST"), false)));
    r.unwrap();
    assert_eq!(
        run.types()[events..],
        [
            E::NexusOperationCancelRequestFailed,
            E::WorkflowTaskScheduled
        ]
    );
    let Some(Attributes::NexusOperationCancelRequestFailedEventAttributes(f)) =
        &run.history[events].attributes
    else {
        panic!()
    };
    assert_eq!(f.failure, Some(handler_failure("BAD_REQUEST")));
    assert_eq!(
        run.state
            .nexus_operation(ID)
            .unwrap()
            .cancellation
            .as_ref()
            .unwrap()
            .state,
        NexusOperationCancellationState::Failed as i32
    );
}

/// A cancel the reference refuses -> BadRequestCancelNexusOperationAttributes and this
/// message (after the cause's name).
#[test]
fn cancels_of_unknown_or_already_cancelled_operations_fail_the_task() {
    let mut run = scheduled(0);
    for (commands, message) in [
        (
            vec![cancel_op(9)],
            "requested cancelation for a non-existing or already completed operation with scheduled event ID of 9",
        ),
        (
            vec![cancel_op(ID), cancel_op(ID)],
            "cancelation was already requested for an operation with scheduled event ID 5",
        ),
    ] {
        let message = format!("BadRequestCancelNexusOperationAttributes: {message}");
        let (outcome, effects) = respond(&mut run, commands);
        assert_eq!(outcome.rejected.as_deref(), Some(message.as_str()));
        assert_eq!(
            last_task_failure(&run).cause,
            WorkflowTaskFailedCause::BadRequestCancelNexusOperationAttributes as i32
        );
        assert!(nexus_dispatches(&effects).is_empty());
        assert!(
            run.state
                .nexus_operation(ID)
                .unwrap()
                .cancellation
                .is_none(),
            "{message}: none of the task's commands is kept"
        );
    }
}

#[test]
fn schedule_to_close_times_the_operation_out_once_it_passes() {
    let mut run = scheduled(5_000);
    let due = run.state.nexus_operation(ID).unwrap().scheduled_time_ms + 5_000;
    let kind = DeadlineKind::NexusTimeout {
        scheduled_event_id: ID,
        timeout_type: TimeoutType::ScheduleToClose as i32,
    };
    let events = run.history.len();
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(effects.is_empty() && !persist, "not due yet");
    assert_eq!(run.history.len(), events);
    run.now = due - 10;
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(persist);
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    assert_eq!(
        run.types()[events..],
        [E::NexusOperationTimedOut, E::WorkflowTaskScheduled]
    );
    let Some(Attributes::NexusOperationTimedOutEventAttributes(a)) =
        &run.history[events].attributes
    else {
        panic!()
    };
    assert_eq!(a.request_id, "run-1-nexus-5");
    let cause = Failure {
        message: "operation timed out".into(),
        failure_info: Some(FailureInfo::TimeoutFailureInfo(
            crate::api::failure::v1::TimeoutFailureInfo {
                timeout_type: TimeoutType::ScheduleToClose as i32,
                last_heartbeat_details: None,
            },
        )),
        ..Default::default()
    };
    assert_operation_failure(a.failure.as_ref(), "", &cause);
    assert!(run.state.nexus_operations.is_empty());
    assert!(nexus_deadlines(&run).is_empty());
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(effects.is_empty() && !persist, "fires once");
}

/// A deadline of an operation that ended (or of a timeout that no longer applies) changes
/// nothing.
#[test]
fn a_stale_timeout_deadline_changes_nothing() {
    let kind = |timeout_type: TimeoutType| DeadlineKind::NexusTimeout {
        scheduled_event_id: ID,
        timeout_type: timeout_type as i32,
    };
    // Completed synchronously before its schedule-to-close passed.
    let mut run = scheduled(5_000);
    let due = run.state.nexus_operation(ID).unwrap().scheduled_time_ms + 5_000;
    answer_start(&mut run, 1, StartAnswer::Completed(None))
        .0
        .unwrap();
    run.now = due;
    let events = run.history.len();
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind(TimeoutType::ScheduleToClose)));
    assert!(effects.is_empty() && !persist);
    assert_eq!(run.history.len(), events);
    // Started before its schedule-to-start passed.
    let mut run = scheduled_with(ScheduleNexusOperationCommandAttributes {
        schedule_to_start_timeout: Some(time::duration(2_000)),
        ..op_command("ep", 0)
    });
    let due = run.state.nexus_operation(ID).unwrap().scheduled_time_ms + 2_000;
    started(&mut run);
    assert!(nexus_deadlines(&run).is_empty());
    run.now = due;
    let events = run.history.len();
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind(TimeoutType::ScheduleToStart)));
    assert!(effects.is_empty() && !persist);
    assert_eq!(run.history.len(), events);
    assert!(run.state.nexus_operation(ID).is_some());
}

/// (schedule-to-start, start-to-close, started first?) -> the timeout that ends it, and when
/// (from its scheduling, or from its start).
#[test]
fn schedule_to_start_and_start_to_close_time_the_operation_out() {
    for (s2s_ms, stc_ms, start, expected) in [
        (2_000, 0, false, TimeoutType::ScheduleToStart),
        (2_000, 3_000, true, TimeoutType::StartToClose),
        (0, 3_000, true, TimeoutType::StartToClose),
    ] {
        let mut run = scheduled_with(ScheduleNexusOperationCommandAttributes {
            schedule_to_start_timeout: time::opt_duration(s2s_ms),
            start_to_close_timeout: time::opt_duration(stc_ms),
            ..op_command("ep", 0)
        });
        if start {
            started(&mut run);
        }
        let op = run.state.nexus_operation(ID).unwrap().clone();
        let due = if start {
            op.started_time_ms + stc_ms
        } else {
            op.scheduled_time_ms + s2s_ms
        };
        let kind = DeadlineKind::NexusTimeout {
            scheduled_event_id: ID,
            timeout_type: expected as i32,
        };
        assert_eq!(
            nexus_deadlines(&run),
            vec![crate::Deadline { at_ms: due, kind }],
            "{expected:?}"
        );
        run.now = due - 10;
        run.step(|t| t.fire_deadline(kind));
        let Some(Attributes::NexusOperationTimedOutEventAttributes(a)) =
            &last(&run, E::NexusOperationTimedOut).attributes
        else {
            panic!()
        };
        let cause = a.failure.as_ref().unwrap().cause.as_deref().unwrap();
        assert!(
            matches!(
                &cause.failure_info,
                Some(FailureInfo::TimeoutFailureInfo(t)) if t.timeout_type == expected as i32
            ),
            "{expected:?}: {cause:?}"
        );
        assert!(run.state.nexus_operations.is_empty());
    }
}

fn callbacks() -> Vec<Callback> {
    vec![Callback {
        variant: Some(callback::Variant::Nexus(callback::Nexus {
            url: "http://caller/callback".into(),
            header: [("token".to_string(), "t-1".to_string())].into(),
        })),
        links: vec![],
    }]
}

/// (started with completion callbacks?, closing command) -> InvokeCallbacks? A run that
/// continues as new leaves them to its next run; pending operations are abandoned.
#[test]
fn closing_a_run_with_completion_callbacks_invokes_them() {
    let continue_as_new = || continue_as_new();
    let fail = || {
        Cmd::FailWorkflowExecutionCommandAttributes(FailWorkflowExecutionCommandAttributes {
            failure: Some(app_failure()),
        })
    };
    for (with_callbacks, close, invoked) in [
        (true, complete(), true),
        (true, fail(), true),
        (false, complete(), false),
        (true, continue_as_new(), false),
    ] {
        let (mut run, _) = Run::start_with(
            |r| {
                if with_callbacks {
                    r.completion_callbacks = callbacks();
                }
            },
            1_000,
        )
        .unwrap();
        assert_eq!(run.state.completion_callbacks.is_empty(), !with_callbacks);
        let case = format!("{close:?}");
        respond(&mut run, vec![schedule_op("ep", 0)]);
        run.step(|t| t.ensure_workflow_task());
        let wt = run.start_wt();
        let req = RespondWorkflowTaskCompletedRequest {
            commands: as_commands(vec![close]),
            ..Default::default()
        };
        let (r, effects, _) = run.step(|t| {
            t.new_run_id = "run-2".into();
            t.complete_workflow_task(wt, &req)
        });
        assert!(r.unwrap().rejected.is_none(), "{case}");
        assert!(!run.state.is_running(), "{case}");
        assert_eq!(
            effects
                .iter()
                .filter(|e| **e == Effect::InvokeCallbacks)
                .count(),
            usize::from(invoked),
            "{case}"
        );
        assert!(run.state.nexus_operations.is_empty(), "{case}");
        assert!(run.state.ready_tasks(run.now).is_empty(), "{case}");
    }
}

#[test]
fn terminating_a_run_with_completion_callbacks_invokes_them() {
    let (mut run, _) = Run::start_with(|r| r.completion_callbacks = callbacks(), 1_000).unwrap();
    let (r, effects, _) = run.step(|t| t.terminate("stop", None, "admin"));
    r.unwrap();
    assert!(effects.contains(&Effect::InvokeCallbacks));
}

#[test]
fn continue_as_new_carries_the_callbacks_to_the_next_runs_start() {
    let (mut run, _) = Run::start_with(|r| r.completion_callbacks = callbacks(), 1_000).unwrap();
    let wt = run.start_wt();
    let next = run
        .close_and_chain(wt, continue_as_new())
        .expect("a next run");
    assert_eq!(next.request.completion_callbacks, callbacks());
    let (state, history, _) = new_execution(StartParams {
        request: &next.request,
        run_id: next.run_id.clone(),
        now: run.now,
        signal: None,
        continuation: Some(next.continuation),
        parent: None,
    })
    .unwrap();
    assert_eq!(state.completion_callbacks, callbacks());
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) = &history[0].attributes
    else {
        panic!()
    };
    assert_eq!(a.completion_callbacks, callbacks());
    // The next run's close is the chain's: it invokes them.
    let mut next_run = Run {
        state,
        history,
        now: run.now,
    };
    let (_, effects) = next_run.complete_wt(vec![complete()]);
    assert!(effects.contains(&Effect::InvokeCallbacks));
}

/// USE_EXISTING with on-conflict options attaches the start's callbacks to the running run,
/// once per request id; its close then invokes them.
#[test]
fn an_attached_start_adds_its_callbacks_once() {
    let (mut run, _) = Run::start();
    let attach = StartWorkflowExecutionRequest {
        request_id: "attach-1".into(),
        completion_callbacks: callbacks(),
        on_conflict_options: Some(OnConflictOptions {
            attach_request_id: true,
            attach_completion_callbacks: true,
            attach_links: false,
        }),
        ..request()
    };
    let before = run.history.len();
    let (r, _, persist) = run.step(|t| t.attach_start(&attach));
    r.unwrap();
    assert!(persist);
    assert_eq!(run.types()[before..], [E::WorkflowExecutionOptionsUpdated]);
    let Some(Attributes::WorkflowExecutionOptionsUpdatedEventAttributes(a)) =
        &run.history[before].attributes
    else {
        panic!()
    };
    assert_eq!(
        (
            a.attached_request_id.as_str(),
            &a.attached_completion_callbacks
        ),
        ("attach-1", &callbacks())
    );
    assert_eq!(run.state.completion_callbacks, callbacks());
    let (r, effects, persist) = run.step(|t| t.attach_start(&attach));
    r.unwrap();
    assert!(effects.is_empty() && !persist, "attached once");
    assert_eq!(run.state.completion_callbacks, callbacks());
    let (_, effects) = run.complete_wt(vec![complete()]);
    assert!(effects.contains(&Effect::InvokeCallbacks));
}
