//! Infrequent polling: the activity checks once and fails if the service is not ready; the
//! server's retry policy is the polling loop.
//!
//! With `backoff_coefficient = 1.0` and `initial_interval = maximum_interval` the retries come at
//! a fixed interval (1 s here, 60 s or more in production). No worker slot is held between
//! polls, and the attempts are not separate history events: the server records one
//! `ActivityTaskStarted` with the final attempt number and the last failure.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure};
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_common::{
    RetryPolicy, protos::temporal::api::enums::v1::EventType,
    protos::temporal::api::history::v1::history_event::Attributes,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The simulated service is ready from this attempt on.
const READY_ON_ATTEMPT: u32 = 4;

struct StatusActivities {
    /// When each attempt ran, as seen by the worker.
    attempts: Arc<Mutex<Vec<Instant>>>,
}

#[activities]
impl StatusActivities {
    #[activity]
    async fn poll_service_status(
        self: Arc<Self>,
        ctx: ActivityContext,
        service_url: String,
    ) -> Result<String, ActivityError> {
        let attempt = ctx.info().attempt;
        self.attempts.lock().unwrap().push(Instant::now());
        if attempt < READY_ON_ATTEMPT {
            println!("  attempt {attempt}: service not ready, will retry");
            // Fail the activity so that the server retries it after the polling interval.
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!("{service_url} not ready"))
                    .type_name("NotReady".to_string())
                    .build(),
            ));
        }
        println!("  attempt {attempt}: service is ready");
        Ok(format!("{service_url}: READY (attempt {attempt})"))
    }
}

#[workflow]
#[derive(Default)]
struct InfrequentPollingWorkflow;

#[workflow_methods]
impl InfrequentPollingWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, service_url: String) -> WorkflowResult<String> {
        let out = ctx
            .execute_activity(
                StatusActivities::poll_service_status,
                service_url,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(5))
                    .retry_policy(
                        RetryPolicy::builder()
                            .backoff_coefficient(1.0) // no exponential growth
                            .initial_interval(POLL_INTERVAL) // poll every interval...
                            .maximum_interval(POLL_INTERVAL) // ...and keep it constant
                            .maximum_attempts(20)
                            .build(),
                    )
                    .build(),
            )
            .await?;
        Ok(out)
    }
}

fn main() -> ExitCode {
    run_pattern("polling-infrequent", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<InfrequentPollingWorkflow>()?
        .register_activities(StatusActivities {
            attempts: attempts.clone(),
        })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("poll");
        let result = p
            .start_and_wait(
                InfrequentPollingWorkflow::run,
                "https://api.example.com/status".to_string(),
                &id,
            )
            .await?;
        println!("result: {result}");
        ensure!(
            result == format!("https://api.example.com/status: READY (attempt {READY_ON_ATTEMPT})"),
            "unexpected result {result:?}"
        );

        let times = attempts.lock().unwrap().clone();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        println!("intervals between polls: {gaps:?}");
        ensure!(
            times.len() == READY_ON_ATTEMPT as usize,
            "expected {READY_ON_ATTEMPT} attempts, saw {}",
            times.len()
        );
        ensure!(
            gaps.iter()
                .all(|g| *g >= POLL_INTERVAL.mul_f64(0.9) && *g < POLL_INTERVAL * 3),
            "polls should come about {POLL_INTERVAL:?} apart (backoff 1.0), got {gaps:?}"
        );

        let events = history(client, &id, None).await?;
        ensure!(
            count_events(&events, EventType::ActivityTaskScheduled) == 1
                && count_events(&events, EventType::ActivityTaskStarted) == 1,
            "the retries should not be separate history events"
        );
        let (attempt, last_failure) = events
            .iter()
            .find_map(|e| match &e.attributes {
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => Some((
                    a.attempt,
                    a.last_failure.as_ref().map(|f| f.message.clone()),
                )),
                _ => None,
            })
            .ok_or_else(|| anyhow!("no ActivityTaskStarted event"))?;
        println!("history: ActivityTaskStarted attempt={attempt}, last failure={last_failure:?}");
        ensure!(
            attempt == READY_ON_ATTEMPT as i32
                && last_failure.is_some_and(|m| m.contains("not ready")),
            "the started event should carry attempt {READY_ON_ATTEMPT} and the last failure"
        );
        Ok(())
    })
    .await
}
