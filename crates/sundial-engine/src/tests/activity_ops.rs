//! Operator actions on pending activities (`activity_ops.rs`): pause, unpause, reset and
//! option updates change the state only, and paused activities are neither dispatched nor
//! timed out.

use super::*;
use crate::EngineError;
use crate::activity_ops::{ActivityTarget, Jitter, PauseRequest, ResetRequest, UnpauseRequest};
use crate::activity_options::UpdateOptionsRequest;
use crate::api::activity::v1::ActivityOptions;
use prost::Message;

const ID: i64 = 5;

fn attempt(n: i32) -> ActivityRef {
    ActivityRef {
        scheduled_event_id: ID,
        attempt: n,
    }
}

fn target() -> ActivityTarget {
    ActivityTarget::Id("1".into())
}

fn pause(run: &mut Run, request_id: &str) -> Result<(), EngineError> {
    let request = PauseRequest {
        identity: "op".into(),
        reason: "why".into(),
        request_id: request_id.into(),
    };
    let (r, effects, _) = run.step(|t| t.pause_activities(&target(), &request));
    assert!(effects.is_empty(), "a pause dispatches nothing");
    r
}

fn no_options(_: i64) -> Option<ActivityOptions> {
    None
}

/// A run with activity "1" (scheduled event 5) scheduled with `policy` and started.
fn running(policy: RetryPolicy) -> Run {
    let (mut run, _) = Run::start();
    run.complete_wt(vec![schedule("1", Some(policy))]);
    run.step(|t| t.start_activity(attempt(1), &poller()))
        .0
        .unwrap();
    run
}

fn one_attempt() -> RetryPolicy {
    RetryPolicy {
        initial_interval: Some(time::duration(100)),
        maximum_attempts: 1,
        ..Default::default()
    }
}

fn dispatches(effects: &[Effect]) -> Vec<i32> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::DispatchActivityTask { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[test]
fn a_paused_running_attempt_continues_reports_the_pause_and_waits_to_be_retried() {
    let mut run = running(one_attempt());
    let events = run.history.len();
    pause(&mut run, "p1").unwrap();
    assert_eq!(run.history.len(), events, "a pause writes no event");
    let a = run.state.activity(ID).unwrap();
    assert!(a.paused);
    assert_eq!(a.pause_info.as_ref().unwrap().identity, "op");
    assert!(
        run.state.deadlines().is_empty(),
        "a paused activity has no deadlines"
    );
    let attrs = &run.state.search_attributes.as_ref().unwrap().indexed_fields;
    assert_eq!(
        attrs[crate::activity_ops::PAUSE_INFO_ATTRIBUTE].data,
        br#"["property:activityType=act"]"#.to_vec()
    );
    let (reply, _, _) = run.step(|t| t.heartbeat_activity(attempt(1), None));
    let reply = reply.unwrap();
    assert!(reply.activity_paused && !reply.activity_reset && !reply.cancel_requested);
    // The worker gives up on the paused attempt: the next one is counted (beyond the policy's
    // single attempt) and waits, undispatched and with no event written.
    let (r, effects, _) = run.step(|t| t.fail_activity(attempt(1), app_failure(), None, "worker"));
    r.unwrap();
    assert!(dispatches(&effects).is_empty());
    let a = run.state.activity(ID).unwrap();
    assert_eq!((a.attempt, a.is_started(), a.paused), (2, false, true));
    assert_eq!(a.last_attempt_complete_time_ms, run.now);
    assert_eq!(run.history.len(), events);
    assert!(run.state.ready_tasks(run.now + 1_000_000).is_empty());
    // Unpausing dispatches it at once.
    let (r, effects, _) = run.step(|t| t.unpause_activities(&target(), &UnpauseRequest::default()));
    r.unwrap();
    assert_eq!(dispatches(&effects), vec![2]);
    assert!(
        run.state.search_attributes.is_none(),
        "nothing paused, no pause info"
    );
    run.step(|t| t.start_activity(attempt(2), &poller()))
        .0
        .unwrap();
    run.step(|t| t.complete_activity(attempt(2), None, "worker"))
        .0
        .unwrap();
    assert!(run.types().contains(&E::ActivityTaskCompleted));
}

#[test]
fn pausing_refuses_what_the_reference_refuses() {
    let mut run = running(one_attempt());
    pause(&mut run, "p1").unwrap();
    pause(&mut run, "p1").unwrap();
    assert!(matches!(
        pause(&mut run, "p2"),
        Err(EngineError::FailedPrecondition(m)) if m == "activity is already paused"
    ));
    let request = PauseRequest::default();
    let (r, _, _) = run.step(|t| t.pause_activities(&ActivityTarget::Id("nope".into()), &request));
    assert!(
        matches!(r, Err(EngineError::NotFound(m)) if m.starts_with("Can't find pending activity"))
    );
    let (r, _, _) =
        run.step(|t| t.pause_activities(&ActivityTarget::Type("other".into()), &request));
    assert!(matches!(r, Err(EngineError::NotFound(_))));
    run.step(|t| t.terminate("done", None, "op")).0.unwrap();
    let (r, _, _) = run.step(|t| t.unpause_activities(&target(), &UnpauseRequest::default()));
    assert!(
        matches!(r, Err(EngineError::NotFound(m)) if m == "workflow execution already completed")
    );
}

#[test]
fn a_paused_scheduled_activity_is_not_started_until_unpaused_with_its_jitter() {
    let (mut run, _) = Run::start();
    run.complete_wt(vec![schedule("1", None)]);
    pause(&mut run, "p").unwrap();
    assert!(
        run.step(|t| t.start_activity(attempt(1), &poller()))
            .0
            .is_err()
    );
    assert!(run.state.ready_tasks(run.now).is_empty());
    let request = UnpauseRequest {
        jitter: Jitter {
            max_ms: 10_000,
            seed: 42,
        },
        ..Default::default()
    };
    let (r, effects, _) = run.step(|t| t.unpause_activities(&target(), &request));
    r.unwrap();
    let a = run.state.activity(ID).unwrap().clone();
    assert!(!a.paused && a.pause_info.is_none());
    if a.attempt_scheduled_time_ms > run.now {
        assert!(dispatches(&effects).is_empty());
        assert!(run.state.deadlines().iter().any(|d| d.kind
            == DeadlineKind::ActivityRetry {
                scheduled_event_id: ID,
                attempt: 1
            }
            && d.at_ms == a.attempt_scheduled_time_ms));
        run.now = a.attempt_scheduled_time_ms;
    } else {
        assert_eq!(dispatches(&effects), vec![1]);
    }
    run.step(|t| t.start_activity(attempt(1), &poller()))
        .0
        .unwrap();
}

#[test]
fn reset_of_a_running_attempt_is_reported_by_heartbeats_and_ends_with_it() {
    let policy = RetryPolicy {
        initial_interval: Some(time::duration(100)),
        maximum_attempts: 5,
        ..Default::default()
    };
    let mut run = running(policy);
    run.step(|t| t.fail_activity(attempt(1), app_failure(), None, "worker"))
        .0
        .unwrap();
    run.now += 1_000;
    run.step(|t| t.start_activity(attempt(2), &poller()))
        .0
        .unwrap();
    run.step(|t| {
        t.heartbeat_activity(
            attempt(2),
            Some(crate::api::common::v1::Payloads::default()),
        )
    })
    .0
    .unwrap();
    let request = ResetRequest {
        reset_heartbeat: true,
        ..Default::default()
    };
    let (r, effects, _) = run.step(|t| t.reset_activities(&target(), &request, &no_options));
    r.unwrap();
    assert!(
        dispatches(&effects).is_empty(),
        "the running attempt continues"
    );
    let a = run.state.activity(ID).unwrap();
    assert_eq!(a.attempt, 1);
    assert!(
        a.heartbeat_details.is_some(),
        "kept for the running attempt"
    );
    // The running attempt's token named attempt 2: it is stale now, as on the reference.
    assert!(
        run.step(|t| t.heartbeat_activity(attempt(2), None))
            .0
            .is_err()
    );
    let reply = run
        .step(|t| t.heartbeat_activity(attempt(1), None))
        .0
        .unwrap();
    assert!(reply.activity_reset && !reply.activity_paused);
    run.step(|t| t.fail_activity(attempt(1), app_failure(), None, "worker"))
        .0
        .unwrap();
    let a = run.state.activity(ID).unwrap();
    assert_eq!(a.attempt, 2);
    assert!(!a.reset_requested && a.heartbeat_details.is_none());
}

#[test]
fn reset_of_a_waiting_activity_dispatches_attempt_one_unless_it_stays_paused() {
    let policy = RetryPolicy {
        initial_interval: Some(time::duration(60_000)),
        ..Default::default()
    };
    let mut run = running(policy);
    run.step(|t| t.fail_activity(attempt(1), app_failure(), None, "worker"))
        .0
        .unwrap();
    pause(&mut run, "p").unwrap();
    let keep = ResetRequest {
        keep_paused: true,
        ..Default::default()
    };
    let (r, effects, _) = run.step(|t| t.reset_activities(&target(), &keep, &no_options));
    r.unwrap();
    assert!(dispatches(&effects).is_empty());
    let a = run.state.activity(ID).unwrap();
    assert_eq!((a.attempt, a.paused), (1, true));
    let (r, effects, _) =
        run.step(|t| t.reset_activities(&target(), &ResetRequest::default(), &no_options));
    r.unwrap();
    assert_eq!(dispatches(&effects), vec![1], "no backoff after a reset");
    assert!(!run.state.activity(ID).unwrap().paused);
    run.step(|t| t.start_activity(attempt(1), &poller()))
        .0
        .unwrap();
}

#[test]
fn updated_options_are_normalized_and_apply_to_the_running_attempt() {
    let mut run = running(one_attempt());
    let started = run.state.activity(ID).unwrap().started_time_ms;
    let request = UpdateOptionsRequest {
        options: Some(ActivityOptions {
            start_to_close_timeout: Some(time::duration(45_000)),
            heartbeat_timeout: Some(time::duration(50_000)),
            retry_policy: Some(RetryPolicy {
                maximum_attempts: 7,
                ..Default::default()
            }),
            ..Default::default()
        }),
        paths: vec![
            "start_to_close_timeout".into(),
            "heartbeat_timeout".into(),
            "retry_policy.maximum_attempts".into(),
        ],
        restore_original: false,
    };
    let (r, _, _) = run.step(|t| t.update_activity_options(&target(), &request, &no_options));
    let options = r.unwrap();
    assert_eq!(
        time::duration_ms(options.heartbeat_timeout.as_ref()),
        45_000
    );
    let a = run.state.activity(ID).unwrap();
    assert_eq!(a.retry_policy.as_ref().unwrap().maximum_attempts, 7);
    assert_eq!(
        time::duration_ms(a.retry_policy.as_ref().unwrap().initial_interval.as_ref()),
        100,
        "fields outside the mask are kept"
    );
    assert!(run.state.deadlines().iter().any(|d| d.kind
        == DeadlineKind::ActivityStartToClose {
            scheduled_event_id: ID,
            attempt: 1
        }
        && d.at_ms == started + 45_000));
    let bad = UpdateOptionsRequest {
        options: Some(ActivityOptions {
            retry_policy: Some(RetryPolicy {
                backoff_coefficient: 0.5,
                ..Default::default()
            }),
            ..Default::default()
        }),
        paths: vec!["retryPolicy.backoffCoefficient".into()],
        restore_original: false,
    };
    let (r, _, _) = run.step(|t| t.update_activity_options(&target(), &bad, &no_options));
    assert!(matches!(r, Err(EngineError::InvalidArgument(m)) if m.contains("BackoffCoefficient")));
}

#[test]
fn moving_a_waiting_activity_to_another_queue_offers_it_there_only() {
    let (mut run, _) = Run::start();
    run.complete_wt(vec![schedule("1", None)]);
    let request = UpdateOptionsRequest {
        options: Some(ActivityOptions {
            task_queue: Some(TaskQueue {
                name: "other".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        paths: vec!["task_queue.name".into()],
        restore_original: false,
    };
    let (r, effects, _) = run.step(|t| t.update_activity_options(&target(), &request, &no_options));
    r.unwrap();
    assert!(
        matches!(&effects[..], [Effect::DispatchActivityTask { task_queue, .. }] if task_queue == "other")
    );
    let old = run.state.task_queue.clone();
    assert!(run.step(|t| t.check_activity_queue(ID, &old)).0.is_err());
    assert!(run.step(|t| t.check_activity_queue(ID, "other")).0.is_ok());
    let restore = UpdateOptionsRequest {
        restore_original: true,
        ..Default::default()
    };
    let original = |_: i64| {
        Some(ActivityOptions {
            task_queue: Some(TaskQueue {
                name: "first".into(),
                ..Default::default()
            }),
            start_to_close_timeout: Some(time::duration(5_000)),
            ..Default::default()
        })
    };
    let (r, _, _) = run.step(|t| t.update_activity_options(&target(), &restore, &original));
    r.unwrap();
    assert_eq!(run.state.activity(ID).unwrap().task_queue, "first");
}

#[test]
fn pause_state_survives_encoding() {
    let mut run = running(one_attempt());
    pause(&mut run, "p").unwrap();
    let bytes = run.state.encode_to_vec();
    let decoded = ExecutionState::decode(bytes.as_slice()).unwrap();
    let a = decoded.activity(ID).unwrap();
    assert!(a.paused);
    assert_eq!(a.pause_info.as_ref().unwrap().reason, "why");
}

#[test]
fn a_new_schedule_to_close_times_the_activity_out_but_keeps_the_original_retry_deadline() {
    let mut run = running(one_attempt());
    assert_eq!(run.state.activity(ID).unwrap().retry_expiration_ms(), 0);
    let request = UpdateOptionsRequest {
        options: Some(ActivityOptions {
            schedule_to_close_timeout: Some(time::duration(10_000)),
            ..Default::default()
        }),
        paths: vec!["schedule_to_close_timeout".into()],
        restore_original: false,
    };
    run.step(|t| t.update_activity_options(&target(), &request, &no_options))
        .0
        .unwrap();
    let a = run.state.activity(ID).unwrap().clone();
    assert_eq!(a.retry_expiration_ms(), 0, "none when scheduled, none now");
    assert!(run.state.deadlines().iter().any(|d| d.kind
        == DeadlineKind::ActivityScheduleToClose {
            scheduled_event_id: ID
        }
        && d.at_ms == a.scheduled_time_ms + 10_000));
}
