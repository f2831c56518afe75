//! Cancellation: the client cancels a running workflow; the cancellation reaches a heartbeating
//! activity, a clean-up activity still runs, and the workflow ends as cancelled.
//!
//! * The long activity heartbeats; the server answers a heartbeat with "cancel requested" once
//!   the workflow asked to cancel it, and the SDK then resolves `ctx.cancelled()`.
//! * The activity is scheduled with `WaitCancellationCompleted`, so the workflow only moves on
//!   once the activity has actually stopped (the Python `try/finally` sees the same order).
//! * The clean-up activity gets its own cancellation token: the workflow is already cancelled,
//!   and an activity that inherits the workflow's token would be cancelled before it starts.
//! * The workflow then returns `WorkflowTermination::cancelled()`, so the server records
//!   `WorkflowExecutionCanceled` rather than a completion.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, ensure};
use sundial_patterns::{Pattern, event_type, history, run_pattern};
use temporalio_client::{
    WorkflowCancelOptions, WorkflowGetResultOptions, errors::WorkflowGetResultError,
};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, WorkerOptions,
    WorkflowCancellationToken, WorkflowContext, WorkflowResult, WorkflowTermination,
    activities::{ActivityContext, ActivityError},
};
use tokio::sync::Notify;

/// What the activities did, in order, as seen by the worker.
#[derive(Default)]
struct Journal {
    steps: Mutex<Vec<String>>,
    first_heartbeat: Notify,
}

impl Journal {
    fn push(&self, step: impl Into<String>) {
        let step = step.into();
        println!("  {step}");
        self.steps.lock().unwrap().push(step);
    }
}

struct CancellationActivities {
    journal: Arc<Journal>,
}

#[activities]
impl CancellationActivities {
    /// Never finishes by itself: heartbeats until it is cancelled.
    #[activity]
    async fn never_complete(self: Arc<Self>, ctx: ActivityContext) -> Result<(), ActivityError> {
        let mut beats = 0u32;
        loop {
            beats += 1;
            ctx.record_heartbeat(beats).await?;
            if beats == 1 {
                self.journal.push("activity: heartbeating");
                self.journal.first_heartbeat.notify_one();
            }
            tokio::select! {
                _ = ctx.cancelled() => {
                    self.journal.push(format!("activity: cancelled after {beats} heartbeats"));
                    return Err(ActivityError::cancelled());
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    #[activity]
    async fn cleanup(self: Arc<Self>, _ctx: ActivityContext) -> Result<(), ActivityError> {
        self.journal.push("cleanup: executing cleanup activity");
        Ok(())
    }
}

#[workflow]
#[derive(Default)]
struct CancellationWorkflow;

#[workflow_methods]
impl CancellationWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        let outcome = ctx
            .execute_activity(
                CancellationActivities::never_complete,
                (),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(1000))
                    // Heartbeats are how the cancellation reaches the activity.
                    .heartbeat_timeout(Duration::from_secs(2))
                    .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
                    .build(),
            )
            .await;

        // The `finally` part: runs however the activity ended.
        ctx.execute_activity(
            CancellationActivities::cleanup,
            (),
            ActivityOptions::with_start_to_close_timeout(Duration::from_secs(5))
                .cancellation_token(WorkflowCancellationToken::new())
                .build(),
        )
        .await?;

        match outcome {
            Ok(()) => Ok(()),
            Err(ActivityExecutionError::Cancelled(_)) => Err(WorkflowTermination::cancelled()),
            Err(other) => Err(other.into()),
        }
    }
}

fn main() -> ExitCode {
    run_pattern("cancellation", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let journal = Arc::new(Journal::default());
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<CancellationWorkflow>()?
        .register_activities(CancellationActivities {
            journal: journal.clone(),
        })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("cancel");
        let handle = p.start(CancellationWorkflow::run, (), &id).await?;

        // Cancel only once the activity is running and heartbeating.
        tokio::time::timeout(Duration::from_secs(10), journal.first_heartbeat.notified())
            .await
            .map_err(|_| anyhow::anyhow!("the activity never started heartbeating"))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("client: requesting cancellation");
        handle
            .cancel(
                WorkflowCancelOptions::builder()
                    .reason("the pattern demo cancels it".to_string())
                    .build(),
            )
            .await?;

        match handle.get_result(WorkflowGetResultOptions::default()).await {
            Err(WorkflowGetResultError::Cancelled { .. }) => {
                println!("client: the workflow ended as cancelled")
            }
            other => bail!("expected the workflow to end cancelled, got {other:?}"),
        }

        let steps = journal.steps.lock().unwrap().clone();
        let cancelled_at = steps.iter().position(|s| s.starts_with("activity: cancelled"));
        let cleanup_at = steps.iter().position(|s| s.starts_with("cleanup:"));
        match (cancelled_at, cleanup_at) {
            (Some(c), Some(u)) if c < u => {}
            _ => bail!(
                "expected the activity to see the cancellation and then the clean-up to run, got {steps:?}"
            ),
        }

        let events = history(client, &id, None).await?;
        let types: Vec<EventType> = events.iter().map(event_type).collect();
        let has = |t: EventType| types.contains(&t);
        ensure!(
            has(EventType::WorkflowExecutionCancelRequested)
                && has(EventType::ActivityTaskCancelRequested)
                && has(EventType::ActivityTaskCanceled),
            "the history should show the cancellation reaching the activity: {types:?}"
        );
        ensure!(
            types.last() == Some(&EventType::WorkflowExecutionCanceled),
            "the last event should be WorkflowExecutionCanceled, got {:?}",
            types.last()
        );
        Ok(())
    })
    .await
}
