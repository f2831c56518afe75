//! Concurrent timers: several durable timers run at once; the first to fire wins, the workflow
//! acts on it and cancels the others.
//!
//! The catalogue's car-maintenance workflow waits on an oil-change, an inspection and a coolant
//! timer (months and years apart). Here they are scaled to 1 s, 20 s and 60 s. The Rust SDK's
//! `select!` (deterministic: branches are polled top to bottom) takes the place of
//! `workflow.wait(..., FIRST_COMPLETED)`; the losing timers are cancelled with
//! `CancellableFuture::cancel`, which the server records as `TimerCanceled`.

use std::{
    pin::pin,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::ensure;
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, TimerResult, WorkerOptions, WorkflowContext,
    WorkflowResult,
    activities::{ActivityContext, ActivityError},
    workflows::select,
};

const OIL_CHANGE: Duration = Duration::from_secs(1);
const INSPECTION: Duration = Duration::from_secs(20);
const COOLANT: Duration = Duration::from_secs(60);

struct NotifyActivities {
    sent: Arc<Mutex<Vec<String>>>,
}

#[activities]
impl NotifyActivities {
    #[activity]
    async fn send_notification(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, String),
    ) -> Result<(), ActivityError> {
        let (email, message) = input;
        println!("  [notify] {email}: {message}");
        self.sent.lock().unwrap().push(message);
        Ok(())
    }
}

#[workflow]
#[derive(Default)]
struct MaintenanceWorkflow;

#[workflow_methods]
impl MaintenanceWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, user_email: String) -> WorkflowResult<String> {
        let mut oil_change = pin!(ctx.timer(OIL_CHANGE));
        let mut inspection = pin!(ctx.timer(INSPECTION));
        let mut coolant = pin!(ctx.timer(COOLANT));

        // Wait for whichever timer fires first.
        let (winner, message) = select! {
            _ = oil_change.as_mut() => ("oil change", "Your car needs an oil change"),
            _ = inspection.as_mut() => ("inspection", "Your car needs an annual inspection"),
            _ = coolant.as_mut() => ("coolant", "Your car needs a coolant system service"),
        };
        ctx.execute_activity(
            NotifyActivities::send_notification,
            (user_email, message.to_string()),
            ActivityOptions::start_to_close_timeout(Duration::from_secs(30)),
        )
        .await?;

        // The others lost: cancel them and wait until the cancellation is recorded.
        let mut losers = Vec::new();
        for (name, timer) in [
            ("oil change", oil_change),
            ("inspection", inspection),
            ("coolant", coolant),
        ] {
            if name != winner {
                timer.cancel();
                let result = timer.await;
                losers.push(format!("{name}={result:?}"));
            }
        }
        Ok(format!("winner={winner}; {}", losers.join(", ")))
    }
}

fn main() -> ExitCode {
    run_pattern("concurrent-timers", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<MaintenanceWorkflow>()?
        .register_activities(NotifyActivities { sent: sent.clone() })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("maintenance");
        let started = Instant::now();
        let result = p
            .start_and_wait(
                MaintenanceWorkflow::run,
                "driver@example.com".to_string(),
                &id,
            )
            .await?;
        let elapsed = started.elapsed();
        println!("result: {result} (after {elapsed:?})");

        let cancelled = format!("{:?}", TimerResult::Cancelled);
        let expected = format!("winner=oil change; inspection={cancelled}, coolant={cancelled}");
        ensure!(result == expected, "expected {expected:?}, got {result:?}");
        ensure!(
            elapsed >= OIL_CHANGE && elapsed < INSPECTION,
            "the workflow should end soon after the first timer, took {elapsed:?}"
        );
        ensure!(
            *sent.lock().unwrap() == vec!["Your car needs an oil change".to_string()],
            "exactly one notification (for the oil change) should have been sent"
        );

        let events = history(client, &id, None).await?;
        let started_timers = count_events(&events, EventType::TimerStarted);
        let fired = count_events(&events, EventType::TimerFired);
        let canceled = count_events(&events, EventType::TimerCanceled);
        println!("history: {started_timers} timers started, {fired} fired, {canceled} cancelled");
        ensure!(
            started_timers == 3 && fired == 1 && canceled == 2,
            "expected 3 timers started, 1 fired and 2 cancelled in the history"
        );
        Ok(())
    })
    .await
}
