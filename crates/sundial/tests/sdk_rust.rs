//! Integration tests that run real workflows and activities through the official Temporal
//! Rust SDK (`temporalio-sdk` 1.1.x) against a server: a spawned `sundial` process, or the
//! server at `SUNDIAL_ADDRESS` when that is set. See `common/mod.rs` for the harness.
//!
//! Every test uses its own task queue and workflow id.

mod common;

use std::{
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use common::{CompletedRun, WorkflowTest, count_events, failure_chain};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_common::{
    RetryPolicy,
    protos::temporal::api::{
        enums::v1::{EventType, RetryState, TimeoutType},
        failure::v1::failure::FailureInfo,
        history::v1::{HistoryEvent, history_event::Attributes},
    },
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, CancellableFuture, LocalActivityOptions, TimerResult,
    WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
    workflows::select,
};

/// The `ActivityTaskStarted` events of a history.
fn activity_started_events(events: &[HistoryEvent]) -> Vec<&HistoryEvent> {
    events
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskStarted as i32)
        .collect()
}

/// Activity options with a `start_to_close` timeout and [`retry_policy`] of `max_attempts`.
fn retrying(start_to_close: Duration, max_attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .retry_policy(retry_policy(max_attempts))
        .build()
}

fn retry_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(100))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(1))
        .maximum_attempts(max_attempts)
        .non_retryable_error_types(["FatalError"])
        .build()
}

// ---------------------------------------------------------------------------------------
// 1. Activity retries and non-retryable errors
// ---------------------------------------------------------------------------------------

/// What the retry activities observed, shared with the test body.
#[derive(Default)]
struct RetryLog {
    /// (attempt, when the attempt started) for every execution of `flaky`.
    flaky_starts: Mutex<Vec<(u32, Instant)>>,
    /// (attempt, when the attempt returned its failure) for failed executions of `flaky`.
    flaky_failures: Mutex<Vec<(u32, Instant)>>,
    /// How many times `fatal` ran.
    fatal_runs: AtomicU32,
}

struct RetryActivities {
    log: Arc<RetryLog>,
}

#[activities]
impl RetryActivities {
    /// Fails (retryably) on attempts 1 and 2, succeeds on attempt 3.
    #[activity]
    async fn flaky(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: String,
    ) -> Result<String, ActivityError> {
        let attempt = ctx.info().attempt;
        self.log
            .flaky_starts
            .lock()
            .unwrap()
            .push((attempt, Instant::now()));
        if attempt < 3 {
            self.log
                .flaky_failures
                .lock()
                .unwrap()
                .push((attempt, Instant::now()));
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!("transient failure on attempt {attempt}"))
                    .type_name("TransientError".to_string())
                    .build(),
            ));
        }
        Ok(format!("{input}:ok@{attempt}"))
    }

    /// Always fails with an error type listed in the retry policy's non-retryable types.
    #[activity]
    async fn fatal(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: String,
    ) -> Result<String, ActivityError> {
        self.log.fatal_runs.fetch_add(1, Ordering::SeqCst);
        Err(ActivityError::application(
            ApplicationFailure::builder(format!("fatal failure for {input}"))
                .type_name("FatalError".to_string())
                .build(),
        ))
    }
}

#[workflow]
#[derive(Default)]
pub struct FlakyActivityWorkflow;

#[workflow_methods]
impl FlakyActivityWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let options = retrying(Duration::from_secs(10), 5);
        Ok(ctx
            .execute_activity(RetryActivities::flaky, input, options)
            .await?)
    }
}

#[workflow]
#[derive(Default)]
pub struct FatalActivityWorkflow;

#[workflow_methods]
impl FatalActivityWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let options = retrying(Duration::from_secs(10), 5);
        Ok(ctx
            .execute_activity(RetryActivities::fatal, input, options)
            .await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_retries_until_third_attempt_succeeds() {
    let test = WorkflowTest::start("retry").await;
    let log = Arc::new(RetryLog::default());
    let options =
        test.worker_with_activities::<FlakyActivityWorkflow>(RetryActivities { log: log.clone() });

    let CompletedRun { result, events, .. } = test
        .run(options, FlakyActivityWorkflow::run, "payload".to_string())
        .await;

    assert_eq!(result.expect("workflow should succeed"), "payload:ok@3");

    let starts = log.flaky_starts.lock().unwrap().clone();
    let attempts: Vec<u32> = starts.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        attempts,
        vec![1, 2, 3],
        "activity attempts seen by the worker"
    );

    // The server must wait the retry backoff (100 ms, then 200 ms) before each retry.
    let failures = log.flaky_failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 2);
    let gap1 = starts[1].1.duration_since(failures[0].1);
    let gap2 = starts[2].1.duration_since(failures[1].1);
    assert!(
        gap1 >= Duration::from_millis(90),
        "first retry came after {gap1:?}, expected >= 100ms"
    );
    assert!(
        gap2 >= Duration::from_millis(180),
        "second retry came after {gap2:?}, expected >= 200ms"
    );

    // Retries are not separate history events: one scheduled/started/completed triple,
    // with the started event carrying the final attempt number and the last failure.
    assert_eq!(count_events(&events, EventType::ActivityTaskScheduled), 1);
    assert_eq!(count_events(&events, EventType::ActivityTaskCompleted), 1);
    assert_eq!(count_events(&events, EventType::ActivityTaskFailed), 0);
    let started = activity_started_events(&events);
    assert_eq!(started.len(), 1, "exactly one ActivityTaskStarted event");
    match &started[0].attributes {
        Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
            assert_eq!(a.attempt, 3, "started event should record attempt 3");
            let last = a
                .last_failure
                .as_ref()
                .expect("started event should carry last_failure");
            assert!(
                last.message.contains("attempt 2"),
                "last_failure should be attempt 2's error, got {:?}",
                last.message
            );
        }
        other => panic!("unexpected started-event attributes: {other:?}"),
    }
    assert_eq!(
        events.last().map(|e| e.event_type),
        Some(EventType::WorkflowExecutionCompleted as i32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_error_type_fails_workflow_on_first_attempt() {
    let test = WorkflowTest::start("fatal").await;
    let log = Arc::new(RetryLog::default());
    let options =
        test.worker_with_activities::<FatalActivityWorkflow>(RetryActivities { log: log.clone() });

    let CompletedRun { result, events, .. } = test
        .run(options, FatalActivityWorkflow::run, "doomed".to_string())
        .await;

    assert_eq!(
        log.fatal_runs.load(Ordering::SeqCst),
        1,
        "fatal activity must run exactly once"
    );

    let err = match result {
        Err(WorkflowGetResultError::Failed(err)) => err,
        other => panic!("expected the workflow to fail, got {other:?}"),
    };
    let chain = failure_chain(err.failure());
    let app = chain
        .iter()
        .find_map(|f| match &f.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) if info.r#type == "FatalError" => {
                Some((f.message.clone(), info.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no FatalError application failure in the chain: {chain:#?}"));
    assert!(
        app.0.contains("fatal failure for doomed"),
        "client should see the activity's error message, got {:?}",
        app.0
    );
    let activity_info = chain
        .iter()
        .find_map(|f| match &f.failure_info {
            Some(FailureInfo::ActivityFailureInfo(info)) => Some(info.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ActivityFailureInfo in the failure chain: {chain:#?}"));
    assert_eq!(
        activity_info.retry_state,
        RetryState::NonRetryableFailure as i32,
        "activity failure should report a non-retryable retry state"
    );

    assert_eq!(count_events(&events, EventType::ActivityTaskFailed), 1);
    assert_eq!(
        events.last().map(|e| e.event_type),
        Some(EventType::WorkflowExecutionFailed as i32)
    );
    for e in activity_started_events(&events) {
        if let Some(Attributes::ActivityTaskStartedEventAttributes(a)) = &e.attributes {
            assert_eq!(a.attempt, 1, "the failing attempt should be attempt 1");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Heartbeats and heartbeat timeouts
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct HeartbeatLog {
    /// (attempt, heartbeat details the attempt started with)
    starts: Mutex<Vec<(u32, Option<u32>)>>,
}

struct HeartbeatActivities {
    log: Arc<HeartbeatLog>,
}

#[activities]
impl HeartbeatActivities {
    /// Attempt 1 heartbeats progress 1..=3 and then hangs without heartbeating, so the
    /// server times it out. Later attempts resume from the last heartbeat and finish.
    #[activity]
    async fn count_to(
        self: Arc<Self>,
        ctx: ActivityContext,
        total: u32,
    ) -> Result<String, ActivityError> {
        let attempt = ctx.info().attempt;
        let resumed: Option<u32> = ctx.heartbeat_details().deserialize()?;
        self.log.starts.lock().unwrap().push((attempt, resumed));
        if attempt == 1 {
            for progress in 1..=3u32 {
                ctx.record_heartbeat(progress).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Stop heartbeating. Return only once cancelled (worker shutdown or the SDK's
            // own late local timeout) or after a long time.
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            return Err(ActivityError::cancelled());
        }
        let from = resumed.unwrap_or(0);
        for progress in from + 1..=total {
            ctx.record_heartbeat(progress).await?;
        }
        Ok(format!(
            "attempt {attempt} resumed from {from} and reached {total}"
        ))
    }
}

#[workflow]
#[derive(Default)]
pub struct HeartbeatWorkflow;

#[workflow_methods]
impl HeartbeatWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, total: u32) -> WorkflowResult<String> {
        let out = ctx
            .execute_activity(
                HeartbeatActivities::count_to,
                total,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(20))
                    .heartbeat_timeout(Duration::from_secs(1))
                    .retry_policy(retry_policy(3))
                    .build(),
            )
            .await?;
        Ok(out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_timeout_retries_with_last_heartbeat_details() {
    let test = WorkflowTest::start("heartbeat").await;
    let log = Arc::new(HeartbeatLog::default());
    let options =
        test.worker_with_activities::<HeartbeatWorkflow>(HeartbeatActivities { log: log.clone() });

    let CompletedRun { result, events, .. } = test.run(options, HeartbeatWorkflow::run, 5u32).await;

    assert_eq!(
        result.expect("workflow should succeed"),
        "attempt 2 resumed from 3 and reached 5"
    );
    let starts = log.starts.lock().unwrap().clone();
    assert_eq!(
        starts,
        vec![(1, None), (2, Some(3))],
        "attempt 1 starts without details; attempt 2 gets attempt 1's last heartbeat"
    );

    // The server (not the SDK's later local timer) timed attempt 1 out on heartbeat.
    let started = activity_started_events(&events);
    assert_eq!(started.len(), 1);
    match &started[0].attributes {
        Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
            assert_eq!(a.attempt, 2);
            let last = a
                .last_failure
                .as_ref()
                .expect("started event should carry last_failure");
            match &last.failure_info {
                Some(FailureInfo::TimeoutFailureInfo(t)) => assert_eq!(
                    t.timeout_type,
                    TimeoutType::Heartbeat as i32,
                    "attempt 1 should have failed with a heartbeat timeout"
                ),
                other => panic!("expected a timeout failure, got {other:?}"),
            }
        }
        other => panic!("unexpected started-event attributes: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 3. Timers
// ---------------------------------------------------------------------------------------

#[workflow]
#[derive(Default)]
pub struct TwoTimersWorkflow;

#[workflow_methods]
impl TwoTimersWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        let first = ctx.timer(Duration::from_millis(300)).await;
        let second = ctx.timer(Duration::from_millis(600)).await;
        Ok(format!("{first:?},{second:?}"))
    }
}

#[workflow]
#[derive(Default)]
pub struct CancelTimerWorkflow;

#[workflow_methods]
impl CancelTimerWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        let mut long = pin!(ctx.timer(Duration::from_secs(60)));
        let mut short = pin!(ctx.timer(Duration::from_millis(200)));
        let winner = select! {
            _ = short.as_mut() => "short",
            _ = long.as_mut() => "long",
        };
        long.cancel();
        let long_result = long.as_mut().await;
        Ok(format!("{winner},{long_result:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_timers_fire_in_order() {
    let test = WorkflowTest::start("timers").await;
    let options = test.worker::<TwoTimersWorkflow>();

    let run = test.run(options, TwoTimersWorkflow::run, ()).await;

    let fired = format!("{:?},{:?}", TimerResult::Fired, TimerResult::Fired);
    assert_eq!(run.result.expect("workflow should succeed"), fired);
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "two timers (300ms + 600ms) completed after only {:?}",
        run.elapsed
    );
    assert_eq!(count_events(&run.events, EventType::TimerStarted), 2);
    assert_eq!(count_events(&run.events, EventType::TimerFired), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_timer_is_cancelled() {
    let test = WorkflowTest::start("cancel-timer").await;
    let options = test.worker::<CancelTimerWorkflow>();

    let run = test.run(options, CancelTimerWorkflow::run, ()).await;

    assert_eq!(
        run.result.expect("workflow should succeed"),
        format!("short,{:?}", TimerResult::Cancelled)
    );
    assert!(
        run.elapsed >= Duration::from_millis(200),
        "short timer fired after only {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed < Duration::from_secs(30),
        "workflow waited for the long timer: {:?}",
        run.elapsed
    );
    assert_eq!(count_events(&run.events, EventType::TimerStarted), 2);
    assert_eq!(count_events(&run.events, EventType::TimerFired), 1);
    assert_eq!(count_events(&run.events, EventType::TimerCanceled), 1);
}

// ---------------------------------------------------------------------------------------
// 4. Local activities
// ---------------------------------------------------------------------------------------

struct LocalActivities;

#[activities]
impl LocalActivities {
    #[activity]
    async fn shout(ctx: ActivityContext, input: String) -> Result<String, ActivityError> {
        Ok(format!(
            "{}! local={}",
            input.to_uppercase(),
            ctx.info().is_local
        ))
    }
}

#[workflow]
#[derive(Default)]
pub struct LocalActivityWorkflow;

#[workflow_methods]
impl LocalActivityWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let out = ctx
            .execute_local_activity(
                LocalActivities::shout,
                input,
                LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(5))
                    .build(),
            )
            .await?;
        Ok(out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_activity_result_is_recorded_as_marker() {
    let test = WorkflowTest::start("local").await;
    let mut options = test.worker::<LocalActivityWorkflow>();
    options.register_activities(LocalActivities);

    let CompletedRun { result, events, .. } = test
        .run(
            options,
            LocalActivityWorkflow::run,
            "hello sundial".to_string(),
        )
        .await;

    assert_eq!(
        result.expect("workflow should succeed"),
        "HELLO SUNDIAL! local=true"
    );
    let markers: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::MarkerRecordedEventAttributes(m))
                if e.event_type == EventType::MarkerRecorded as i32 =>
            {
                Some(m.marker_name.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        markers.len(),
        1,
        "expected one MarkerRecorded event, history: {:?}",
        common::event_types(&events)
    );
    assert!(
        markers[0].contains("local_activity"),
        "unexpected marker name {:?}",
        markers[0]
    );
    // A local activity never becomes an activity task on the server.
    assert_eq!(count_events(&events, EventType::ActivityTaskScheduled), 0);
}

// ---------------------------------------------------------------------------------------
// 5. Start-to-close timeout
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct SlowLog {
    attempts: Mutex<Vec<u32>>,
}

struct SlowActivities {
    log: Arc<SlowLog>,
}

#[activities]
impl SlowActivities {
    /// Attempt 1 runs far past its 1 s start-to-close timeout; attempt 2 returns at once.
    #[activity]
    async fn slow_then_fast(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: String,
    ) -> Result<String, ActivityError> {
        let attempt = ctx.info().attempt;
        self.log.attempts.lock().unwrap().push(attempt);
        if attempt == 1 {
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            return Err(ActivityError::cancelled());
        }
        Ok(format!("{input} done on attempt {attempt}"))
    }
}

#[workflow]
#[derive(Default)]
pub struct StartToCloseWorkflow;

#[workflow_methods]
impl StartToCloseWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let options = retrying(Duration::from_secs(1), 3);
        Ok(ctx
            .execute_activity(SlowActivities::slow_then_fast, input, options)
            .await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_to_close_timeout_then_retry_succeeds() {
    let test = WorkflowTest::start("s2c").await;
    let log = Arc::new(SlowLog::default());
    let options =
        test.worker_with_activities::<StartToCloseWorkflow>(SlowActivities { log: log.clone() });

    let CompletedRun { result, events, .. } = test
        .run(options, StartToCloseWorkflow::run, "job".to_string())
        .await;

    assert_eq!(
        result.expect("workflow should succeed"),
        "job done on attempt 2"
    );
    assert_eq!(*log.attempts.lock().unwrap(), vec![1, 2]);

    let started = activity_started_events(&events);
    assert_eq!(started.len(), 1);
    match &started[0].attributes {
        Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
            assert_eq!(a.attempt, 2);
            let last = a
                .last_failure
                .as_ref()
                .expect("started event should carry last_failure");
            match &last.failure_info {
                Some(FailureInfo::TimeoutFailureInfo(t)) => assert_eq!(
                    t.timeout_type,
                    TimeoutType::StartToClose as i32,
                    "attempt 1 should have failed with a start-to-close timeout"
                ),
                other => panic!("expected a timeout failure, got {other:?}"),
            }
        }
        other => panic!("unexpected started-event attributes: {other:?}"),
    }
}
