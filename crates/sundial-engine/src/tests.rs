//! Transition tests: the engine driven as the server drives it, without IO.

use crate::api::{
    command::v1::{
        Command, CompleteWorkflowExecutionCommandAttributes, ScheduleActivityTaskCommandAttributes,
        StartTimerCommandAttributes, command::Attributes as Cmd,
    },
    common::v1::{ActivityType, RetryPolicy, WorkflowType},
    enums::v1::{EventType, RetryState, WorkflowExecutionStatus, WorkflowTaskFailedCause},
    failure::v1::{ApplicationFailureInfo, Failure, failure::FailureInfo},
    history::v1::{HistoryEvent, history_event::Attributes},
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{RespondWorkflowTaskCompletedRequest, StartWorkflowExecutionRequest},
};
use crate::{
    ActivityRef, DeadlineKind, Effect, ExecutionState, Persist, StartParams, Transition,
    WorkflowTaskRef, new_execution, time,
};

/// The test workflow's start request.
fn request() -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        request_id: "req-1".into(),
        ..crate::fuzzing::start_request()
    }
}

/// `attributes` as the commands of a workflow task completion, in order.
pub(crate) fn as_commands(attributes: Vec<Cmd>) -> Vec<Command> {
    attributes
        .into_iter()
        .map(|c| Command {
            attributes: Some(c),
            ..Default::default()
        })
        .collect()
}

/// The test worker's completion of a workflow task with `commands`, in order.
pub(crate) fn completion(commands: Vec<Cmd>) -> RespondWorkflowTaskCompletedRequest {
    RespondWorkflowTaskCompletedRequest {
        commands: as_commands(commands),
        identity: "worker".into(),
        ..Default::default()
    }
}

/// The test workflow ([`request`]) started as run `run-1` at 1 000 ms: its state, its first
/// events and the effects of the start.
pub(crate) fn started_run() -> (ExecutionState, Vec<HistoryEvent>, Vec<Effect>) {
    new_execution(StartParams {
        request: &request(),
        run_id: "run-1".into(),
        now: 1_000,
        signal: None,
        continuation: None,
        parent: None,
    })
    .expect("start")
}

/// A run plus its history, advanced one transition at a time.
struct Run {
    state: ExecutionState,
    history: Vec<HistoryEvent>,
    now: i64,
}

impl Run {
    fn start() -> (Run, Vec<Effect>) {
        Run::start_with(|_| {}, 1_000).unwrap()
    }

    /// A run of the test workflow, its request changed by `edit`, started at `now`.
    fn start_with(
        edit: impl FnOnce(&mut StartWorkflowExecutionRequest),
        now: i64,
    ) -> Result<(Run, Vec<Effect>), crate::EngineError> {
        let mut req = request();
        edit(&mut req);
        let (state, history, effects) = new_execution(StartParams {
            request: &req,
            run_id: "run-1".into(),
            now,
            signal: None,
            continuation: None,
            parent: None,
        })?;
        Ok((
            Run {
                state,
                history,
                now,
            },
            effects,
        ))
    }

    /// Runs `op` as one transition; returns its effects and how it must be persisted.
    fn step<R>(&mut self, op: impl FnOnce(&mut Transition<'_>) -> R) -> (R, Vec<Effect>, bool) {
        let (r, effects, persist) = self.step_persisting(op);
        (r, effects, persist != Persist::Nothing)
    }

    /// Like [`Run::step`], with how the outcome must be written.
    fn step_persisting<R>(
        &mut self,
        op: impl FnOnce(&mut Transition<'_>) -> R,
    ) -> (R, Vec<Effect>, Persist) {
        self.now += 10;
        let mut t = Transition::new(&mut self.state, self.now);
        let r = op(&mut t);
        let (events, effects, persist) = (
            std::mem::take(&mut t.events),
            std::mem::take(&mut t.effects),
            t.persist,
        );
        self.history.extend(events);
        (r, effects, persist)
    }

    fn types(&self) -> Vec<EventType> {
        self.history
            .iter()
            .map(|e| EventType::try_from(e.event_type).unwrap())
            .collect()
    }

    fn wt(&self) -> WorkflowTaskRef {
        let wt = self.state.workflow_task.as_ref().expect("a workflow task");
        WorkflowTaskRef {
            scheduled_event_id: wt.scheduled_event_id,
            seq: wt.seq,
        }
    }

    /// Schedules activity "1" with the first task (its scheduled event is event 5) and starts
    /// its first attempt.
    fn start_first_activity(&mut self) -> ActivityRef {
        self.complete_wt(vec![schedule("1", None)]);
        let activity = ActivityRef {
            scheduled_event_id: 5,
            attempt: 1,
        };
        self.step(|t| t.start_activity(activity, &poller()))
            .0
            .unwrap();
        activity
    }

    /// Completes `activity` while a new (forced) workflow task runs, so that its events are
    /// buffered; returns that task.
    fn complete_activity_during_a_task(&mut self, activity: ActivityRef) -> WorkflowTaskRef {
        self.step(|t| t.ensure_workflow_task());
        let wt = self.start_wt();
        self.step(|t| t.complete_activity(activity, None, "worker"))
            .0
            .unwrap();
        wt
    }

    fn start_wt(&mut self) -> WorkflowTaskRef {
        let wt = self.wt();
        let speculative = self
            .state
            .workflow_task
            .as_ref()
            .is_some_and(|t| t.speculative);
        let (r, _, persist) = self.step_persisting(|t| t.start_workflow_task(wt, &poller()));
        r.unwrap();
        if speculative {
            assert_eq!(
                persist,
                Persist::Nothing,
                "a speculative start stays in memory"
            );
        } else {
            assert_eq!(
                persist,
                Persist::Written,
                "a task's start is written (without a sync) before the poller sees it"
            );
        }
        // The started task's own number: what its token names.
        self.wt()
    }

    /// Completes the started task `wt` with one closing command; the next run it chains to
    /// (named `run-2`), if any.
    fn close_and_chain(&mut self, wt: WorkflowTaskRef, command: Cmd) -> Option<crate::NextRun> {
        let req = RespondWorkflowTaskCompletedRequest {
            commands: vec![Command {
                attributes: Some(command),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut next = None;
        self.step(|t| {
            t.new_run_id = "run-2".into();
            t.complete_workflow_task(wt, &req).unwrap();
            next = t.next_run.take();
        });
        next
    }

    fn complete_wt(&mut self, commands: Vec<Cmd>) -> (crate::CompletionOutcome, Vec<Effect>) {
        let wt = self.start_wt();
        let req = completion(commands);
        let (r, effects, _) = self.step(|t| t.complete_workflow_task(wt, &req));
        (r.unwrap(), effects)
    }
}

fn schedule(id: &str, policy: Option<RetryPolicy>) -> Cmd {
    Cmd::ScheduleActivityTaskCommandAttributes(ScheduleActivityTaskCommandAttributes {
        activity_id: id.into(),
        activity_type: Some(ActivityType { name: "act".into() }),
        start_to_close_timeout: Some(time::duration(5_000)),
        retry_policy: policy,
        ..Default::default()
    })
}

fn complete() -> Cmd {
    Cmd::CompleteWorkflowExecutionCommandAttributes(
        CompleteWorkflowExecutionCommandAttributes::default(),
    )
}

/// ContinueAsNewWorkflowExecution with everything defaulted (the same workflow again).
fn continue_as_new() -> Cmd {
    Cmd::ContinueAsNewWorkflowExecutionCommandAttributes(
        crate::api::command::v1::ContinueAsNewWorkflowExecutionCommandAttributes::default(),
    )
}

fn app_failure() -> Failure {
    Failure {
        message: "boom".into(),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo::default(),
        )),
        ..Default::default()
    }
}

use EventType as E;

mod activity_ops;
mod nexus;
mod task_completion;

fn poller() -> crate::Poller {
    crate::Poller {
        identity: "worker".into(),
        request_id: "r".into(),
        build_id: String::new(),
    }
}

#[test]
fn start_writes_started_and_schedules_a_workflow_task() {
    let (run, effects) = Run::start();
    assert_eq!(
        run.types(),
        vec![E::WorkflowExecutionStarted, E::WorkflowTaskScheduled]
    );
    assert_eq!(
        effects,
        vec![Effect::DispatchWorkflowTask {
            task_queue: "q".into(),
            scheduled_event_id: 2,
            seq: 0
        }]
    );
    assert_eq!(run.state.workflow_task_timeout_ms, 10_000);
}

#[test]
fn activity_round_trip_produces_the_reference_event_sequence() {
    let (mut run, _) = Run::start();
    let (outcome, effects) = run.complete_wt(vec![schedule("1", None)]);
    assert!(outcome.rejected.is_none());
    assert_eq!(
        effects,
        vec![Effect::DispatchActivityTask {
            task_queue: "q".into(),
            scheduled_event_id: 5,
            attempt: 1
        }]
    );
    let activity = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };
    run.step(|t| t.start_activity(activity, &poller()))
        .0
        .unwrap();
    let (_, effects, persist) = run.step(|t| t.complete_activity(activity, None, "worker"));
    assert!(persist);
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    run.complete_wt(vec![complete()]);
    assert_eq!(
        run.types(),
        vec![
            E::WorkflowExecutionStarted,
            E::WorkflowTaskScheduled,
            E::WorkflowTaskStarted,
            E::WorkflowTaskCompleted,
            E::ActivityTaskScheduled,
            E::ActivityTaskStarted,
            E::ActivityTaskCompleted,
            E::WorkflowTaskScheduled,
            E::WorkflowTaskStarted,
            E::WorkflowTaskCompleted,
            E::WorkflowExecutionCompleted,
        ]
    );
    assert_eq!(run.state.status, WorkflowExecutionStatus::Completed as i32);
    assert!(run.state.deadlines().is_empty());
    for (i, e) in run.history.iter().enumerate() {
        assert_eq!(e.event_id, i as i64 + 1, "event ids are dense");
    }
}

#[test]
fn events_during_a_started_task_are_buffered_then_flushed_in_order() {
    let (mut run, _) = Run::start();
    let activity = run.start_first_activity();
    // A new workflow task is running (forced) when the activity completes.
    let wt = run.complete_activity_during_a_task(activity);
    assert_eq!(run.state.buffered_events.len(), 2);
    let req = RespondWorkflowTaskCompletedRequest::default();
    let (outcome, _, _) = run.step(|t| t.complete_workflow_task(wt, &req));
    assert!(
        outcome.unwrap().new_workflow_task,
        "the flushed events need a new task"
    );
    let tail: Vec<_> = run.types().into_iter().skip(7).collect();
    assert_eq!(
        tail,
        vec![
            E::WorkflowTaskCompleted,
            E::ActivityTaskStarted,
            E::ActivityTaskCompleted,
            E::WorkflowTaskScheduled
        ]
    );
    let completed = &run.history[9];
    let Some(Attributes::ActivityTaskCompletedEventAttributes(a)) = &completed.attributes else {
        panic!()
    };
    assert_eq!(
        a.started_event_id, 9,
        "the outcome points at its flushed started event"
    );
}

#[test]
fn failed_attempts_retry_with_backoff_until_maximum_attempts() {
    let (mut run, _) = Run::start();
    let policy = RetryPolicy {
        initial_interval: Some(time::duration(100)),
        maximum_attempts: 2,
        ..Default::default()
    };
    run.complete_wt(vec![schedule("1", Some(policy))]);
    let first = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };
    run.step(|t| t.start_activity(first, &poller())).0.unwrap();
    run.step(|t| t.fail_activity(first, app_failure(), None, "worker"))
        .0
        .unwrap();
    let a = run.state.activity(5).unwrap().clone();
    assert_eq!(a.attempt, 2);
    assert_eq!(a.attempt_scheduled_time_ms, run.now + 100);
    assert!(run.state.deadlines().iter().any(|d| d.kind
        == DeadlineKind::ActivityRetry {
            scheduled_event_id: 5,
            attempt: 2
        }));
    assert_eq!(run.types().len(), 5, "a retry writes no event");
    // The retry deadline fires: the attempt is dispatched.
    run.now += 200;
    let (_, effects, _) = run.step(|t| {
        t.fire_deadline(DeadlineKind::ActivityRetry {
            scheduled_event_id: 5,
            attempt: 2,
        })
    });
    assert!(matches!(
        effects[..],
        [Effect::DispatchActivityTask { attempt: 2, .. }]
    ));
    let second = ActivityRef {
        scheduled_event_id: 5,
        attempt: 2,
    };
    run.step(|t| t.start_activity(second, &poller())).0.unwrap();
    // A stale token (attempt 1) is refused.
    assert!(
        run.step(|t| t.complete_activity(first, None, "worker"))
            .0
            .is_err()
    );
    run.step(|t| t.fail_activity(second, app_failure(), None, "worker"))
        .0
        .unwrap();
    let last = run
        .history
        .iter()
        .rev()
        .find(|e| e.event_type == E::ActivityTaskFailed as i32)
        .unwrap();
    let Some(Attributes::ActivityTaskFailedEventAttributes(f)) = &last.attributes else {
        panic!()
    };
    assert_eq!(f.retry_state, RetryState::MaximumAttemptsReached as i32);
}

#[test]
fn start_to_close_timeout_retries_and_stale_deadlines_change_nothing() {
    let (mut run, _) = Run::start();
    run.start_first_activity();
    let kind = DeadlineKind::ActivityStartToClose {
        scheduled_event_id: 5,
        attempt: 1,
    };
    let (_, _, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(!persist, "not due yet");
    run.now += 5_000;
    run.step(|t| t.fire_deadline(kind));
    assert_eq!(run.state.activity(5).unwrap().attempt, 2);
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(
        effects.is_empty() && !persist,
        "the same deadline again is stale"
    );
}

#[test]
fn timers_fire_once_and_wake_the_workflow() {
    let (mut run, _) = Run::start();
    run.complete_wt(vec![Cmd::StartTimerCommandAttributes(
        StartTimerCommandAttributes {
            timer_id: "t1".into(),
            start_to_fire_timeout: Some(time::duration(1_000)),
        },
    )]);
    let started_event_id = run.state.timers[0].started_event_id;
    let kind = DeadlineKind::UserTimer { started_event_id };
    run.now += 1_000;
    let (_, effects, _) = run.step(|t| t.fire_deadline(kind));
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    assert_eq!(run.types()[5..], [E::TimerFired, E::WorkflowTaskScheduled]);
    let (_, effects, persist) = run.step(|t| t.fire_deadline(kind));
    assert!(effects.is_empty() && !persist);
}

#[test]
fn workflow_task_timeout_schedules_the_next_attempt() {
    let (mut run, _) = Run::start();
    let wt = run.start_wt();
    run.now += 10_000;
    let (_, effects, _) = run.step(|t| {
        t.fire_deadline(DeadlineKind::WorkflowTaskStartToClose {
            scheduled_event_id: wt.scheduled_event_id,
            seq: wt.seq,
        })
    });
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    assert_eq!(
        run.types()[3..],
        [E::WorkflowTaskTimedOut],
        "a retry is not written yet"
    );
    let retry = run.state.workflow_task.clone().unwrap();
    assert_eq!((retry.attempt, retry.unwritten), (2, true));
    // The retry fails too: still nothing written, attempt 3 scheduled.
    let wt = run.start_wt();
    let (r, _, _) = run.step(|t| t.fail_workflow_task(wt, 0, None, "worker"));
    r.unwrap();
    assert_eq!(run.types().len(), 4);
    assert_eq!(run.state.workflow_task.as_ref().unwrap().attempt, 3);
    // Attempt 3 completes: its Scheduled/Started events are written with the completion.
    run.complete_wt(vec![complete()]);
    assert_eq!(
        run.types()[3..],
        [
            E::WorkflowTaskTimedOut,
            E::WorkflowTaskScheduled,
            E::WorkflowTaskStarted,
            E::WorkflowTaskCompleted,
            E::WorkflowExecutionCompleted
        ]
    );
    let Some(Attributes::WorkflowTaskScheduledEventAttributes(a)) = &run.history[4].attributes
    else {
        panic!()
    };
    assert_eq!(a.attempt, 3);
    for (i, e) in run.history.iter().enumerate() {
        assert_eq!(e.event_id, i as i64 + 1, "event ids are dense");
    }
}

#[test]
fn a_bad_command_fails_the_task_and_keeps_none_of_its_commands() {
    let (mut run, _) = Run::start();
    let bad = Cmd::ScheduleActivityTaskCommandAttributes(ScheduleActivityTaskCommandAttributes {
        activity_id: "1".into(),
        activity_type: Some(ActivityType { name: "act".into() }),
        ..Default::default()
    });
    let (outcome, effects) = run.complete_wt(vec![schedule("0", None), bad]);
    assert!(outcome.rejected.unwrap().contains("StartToClose"));
    assert!(run.state.activities.is_empty());
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    assert_eq!(
        run.types()[3..],
        [E::WorkflowTaskFailed],
        "the retry is not written yet"
    );
    let Some(Attributes::WorkflowTaskFailedEventAttributes(f)) = &run.history[3].attributes else {
        panic!()
    };
    assert_eq!(
        f.cause,
        WorkflowTaskFailedCause::BadScheduleActivityAttributes as i32
    );
}

#[test]
fn completing_with_unseen_events_is_refused_as_unhandled() {
    let (mut run, _) = Run::start();
    let activity = run.start_first_activity();
    let wt = run.complete_activity_during_a_task(activity);
    let req = RespondWorkflowTaskCompletedRequest {
        commands: vec![Command {
            attributes: Some(complete()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (outcome, _, _) = run.step(|t| t.complete_workflow_task(wt, &req));
    assert!(outcome.unwrap().rejected.is_some());
    assert!(run.state.is_running());
    let Some(Attributes::WorkflowTaskFailedEventAttributes(f)) = &run.history[7].attributes else {
        panic!()
    };
    assert_eq!(f.cause, WorkflowTaskFailedCause::UnhandledCommand as i32);
    assert_eq!(run.state.workflow_task.as_ref().unwrap().attempt, 1);
}

#[test]
fn terminate_closes_the_run_and_clears_pending_work() {
    let (mut run, _) = Run::start();
    run.complete_wt(vec![schedule("1", None)]);
    run.step(|t| t.terminate("stop", None, "admin")).0.unwrap();
    assert_eq!(run.state.status, WorkflowExecutionStatus::Terminated as i32);
    assert!(run.state.activities.is_empty() && run.state.deadlines().is_empty());
    assert!(run.step(|t| t.terminate("again", None, "admin")).0.is_err());
}

mod messages_and_lifecycle {
    use super::*;
    use crate::api::{
        command::v1::{
            FailWorkflowExecutionCommandAttributes, ProtocolMessageCommandAttributes,
            StartChildWorkflowExecutionCommandAttributes,
        },
        enums::v1::ContinueAsNewInitiator,
        protocol::v1::Message,
        update::v1::{
            Acceptance, Meta, Outcome, Rejection as UpdateRejection, Request, Response, outcome,
        },
    };
    use crate::{Signal, UpdateResult};
    use prost::Message as _;

    fn message(id: &str, update_id: &str, type_name: &str, value: Vec<u8>) -> Message {
        Message {
            id: id.into(),
            protocol_instance_id: update_id.into(),
            body: Some(prost_wkt_types::Any {
                type_url: format!("type.googleapis.com/{type_name}"),
                value,
            }),
            sequencing_id: None,
        }
    }

    fn complete_with(
        run: &mut Run,
        commands: Vec<Cmd>,
        messages: Vec<Message>,
    ) -> crate::CompletionOutcome {
        let wt = run.start_wt();
        let req = RespondWorkflowTaskCompletedRequest {
            commands: as_commands(commands),
            messages,
            ..Default::default()
        };
        run.step(|t| t.complete_workflow_task(wt, &req)).0.unwrap()
    }

    #[test]
    fn history_past_its_limits_terminates_the_workflow() {
        let (mut run, _) = Run::start();
        let signal = |n: usize| Signal {
            name: "go".into(),
            request_id: format!("sig-{n}"),
            ..Default::default()
        };
        let mut terminated = false;
        for n in 0..5 {
            let ((), _, persist) = run.step(|t| {
                t.limits.history_count_error = 4;
                t.signal(signal(n)).unwrap();
                terminated = t.enforce_history_limits();
            });
            if terminated {
                assert!(persist);
                break;
            }
        }
        assert!(terminated);
        assert_eq!(
            run.state.status,
            crate::api::enums::v1::WorkflowExecutionStatus::Terminated as i32
        );
        assert_eq!(run.types().last(), Some(&E::WorkflowExecutionTerminated));
        let (closed, _, _) = run.step(|t| t.enforce_history_limits());
        assert!(!closed, "a closed run is left alone");
    }

    #[test]
    fn duplicate_signal_request_ids_are_delivered_once() {
        let (mut run, _) = Run::start();
        let signal = || Signal {
            name: "go".into(),
            request_id: "sig-1".into(),
            ..Default::default()
        };
        run.step(|t| t.signal(signal())).0.unwrap();
        let (_, _, persist) = run.step(|t| t.signal(signal()));
        assert!(!persist);
        assert_eq!(
            run.types()
                .iter()
                .filter(|e| **e == E::WorkflowExecutionSignaled)
                .count(),
            1
        );
    }

    #[test]
    fn rejected_update_on_a_speculative_task_leaves_no_trace() {
        let (mut run, _) = Run::start();
        run.complete_wt(vec![]);
        let before = run.history.len();
        run.step(|t| t.request_update_task());
        assert!(run.state.workflow_task.as_ref().unwrap().speculative);
        let rejection = UpdateRejection {
            rejected_request_message_id: "u1/request".into(),
            ..Default::default()
        };
        let outcome = complete_with(
            &mut run,
            vec![],
            vec![message(
                "u1/reject",
                "u1",
                "temporal.api.update.v1.Rejection",
                rejection.encode_to_vec(),
            )],
        );
        assert_eq!(run.history.len(), before, "no events written");
        assert_eq!(outcome.reset_history_event_id, before as i64);
        assert!(
            matches!(&outcome.updates[..], [UpdateResult::Rejected { update_id, .. }] if update_id == "u1")
        );
        assert!(run.state.workflow_task.is_none());
    }

    #[test]
    fn failed_speculative_task_is_written_and_retried_as_a_second_attempt() {
        let (mut run, _) = Run::start();
        run.complete_wt(vec![]);
        let before = run.history.len();
        run.step(|t| t.request_update_task());
        let wt = run.start_wt();
        let (r, _, persist) = run.step(|t| {
            t.fail_workflow_task(
                wt,
                WorkflowTaskFailedCause::WorkflowWorkerUnhandledFailure as i32,
                None,
                "w",
            )
        });
        r.unwrap();
        assert!(persist, "the failure is committed");
        assert_eq!(
            run.types()[before..],
            [
                E::WorkflowTaskScheduled,
                E::WorkflowTaskStarted,
                E::WorkflowTaskFailed
            ]
        );
        let next = run.state.workflow_task.as_ref().unwrap();
        assert_eq!(next.attempt, 2);
        assert!(next.unwritten && !next.speculative);
    }

    #[test]
    fn accepted_and_completed_update_is_written_where_the_commands_place_it() {
        let (mut run, _) = Run::start();
        let request = Request {
            meta: Some(Meta {
                update_id: "u2".into(),
                identity: "c".into(),
            }),
            ..Default::default()
        };
        let accept = Acceptance {
            accepted_request_message_id: "u2/request".into(),
            accepted_request_sequencing_event_id: 2,
            accepted_request: Some(request),
        };
        let response = Response {
            meta: Some(Meta {
                update_id: "u2".into(),
                identity: "c".into(),
            }),
            outcome: Some(Outcome {
                value: Some(outcome::Value::Success(Default::default())),
            }),
        };
        let commands = vec![
            Cmd::ProtocolMessageCommandAttributes(ProtocolMessageCommandAttributes {
                message_id: "m1".into(),
            }),
            Cmd::ProtocolMessageCommandAttributes(ProtocolMessageCommandAttributes {
                message_id: "m2".into(),
            }),
        ];
        let outcome = complete_with(
            &mut run,
            commands,
            vec![
                message(
                    "m1",
                    "u2",
                    "temporal.api.update.v1.Acceptance",
                    accept.encode_to_vec(),
                ),
                message(
                    "m2",
                    "u2",
                    "temporal.api.update.v1.Response",
                    response.encode_to_vec(),
                ),
            ],
        );
        assert_eq!(
            run.types()[4..],
            [
                E::WorkflowExecutionUpdateAccepted,
                E::WorkflowExecutionUpdateCompleted
            ]
        );
        assert_eq!(outcome.updates.len(), 2);
        assert!(run.state.accepted_updates.is_empty());
        let Some(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(c)) =
            &run.history[5].attributes
        else {
            panic!()
        };
        assert_eq!(c.accepted_event_id, 5);
    }

    #[test]
    fn continue_as_new_describes_the_next_run() {
        let (mut run, _) = Run::start();
        let wt = run.start_wt();
        let next = run
            .close_and_chain(wt, continue_as_new())
            .expect("a next run");
        assert_eq!(next.run_id, "run-2");
        assert_eq!(next.continuation.previous_run_id, "run-1");
        assert_eq!(
            next.continuation.initiator,
            ContinueAsNewInitiator::Workflow as i32
        );
        assert_eq!(
            run.state.status,
            WorkflowExecutionStatus::ContinuedAsNew as i32
        );
        let (state, events, _) = new_execution(StartParams {
            request: &next.request,
            run_id: next.run_id.clone(),
            now: run.now,
            signal: None,
            continuation: Some(next.continuation),
            parent: None,
        })
        .unwrap();
        assert_eq!(state.first_execution_run_id, "run-1");
        let Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) = &events[0].attributes
        else {
            panic!()
        };
        assert_eq!(a.continued_execution_run_id, "run-1");
    }

    #[test]
    fn failed_workflow_with_retry_policy_retries_with_backoff() {
        let (mut run, _) = Run::start();
        run.state.retry_policy = Some(RetryPolicy {
            initial_interval: Some(time::duration(1_000)),
            maximum_attempts: 2,
            ..Default::default()
        });
        let wt = run.start_wt();
        let next = run
            .close_and_chain(
                wt,
                Cmd::FailWorkflowExecutionCommandAttributes(
                    FailWorkflowExecutionCommandAttributes {
                        failure: Some(app_failure()),
                    },
                ),
            )
            .expect("a retry");
        assert_eq!(
            (next.continuation.attempt, next.continuation.backoff_ms),
            (2, 1_000)
        );
        let Some(Attributes::WorkflowExecutionFailedEventAttributes(f)) =
            &run.history.last().unwrap().attributes
        else {
            panic!()
        };
        assert_eq!(f.retry_state, RetryState::InProgress as i32);
        assert_eq!(f.new_execution_run_id, "run-2");
        // The retried run waits for its backoff before its first workflow task.
        let (state, _, effects) = new_execution(StartParams {
            request: &next.request,
            run_id: "run-2".into(),
            now: run.now,
            signal: None,
            continuation: Some(next.continuation),
            parent: None,
        })
        .unwrap();
        assert!(state.workflow_task.is_none() && effects.is_empty());
        assert!(
            state
                .deadlines()
                .iter()
                .any(|d| d.kind == DeadlineKind::WorkflowBackoff)
        );
    }

    #[test]
    fn child_workflow_round_trip() {
        let (mut run, _) = Run::start();
        let start_child = Cmd::StartChildWorkflowExecutionCommandAttributes(
            StartChildWorkflowExecutionCommandAttributes {
                workflow_id: "child".into(),
                workflow_type: Some(WorkflowType {
                    name: "Child".into(),
                }),
                ..Default::default()
            },
        );
        let (_, effects) = run.complete_wt(vec![start_child]);
        assert_eq!(
            effects,
            vec![Effect::StartChild {
                initiated_event_id: 5
            }]
        );
        // Until it has started, the child's start request is made from the command; the
        // close policy defaults to TERMINATE, the request id repeats on a retried start.
        let (request, parent) = run.state.child_start(5).expect("pending child");
        assert_eq!(request.workflow_id, "child");
        assert_eq!(request.namespace, run.state.namespace);
        assert_eq!(request.request_id, format!("{}/5", run.state.run_id));
        assert_eq!(
            parent.close_policy,
            crate::api::enums::v1::ParentClosePolicy::Terminate as i32
        );
        assert_eq!(parent.initiated_event_id, 5);
        assert_eq!(
            (parent.root_workflow_id, parent.root_run_id),
            (run.state.workflow_id.clone(), run.state.run_id.clone())
        );
        assert!(run.state.child_start(4).is_none());
        run.step(|t| t.child_started(5, "child-run")).0.unwrap();
        assert!(
            run.state.child_start(5).is_none(),
            "started children are not started again"
        );
        run.complete_wt(vec![]);
        let close = HistoryEvent {
            event_type: E::WorkflowExecutionCompleted as i32,
            attributes: Some(Attributes::WorkflowExecutionCompletedEventAttributes(
                Default::default(),
            )),
            ..Default::default()
        };
        run.step(|t| t.child_closed(5, "child-run", &close))
            .0
            .unwrap();
        assert!(run.state.children.is_empty());
        let completed = run
            .history
            .iter()
            .find(|e| e.event_type == E::ChildWorkflowExecutionCompleted as i32)
            .unwrap();
        let Some(Attributes::ChildWorkflowExecutionCompletedEventAttributes(c)) =
            &completed.attributes
        else {
            panic!()
        };
        assert_eq!((c.initiated_event_id, c.started_event_id), (5, 6));
        // A repeated report changes nothing.
        let (_, _, persist) = run.step(|t| t.child_closed(5, "child-run", &close));
        assert!(!persist);
    }
}

/// Temporal's per-workflow limits on pending work and updates, and cross-namespace commands.
#[allow(deprecated)] // `namespace` on commands: deprecated, still how a target is named
mod limits {
    use super::*;
    use crate::api::{
        command::v1::{
            CancelTimerCommandAttributes, RequestCancelActivityTaskCommandAttributes,
            RequestCancelExternalWorkflowExecutionCommandAttributes,
            SignalExternalWorkflowExecutionCommandAttributes,
            StartChildWorkflowExecutionCommandAttributes,
        },
        common::v1::WorkflowExecution,
        failure::v1::failure::FailureInfo,
        history::v1::WorkflowTaskFailedEventAttributes,
    };
    use crate::{CompletionOutcome, EngineError, Limits};

    fn small() -> Limits {
        Limits {
            pending_activities: 3,
            pending_child_executions: 2,
            pending_signals: 2,
            pending_cancel_requests: 2,
            max_in_flight_updates: 2,
            max_total_updates: 4,
            ..Limits::default()
        }
    }

    fn complete_with(run: &mut Run, limits: Limits, commands: Vec<Cmd>) -> CompletionOutcome {
        let wt = run.start_wt();
        let req = completion(commands);
        let (r, _, _) = run.step(|t| {
            t.limits = limits;
            t.complete_workflow_task(wt, &req)
        });
        r.unwrap()
    }

    fn last_failure(run: &Run) -> WorkflowTaskFailedEventAttributes {
        run.history
            .iter()
            .rev()
            .find_map(|e| match &e.attributes {
                Some(Attributes::WorkflowTaskFailedEventAttributes(f)) => Some(f.clone()),
                _ => None,
            })
            .expect("a failed workflow task")
    }

    /// The task fails as on the reference server: the cause, a server failure whose message
    /// names the cause, the same message for the RPC, and none of the task's commands kept.
    fn assert_failed(
        run: &Run,
        outcome: &CompletionOutcome,
        cause: WorkflowTaskFailedCause,
        message: &str,
    ) {
        assert_eq!(outcome.rejected.as_deref(), Some(message));
        let failed = last_failure(run);
        assert_eq!(failed.cause, cause as i32);
        let failure = failed.failure.expect("a failure");
        assert_eq!(failure.message, message);
        assert!(matches!(
            failure.failure_info,
            Some(FailureInfo::ServerFailureInfo(_))
        ));
        assert_eq!(run.types().last(), Some(&E::WorkflowTaskFailed));
    }

    fn child(id: &str, namespace: &str) -> Cmd {
        Cmd::StartChildWorkflowExecutionCommandAttributes(
            StartChildWorkflowExecutionCommandAttributes {
                namespace: namespace.into(),
                workflow_id: id.into(),
                workflow_type: Some(WorkflowType {
                    name: "Child".into(),
                }),
                ..Default::default()
            },
        )
    }

    fn signal(id: &str, namespace: &str) -> Cmd {
        Cmd::SignalExternalWorkflowExecutionCommandAttributes(
            SignalExternalWorkflowExecutionCommandAttributes {
                namespace: namespace.into(),
                execution: Some(WorkflowExecution {
                    workflow_id: id.into(),
                    run_id: String::new(),
                }),
                signal_name: "poke".into(),
                ..Default::default()
            },
        )
    }

    fn cancel(id: &str, namespace: &str) -> Cmd {
        Cmd::RequestCancelExternalWorkflowExecutionCommandAttributes(
            RequestCancelExternalWorkflowExecutionCommandAttributes {
                namespace: namespace.into(),
                workflow_id: id.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn scheduling_past_the_pending_activity_limit_fails_the_task() {
        let (mut run, _) = Run::start();
        let commands = (0..5).map(|i| schedule(&i.to_string(), None)).collect();
        let outcome = complete_with(&mut run, small(), commands);
        assert_failed(
            &run,
            &outcome,
            WorkflowTaskFailedCause::PendingActivitiesLimitExceeded,
            "PendingActivitiesLimitExceeded: the number of pending activities, 3, has reached the per-workflow limit of 3",
        );
        assert!(run.state.activities.is_empty());
        assert!(run.state.is_running());
    }

    #[test]
    fn the_activity_limit_counts_activities_of_earlier_tasks() {
        let (mut run, _) = Run::start();
        let commands = (0..3).map(|i| schedule(&i.to_string(), None)).collect();
        assert!(
            complete_with(&mut run, small(), commands)
                .rejected
                .is_none()
        );
        assert_eq!(run.state.activities.len(), 3);
        run.step(|t| t.ensure_workflow_task());
        let outcome = complete_with(&mut run, small(), vec![schedule("3", None)]);
        assert_failed(
            &run,
            &outcome,
            WorkflowTaskFailedCause::PendingActivitiesLimitExceeded,
            "PendingActivitiesLimitExceeded: the number of pending activities, 3, has reached the per-workflow limit of 3",
        );
        assert_eq!(run.state.activities.len(), 3);
    }

    #[test]
    fn the_default_limits_are_temporals() {
        let limits = Limits::default();
        assert_eq!(limits.pending_activities, 2000);
        assert_eq!(limits.pending_child_executions, 2000);
        assert_eq!(limits.pending_signals, 2000);
        assert_eq!(limits.pending_cancel_requests, 2000);
        assert_eq!(limits.max_in_flight_updates, 10);
        assert_eq!(limits.max_total_updates, 2000);
        assert!(!limits.cross_namespace_commands);
        // 2,000 activities in one task are fine; the next one is refused.
        let (mut run, _) = Run::start();
        let commands = (0..2000).map(|i| schedule(&i.to_string(), None)).collect();
        assert!(complete_with(&mut run, limits, commands).rejected.is_none());
        run.step(|t| t.ensure_workflow_task());
        let outcome = complete_with(&mut run, limits, vec![schedule("x", None)]);
        assert_eq!(
            outcome.rejected.as_deref(),
            Some(
                "PendingActivitiesLimitExceeded: the number of pending activities, 2000, has reached the per-workflow limit of 2000"
            )
        );
    }

    #[test]
    fn a_zero_limit_is_no_limit() {
        let (mut run, _) = Run::start();
        let limits = Limits {
            pending_activities: 0,
            ..small()
        };
        let commands = (0..10).map(|i| schedule(&i.to_string(), None)).collect();
        assert!(complete_with(&mut run, limits, commands).rejected.is_none());
        assert_eq!(run.state.activities.len(), 10);
    }

    /// Completes a new run's first task with three commands made by `command` (from 0, 1
    /// and 2) under the [`small`] limits, which allow two of them; asserts that the task
    /// failed with `cause` and `message`, and returns the run.
    fn three_past_a_limit_of_two(
        command: impl Fn(usize) -> Cmd,
        cause: WorkflowTaskFailedCause,
        message: &str,
    ) -> Run {
        let (mut run, _) = Run::start();
        let commands = (0..3).map(command).collect();
        let outcome = complete_with(&mut run, small(), commands);
        assert_failed(&run, &outcome, cause, message);
        run
    }

    #[test]
    fn children_past_the_limit_fail_the_task() {
        let run = three_past_a_limit_of_two(
            |i| child(&format!("c{i}"), ""),
            WorkflowTaskFailedCause::PendingChildWorkflowsLimitExceeded,
            "PendingChildWorkflowsLimitExceeded: the number of pending child workflow executions, 2, has reached the per-workflow limit of 2",
        );
        assert!(run.state.children.is_empty());
    }

    #[test]
    fn external_signals_past_the_limit_fail_the_task() {
        let run = three_past_a_limit_of_two(
            |i| signal(&format!("t{i}"), ""),
            WorkflowTaskFailedCause::PendingSignalsLimitExceeded,
            "PendingSignalsLimitExceeded: the number of pending signals to external workflows, 2, has reached the per-workflow limit of 2",
        );
        assert!(run.state.external_signals.is_empty());
    }

    #[test]
    fn external_cancels_past_the_limit_fail_the_task() {
        let run = three_past_a_limit_of_two(
            |i| cancel(&format!("t{i}"), ""),
            WorkflowTaskFailedCause::PendingRequestCancelLimitExceeded,
            "PendingRequestCancelLimitExceeded: the number of pending requests to cancel external workflows, 2, has reached the per-workflow limit of 2",
        );
        assert!(run.state.external_cancels.is_empty());
    }

    #[test]
    fn commands_towards_another_namespace_need_cross_namespace_commands() {
        for (command, cause) in [
            (
                child("c", "other"),
                WorkflowTaskFailedCause::BadStartChildExecutionAttributes,
            ),
            (
                signal("t", "other"),
                WorkflowTaskFailedCause::BadSignalWorkflowExecutionAttributes,
            ),
            (
                cancel("t", "other"),
                WorkflowTaskFailedCause::BadRequestCancelExternalWorkflowExecutionAttributes,
            ),
        ] {
            let (mut run, _) = Run::start();
            let outcome = complete_with(&mut run, small(), vec![command.clone()]);
            let message = format!(
                "{}: cross namespace commands are not allowed",
                crate::commands::cause_name(cause)
            );
            assert_failed(&run, &outcome, cause, &message);
            // The run's own namespace, named explicitly, is not another namespace.
            let (mut run, _) = Run::start();
            let own = match command.clone() {
                Cmd::StartChildWorkflowExecutionCommandAttributes(_) => child("c", "default"),
                Cmd::SignalExternalWorkflowExecutionCommandAttributes(_) => signal("t", "default"),
                _ => cancel("t", "default"),
            };
            assert!(
                complete_with(&mut run, small(), vec![own])
                    .rejected
                    .is_none()
            );
            // Enabled, the command is accepted.
            let (mut run, _) = Run::start();
            let enabled = Limits {
                cross_namespace_commands: true,
                ..small()
            };
            assert!(
                complete_with(&mut run, enabled, vec![command])
                    .rejected
                    .is_none()
            );
        }
    }

    #[test]
    fn cause_names_are_the_reference_servers() {
        use crate::commands::cause_name;
        assert_eq!(
            cause_name(WorkflowTaskFailedCause::BadStartChildExecutionAttributes),
            "BadStartChildExecutionAttributes"
        );
        assert_eq!(
            cause_name(WorkflowTaskFailedCause::PendingRequestCancelLimitExceeded),
            "PendingRequestCancelLimitExceeded"
        );
        assert_eq!(
            cause_name(WorkflowTaskFailedCause::UnhandledCommand),
            "UnhandledCommand"
        );
    }

    #[test]
    fn in_flight_and_total_updates_are_limited() {
        let (mut run, _) = Run::start();
        let limits = small();
        let check = |run: &mut Run, admitted: usize| {
            run.step(|t| {
                t.limits = limits;
                t.check_update_admission(admitted)
            })
            .0
        };
        assert!(check(&mut run, 0).is_ok());
        assert!(check(&mut run, 1).is_ok());
        assert_eq!(
            check(&mut run, 2),
            Err(EngineError::ResourceExhausted(
                "limit on number of concurrent in-flight updates has been reached (2)".into()
            ))
        );
        // Accepted and not completed updates are in flight too.
        run.state
            .accepted_updates
            .push(crate::state::AcceptedUpdate {
                update_id: "a".into(),
                accepted_event_id: 3,
            });
        assert!(matches!(
            check(&mut run, 1),
            Err(EngineError::ResourceExhausted(_))
        ));
        // Completed updates count towards the total.
        run.state.accepted_updates.clear();
        run.state.completed_update_count = 3;
        assert!(check(&mut run, 0).is_ok());
        match check(&mut run, 1) {
            Err(EngineError::FailedPrecondition(m)) => assert!(
                m.starts_with(
                    "The limit on the total number of distinct updates in this workflow has been reached (4)."
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let unlimited = Limits {
            max_in_flight_updates: 0,
            max_total_updates: 0,
            ..limits
        };
        assert!(
            run.step(|t| {
                t.limits = unlimited;
                t.check_update_admission(1_000)
            })
            .0
            .is_ok()
        );
    }

    #[test]
    fn updates_left_by_a_closed_run_are_aborted_by_how_it_closed() {
        use crate::api::enums::v1::WorkflowExecutionStatus as Status;
        use crate::update::{ClosedRunUpdate, closed_run_update};
        let (mut run, _) = Run::start();
        assert_eq!(closed_run_update(&run.state, true), None);
        run.state.status = Status::Completed as i32;
        assert_eq!(
            closed_run_update(&run.state, false),
            Some(ClosedRunUpdate::Aborted)
        );
        assert_eq!(
            closed_run_update(&run.state, true),
            Some(ClosedRunUpdate::Failed)
        );
        match crate::update::accepted_update_completed_workflow().value {
            Some(crate::api::update::v1::outcome::Value::Failure(f)) => {
                assert_eq!(f.source, "Server");
                assert!(matches!(
                    f.failure_info,
                    Some(FailureInfo::ApplicationFailureInfo(a))
                        if a.r#type == "AcceptedUpdateCompletedWorkflow" && a.non_retryable
                ));
            }
            other => panic!("{other:?}"),
        }
        // A successor (continue-as-new, retry, cron) makes admitted updates retryable; an
        // accepted one still fails.
        run.state.status = Status::ContinuedAsNew as i32;
        run.state.new_execution_run_id = "run-2".into();
        assert_eq!(
            closed_run_update(&run.state, false),
            Some(ClosedRunUpdate::Continuing)
        );
        assert_eq!(
            closed_run_update(&run.state, true),
            Some(ClosedRunUpdate::Failed)
        );
    }

    #[test]
    fn update_target_checks_chain_and_failing_task() {
        let (mut run, _) = Run::start();
        let check = |run: &mut Run, first: &str| run.step(|t| t.check_update_target(first)).0;
        assert!(check(&mut run, "").is_ok());
        assert!(check(&mut run, "run-1").is_ok());
        assert_eq!(
            check(&mut run, "another-run"),
            Err(EngineError::NotFound("workflow execution not found".into()))
        );
        if let Some(wt) = run.state.workflow_task.as_mut() {
            wt.attempt = crate::update::FAIL_UPDATE_WORKFLOW_TASK_ATTEMPT - 1;
        }
        assert!(check(&mut run, "").is_ok());
        if let Some(wt) = run.state.workflow_task.as_mut() {
            wt.attempt = crate::update::FAIL_UPDATE_WORKFLOW_TASK_ATTEMPT;
        }
        assert_eq!(
            check(&mut run, ""),
            Err(EngineError::WorkflowNotReady(
                "Unable to perform workflow execution update due to Workflow Task in failed state."
                    .into()
            ))
        );
    }

    #[test]
    fn many_updates_suggest_continue_as_new() {
        use crate::api::enums::v1::SuggestContinueAsNewReason;
        use crate::api::history::v1::history_event::Attributes;
        // A new run with `completed` and `accepted` updates and `pending` admitted ones: does
        // its first workflow task suggest continue-as-new for too many updates?
        let suggested = |completed: i64, accepted: usize, pending: usize| {
            let (mut run, _) = Run::start();
            run.state.completed_update_count = completed;
            for i in 0..accepted {
                run.state
                    .accepted_updates
                    .push(crate::state::AcceptedUpdate {
                        update_id: format!("a{i}"),
                        accepted_event_id: 3,
                    });
            }
            let wt = run.wt();
            run.step(|t| {
                t.limits = Limits {
                    max_total_updates: 10,
                    ..Limits::default()
                };
                t.pending_update_ids = (0..pending).map(|i| format!("u{i}")).collect();
                t.start_workflow_task(wt, &poller()).unwrap();
            });
            let started = run.history.last().cloned().and_then(|e| e.attributes);
            match started {
                Some(Attributes::WorkflowTaskStartedEventAttributes(a)) => {
                    let reason = a
                        .suggest_continue_as_new_reasons
                        .contains(&(SuggestContinueAsNewReason::TooManyUpdates as i32));
                    assert_eq!(a.suggest_continue_as_new, reason);
                    reason
                }
                other => panic!("{other:?}"),
            }
        };
        // 90% of 10 is 9.
        assert!(!suggested(8, 0, 0));
        assert!(suggested(8, 0, 1));
        assert!(suggested(8, 1, 0));
        assert!(suggested(0, 4, 5));
        assert!(!suggested(0, 4, 4));
    }

    /// Ids indexed once per transition stay right when a task cancels and reuses them.
    #[test]
    fn ids_freed_in_a_task_may_be_reused_in_it() {
        let (mut run, _) = Run::start();
        let timer = |id: &str| {
            Cmd::StartTimerCommandAttributes(StartTimerCommandAttributes {
                timer_id: id.into(),
                start_to_fire_timeout: Some(time::duration(1_000)),
            })
        };
        assert!(
            complete_with(&mut run, small(), vec![schedule("a", None), timer("t")])
                .rejected
                .is_none()
        );
        run.step(|t| t.ensure_workflow_task());
        let scheduled = run.state.activities[0].scheduled_event_id;
        let outcome = complete_with(
            &mut run,
            small(),
            vec![
                Cmd::RequestCancelActivityTaskCommandAttributes(
                    RequestCancelActivityTaskCommandAttributes {
                        scheduled_event_id: scheduled,
                    },
                ),
                schedule("a", None),
                Cmd::CancelTimerCommandAttributes(CancelTimerCommandAttributes {
                    timer_id: "t".into(),
                }),
                timer("t"),
                timer("u"),
            ],
        );
        assert!(outcome.rejected.is_none(), "{:?}", outcome.rejected);
        assert_eq!(run.state.activities.len(), 1);
        assert_eq!(run.state.timers.len(), 2);
        // A duplicate within the same task is still caught.
        run.step(|t| t.ensure_workflow_task());
        let outcome = complete_with(&mut run, small(), vec![timer("v"), timer("v")]);
        assert_eq!(
            outcome.rejected.as_deref(),
            Some("StartTimerDuplicateId: Timer with ID v already exists.")
        );
    }
}

/// Eager workflow start is an engine rule: the first task is started in the start itself.
#[test]
fn eager_start_starts_the_first_task_instead_of_dispatching_it() {
    for (eager, events, dispatched) in [(false, 2, true), (true, 3, false)] {
        let req = StartWorkflowExecutionRequest {
            request_eager_execution: eager,
            ..crate::fuzzing::start_request()
        };
        let params = StartParams {
            request: &req,
            run_id: "run".into(),
            now: 1_000,
            signal: None,
            continuation: None,
            parent: None,
        };
        let (state, history, effects) =
            crate::start::start_execution(params, Default::default(), 0).unwrap();
        assert_eq!(history.len(), events, "eager {eager}");
        let dispatch = effects
            .iter()
            .any(|e| matches!(e, Effect::DispatchWorkflowTask { .. }));
        assert_eq!(dispatch, dispatched, "eager {eager}");
        let wt = state.workflow_task.as_ref().unwrap();
        assert_eq!(wt.is_started(), eager);
        assert_eq!(state.state_transition_count, 1);
    }
}

/// Activity timeouts: which one is reported when several are due, and with which retry state
/// (the reference server's timer queue: timeouts in due order, schedule-to-start and
/// schedule-to-close never retried, and a timeout that leaves no time for another attempt
/// reported as schedule-to-close).
mod activity_timeouts {
    use super::*;
    use crate::activity::NO_TIME_FOR_RETRY;
    use crate::api::{enums::v1::TimeoutType, history::v1::ActivityTaskTimedOutEventAttributes};

    fn schedule_with(s2c_ms: i64, stc_ms: i64, maximum_attempts: i32) -> Cmd {
        Cmd::ScheduleActivityTaskCommandAttributes(ScheduleActivityTaskCommandAttributes {
            activity_id: "1".into(),
            activity_type: Some(ActivityType { name: "act".into() }),
            schedule_to_close_timeout: (s2c_ms > 0).then(|| time::duration(s2c_ms)),
            start_to_close_timeout: (stc_ms > 0).then(|| time::duration(stc_ms)),
            retry_policy: Some(RetryPolicy {
                maximum_attempts,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    const FIRST: ActivityRef = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };

    fn timed_out(run: &Run) -> ActivityTaskTimedOutEventAttributes {
        let event = run
            .history
            .iter()
            .find(|e| e.event_type == E::ActivityTaskTimedOut as i32)
            .expect("an ActivityTaskTimedOut event");
        let Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) = &event.attributes else {
            panic!("attributes of another event: {event:?}")
        };
        a.clone()
    }

    fn reported(a: &ActivityTaskTimedOutEventAttributes) -> (i32, RetryState, String) {
        let failure = a.failure.as_ref().expect("a failure");
        let Some(FailureInfo::TimeoutFailureInfo(info)) = &failure.failure_info else {
            panic!("not a timeout failure: {failure:?}")
        };
        (
            info.timeout_type,
            RetryState::try_from(a.retry_state).expect("a known retry state"),
            failure.message.clone(),
        )
    }

    /// Schedules the activity and returns its scheduled time.
    fn scheduled(run: &mut Run, cmd: Cmd) -> i64 {
        run.complete_wt(vec![cmd]);
        run.state.activity(5).expect("scheduled").scheduled_time_ms
    }

    #[test]
    fn coinciding_schedule_to_close_and_start_to_close_report_schedule_to_close() {
        let (mut run, _) = Run::start();
        let at = scheduled(&mut run, schedule_with(300, 300, 1));
        // Started eagerly: in the same millisecond as it was scheduled.
        run.now = at - 10;
        run.step(|t| t.start_activity(FIRST, &poller())).0.unwrap();
        assert_eq!(run.state.activity(5).unwrap().started_time_ms, at);
        // Both deadlines are due at at + 300; the timer loop fires start-to-close first.
        run.now = at + 300 - 10;
        let (_, _, persist) = run.step(|t| {
            t.fire_deadline(DeadlineKind::ActivityStartToClose {
                scheduled_event_id: 5,
                attempt: 1,
            })
        });
        assert!(persist);
        assert_eq!(
            reported(&timed_out(&run)),
            (
                TimeoutType::ScheduleToClose as i32,
                RetryState::Timeout,
                NO_TIME_FOR_RETRY.to_string()
            )
        );
        assert!(run.state.activity(5).is_none(), "the activity is closed");
        let (_, effects, persist) = run.step(|t| {
            t.fire_deadline(DeadlineKind::ActivityScheduleToClose {
                scheduled_event_id: 5,
            })
        });
        assert!(
            effects.is_empty() && !persist,
            "the other deadline is stale"
        );
    }

    #[test]
    fn start_to_close_that_leaves_no_time_for_a_retry_reports_schedule_to_close() {
        let (mut run, _) = Run::start();
        let at = scheduled(&mut run, schedule_with(1_000, 300, 0));
        run.step(|t| t.start_activity(FIRST, &poller())).0.unwrap();
        let started = run.state.activity(5).unwrap().started_time_ms;
        assert!(started > at);
        run.now = started + 300 - 10;
        run.step(|t| {
            t.fire_deadline(DeadlineKind::ActivityStartToClose {
                scheduled_event_id: 5,
                attempt: 1,
            })
        });
        // The next attempt would start after the default 1 s backoff, past at + 1000.
        let (kind, state, message) = reported(&timed_out(&run));
        assert_eq!(kind, TimeoutType::ScheduleToClose as i32);
        assert_eq!(state, RetryState::Timeout);
        assert_eq!(message, NO_TIME_FOR_RETRY);
    }

    #[test]
    fn start_to_close_on_the_last_attempt_stays_start_to_close() {
        let (mut run, _) = Run::start();
        scheduled(&mut run, schedule_with(5_000, 300, 1));
        run.step(|t| t.start_activity(FIRST, &poller())).0.unwrap();
        let started = run.state.activity(5).unwrap().started_time_ms;
        run.now = started + 300 - 10;
        run.step(|t| {
            t.fire_deadline(DeadlineKind::ActivityStartToClose {
                scheduled_event_id: 5,
                attempt: 1,
            })
        });
        assert_eq!(
            reported(&timed_out(&run)),
            (
                TimeoutType::StartToClose as i32,
                RetryState::MaximumAttemptsReached,
                "activity StartToClose timeout".to_string()
            )
        );
    }

    #[test]
    fn schedule_to_start_due_with_schedule_to_close_stays_schedule_to_start() {
        let (mut run, _) = Run::start();
        // Only schedule-to-close: schedule-to-start defaults to it, so both are due together.
        let at = scheduled(&mut run, schedule_with(300, 0, 0));
        run.now = at + 300 - 10;
        run.step(|t| {
            t.fire_deadline(DeadlineKind::ActivityScheduleToClose {
                scheduled_event_id: 5,
            })
        });
        assert_eq!(
            reported(&timed_out(&run)),
            (
                TimeoutType::ScheduleToStart as i32,
                RetryState::Timeout,
                "activity ScheduleToStart timeout".to_string()
            )
        );
    }

    #[test]
    fn a_deadline_before_any_timeout_is_due_changes_nothing() {
        let (mut run, _) = Run::start();
        let at = scheduled(&mut run, schedule_with(1_000, 300, 0));
        run.now = at + 100;
        let (_, effects, persist) = run.step(|t| {
            t.fire_deadline(DeadlineKind::ActivityScheduleToClose {
                scheduled_event_id: 5,
            })
        });
        assert!(effects.is_empty() && !persist);
        assert!(run.state.activity(5).is_some());
    }

    #[test]
    fn scheduled_event_carries_every_timeout_zero_when_unset() {
        let (mut run, _) = Run::start();
        scheduled(&mut run, schedule_with(0, 60_000, 0));
        let event = &run.history[4];
        let Some(Attributes::ActivityTaskScheduledEventAttributes(a)) = &event.attributes else {
            panic!("event 5 is {event:?}")
        };
        let zero = Some(time::duration(0));
        assert_eq!(a.schedule_to_close_timeout, zero);
        assert_eq!(a.schedule_to_start_timeout, zero);
        assert_eq!(a.heartbeat_timeout, zero);
        assert_eq!(a.start_to_close_timeout, Some(time::duration(60_000)));
    }
}

/// Cron workflows: the first run waits for the spec's first time, each next run for the
/// first time after its predecessor's execution time that is not past, rounded up to whole
/// seconds (the reference's `GetBackoffForNextSchedule`).
mod cron {
    use super::*;
    use crate::api::enums::v1::ContinueAsNewInitiator;

    /// 2026-12-01T21:31:42.257Z.
    const T: i64 = 1_796_160_702_257;

    /// (spec, start, run closes this long after its execution time, first backoff, next
    /// backoff), times in ms, backoffs in seconds.
    const CHAINS: &[(&str, i64, i64, i64, i64)] = &[
        // Every 2 s from the execution time cut to whole seconds: 21:31:44.257 -> :46.
        ("@every 2s", T, 43, 2, 2),
        ("@every 2s", T, 900, 2, 1),
        // A run that took longer than the interval skips the missed times.
        ("@every 2s", T, 5_000, 2, 1),
        // 21:31:42.257 -> 21:32:00; closing at 21:32:30 waits for 21:33:00.
        ("* * * * *", T, 30_000, 18, 30),
        ("0 * * * *", T, 1_000, 1698, 3599),
        // Kolkata is +05:30: its top of the hour is half past in UTC.
        ("CRON_TZ=Asia/Kolkata 0 * * * *", T, 50, 3498, 3600),
        ("CRON_TZ=America/New_York 0 * * * *", T, 50, 1698, 3600),
    ];

    #[test]
    fn runs_wait_for_their_schedule() {
        for &(spec, start, run_for, first, next) in CHAINS {
            let (mut run, effects) = Run::start_with(|r| r.cron_schedule = spec.into(), start)
                .unwrap_or_else(|e| panic!("{spec}: {e:?}"));
            assert!(
                effects.is_empty(),
                "{spec}: nothing is dispatched before the backoff"
            );
            let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) =
                &run.history[0].attributes
            else {
                panic!("{spec}: no started event")
            };
            assert_eq!(
                time::duration_ms(started.first_workflow_task_backoff.as_ref()),
                first * 1000,
                "{spec}"
            );
            assert_eq!(
                started.initiator,
                ContinueAsNewInitiator::CronSchedule as i32
            );
            let execution_time = start + first * 1000;
            assert_eq!(run.state.execution_time_ms, execution_time, "{spec}");

            run.now = execution_time - 10;
            run.step(|t| t.fire_deadline(DeadlineKind::WorkflowBackoff));
            let wt = run.start_wt();
            run.now = execution_time + run_for - 10;
            let chained = run
                .close_and_chain(wt, complete())
                .unwrap_or_else(|| panic!("{spec}: no next run"));
            assert_eq!(chained.request.cron_schedule, spec);
            assert_eq!(
                (
                    chained.continuation.initiator,
                    chained.continuation.backoff_ms
                ),
                (ContinueAsNewInitiator::CronSchedule as i32, next * 1000),
                "{spec}"
            );
        }
    }

    #[test]
    fn specs_the_reference_refuses_are_invalid_arguments() {
        let refused = |spec: &str| {
            let req = StartWorkflowExecutionRequest {
                cron_schedule: spec.into(),
                ..request()
            };
            let from_validation = crate::start::validate_start(&req).err();
            let from_start = Run::start_with(|r| r.cron_schedule = spec.into(), T).err();
            (from_validation, from_start)
        };
        let invalid = |m: &str| Some(crate::EngineError::InvalidArgument(m.into()));
        for spec in [
            "bogus",
            "@every 1d",
            "* * * * * *",
            "CRON_TZ=Mars/Base 0 * * * *",
        ] {
            assert_eq!(
                refused(spec),
                (
                    invalid("invalid CronSchedule."),
                    invalid("invalid CronSchedule.")
                ),
                "{spec}"
            );
        }
        let never = "invalid CronSchedule, no time can be found to satisfy the schedule";
        assert_eq!(refused("0 0 30 2 *").1, invalid(never));
    }
}

#[test]
fn a_zero_timer_is_due_at_once_and_a_negative_one_is_refused() {
    let (mut run, _) = Run::start();
    run.complete_wt(vec![Cmd::StartTimerCommandAttributes(
        StartTimerCommandAttributes {
            timer_id: "zero".into(),
            start_to_fire_timeout: Some(time::duration(0)),
        },
    )]);
    let timer = run.state.timers[0].clone();
    assert_eq!(timer.fire_time_ms, run.now, "due when it was started");
    let kind = DeadlineKind::UserTimer {
        started_event_id: timer.started_event_id,
    };
    let (_, effects, _) = run.step(|t| t.fire_deadline(kind));
    assert!(matches!(effects[..], [Effect::DispatchWorkflowTask { .. }]));
    assert_eq!(run.types()[5..], [E::TimerFired, E::WorkflowTaskScheduled]);

    let wt = run.start_wt();
    let req = RespondWorkflowTaskCompletedRequest {
        commands: vec![Command {
            attributes: Some(Cmd::StartTimerCommandAttributes(
                StartTimerCommandAttributes {
                    timer_id: "neg".into(),
                    start_to_fire_timeout: Some(prost_wkt_types::Duration {
                        seconds: -1,
                        nanos: 0,
                    }),
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (r, _, _) = run.step(|t| t.complete_workflow_task(wt, &req));
    let outcome = r.unwrap();
    assert_eq!(
        outcome.rejected.as_deref(),
        Some(
            "BadStartTimerAttributes: An invalid StartToFireTimeout is set on StartTimerCommand: negative duration. TimerId=neg"
        )
    );
    assert!(run.state.timers.is_empty());
}

#[test]
fn command_user_metadata_goes_on_its_event_and_counts_in_the_history_size() {
    use crate::api::sdk::v1::UserMetadata;
    let (mut run, _) = Run::start();
    let metadata = UserMetadata {
        summary: Some(crate::api::common::v1::Payload {
            data: b"\"sleepy\"".to_vec(),
            ..Default::default()
        }),
        details: None,
    };
    let wt = run.start_wt();
    let req = RespondWorkflowTaskCompletedRequest {
        commands: vec![
            Command {
                attributes: Some(Cmd::StartTimerCommandAttributes(
                    StartTimerCommandAttributes {
                        timer_id: "t".into(),
                        start_to_fire_timeout: Some(time::duration(1_000)),
                    },
                )),
                user_metadata: Some(metadata.clone()),
                ..Default::default()
            },
            Command {
                attributes: Some(schedule("a", None)),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (r, _, _) = run.step(|t| t.complete_workflow_task(wt, &req));
    assert!(r.unwrap().rejected.is_none());
    let timer = run
        .history
        .iter()
        .find(|e| e.event_type == E::TimerStarted as i32)
        .unwrap();
    assert_eq!(timer.user_metadata.as_ref(), Some(&metadata));
    let activity = run
        .history
        .iter()
        .find(|e| e.event_type == E::ActivityTaskScheduled as i32)
        .unwrap();
    assert!(
        activity.user_metadata.is_none(),
        "only the command's own event"
    );
    let total: i64 = run
        .history
        .iter()
        .map(|e| prost::Message::encoded_len(e) as i64)
        .sum();
    assert_eq!(run.state.history_size_bytes, total);
}

/// A start carries the floor it is given in its transition's inputs.
fn start_with_floor(run: &mut Run, floor: i64) -> WorkflowTaskRef {
    let task = run.wt();
    run.now += 10;
    let mut t = Transition::with_inputs(
        &mut run.state,
        crate::Inputs {
            now: run.now,
            task_seq_floor: floor,
            ..Default::default()
        },
    );
    t.start_workflow_task(task, &poller()).unwrap();
    run.history.append(&mut t.events);
    run.wt()
}

#[test]
fn a_token_of_a_start_lost_to_a_power_loss_matches_no_later_start() {
    let (mut run, _) = Run::start();
    let stored = run.state.clone();
    let stored_history = run.history.clone();
    let lost = start_with_floor(&mut run, 1_000);
    assert!(lost.seq >= 1_000);
    // The start was written, not synced, and the power went: the store holds `stored`. The
    // next process starts the same scheduled task from its own, higher floor.
    run.state = stored;
    run.history = stored_history;
    let started = start_with_floor(&mut run, 2_000);
    assert!(started.seq >= 2_000);
    assert_eq!(lost.scheduled_event_id, started.scheduled_event_id);
    let req = completion(vec![]);
    let (r, _, _) = run.step(|t| t.complete_workflow_task(lost, &req));
    assert!(matches!(r, Err(crate::EngineError::NotFound(_))), "{r:?}");
    let (r, _, _) = run.step(|t| t.complete_workflow_task(started, &req));
    r.unwrap();
}

#[test]
fn each_start_of_a_retried_task_has_its_own_number() {
    let (mut run, _) = Run::start();
    let cause = WorkflowTaskFailedCause::WorkflowWorkerUnhandledFailure as i32;
    let first = start_with_floor(&mut run, 1_000);
    run.step(|t| t.fail_workflow_task(first, cause, None, "worker"))
        .0
        .unwrap();
    // Attempts after the first are unwritten and share their scheduled event id.
    let second = start_with_floor(&mut run, 1_000);
    run.step(|t| t.fail_workflow_task(second, cause, None, "worker"))
        .0
        .unwrap();
    let third = start_with_floor(&mut run, 1_000);
    assert_eq!(second.scheduled_event_id, third.scheduled_event_id);
    assert_ne!(second.seq, third.seq);
    // The second attempt's token no longer completes anything.
    let req = completion(vec![]);
    let (r, _, _) = run.step(|t| t.complete_workflow_task(second, &req));
    assert!(matches!(r, Err(crate::EngineError::NotFound(_))), "{r:?}");
    let (r, _, _) = run.step(|t| t.complete_workflow_task(third, &req));
    r.unwrap();
}
