//! The schedule state machine driven through its operations with a synthetic clock.

use crate::api::common::v1::{WorkflowExecution, WorkflowType};
use crate::api::enums::v1::{
    ScheduleOverlapPolicy as Policy, WorkflowExecutionStatus as Status, WorkflowIdReusePolicy,
};
use crate::api::failure::v1::Failure;
use crate::api::schedule::v1::{
    BackfillRequest, IntervalSpec, Schedule, ScheduleAction, SchedulePatch, SchedulePolicies,
    ScheduleSpec, ScheduleState, TriggerImmediatelyRequest, schedule_action::Action,
};
use crate::api::taskqueue::v1::TaskQueue;
use crate::api::workflow::v1::NewWorkflowExecutionInfo;
use crate::schedule::{ScheduleMachine, rfc3339_seconds};
use crate::{NewSchedule, ScheduleError, ScheduleRecord};
use prost::Message;
use sundial_time as time;

/// 2026-12-01T00:00:00Z
const T0: i64 = 1_796_083_200_000;
const S: i64 = 1000;

fn schedule(every_s: i64, overlap: Policy) -> Schedule {
    Schedule {
        spec: Some(ScheduleSpec {
            interval: vec![IntervalSpec {
                interval: Some(time::duration(every_s * S)),
                phase: None,
            }],
            ..Default::default()
        }),
        action: Some(ScheduleAction {
            action: Some(Action::StartWorkflow(NewWorkflowExecutionInfo {
                workflow_id: "wf".into(),
                workflow_type: Some(WorkflowType { name: "W".into() }),
                task_queue: Some(TaskQueue {
                    name: "tq".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }),
        policies: Some(SchedulePolicies {
            overlap_policy: overlap as i32,
            ..Default::default()
        }),
        state: None,
    }
}

fn machine(s: Schedule) -> ScheduleMachine {
    ScheduleMachine::create(
        NewSchedule {
            namespace: "default".into(),
            schedule_id: "sched".into(),
            schedule: s,
            memo: None,
            search_attributes: None,
            incarnation: "inc".into(),
        },
        T0,
    )
    .expect("valid schedule")
}

/// Performs every start of the plan, as the driver does; returns the nominal times (in
/// seconds after T0) started.
fn run(m: &mut ScheduleMachine, now: i64) -> Vec<i64> {
    let plan = m.advance(now);
    let mut started = Vec::new();
    for start in plan.starts {
        let req = m.start_request(&start).expect("start request");
        m.start_succeeded(
            &start.request_id,
            WorkflowExecution {
                workflow_id: req.workflow_id,
                run_id: format!("run-{}", start.request_id),
            },
            now,
        );
        started.push((start.nominal_ms - T0) / S);
    }
    started
}

fn close_all(m: &mut ScheduleMachine) {
    for wf in m.running_workflows() {
        m.workflow_closed(&wf.workflow_id, Status::Completed, None, None);
    }
}

#[test]
fn skip_drops_times_while_a_run_is_open() {
    let mut m = machine(schedule(10, Policy::Skip));
    assert_eq!(run(&mut m, T0 + 25 * S), vec![10]);
    assert_eq!(m.info().overlap_skipped, 1);
    assert_eq!(run(&mut m, T0 + 35 * S), Vec::<i64>::new());
    assert_eq!(m.info().overlap_skipped, 2);
    close_all(&mut m);
    assert_eq!(run(&mut m, T0 + 40 * S), vec![40]);
    assert_eq!(m.info().action_count, 2);
}

#[test]
fn buffer_one_keeps_one_for_after_the_run() {
    let mut m = machine(schedule(10, Policy::BufferOne));
    assert_eq!(run(&mut m, T0 + 10 * S), vec![10]);
    assert_eq!(run(&mut m, T0 + 40 * S), Vec::<i64>::new());
    assert_eq!(m.info().overlap_skipped, 2);
    assert_eq!(m.describe_info().buffer_size, 1);
    close_all(&mut m);
    assert_eq!(run(&mut m, T0 + 41 * S), vec![20]);
}

#[test]
fn buffer_all_runs_every_time_one_after_another() {
    let mut m = machine(schedule(10, Policy::BufferAll));
    assert_eq!(run(&mut m, T0 + 30 * S), vec![10]);
    for expected in [20, 30] {
        assert_eq!(run(&mut m, T0 + 31 * S), Vec::<i64>::new());
        close_all(&mut m);
        assert_eq!(run(&mut m, T0 + 31 * S), vec![expected]);
    }
    assert_eq!(m.info().overlap_skipped, 0);
}

#[test]
fn cancel_other_cancels_then_starts() {
    let mut m = machine(schedule(10, Policy::CancelOther));
    assert_eq!(run(&mut m, T0 + 10 * S), vec![10]);
    let plan = m.advance(T0 + 20 * S);
    assert!(plan.starts.is_empty());
    assert_eq!(plan.cancel.len(), 1);
    assert!(plan.terminate.is_empty());
    m.workflow_closed(&plan.cancel[0].workflow_id, Status::Canceled, None, None);
    assert_eq!(run(&mut m, T0 + 21 * S), vec![20]);
}

#[test]
fn terminate_other_terminates_then_starts() {
    let mut m = machine(schedule(10, Policy::TerminateOther));
    assert_eq!(run(&mut m, T0 + 10 * S), vec![10]);
    let plan = m.advance(T0 + 20 * S);
    assert_eq!(plan.terminate.len(), 1);
    assert!(plan.cancel.is_empty());
    m.workflow_closed(
        &plan.terminate[0].workflow_id,
        Status::Terminated,
        None,
        None,
    );
    assert_eq!(run(&mut m, T0 + 20 * S), vec![20]);
}

#[test]
fn allow_all_starts_everything_and_tracks_nothing() {
    let mut m = machine(schedule(10, Policy::AllowAll));
    assert_eq!(run(&mut m, T0 + 30 * S), vec![10, 20, 30]);
    assert!(m.running_workflows().is_empty());
    assert_eq!(m.info().recent_actions.len(), 3);
}

#[test]
fn catchup_window_bounds_what_runs_after_downtime() {
    let mut s = schedule(10, Policy::AllowAll);
    s.policies.as_mut().unwrap().catchup_window = Some(time::duration(15 * S));
    let mut m = machine(s);
    // Down for a minute: only the times within 15 s of now still run.
    assert_eq!(run(&mut m, T0 + 60 * S), vec![50, 60]);
    assert_eq!(m.info().missed_catchup_window, 4);
    // Below the minimum, the window is 10 s.
    let mut s = schedule(10, Policy::AllowAll);
    s.policies.as_mut().unwrap().catchup_window = Some(time::duration(S));
    let mut m = machine(s);
    assert_eq!(run(&mut m, T0 + 60 * S), vec![50, 60]);
}

#[test]
fn pause_skips_time_without_counting_it_missed() {
    let mut m = machine(schedule(10, Policy::AllowAll));
    m.patch(
        &SchedulePatch {
            pause: "maintenance".into(),
            ..Default::default()
        },
        T0,
    );
    assert!(m.is_paused());
    let plan = m.advance(T0 + 30 * S);
    assert!(plan.starts.is_empty());
    assert_eq!(plan.wake_at_ms, None);
    assert_eq!(m.info().missed_catchup_window, 0);
    m.patch(
        &SchedulePatch {
            unpause: "done".into(),
            ..Default::default()
        },
        T0 + 30 * S,
    );
    assert_eq!(run(&mut m, T0 + 45 * S), vec![40]);
    assert_eq!(m.record.conflict_token, 3);
}

#[test]
fn triggers_run_even_while_paused() {
    let mut s = schedule(3600, Policy::Skip);
    s.state = Some(ScheduleState {
        paused: true,
        ..Default::default()
    });
    let mut m = machine(s);
    m.patch(
        &SchedulePatch {
            trigger_immediately: Some(TriggerImmediatelyRequest {
                overlap_policy: Policy::AllowAll as i32,
                scheduled_time: None,
            }),
            ..Default::default()
        },
        T0 + 5 * S,
    );
    assert_eq!(run(&mut m, T0 + 5 * S), vec![5]);
}

#[test]
fn limited_actions_count_down_and_stop() {
    let mut s = schedule(10, Policy::AllowAll);
    s.state = Some(ScheduleState {
        limited_actions: true,
        remaining_actions: 2,
        ..Default::default()
    });
    let mut m = machine(s);
    assert_eq!(m.future_action_times(10).len(), 2);
    assert_eq!(run(&mut m, T0 + 50 * S), vec![10, 20]);
    assert_eq!(m.future_action_times(10).len(), 0);
    assert_eq!(run(&mut m, T0 + 90 * S), Vec::<i64>::new());
    assert_eq!(m.advance(T0 + 90 * S).wake_at_ms, None);
}

#[test]
fn backfill_covers_a_past_window_inclusively() {
    let mut m = machine(schedule(10, Policy::AllowAll));
    m.patch(
        &SchedulePatch {
            backfill_request: vec![BackfillRequest {
                start_time: Some(time::timestamp(T0 - 60 * S)),
                end_time: Some(time::timestamp(T0 - 30 * S)),
                overlap_policy: Policy::AllowAll as i32,
            }],
            ..Default::default()
        },
        T0 + S,
    );
    assert_eq!(run(&mut m, T0 + S), vec![-60, -50, -40, -30]);
    assert!(m.record.backfills.is_empty());
}

#[test]
fn update_checks_the_conflict_token() {
    let mut m = machine(schedule(10, Policy::Skip));
    assert_eq!(m.conflict_token_bytes(), vec![0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        m.update(schedule(20, Policy::Skip), None, Some(9), T0),
        Err(ScheduleError::Conflict)
    );
    m.update(schedule(20, Policy::Skip), None, Some(1), T0 + 5 * S)
        .unwrap();
    assert_eq!(m.record.conflict_token, 2);
    assert_eq!(run(&mut m, T0 + 30 * S), vec![20]);
    let mut bad = schedule(20, Policy::Skip);
    bad.spec.as_mut().unwrap().cron_string = vec!["61 * * * *".into()];
    assert_eq!(
        m.update(bad, None, None, T0),
        Err(ScheduleError::InvalidArgument(
            "Invalid schedule spec: Minute is not in range [0-59]".into()
        ))
    );
}

#[test]
fn pause_on_failure_pauses_with_a_note_and_keeps_the_failure() {
    let mut s = schedule(10, Policy::Skip);
    s.policies.as_mut().unwrap().pause_on_failure = true;
    let mut m = machine(s);
    run(&mut m, T0 + 10 * S);
    let id = m.running_workflows()[0].workflow_id.clone();
    let failure = Failure {
        message: "boom".into(),
        ..Default::default()
    };
    assert!(m.workflow_closed(&id, Status::Failed, None, Some(failure.clone())));
    assert!(m.is_paused());
    assert_eq!(
        m.record.schedule().state.as_ref().unwrap().notes,
        format!("paused due to workflow failure: {id}: boom")
    );
    assert_eq!(m.record.continued_failure, Some(failure));
    assert_eq!(
        m.info().recent_actions[0].start_workflow_status,
        Status::Failed as i32
    );
}

#[test]
fn starts_in_flight_survive_a_restart_with_their_request_ids() {
    let mut m = machine(schedule(10, Policy::Skip));
    let plan = m.advance(T0 + 10 * S);
    assert_eq!(plan.starts.len(), 1);
    let bytes = m.record.encode_to_vec();
    let mut restored = ScheduleMachine::from_record(ScheduleRecord::decode(&bytes[..]).unwrap());
    let again = restored.advance(T0 + 11 * S);
    assert_eq!(again.starts, plan.starts);
    restored.start_failed(&plan.starts[0].request_id);
    assert!(restored.advance(T0 + 12 * S).starts.is_empty());
}

#[test]
fn start_request_names_and_tags_the_run() {
    let mut m = machine(schedule(10, Policy::Skip));
    let plan = m.advance(T0 + 10 * S);
    let req = m.start_request(&plan.starts[0]).unwrap();
    assert_eq!(req.workflow_id, "wf-2026-12-01T00:00:10Z");
    assert_eq!(req.identity, "temporal-scheduler-default-sched");
    assert_eq!(
        req.workflow_id_reuse_policy,
        WorkflowIdReusePolicy::RejectDuplicate as i32
    );
    let attrs = req.search_attributes.unwrap().indexed_fields;
    assert_eq!(
        attrs["TemporalScheduledStartTime"].data,
        b"\"2026-12-01T00:00:10Z\"".to_vec()
    );
    assert_eq!(attrs["TemporalScheduledById"].data, b"\"sched\"".to_vec());
    assert_eq!(rfc3339_seconds(T0 + 1500), "2026-12-01T00:00:01Z");
}

#[test]
fn create_refuses_bad_input() {
    let create = |s: Schedule| {
        ScheduleMachine::create(
            NewSchedule {
                namespace: "default".into(),
                schedule_id: "x".into(),
                schedule: s,
                memo: None,
                search_attributes: None,
                incarnation: "i".into(),
            },
            T0,
        )
        .map(|_| ())
        .unwrap_err()
    };
    let mut no_action = schedule(10, Policy::Skip);
    no_action.action = None;
    assert!(matches!(create(no_action), ScheduleError::InvalidArgument(m) if m.contains("action")));
    let mut bad_zone = schedule(10, Policy::Skip);
    bad_zone.spec.as_mut().unwrap().timezone_name = "Mars/Olympus".into();
    assert_eq!(
        create(bad_zone),
        ScheduleError::InvalidArgument(
            "Invalid schedule spec: unknown time zone Mars/Olympus".into()
        )
    );
    let mut no_queue = schedule(10, Policy::Skip);
    if let Some(Action::StartWorkflow(s)) = no_queue.action.as_mut().unwrap().action.as_mut() {
        s.task_queue = None;
    }
    assert_eq!(
        create(no_queue),
        ScheduleError::InvalidArgument("missing task queue name".into())
    );
}

#[test]
fn describe_shows_defaults_and_future_times() {
    let m = machine(schedule(10, Policy::Unspecified));
    let policies = m.record.schedule().policies.unwrap();
    assert_eq!(policies.overlap_policy, Policy::Skip as i32);
    assert_eq!(policies.catchup_window.unwrap().seconds, 365 * 24 * 3600);
    let info = m.describe_info();
    assert_eq!(info.future_action_times.len(), 10);
    assert_eq!(
        time::timestamp_ms(&info.future_action_times[0]),
        T0 + 10 * S
    );
    let entry = m.list_entry();
    assert_eq!(entry.info.unwrap().future_action_times.len(), 5);
}
