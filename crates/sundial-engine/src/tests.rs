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
    ActivityRef, DeadlineKind, Effect, ExecutionState, StartParams, Transition, WorkflowTaskRef,
    new_execution, time,
};

/// A run plus its history, advanced one transition at a time.
struct Run {
    state: ExecutionState,
    history: Vec<HistoryEvent>,
    now: i64,
}

impl Run {
    fn start() -> (Run, Vec<Effect>) {
        let req = StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_id: "wf".into(),
            workflow_type: Some(WorkflowType {
                name: "Flow".into(),
            }),
            task_queue: Some(TaskQueue {
                name: "q".into(),
                ..Default::default()
            }),
            request_id: "req-1".into(),
            ..Default::default()
        };
        let (state, history, effects) = new_execution(StartParams {
            request: &req,
            run_id: "run-1".into(),
            now: 1_000,
            signal: None,
            continuation: None,
            parent: None,
        })
        .unwrap();
        (
            Run {
                state,
                history,
                now: 1_000,
            },
            effects,
        )
    }

    /// Runs `op` as one transition; returns its effects and whether it must be persisted.
    fn step<R>(&mut self, op: impl FnOnce(&mut Transition<'_>) -> R) -> (R, Vec<Effect>, bool) {
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

    fn start_wt(&mut self) -> WorkflowTaskRef {
        let wt = self.wt();
        let (r, _, persist) = self.step(|t| t.start_workflow_task(wt, &poller()));
        r.unwrap();
        assert!(!persist, "starting a task waits for the next commit");
        wt
    }

    fn complete_wt(&mut self, commands: Vec<Cmd>) -> (crate::CompletionOutcome, Vec<Effect>) {
        let wt = self.start_wt();
        let req = RespondWorkflowTaskCompletedRequest {
            commands: commands
                .into_iter()
                .map(|c| Command {
                    attributes: Some(c),
                    ..Default::default()
                })
                .collect(),
            identity: "worker".into(),
            ..Default::default()
        };
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
    run.complete_wt(vec![schedule("1", None)]);
    let activity = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };
    run.step(|t| t.start_activity(activity, &poller()))
        .0
        .unwrap();
    // A new workflow task is running (forced) when the activity completes.
    run.step(|t| t.ensure_workflow_task());
    let wt = run.start_wt();
    run.step(|t| t.complete_activity(activity, None, "worker"))
        .0
        .unwrap();
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
    run.complete_wt(vec![schedule("1", None)]);
    let first = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };
    run.step(|t| t.start_activity(first, &poller())).0.unwrap();
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
    run.complete_wt(vec![schedule("1", None)]);
    let activity = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };
    run.step(|t| t.start_activity(activity, &poller()))
        .0
        .unwrap();
    run.step(|t| t.ensure_workflow_task());
    let wt = run.start_wt();
    run.step(|t| t.complete_activity(activity, None, "worker"))
        .0
        .unwrap();
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
