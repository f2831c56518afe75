//! Continue-as-new: a looping workflow hands its state to a fresh run so that no single run's
//! history grows without bound.
//!
//! Each run processes batches and continues as new when the SDK suggests it
//! (`ctx.continue_as_new_suggested()`, driven by the server's history-size thresholds) or, so
//! that the demo shows it within seconds, after a fixed number of batches per run. The state
//! (`iteration`, `processed_items`) travels in the next run's input. The client follows the chain
//! of runs to the final result; the program then walks the runs' histories to show the chain.

use std::{process::ExitCode, time::Duration};

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, history, run_pattern};
use temporalio_client::WorkflowGetResultOptions;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ContinueAsNewOptions, WorkerOptions, WorkflowContext, WorkflowResult};

/// Batches a run processes before it continues as new (the demo's stand-in for the
/// server's suggestion, which comes only after thousands of events).
const BATCHES_PER_RUN: u32 = 3;
const MAX_ITERATIONS: u32 = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WorkflowState {
    iteration: u32,
    processed_items: u32,
    /// Which run this is (1 = the first); only for the demo output.
    run_number: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkflowInput {
    state: Option<WorkflowState>,
    max_iterations: u32,
}

#[workflow]
#[derive(Default)]
struct LongRunningWorkflow;

#[workflow_methods]
impl LongRunningWorkflow {
    #[run]
    async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: WorkflowInput,
    ) -> WorkflowResult<WorkflowState> {
        // Initialise or restore the state.
        let mut state = input.state.unwrap_or_default();
        state.run_number += 1;
        let mut batches_this_run = 0;

        while state.iteration < input.max_iterations {
            // "Work": a short durable sleep, then count the items.
            ctx.timer(Duration::from_millis(50)).await;
            state.processed_items += 10;
            state.iteration += 1;
            batches_this_run += 1;

            let more_to_do = state.iteration < input.max_iterations;
            if more_to_do
                && (ctx.continue_as_new_suggested() || batches_this_run >= BATCHES_PER_RUN)
            {
                // No signal or update handlers here, so nothing to wait for before leaving.
                ctx.continue_as_new(
                    WorkflowInput {
                        state: Some(state.clone()),
                        max_iterations: input.max_iterations,
                    },
                    ContinueAsNewOptions::default(),
                )?;
            }
        }
        Ok(state)
    }
}

fn main() -> ExitCode {
    run_pattern("continue-as-new", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<LongRunningWorkflow>()?
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("loop");
        let handle = p
            .start(
                LongRunningWorkflow::run,
                WorkflowInput {
                    state: None,
                    max_iterations: MAX_ITERATIONS,
                },
                &id,
            )
            .await?;
        // `follow_runs` (the default) follows the continue-as-new chain to the last run.
        let state = handle
            .get_result(WorkflowGetResultOptions::default())
            .await?;
        println!("final state: {state:?}");

        // Walk the chain of runs through their histories.
        let Some(first_run) = handle.run_id().map(str::to_string) else {
            bail!("the start response carried no run id");
        };
        let mut runs = vec![first_run];
        loop {
            let events = history(client, &id, runs.last().map(String::as_str)).await?;
            match events.last().and_then(|e| e.attributes.as_ref()) {
                Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a)) => {
                    ensure!(runs.len() < 20, "too many runs");
                    runs.push(a.new_execution_run_id.clone());
                }
                Some(Attributes::WorkflowExecutionCompletedEventAttributes(_)) => break,
                other => bail!("unexpected last event of run {:?}: {other:?}", runs.last()),
            }
        }
        for (i, run) in runs.iter().enumerate() {
            println!("run {}: {run}", i + 1);
        }

        let expected_runs = MAX_ITERATIONS.div_ceil(BATCHES_PER_RUN);
        ensure!(
            state.iteration == MAX_ITERATIONS && state.processed_items == 10 * MAX_ITERATIONS,
            "the state was not carried across runs: {state:?}"
        );
        ensure!(
            runs.len() as u32 == expected_runs && state.run_number == expected_runs,
            "expected {expected_runs} runs, saw {} (state says {})",
            runs.len(),
            state.run_number
        );
        Ok(())
    })
    .await
}
