//! Local activity: short, fast steps run inside the worker process that runs the workflow,
//! without a round trip through an activity task queue.
//!
//! The workflow composes a greeting and validates it with two chained local activities. The
//! server never sees an activity task: each result is recorded in the history as a
//! `MarkerRecorded` event when the workflow task completes, and there are no
//! `ActivityTaskScheduled` events. Use local activities for quick, idempotent work; use normal
//! activities for external calls, long work, or work that needs the server's timeouts.

use std::{process::ExitCode, time::Duration};

use anyhow::ensure;
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    LocalActivityOptions, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProcessingInput {
    greeting: String,
    name: String,
}

struct GreetingActivities;

#[activities]
impl GreetingActivities {
    /// Fast local step: string processing.
    #[activity]
    async fn compose_greeting(
        ctx: ActivityContext,
        input: ProcessingInput,
    ) -> Result<String, ActivityError> {
        println!("  compose_greeting (local: {})", ctx.info().is_local);
        Ok(format!("{}, {}!", input.greeting, input.name))
    }

    /// Quick validation that runs locally.
    #[activity]
    async fn validate_input(ctx: ActivityContext, data: String) -> Result<bool, ActivityError> {
        println!("  validate_input (local: {})", ctx.info().is_local);
        Ok(!data.trim().is_empty())
    }
}

#[workflow]
#[derive(Default)]
struct LocalActivityWorkflow;

#[workflow_methods]
impl LocalActivityWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        let result = ctx
            .execute_local_activity(
                GreetingActivities::compose_greeting,
                ProcessingInput {
                    greeting: "Hello".to_string(),
                    name,
                },
                LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(10))
                    .build(),
            )
            .await?;
        // Chain a second local activity on the first one's result.
        let is_valid = ctx
            .execute_local_activity(
                GreetingActivities::validate_input,
                result.clone(),
                LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(5))
                    .build(),
            )
            .await?;
        Ok(if is_valid {
            result
        } else {
            "Invalid result".to_string()
        })
    }
}

fn main() -> ExitCode {
    run_pattern("local-activity", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<LocalActivityWorkflow>()?
        .register_activities(GreetingActivities)
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("greeting");
        let result = p
            .start_and_wait(LocalActivityWorkflow::run, "Sundial".to_string(), &id)
            .await?;
        println!("result: {result}");
        ensure!(result == "Hello, Sundial!", "unexpected result {result:?}");

        let events = history(client, &id, None).await?;
        let markers = count_events(&events, EventType::MarkerRecorded);
        let scheduled = count_events(&events, EventType::ActivityTaskScheduled);
        println!("history: {markers} MarkerRecorded, {scheduled} ActivityTaskScheduled");
        ensure!(
            markers == 2 && scheduled == 0,
            "local activities should leave two markers and no activity tasks"
        );
        Ok(())
    })
    .await
}
