//! Parallel activities: fan out several independent activities at once and join the results.
//!
//! The Python original uses `asyncio.gather`; the Rust SDK's counterpart is
//! `temporalio_sdk::workflows::join_all`, which polls the activity futures together in a
//! deterministic order. All activities are scheduled in the same workflow task, run at the same
//! time on the worker, and the workflow sorts the results because completion order varies.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::ensure;
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_common::protos::temporal::api::{
    enums::v1::EventType, history::v1::history_event::Attributes,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
    workflows::join_all,
};

/// How long each activity takes; running them one after another would take 5x this.
const ACTIVITY_TIME: Duration = Duration::from_millis(500);

/// Tracks how many activities run at the same moment.
#[derive(Default)]
struct Concurrency {
    running: AtomicUsize,
    peak: AtomicUsize,
}

struct HelloActivities {
    concurrency: Arc<Concurrency>,
}

#[activities]
impl HelloActivities {
    #[activity]
    async fn say_hello(
        self: Arc<Self>,
        _ctx: ActivityContext,
        name: String,
    ) -> Result<String, ActivityError> {
        let now = self.concurrency.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.concurrency.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(ACTIVITY_TIME).await;
        self.concurrency.running.fetch_sub(1, Ordering::SeqCst);
        Ok(format!("Hello, {name}!"))
    }
}

#[workflow]
#[derive(Default)]
struct SayHelloWorkflow;

#[workflow_methods]
impl SayHelloWorkflow {
    #[run]
    async fn run(
        ctx: &mut WorkflowContext<Self>,
        names: Vec<String>,
    ) -> WorkflowResult<Vec<String>> {
        // Fan out: one activity per name, all started before any is awaited.
        let pending: Vec<_> = names
            .into_iter()
            .map(|name| {
                ctx.execute_activity(
                    HelloActivities::say_hello,
                    name,
                    ActivityOptions::start_to_close_timeout(Duration::from_secs(5)),
                )
            })
            .collect();
        // Join: wait for all of them.
        let mut results = join_all(pending)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        results.sort();
        Ok(results)
    }
}

fn main() -> ExitCode {
    run_pattern("parallel-activities", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let concurrency = Arc::new(Concurrency::default());
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<SayHelloWorkflow>()?
        .register_activities(HelloActivities {
            concurrency: concurrency.clone(),
        })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let names: Vec<String> = ["user5", "user3", "user1", "user4", "user2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let id = p.workflow_id("hello");
        let started = Instant::now();
        let results = p.start_and_wait(SayHelloWorkflow::run, names.clone(), &id).await?;
        let elapsed = started.elapsed();
        println!("results: {results:?}");
        let peak = concurrency.peak.load(Ordering::SeqCst);
        println!(
            "{} activities of {ACTIVITY_TIME:?} each finished in {elapsed:?}; at most {peak} ran at once",
            names.len()
        );

        let expected: Vec<String> = (1..=5).map(|i| format!("Hello, user{i}!")).collect();
        ensure!(results == expected, "expected {expected:?}, got {results:?}");

        // Fan-out, seen by the server: every activity was scheduled by the same workflow
        // task, before any of them completed.
        let events = history(client, &id, None).await?;
        let scheduled_by: Vec<i64> = events
            .iter()
            .filter_map(|e| match &e.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    Some(a.workflow_task_completed_event_id)
                }
                _ => None,
            })
            .collect();
        ensure!(
            scheduled_by.len() == 5 && scheduled_by.iter().all(|id| *id == scheduled_by[0]),
            "all five activities should be scheduled by one workflow task, got {scheduled_by:?}"
        );
        ensure!(
            count_events(&events, EventType::ActivityTaskCompleted) == 5,
            "expected five completed activities"
        );
        // Fan-out, seen by the worker: they overlapped in time.
        ensure!(
            peak >= 2,
            "the activities never ran at the same time (peak concurrency {peak})"
        );
        Ok(())
    })
    .await
}
