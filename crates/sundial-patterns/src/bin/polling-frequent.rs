//! Frequent polling: one long-lived activity polls an external service in a loop, heartbeating
//! between polls, until the service has a result.
//!
//! The "external service" is simulated in-process: it errors on some calls, has no data for the
//! first ~1.5 s, and then returns a result. The activity swallows the errors (the service may be
//! down for a moment), heartbeats after every poll so the server knows it is alive (and so a
//! cancellation could reach it), and sleeps the polling interval. The heartbeat timeout (2 s)
//! is much shorter than the start-to-close timeout: a worker that dies is noticed quickly.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure};
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_common::protos::temporal::api::{
    enums::v1::EventType, history::v1::history_event::Attributes,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

const POLL_INTERVAL: Duration = Duration::from_millis(300);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// When the simulated service starts returning data, counted from the first call (so a slow
/// start of the worker does not make the first poll succeed at once).
const READY_AFTER: Duration = Duration::from_millis(1500);

/// A stand-in for a remote service.
struct ExternalService {
    /// The first call's time.
    started: std::sync::OnceLock<Instant>,
    calls: AtomicU32,
}

impl ExternalService {
    /// `Ok(None)`: no data yet; `Err`: the service is failing right now.
    async fn fetch(&self, url: &str) -> Result<Option<String>, String> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call % 3 == 2 {
            return Err(format!("{url}: 503 Service Unavailable"));
        }
        if self.started.get_or_init(Instant::now).elapsed() < READY_AFTER {
            return Ok(None);
        }
        Ok(Some(format!("status of {url}: READY")))
    }
}

struct PollingActivities {
    service: Arc<ExternalService>,
    heartbeats: Arc<AtomicU32>,
}

#[activities]
impl PollingActivities {
    #[activity]
    async fn poll_external_service(
        self: Arc<Self>,
        ctx: ActivityContext,
        service_url: String,
    ) -> Result<String, ActivityError> {
        loop {
            match self.service.fetch(&service_url).await {
                Ok(Some(result)) => {
                    println!("  service returned: {result}");
                    return Ok(result);
                }
                Ok(None) => println!("  no data yet"),
                // The service may be down for a moment: log and keep polling.
                Err(e) => println!("  service call failed ({e}), retrying"),
            }
            ctx.record_heartbeat(format!("polling {service_url}"))
                .await?;
            self.heartbeats.fetch_add(1, Ordering::SeqCst);
            tokio::select! {
                _ = ctx.cancelled() => {
                    println!("  polling activity cancelled");
                    return Err(ActivityError::cancelled());
                }
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}

#[workflow]
#[derive(Default)]
struct FrequentPollingWorkflow;

#[workflow_methods]
impl FrequentPollingWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, service_url: String) -> WorkflowResult<String> {
        let out = ctx
            .execute_activity(
                PollingActivities::poll_external_service,
                service_url,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
                    .heartbeat_timeout(HEARTBEAT_TIMEOUT)
                    .build(),
            )
            .await?;
        Ok(out)
    }
}

fn main() -> ExitCode {
    run_pattern("polling-frequent", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let service = Arc::new(ExternalService {
        started: std::sync::OnceLock::new(),
        calls: AtomicU32::new(0),
    });
    let heartbeats = Arc::new(AtomicU32::new(0));
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<FrequentPollingWorkflow>()?
        .register_activities(PollingActivities {
            service: service.clone(),
            heartbeats: heartbeats.clone(),
        })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("poll");
        let result = p
            .start_and_wait(
                FrequentPollingWorkflow::run,
                "https://api.example.com/status".to_string(),
                &id,
            )
            .await?;
        let calls = service.calls.load(Ordering::SeqCst);
        let beats = heartbeats.load(Ordering::SeqCst);
        println!("result: {result} after {calls} polls and {beats} heartbeats");
        ensure!(
            result == "status of https://api.example.com/status: READY",
            "unexpected result {result:?}"
        );
        ensure!(
            calls >= 4 && beats >= 3,
            "expected several polls with heartbeats"
        );

        // One activity, one attempt: the polling happened inside it.
        let events = history(client, &id, None).await?;
        ensure!(
            count_events(&events, EventType::ActivityTaskScheduled) == 1
                && count_events(&events, EventType::ActivityTaskCompleted) == 1,
            "expected one scheduled and one completed activity"
        );
        let started = events
            .iter()
            .find_map(|e| match &e.attributes {
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => Some(a.attempt),
                _ => None,
            })
            .ok_or_else(|| anyhow!("no ActivityTaskStarted event"))?;
        ensure!(
            started == 1,
            "the poll loop should finish in attempt 1, it was attempt {started}"
        );
        Ok(())
    })
    .await
}
