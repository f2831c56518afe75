//! Activity choice: the workflow picks which activity to run from its input.
//!
//! A shopping list of fruits is ordered item by item; apples go to `order_apples`, bananas to
//! `order_bananas`. A fruit the workflow has no activity for (cherries) fails the workflow with
//! a non-retryable application error, as the catalogue's `raise ValueError` does. The branch is
//! ordinary `match` on deterministic input, so it replays the same way every time.

use std::{process::ExitCode, time::Duration};

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_client::{WorkflowGetResultOptions, errors::WorkflowGetResultError};
use temporalio_common::protos::temporal::api::{
    enums::v1::EventType, failure::v1::failure::FailureInfo, history::v1::history_event::Attributes,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Fruit {
    Apple,
    Banana,
    Cherry,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShoppingItem {
    fruit: Fruit,
    amount: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShoppingList {
    items: Vec<ShoppingItem>,
}

struct FruitActivities;

#[activities]
impl FruitActivities {
    #[activity]
    async fn order_apples(_ctx: ActivityContext, amount: u32) -> Result<String, ActivityError> {
        Ok(format!("Ordered {amount} Apples..."))
    }

    #[activity]
    async fn order_bananas(_ctx: ActivityContext, amount: u32) -> Result<String, ActivityError> {
        Ok(format!("Ordered {amount} Bananas..."))
    }
}

#[workflow]
#[derive(Default)]
struct PurchaseFruitsWorkflow;

#[workflow_methods]
impl PurchaseFruitsWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, list: ShoppingList) -> WorkflowResult<String> {
        let opts = || ActivityOptions::start_to_close_timeout(Duration::from_secs(5));
        let mut ordered = Vec::new();
        for item in list.items {
            // The choice: one activity per kind of fruit.
            let result = match item.fruit {
                Fruit::Apple => {
                    ctx.execute_activity(FruitActivities::order_apples, item.amount, opts())
                        .await?
                }
                Fruit::Banana => {
                    ctx.execute_activity(FruitActivities::order_bananas, item.amount, opts())
                        .await?
                }
                other => {
                    return Err(ApplicationFailure::builder(format!(
                        "Unrecognized fruit: {other:?}"
                    ))
                    .type_name("ValueError".to_string())
                    .non_retryable(true)
                    .build()
                    .into());
                }
            };
            ordered.push(result);
        }
        Ok(ordered.concat())
    }
}

fn main() -> ExitCode {
    run_pattern("activity-choice", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<PurchaseFruitsWorkflow>()?
        .register_activities(FruitActivities)
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        // 1. Apples and bananas: each item goes to its own activity.
        let ok_id = p.workflow_id("ok");
        let list = ShoppingList {
            items: vec![
                ShoppingItem {
                    fruit: Fruit::Apple,
                    amount: 3,
                },
                ShoppingItem {
                    fruit: Fruit::Banana,
                    amount: 5,
                },
                ShoppingItem {
                    fruit: Fruit::Apple,
                    amount: 1,
                },
            ],
        };
        let result = p
            .start_and_wait(PurchaseFruitsWorkflow::run, list, &ok_id)
            .await?;
        println!("result: {result}");
        let expected = "Ordered 3 Apples...Ordered 5 Bananas...Ordered 1 Apples...";
        ensure!(result == expected, "expected {expected:?}, got {result:?}");

        // The history shows which activity each branch chose.
        let events = history(client, &ok_id, None).await?;
        let chosen: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    a.activity_type.as_ref().map(|t| t.name.clone())
                }
                _ => None,
            })
            .collect();
        println!("activities chosen: {chosen:?}");
        ensure!(
            chosen.len() == 3
                && chosen[0].ends_with("order_apples")
                && chosen[1].ends_with("order_bananas")
                && chosen[2].ends_with("order_apples"),
            "unexpected activities in the history: {chosen:?}"
        );

        // 2. Cherries: no branch for them, the workflow fails with a non-retryable error.
        let bad_id = p.workflow_id("cherry");
        let handle = p
            .start(
                PurchaseFruitsWorkflow::run,
                ShoppingList {
                    items: vec![ShoppingItem {
                        fruit: Fruit::Cherry,
                        amount: 2,
                    }],
                },
                &bad_id,
            )
            .await?;
        match handle.get_result(WorkflowGetResultOptions::default()).await {
            Err(WorkflowGetResultError::Failed(err)) => {
                let failure = err.failure();
                println!("cherry order failed as expected: {}", failure.message);
                let is_value_error = matches!(
                    &failure.failure_info,
                    Some(FailureInfo::ApplicationFailureInfo(info)) if info.r#type == "ValueError"
                );
                ensure!(
                    is_value_error && failure.message.contains("Cherry"),
                    "expected a ValueError about cherries, got {failure:?}"
                );
            }
            other => bail!("expected the cherry order to fail, got {other:?}"),
        }
        let events = history(client, &bad_id, None).await?;
        ensure!(
            count_events(&events, EventType::ActivityTaskScheduled) == 0,
            "no activity should have been scheduled for cherries"
        );
        Ok(())
    })
    .await
}
