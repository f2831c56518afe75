//! The reset rule on histories made by the engine itself.

use super::*;
use crate::api::{
    command::v1::{
        ScheduleActivityTaskCommandAttributes, StartTimerCommandAttributes,
        command::Attributes as Cmd,
    },
    common::v1::ActivityType,
    enums::v1::WorkflowTaskFailedCause,
    workflowservice::v1::RespondWorkflowTaskCompletedRequest,
};
use crate::{ActivityRef, Poller, Signal, WorkflowTaskRef};

struct Run {
    state: ExecutionState,
    history: Vec<HistoryEvent>,
    now: i64,
}

fn poller(build_id: &str) -> Poller {
    Poller {
        identity: "worker".into(),
        request_id: "r".into(),
        build_id: build_id.into(),
    }
}

impl Run {
    fn start() -> Run {
        let (state, history, _) = crate::tests::started_run();
        Run {
            state,
            history,
            now: 1_000,
        }
    }

    fn step<R>(&mut self, op: impl FnOnce(&mut Transition<'_>) -> R) -> R {
        self.now += 10;
        let mut t = Transition::new(&mut self.state, self.now);
        let r = op(&mut t);
        let events = std::mem::take(&mut t.events);
        self.history.extend(events);
        r
    }

    /// Starts and completes the scheduled workflow task with `commands`; returns the id of
    /// its WorkflowTaskCompleted event.
    fn complete_wt(&mut self, build_id: &str, commands: Vec<Cmd>) -> i64 {
        let wt = self.state.workflow_task.clone().expect("a workflow task");
        let task = WorkflowTaskRef {
            scheduled_event_id: wt.scheduled_event_id,
            seq: wt.seq,
        };
        self.step(|t| t.start_workflow_task(task, &poller(build_id)))
            .expect("start task");
        // The started task's own number: what its token names.
        let started = self.state.workflow_task.as_ref().expect("started");
        let task = WorkflowTaskRef {
            scheduled_event_id: started.scheduled_event_id,
            seq: started.seq,
        };
        let req = RespondWorkflowTaskCompletedRequest {
            commands: crate::tests::as_commands(commands),
            identity: "worker".into(),
            ..Default::default()
        };
        self.step(|t| t.complete_workflow_task(task, &req))
            .expect("complete task");
        self.history
            .iter()
            .rev()
            .find(|e| e.event_type == EventType::WorkflowTaskCompleted as i32)
            .map(|e| e.event_id)
            .expect("a completed event")
    }

    fn signal(&mut self, name: &str, request_id: &str) {
        self.step(|t| {
            t.signal(Signal {
                name: name.into(),
                request_id: request_id.into(),
                identity: "client".into(),
                ..Default::default()
            })
        })
        .expect("signal");
    }

    fn reset_at(
        &self,
        finish_event_id: i64,
        reapply_signals: bool,
    ) -> Result<ResetRun, EngineError> {
        reset(ResetParams {
            base: &self.state,
            events: &self.history,
            finish_event_id,
            new_run_id: "run-2".into(),
            request_id: "reset-1".into(),
            reason: "because".into(),
            reapply: Reapply {
                signals: reapply_signals,
                updates: reapply_signals,
            },
            now: 50_000,
        })
    }
}

fn schedule(id: &str) -> Cmd {
    Cmd::ScheduleActivityTaskCommandAttributes(ScheduleActivityTaskCommandAttributes {
        activity_id: id.into(),
        activity_type: Some(ActivityType { name: "act".into() }),
        start_to_close_timeout: Some(time::duration(5_000)),
        ..Default::default()
    })
}

fn timer(id: &str, ms: i64) -> Cmd {
    Cmd::StartTimerCommandAttributes(StartTimerCommandAttributes {
        timer_id: id.into(),
        start_to_fire_timeout: Some(time::duration(ms)),
    })
}

fn types(events: &[HistoryEvent]) -> Vec<EventType> {
    events
        .iter()
        .map(|e| EventType::try_from(e.event_type).expect("known type"))
        .collect()
}

use EventType as E;

#[test]
fn reset_to_the_first_task_copies_up_to_its_start_fails_it_and_reapplies_later_signals() {
    let mut run = Run::start();
    let first = run.complete_wt("b1", vec![schedule("1")]);
    assert_eq!(first, 4);
    let activity = ActivityRef {
        scheduled_event_id: 5,
        attempt: 1,
    };
    run.step(|t| t.start_activity(activity, &poller("b1")))
        .expect("start activity");
    run.step(|t| t.complete_activity(activity, None, "worker"))
        .expect("complete");
    run.complete_wt("b1", vec![]);
    run.signal("s1", "sig-1");
    let new = run.reset_at(first, true).expect("reset");
    assert_eq!(
        types(&new.events),
        vec![
            E::WorkflowExecutionStarted,
            E::WorkflowTaskScheduled,
            E::WorkflowTaskStarted,
            E::WorkflowTaskFailed,
            E::WorkflowExecutionSignaled,
            E::WorkflowTaskScheduled,
        ]
    );
    assert_eq!(
        new.events[..3],
        run.history[..3],
        "the prefix is copied verbatim"
    );
    let Some(Attributes::WorkflowTaskFailedEventAttributes(failed)) = &new.events[3].attributes
    else {
        panic!("a workflow task failure");
    };
    assert_eq!(failed.cause, WorkflowTaskFailedCause::ResetWorkflow as i32);
    assert_eq!((failed.scheduled_event_id, failed.started_event_id), (2, 3));
    assert_eq!(failed.base_run_id, "run-1");
    assert_eq!(failed.new_run_id, "run-2");
    assert_eq!(
        failed.failure.as_ref().map(|f| f.message.as_str()),
        Some("because")
    );
    for (i, e) in new.events.iter().enumerate() {
        assert_eq!(e.event_id, i as i64 + 1, "event ids are dense");
    }
    let st = &new.state;
    assert_eq!(st.next_event_id, 7);
    assert!(st.is_running());
    assert_eq!(st.run_id, "run-2");
    assert_eq!(st.first_execution_run_id, "run-1");
    assert_eq!(st.start_request_id, "reset-1");
    assert_eq!(st.signal_request_ids, vec!["sig-1".to_string()]);
    assert!(
        st.activities.is_empty(),
        "the activity was scheduled after the cut"
    );
    let wt = st.workflow_task.as_ref().expect("a new workflow task");
    assert_eq!(wt.scheduled_event_id, 6);
    assert!(!wt.is_started() && !wt.sticky);
    assert!(matches!(
        new.effects[..],
        [Effect::DispatchWorkflowTask {
            scheduled_event_id: 6,
            ..
        }]
    ));
    let size: i64 = new.events.iter().map(|e| e.encoded_len() as i64).sum();
    assert_eq!(st.history_size_bytes, size);

    let without = run.reset_at(first, false).expect("reset");
    assert_eq!(types(&without.events).len(), 5, "no signal reapplied");
}

#[test]
fn pending_activities_and_timers_of_the_prefix_are_carried_over() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![schedule("1"), timer("t", 60_000)]);
    run.signal("s1", "sig-1");
    let second = run.complete_wt("b1", vec![]);
    run.signal("s2", "sig-2");
    let new = run.reset_at(second, true).expect("reset");
    let st = &new.state;
    assert_eq!(st.activities.len(), 1);
    let a = &st.activities[0];
    assert_eq!(
        (a.activity_id.as_str(), a.attempt, a.is_started()),
        ("1", 1, false)
    );
    assert_eq!(a.start_to_close_ms, 5_000);
    assert_eq!(st.timers.len(), 1);
    let timer_started = run
        .history
        .iter()
        .find(|e| e.event_type == E::TimerStarted as i32)
        .expect("timer started");
    let started_at = time::timestamp_ms(timer_started.event_time.as_ref().expect("time"));
    assert_eq!(st.timers[0].fire_time_ms, started_at + 60_000);
    assert_eq!(
        st.signal_request_ids,
        vec!["sig-1".to_string(), "sig-2".to_string()]
    );
    assert!(new.effects.iter().any(|e| matches!(
        e,
        Effect::DispatchActivityTask { scheduled_event_id, attempt: 1, .. }
            if *scheduled_event_id == a.scheduled_event_id
    )));
    assert_eq!(st.last_wt_completed_event_id, 4);
}

#[test]
fn a_cut_at_a_scheduled_task_starts_it_before_failing_it() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![]);
    let new = run
        .reset_at(3, true)
        .expect("reset at the first task's start");
    assert_eq!(
        types(&new.events),
        vec![
            E::WorkflowExecutionStarted,
            E::WorkflowTaskScheduled,
            E::WorkflowTaskStarted,
            E::WorkflowTaskFailed,
            E::WorkflowTaskScheduled,
        ]
    );
    let Some(Attributes::WorkflowTaskStartedEventAttributes(started)) = &new.events[2].attributes
    else {
        panic!("a started event");
    };
    assert_eq!(started.identity, RESET_IDENTITY);
}

#[test]
fn cuts_off_a_task_boundary_are_refused_with_the_reference_messages() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![schedule("1")]);
    let out_of_range = "Workflow task finish ID must be > 1 && <= workflow last event ID.";
    for id in [-1, 0, 1, 6, 100] {
        assert_eq!(
            run.reset_at(id, true).unwrap_err(),
            EngineError::InvalidArgument(out_of_range.into()),
            "finish id {id}"
        );
    }
    assert_eq!(
        run.reset_at(2, true).unwrap_err(),
        EngineError::InvalidArgument(
            "StateRebuilder unable to Rebuild mutable state to event ID: 1, version: 0, this event must be at the boundary".into()
        )
    );
    assert!(run.reset_at(5, true).is_err(), "event 4 is a completion");
}

#[test]
fn reapply_options_decide_whether_signals_and_updates_come_along() {
    use crate::api::enums::v1::{ResetReapplyExcludeType as X, ResetReapplyType as R};
    let both = Reapply {
        signals: true,
        updates: true,
    };
    let kinds = |t: R, x: &[X]| {
        let x: Vec<i32> = x.iter().map(|x| *x as i32).collect();
        reapply_kinds(t as i32, &x).unwrap()
    };
    assert_eq!(kinds(R::Unspecified, &[]), both);
    assert_eq!(kinds(R::AllEligible, &[]), both);
    assert_eq!(
        kinds(R::Signal, &[]),
        Reapply {
            signals: true,
            updates: false
        }
    );
    assert_eq!(
        kinds(R::AllEligible, &[X::Update]),
        Reapply {
            signals: true,
            updates: false
        }
    );
    assert_eq!(
        kinds(R::Unspecified, &[X::Signal]),
        Reapply {
            signals: false,
            updates: true
        }
    );
    assert_eq!(
        kinds(R::Unspecified, &[X::Signal, X::Update]),
        Reapply::default()
    );
    assert_eq!(kinds(R::None, &[]), Reapply::default());
    assert!(reapply_kinds(42, &[]).is_err());
    assert!(reapply_kinds(0, &[42]).is_err());
}

#[test]
fn reset_points_are_the_first_completion_of_each_build_and_move_to_the_new_run() {
    let mut run = Run::start();
    let first = run.complete_wt("b1", vec![]);
    run.signal("x", "");
    run.complete_wt("b1", vec![]);
    run.signal("y", "");
    let third = run.complete_wt("b2", vec![]);
    let points: Vec<_> = run
        .state
        .reset_points
        .iter()
        .map(|p| {
            (
                p.build_id.as_str(),
                p.first_workflow_task_completed_id,
                p.run_id.as_str(),
            )
        })
        .collect();
    assert_eq!(points, vec![("b1", first, "run-1"), ("b2", third, "run-1")]);
    assert!(run.state.reset_points.iter().all(|p| p.resettable));
    let new = run.reset_at(third, true).expect("reset");
    let carried: Vec<_> = new
        .state
        .reset_points
        .iter()
        .map(|p| (p.build_id.as_str(), p.run_id.as_str()))
        .collect();
    assert_eq!(
        carried,
        vec![("b1", "run-2")],
        "points after the cut are dropped"
    );
}

/// Appends what a workflow task's update messages would write: the update accepted (with its
/// request) and, when `complete`, completed.
fn accept_update(run: &mut Run, update_id: &str, complete: bool) {
    use crate::api::history::v1::{
        WorkflowExecutionUpdateAcceptedEventAttributes,
        WorkflowExecutionUpdateCompletedEventAttributes,
    };
    use crate::api::update::v1::{Input, Meta, Request};
    let request = Request {
        meta: Some(Meta {
            update_id: update_id.into(),
            identity: "client".into(),
        }),
        input: Some(Input {
            name: "bump".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    run.step(|t| {
        let accepted_event_id =
            t.append(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(
                WorkflowExecutionUpdateAcceptedEventAttributes {
                    protocol_instance_id: update_id.into(),
                    accepted_request: Some(request.clone()),
                    ..Default::default()
                },
            ));
        if complete {
            t.append(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(
                WorkflowExecutionUpdateCompletedEventAttributes {
                    meta: request.meta.clone(),
                    accepted_event_id,
                    outcome: None,
                },
            ));
        }
    });
}

#[test]
fn updates_accepted_after_the_cut_are_admitted_again_in_order_with_signals() {
    let mut run = Run::start();
    let first = run.complete_wt("b1", vec![]);
    accept_update(&mut run, "u1", true);
    run.signal("s1", "sig-1");
    accept_update(&mut run, "u2", false);
    let new = run.reset_at(first, true).expect("reset");
    let tail = &new.events[(first - 1) as usize..];
    assert_eq!(
        types(tail),
        vec![
            E::WorkflowTaskFailed,
            E::WorkflowExecutionUpdateAdmitted,
            E::WorkflowExecutionSignaled,
            E::WorkflowExecutionUpdateAdmitted,
            E::WorkflowTaskScheduled,
        ]
    );
    let admitted: Vec<(String, i32)> = tail
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionUpdateAdmittedEventAttributes(a)) => Some((
                a.request
                    .as_ref()
                    .and_then(|r| r.meta.as_ref())
                    .map(|m| m.update_id.clone())
                    .unwrap_or_default(),
                a.origin,
            )),
            _ => None,
        })
        .collect();
    let reapply = UpdateAdmittedEventOrigin::Reapply as i32;
    assert_eq!(
        admitted,
        vec![("u1".to_string(), reapply), ("u2".to_string(), reapply)]
    );
    // Both wait in the new run's state for the worker, by their admitted events.
    let ids: Vec<(&str, i64)> = new
        .state
        .admitted_updates
        .iter()
        .map(|u| (u.update_id.as_str(), u.admitted_event_id))
        .collect();
    assert_eq!(ids, vec![("u1", first + 1), ("u2", first + 3)]);
    assert!(new.state.accepted_updates.is_empty());

    // Excluded: only the signal comes along.
    let new = reset(ResetParams {
        base: &run.state,
        events: &run.history,
        finish_event_id: first,
        new_run_id: "run-3".into(),
        request_id: "reset-2".into(),
        reason: "because".into(),
        reapply: Reapply {
            signals: true,
            updates: false,
        },
        now: 50_000,
    })
    .expect("reset");
    assert_eq!(
        types(&new.events[(first - 1) as usize..]),
        vec![
            E::WorkflowTaskFailed,
            E::WorkflowExecutionSignaled,
            E::WorkflowTaskScheduled,
        ]
    );
    assert!(new.state.admitted_updates.is_empty());
}

#[test]
fn an_update_accepted_before_the_cut_stays_accepted_and_is_not_reapplied() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![]);
    accept_update(&mut run, "u1", false);
    run.signal("s1", "sig-1");
    let second = run.complete_wt("b1", vec![]);
    run.step(|t| {
        t.append(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(
            crate::api::history::v1::WorkflowExecutionUpdateCompletedEventAttributes {
                accepted_event_id: 5,
                ..Default::default()
            },
        ))
    });
    let new = run.reset_at(second, true).expect("reset");
    assert!(
        !types(&new.events).contains(&E::WorkflowExecutionUpdateAdmitted),
        "{:?}",
        types(&new.events)
    );
    assert_eq!(new.state.accepted_updates.len(), 1);
    assert_eq!(new.state.accepted_updates[0].update_id, "u1");
}

// Children and other cross-run work pending at the cut, as the reference server resets them.

fn start_child(workflow_id: &str) -> Cmd {
    Cmd::StartChildWorkflowExecutionCommandAttributes(
        crate::api::command::v1::StartChildWorkflowExecutionCommandAttributes {
            workflow_id: workflow_id.into(),
            workflow_type: Some(crate::api::common::v1::WorkflowType { name: "Kid".into() }),
            parent_close_policy: crate::api::enums::v1::ParentClosePolicy::Terminate as i32,
            ..Default::default()
        },
    )
}

fn child_close() -> HistoryEvent {
    HistoryEvent {
        event_type: E::WorkflowExecutionCompleted as i32,
        attributes: Some(Attributes::WorkflowExecutionCompletedEventAttributes(
            Default::default(),
        )),
        ..Default::default()
    }
}

fn close_policy_effects(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::ApplyParentClosePolicy { .. }))
        .count()
}

impl Run {
    fn from_reset(r: ResetRun) -> Run {
        Run {
            state: r.state,
            history: r.events,
            now: 60_000,
        }
    }

    /// Like `step`, returning the transition's effects too.
    fn step_effects<R>(&mut self, op: impl FnOnce(&mut Transition<'_>) -> R) -> (R, Vec<Effect>) {
        self.now += 10;
        let mut t = Transition::new(&mut self.state, self.now);
        let r = op(&mut t);
        let events = std::mem::take(&mut t.events);
        let effects = std::mem::take(&mut t.effects);
        self.history.extend(events);
        (r, effects)
    }
}

#[test]
fn a_child_started_before_the_cut_is_taken_over_and_its_close_is_recorded_by_the_new_run() {
    let mut run = Run::start();
    assert_eq!(run.complete_wt("b1", vec![start_child("kid")]), 4);
    run.step(|t| t.child_started(5, "kid-run"))
        .expect("started");
    let cut = run.complete_wt("b1", vec![]);
    assert_eq!(cut, 9);
    let r = run.reset_at(cut, true).expect("reset with a pending child");
    assert_eq!(
        types(&r.events)[4..],
        [
            E::StartChildWorkflowExecutionInitiated,
            E::ChildWorkflowExecutionStarted,
            E::WorkflowTaskScheduled,
            E::WorkflowTaskStarted,
            E::WorkflowTaskFailed,
            E::WorkflowTaskScheduled,
        ]
    );
    let child = r.state.child(5).expect("pending in the new run").clone();
    assert_eq!(
        (
            child.run_id.as_str(),
            child.started_event_id,
            child.parent_run_id.as_str()
        ),
        ("kid-run", 6, "run-1"),
        "started, and it names the base run as its parent"
    );
    let command = child.command.clone().unwrap_or_default();
    assert_eq!(command.workflow_id, "kid");
    assert_eq!(
        command.parent_close_policy,
        crate::api::enums::v1::ParentClosePolicy::Terminate as i32
    );
    assert!(r.effects.contains(&Effect::CheckChild {
        initiated_event_id: 5
    }));

    let mut new = Run::from_reset(r);
    // A report naming another run, or another child run, changes nothing.
    new.step(|t| t.child_closed_taken_over(5, "run-9", "kid-run", &child_close()))
        .expect("ignored");
    new.step(|t| t.child_closed_taken_over(5, "run-1", "other-run", &child_close()))
        .expect("ignored");
    assert!(new.state.child(5).is_some());
    new.step(|t| t.child_closed_taken_over(5, "run-1", "kid-run", &child_close()))
        .expect("recorded");
    assert!(new.state.children.is_empty());
    let completed = new.history.last().expect("an event");
    let Some(Attributes::ChildWorkflowExecutionCompletedEventAttributes(c)) = &completed.attributes
    else {
        panic!("not a child completion: {completed:?}")
    };
    assert_eq!((c.initiated_event_id, c.started_event_id), (5, 6));
    assert!(new.state.workflow_task.is_some());
}

#[test]
fn the_close_policy_is_not_applied_by_a_reset_nor_to_a_child_the_new_run_took_over() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![start_child("kid")]);
    run.step(|t| t.child_started(5, "kid-run"))
        .expect("started");
    let cut = run.complete_wt("b1", vec![]);

    let mut plain = Run {
        state: run.state.clone(),
        history: run.history.clone(),
        now: run.now,
    };
    let (_, effects) =
        plain.step_effects(|t| t.terminate("stop", None, "admin").expect("terminate"));
    assert_eq!(
        close_policy_effects(&effects),
        1,
        "a plain terminate applies it"
    );

    let r = run.reset_at(cut, true).expect("reset");
    let (_, effects) = run.step_effects(|t| {
        t.terminate_for_reset("because", "run-2")
            .expect("terminate")
    });
    assert_eq!(close_policy_effects(&effects), 0);
    assert_eq!(run.state.reset_new_run_id, "run-2");
    assert_eq!(
        run.history.last().map(|e| e.event_type),
        Some(E::WorkflowExecutionTerminated as i32)
    );

    let mut new = Run::from_reset(r);
    let (_, effects) = new.step_effects(|t| t.terminate("stop", None, "admin").expect("terminate"));
    assert_eq!(
        close_policy_effects(&effects),
        0,
        "the child names the old run"
    );
}

#[test]
fn a_childs_start_and_close_after_the_cut_are_reapplied_with_new_ids() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![start_child("kid")]); // initiated: 5
    run.signal("a", "sig-a"); // 6, task 7
    let cut = run.complete_wt("b1", vec![]); // 8, 9
    assert_eq!(cut, 9);
    run.signal("b", "sig-b"); // 10, task 11
    run.step(|t| t.child_started(5, "kid-run"))
        .expect("started"); // 12
    run.step(|t| t.child_closed(5, "kid-run", &child_close()))
        .expect("closed"); // 13
    assert_eq!(run.history.len(), 13);

    // Without signals the child's events move up: the close names the new started event.
    let r = run.reset_at(cut, false).expect("reset");
    assert_eq!(
        types(&r.events)[8..],
        [
            E::WorkflowTaskFailed,
            E::ChildWorkflowExecutionStarted,
            E::ChildWorkflowExecutionCompleted,
            E::WorkflowTaskScheduled,
        ]
    );
    let Some(Attributes::ChildWorkflowExecutionCompletedEventAttributes(c)) =
        &r.events[10].attributes
    else {
        panic!()
    };
    assert_eq!((c.initiated_event_id, c.started_event_id), (5, 10));
    assert!(
        r.state.children.is_empty(),
        "closed in the reapplied events"
    );
    assert!(
        !r.effects
            .iter()
            .any(|e| matches!(e, Effect::StartChild { .. } | Effect::CheckChild { .. }))
    );

    // With signals: in the order they came.
    let r = run.reset_at(cut, true).expect("reset");
    assert_eq!(
        types(&r.events)[8..],
        [
            E::WorkflowTaskFailed,
            E::WorkflowExecutionSignaled,
            E::ChildWorkflowExecutionStarted,
            E::ChildWorkflowExecutionCompleted,
            E::WorkflowTaskScheduled,
        ]
    );
}

#[test]
fn a_child_started_after_the_cut_is_pending_with_its_reapplied_start() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![start_child("kid")]);
    run.signal("a", "sig-a");
    let cut = run.complete_wt("b1", vec![]);
    run.step(|t| t.child_started(5, "kid-run"))
        .expect("started");
    let r = run.reset_at(cut, true).expect("reset");
    assert_eq!(
        types(&r.events)[8..],
        [
            E::WorkflowTaskFailed,
            E::ChildWorkflowExecutionStarted,
            E::WorkflowTaskScheduled
        ]
    );
    let child = r.state.child(5).expect("pending");
    assert_eq!(
        (
            child.run_id.as_str(),
            child.started_event_id,
            child.parent_run_id.as_str()
        ),
        ("kid-run", 10, "run-1")
    );
}

#[test]
fn a_child_not_started_anywhere_is_started_by_the_new_run_and_a_later_one_is_left_out() {
    let mut run = Run::start();
    let first = run.complete_wt("b1", vec![start_child("kid")]);
    run.signal("a", "sig-a");
    let cut = run.complete_wt("b1", vec![]);
    let r = run.reset_at(cut, true).expect("reset");
    let child = r.state.child(5).expect("pending");
    assert!(child.run_id.is_empty());
    assert!(
        child.parent_run_id.is_empty(),
        "the new run starts it: it is its parent"
    );
    assert!(r.effects.contains(&Effect::StartChild {
        initiated_event_id: 5
    }));

    let r = run.reset_at(first, true).expect("reset before the child");
    assert!(r.state.children.is_empty());
    assert!(
        !r.effects
            .iter()
            .any(|e| matches!(e, Effect::StartChild { .. }))
    );
}

#[test]
fn a_child_taken_over_twice_still_names_the_run_that_started_it() {
    let mut run = Run::start();
    run.complete_wt("b1", vec![start_child("kid")]);
    run.step(|t| t.child_started(5, "kid-run"))
        .expect("started");
    let cut = run.complete_wt("b1", vec![]);
    let mut second = Run::from_reset(run.reset_at(cut, true).expect("first reset"));
    second.complete_wt("b1", vec![]);
    second.signal("a", "sig-a");
    let later = second.complete_wt("b1", vec![]);
    let r = reset(ResetParams {
        base: &second.state,
        events: &second.history,
        finish_event_id: later,
        new_run_id: "run-3".into(),
        request_id: "reset-2".into(),
        reason: "again".into(),
        reapply: Reapply::default(),
        now: 90_000,
    })
    .expect("second reset");
    let child = r.state.child(5).expect("pending");
    assert_eq!(child.parent_run_id, "run-1");
}

#[test]
#[allow(deprecated)] // namespace on the commands
fn external_signals_and_cancels_pending_at_the_cut_are_sent_again() {
    use crate::api::command::v1::{
        RequestCancelExternalWorkflowExecutionCommandAttributes,
        SignalExternalWorkflowExecutionCommandAttributes,
    };
    let mut run = Run::start();
    run.complete_wt(
        "b1",
        vec![
            Cmd::SignalExternalWorkflowExecutionCommandAttributes(
                SignalExternalWorkflowExecutionCommandAttributes {
                    execution: Some(crate::api::common::v1::WorkflowExecution {
                        workflow_id: "other".into(),
                        run_id: String::new(),
                    }),
                    signal_name: "hello".into(),
                    ..Default::default()
                },
            ),
            Cmd::RequestCancelExternalWorkflowExecutionCommandAttributes(
                RequestCancelExternalWorkflowExecutionCommandAttributes {
                    workflow_id: "victim".into(),
                    reason: "why".into(),
                    ..Default::default()
                },
            ),
        ],
    ); // 5, 6
    run.signal("a", "sig-a");
    let cut = run.complete_wt("b1", vec![]);
    run.step(|t| t.external_signal_done(5, true))
        .expect("signaled");
    run.step(|t| t.external_cancel_done(6, true))
        .expect("cancel requested");
    let r = run.reset_at(cut, true).expect("reset");
    assert_eq!(
        types(&r.events)[cut as usize - 1..],
        [E::WorkflowTaskFailed, E::WorkflowTaskScheduled],
        "their outcomes are not copied: they are sent again"
    );
    let signal = r.state.external_signal(5).expect("pending signal");
    let command = signal.command.clone().unwrap_or_default();
    assert_eq!(command.signal_name, "hello");
    assert_eq!(
        command.execution.map(|e| e.workflow_id),
        Some("other".into())
    );
    let cancel = r.state.external_cancel(6).expect("pending cancel");
    let command = cancel.command.clone().unwrap_or_default();
    assert_eq!(
        (command.workflow_id.as_str(), command.reason.as_str()),
        ("victim", "why")
    );
    assert!(r.effects.contains(&Effect::SignalExternal {
        initiated_event_id: 5
    }));
    assert!(r.effects.contains(&Effect::CancelExternal {
        initiated_event_id: 6
    }));
}
