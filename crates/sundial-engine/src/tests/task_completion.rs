//! What a whole RespondWorkflowTaskCompleted decides (`Transition::respond_workflow_task_completed`):
//! the tasks its reply hands back (eager activities, the inline next workflow task), and what
//! closing a transition adds (`Transition::finish`: history limits, the next run of a chain,
//! the transition count).

use super::*;
use crate::{Inputs, Limits, Signal, TaskCompletion};

/// Activity `id` asking to run eagerly, on `queue` (the workflow's own when empty).
fn eager(id: &str, queue: &str) -> Cmd {
    let Cmd::ScheduleActivityTaskCommandAttributes(mut a) = schedule(id, None) else {
        unreachable!()
    };
    a.request_eager_execution = true;
    if !queue.is_empty() {
        a.task_queue = Some(TaskQueue {
            name: queue.into(),
            ..Default::default()
        });
    }
    Cmd::ScheduleActivityTaskCommandAttributes(a)
}

/// Completes the run's started task `wt` with `commands` through the whole RPC's rule.
fn respond(
    run: &mut Run,
    wt: WorkflowTaskRef,
    commands: Vec<Cmd>,
    return_new_workflow_task: bool,
) -> (TaskCompletion, Vec<Effect>) {
    let req = RespondWorkflowTaskCompletedRequest {
        return_new_workflow_task,
        ..completion(commands)
    };
    let (r, effects, _) =
        run.step(|t| t.respond_workflow_task_completed(wt, &req, Default::default(), &poller()));
    (r.expect("completion"), effects)
}

fn dispatched_activities(effects: &[Effect]) -> Vec<(String, i64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::DispatchActivityTask {
                task_queue,
                scheduled_event_id,
                ..
            } => Some((task_queue.clone(), *scheduled_event_id)),
            _ => None,
        })
        .collect()
}

fn dispatches_a_workflow_task(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::DispatchWorkflowTask { .. }))
}

#[test]
fn eager_activities_start_only_on_the_workflows_own_queue_and_skip_dispatch() {
    let (mut run, _) = Run::start();
    let wt = run.start_wt();
    // Events 5, 6, 7: eager on the own queue, eager elsewhere, not eager.
    let commands = vec![
        eager("own", ""),
        eager("away", "other"),
        schedule("plain", None),
    ];
    let (completion, effects) = respond(&mut run, wt, commands, false);
    assert_eq!(completion.eager_activities, vec![5]);
    assert!(!completion.inline_task);
    assert!(run.state.activity_by_id("own").unwrap().is_started());
    assert_eq!(
        dispatched_activities(&effects),
        vec![("other".to_string(), 6), ("q".to_string(), 7)],
        "the eager one goes in the reply, the others to their queues"
    );
}

#[test]
fn a_rejected_or_closing_completion_hands_nothing_back() {
    // Closing: the run completes in the same task, so its activity is never started.
    let (mut run, _) = Run::start();
    let wt = run.start_wt();
    let (completion, _) = respond(&mut run, wt, vec![eager("own", ""), complete()], true);
    assert!(!run.state.is_running());
    assert_eq!(completion.eager_activities, Vec::<i64>::new());
    assert!(!completion.inline_task);

    // Rejected: a second activity with the same id fails the task and keeps none of it.
    let (mut run, _) = Run::start();
    let wt = run.start_wt();
    let (completion, effects) =
        respond(&mut run, wt, vec![eager("dup", ""), eager("dup", "")], true);
    assert!(completion.outcome.rejected.is_some());
    assert_eq!(completion.eager_activities, Vec::<i64>::new());
    assert!(!completion.inline_task);
    assert!(dispatched_activities(&effects).is_empty());
    assert_eq!(
        run.types().last(),
        Some(&E::WorkflowTaskFailed),
        "the task is failed, with none of its commands"
    );
}

#[test]
fn the_next_workflow_task_goes_inline_only_when_asked_for() {
    for asked in [true, false] {
        let (mut run, _) = Run::start();
        let wt = run.start_wt();
        // A signal during the task: the completion must schedule another task to deliver it.
        run.step(|t| {
            t.signal(Signal {
                name: "go".into(),
                ..Default::default()
            })
        })
        .0
        .unwrap();
        let (completion, effects) = respond(&mut run, wt, vec![], asked);
        assert!(completion.outcome.new_workflow_task);
        assert_eq!(completion.inline_task, asked);
        let next = run.state.workflow_task.as_ref().expect("next task");
        assert_eq!(next.is_started(), asked, "asked: {asked}");
        assert_eq!(
            dispatches_a_workflow_task(&effects),
            !asked,
            "an inline task is not also dispatched (asked: {asked})"
        );
    }
}

#[test]
fn finish_counts_written_transitions_only() {
    let (mut run, _) = Run::start();
    let before = run.state.state_transition_count;
    let mut t = Transition::new(&mut run.state, 2_000);
    t.persist = Persist::Nothing;
    let decided = t.finish().unwrap();
    assert_eq!(decided.persist, Persist::Nothing);
    assert_eq!(run.state.state_transition_count, before);

    let t = Transition::new(&mut run.state, 2_000);
    let decided = t.finish().unwrap();
    assert_eq!(decided.persist, Persist::Synced);
    assert_eq!(run.state.state_transition_count, before + 1);
}

#[test]
fn finish_creates_the_next_run_of_a_chain_in_the_same_outcome() {
    let (mut run, _) = Run::start();
    let wt = run.start_wt();
    let req = RespondWorkflowTaskCompletedRequest {
        commands: as_commands(vec![continue_as_new()]),
        ..Default::default()
    };
    let before = run.state.state_transition_count;
    let mut t = Transition::with_inputs(
        &mut run.state,
        Inputs {
            now: 2_000,
            new_run_id: "run-2".into(),
            ..Inputs::default()
        },
    );
    t.complete_workflow_task(wt, &req).unwrap();
    let decided = t.finish().unwrap();
    let next = decided.next_run.expect("the chain's next run");
    assert_eq!(next.state.run_id, "run-2");
    assert_eq!(next.state.state_transition_count, 1);
    assert_eq!(
        next.events.first().map(|e| e.event_type),
        Some(E::WorkflowExecutionStarted as i32)
    );
    assert!(
        next.effects
            .iter()
            .any(|e| matches!(e, Effect::DispatchWorkflowTask { .. })),
        "the next run's first task is dispatched"
    );
    assert_eq!(run.state.state_transition_count, before + 1);
    assert!(!run.state.is_running());
}

#[test]
fn finish_terminates_a_run_whose_history_outgrew_the_limit() {
    let (mut run, _) = Run::start();
    let limits = Limits {
        history_count_error: 2,
        ..Limits::default()
    };
    let mut t = Transition::with_inputs(
        &mut run.state,
        Inputs {
            now: 2_000,
            limits,
            ..Inputs::default()
        },
    );
    t.signal(Signal {
        name: "one-too-many".into(),
        ..Default::default()
    })
    .unwrap();
    let decided = t.finish().unwrap();
    assert!(decided.terminated_by_history_limit);
    assert_eq!(
        decided.events.last().map(|e| e.event_type),
        Some(E::WorkflowExecutionTerminated as i32)
    );
    assert_eq!(decided.persist, Persist::Synced);
    assert!(!run.state.is_running());

    // Within the limit nothing is added.
    let (mut run, _) = Run::start();
    let t = Transition::new(&mut run.state, 2_000);
    let decided = t.finish().unwrap();
    assert!(!decided.terminated_by_history_limit);
    assert!(decided.events.is_empty());
}
