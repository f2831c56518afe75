//! Exceptions: activity failures, retry policies and how the error reaches the client.
//!
//! `process_data` talks to a flaky "downstream service": the first two attempts fail with a
//! retryable `ServiceUnavailable`, the third finds the input invalid and fails with
//! `InvalidInput`. The retry policy retries with exponential backoff (200 ms, then 400 ms) and
//! lists `InvalidInput` as non-retryable, so the server stops at attempt 3 of 5. The workflow lets
//! the error propagate and fails; the client receives the whole causal chain:
//! workflow failure → `ActivityFailure` (retry state `NON_RETRYABLE_FAILURE`) →
//! `ApplicationFailure` (`InvalidInput`).

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, failure_chain, run_pattern};
use temporalio_client::{WorkflowGetResultOptions, errors::WorkflowGetResultError};
use temporalio_common::{
    RetryPolicy,
    protos::temporal::api::{
        enums::v1::RetryState,
        failure::v1::{Failure, failure::FailureInfo},
    },
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

const INITIAL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProcessingInput {
    data: String,
}

struct DataActivities {
    /// (attempt, when it started) for every attempt the worker ran.
    attempts: Arc<Mutex<Vec<(u32, Instant)>>>,
}

#[activities]
impl DataActivities {
    #[activity]
    async fn process_data(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ProcessingInput,
    ) -> Result<String, ActivityError> {
        let attempt = ctx.info().attempt;
        self.attempts
            .lock()
            .unwrap()
            .push((attempt, Instant::now()));
        if attempt < 3 {
            println!("  activity attempt {attempt}: downstream service unavailable");
            return Err(ActivityError::application(
                ApplicationFailure::builder(format!(
                    "service unavailable while processing {:?} (attempt {attempt})",
                    input.data
                ))
                .type_name("ServiceUnavailable".to_string())
                .build(),
            ));
        }
        println!("  activity attempt {attempt}: input rejected");
        Err(ActivityError::application(
            ApplicationFailure::builder(format!("Processing failed for: {}", input.data))
                .type_name("InvalidInput".to_string())
                .build(),
        ))
    }
}

#[workflow]
#[derive(Default)]
struct DataProcessingWorkflow;

#[workflow_methods]
impl DataProcessingWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, data: String) -> WorkflowResult<String> {
        let out = ctx
            .execute_activity(
                DataActivities::process_data,
                ProcessingInput { data },
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
                    .retry_policy(
                        RetryPolicy::builder()
                            .initial_interval(INITIAL_INTERVAL)
                            .backoff_coefficient(2.0)
                            .maximum_interval(Duration::from_secs(2))
                            .maximum_attempts(5)
                            .non_retryable_error_types(["InvalidInput"])
                            .build(),
                    )
                    .build(),
            )
            .await?;
        Ok(out)
    }
}

fn describe(f: &Failure) -> String {
    let kind = match &f.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(i)) => {
            format!(
                "ApplicationFailure(type={}, non_retryable={})",
                i.r#type, i.non_retryable
            )
        }
        Some(FailureInfo::ActivityFailureInfo(i)) => format!(
            "ActivityFailure(activity_type={}, retry_state={:?})",
            i.activity_type
                .as_ref()
                .map(|t| t.name.as_str())
                .unwrap_or("?"),
            RetryState::try_from(i.retry_state).unwrap_or(RetryState::Unspecified)
        ),
        Some(other) => format!("{other:?}"),
        None => "Failure".to_string(),
    };
    let mut line = format!("{kind}: {}", f.message);
    if !f.stack_trace.is_empty() {
        line.push_str(&format!("\n      stack: {}", f.stack_trace.trim_end()));
    }
    line
}

fn main() -> ExitCode {
    run_pattern("exceptions", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<DataProcessingWorkflow>()?
        .register_activities(DataActivities {
            attempts: attempts.clone(),
        })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    p.with_worker(options, async {
        let id = p.workflow_id("data");
        let handle = p
            .start(DataProcessingWorkflow::run, "test-data".to_string(), &id)
            .await?;
        let err = match handle.get_result(WorkflowGetResultOptions::default()).await {
            Err(WorkflowGetResultError::Failed(err)) => err,
            other => bail!("expected the workflow to fail, got {other:?}"),
        };

        println!("client: workflow failed; error chain:");
        let chain = failure_chain(err.failure());
        for (depth, f) in chain.iter().enumerate() {
            println!("  {}{}", "  ".repeat(depth), describe(f));
        }

        // Chain: workflow failure -> ActivityFailure -> ApplicationFailure(InvalidInput).
        let activity = chain
            .iter()
            .find_map(|f| match &f.failure_info {
                Some(FailureInfo::ActivityFailureInfo(i)) => Some(i),
                _ => None,
            })
            .ok_or_else(|| anyhow!("no ActivityFailure in the chain"))?;
        ensure!(
            activity.retry_state == RetryState::NonRetryableFailure as i32,
            "the activity failure should say the error was non-retryable, got retry state {:?}",
            RetryState::try_from(activity.retry_state)
        );
        let root = chain.last().expect("chain is never empty");
        ensure!(
            matches!(&root.failure_info, Some(FailureInfo::ApplicationFailureInfo(i)) if i.r#type == "InvalidInput")
                && root.message == "Processing failed for: test-data",
            "the root cause should be the activity's InvalidInput error, got {root:?}"
        );

        // Retries with backoff: attempts 1, 2, 3, spaced by at least 200 ms then 400 ms.
        let attempts = attempts.lock().unwrap().clone();
        let numbers: Vec<u32> = attempts.iter().map(|(n, _)| *n).collect();
        ensure!(numbers == vec![1, 2, 3], "expected attempts [1, 2, 3], got {numbers:?}");
        let gap1 = attempts[1].1 - attempts[0].1;
        let gap2 = attempts[2].1 - attempts[1].1;
        println!("retry gaps: {gap1:?}, {gap2:?} (initial interval {INITIAL_INTERVAL:?}, backoff 2.0)");
        ensure!(
            gap1 >= INITIAL_INTERVAL.mul_f64(0.9) && gap2 >= (INITIAL_INTERVAL * 2).mul_f64(0.9),
            "retries came too early: {gap1:?}, {gap2:?}"
        );
        Ok(())
    })
    .await
}
