//! Child workflow: a parent starts other workflows as children, uses their results, and
//! chooses with a parent close policy what happens to children still running when it closes.
//!
//! * `ComposeGreetingWorkflow` runs as a child with `ParentClosePolicy::Abandon` (as in the
//!   catalogue); the parent waits for it and builds its own result from the child's.
//! * `KeepaliveWorkflow` is started as a second child with `ParentClosePolicy::Terminate` and is
//!   never awaited: it would wait forever, but when the parent completes the server terminates
//!   it. The program checks both children with `describe`.

use std::{process::ExitCode, time::Duration};

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, count_events, history, print_workflow_id, run_pattern};
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus};
use temporalio_common::protos::temporal::api::{
    enums::v1::{EventType, ParentClosePolicy as ProtoParentClosePolicy},
    history::v1::history_event::Attributes,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ChildWorkflowOptions, ParentClosePolicy, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ComposeGreetingInput {
    greeting: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ParentResult {
    greeting: String,
    greeting_child_id: String,
    keepalive_child_id: String,
}

#[workflow]
#[derive(Default)]
struct ComposeGreetingWorkflow;

#[workflow_methods]
impl ComposeGreetingWorkflow {
    #[run]
    async fn run(
        _ctx: &mut WorkflowContext<Self>,
        input: ComposeGreetingInput,
    ) -> WorkflowResult<String> {
        Ok(format!("{}, {}!", input.greeting, input.name))
    }
}

/// A child that never finishes on its own.
#[workflow]
#[derive(Default)]
struct KeepaliveWorkflow;

#[workflow_methods]
impl KeepaliveWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        ctx.timer(Duration::from_secs(3600)).await;
        Ok(())
    }
}

#[workflow]
#[derive(Default)]
struct GreetingWorkflow;

#[workflow_methods]
impl GreetingWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<ParentResult> {
        let parent_id = ctx.workflow_id().to_string();
        let greeting_child_id = format!("{parent_id}-greeting-child");
        let keepalive_child_id = format!("{parent_id}-keepalive-child");

        // A child the parent does not wait for; it goes when the parent goes.
        let _keepalive = ctx
            .start_child_workflow(
                KeepaliveWorkflow::run,
                (),
                ChildWorkflowOptions::builder()
                    .workflow_id(keepalive_child_id.clone())
                    .parent_close_policy(ParentClosePolicy::Terminate)
                    .build(),
            )
            .await?;

        // The child whose result the parent uses.
        let child = ctx
            .start_child_workflow(
                ComposeGreetingWorkflow::run,
                ComposeGreetingInput {
                    greeting: "Hello".to_string(),
                    name,
                },
                ChildWorkflowOptions::builder()
                    .workflow_id(greeting_child_id.clone())
                    .parent_close_policy(ParentClosePolicy::Abandon)
                    .build(),
            )
            .await?;
        let greeting = child.result().await?;

        Ok(ParentResult {
            greeting: format!("{greeting} (composed by {greeting_child_id})"),
            greeting_child_id,
            keepalive_child_id,
        })
    }
}

fn main() -> ExitCode {
    run_pattern("child-workflow", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<GreetingWorkflow>()?
        .register_workflow::<ComposeGreetingWorkflow>()?
        .register_workflow::<KeepaliveWorkflow>()?
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("parent");
        let result = p
            .start_and_wait(GreetingWorkflow::run, "World".to_string(), &id)
            .await?;
        print_workflow_id(&result.greeting_child_id);
        print_workflow_id(&result.keepalive_child_id);
        println!("parent result: {}", result.greeting);
        ensure!(
            result.greeting == format!("Hello, World! (composed by {})", result.greeting_child_id),
            "the parent did not use the child's result: {result:?}"
        );

        // The parent's history records the children and the policies it asked for.
        let events = history(client, &id, None).await?;
        let policies: Vec<(String, i32)> = events
            .iter()
            .filter_map(|e| match &e.attributes {
                Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) => {
                    Some((a.workflow_id.clone(), a.parent_close_policy))
                }
                _ => None,
            })
            .collect();
        ensure!(
            policies
                == vec![
                    (
                        result.keepalive_child_id.clone(),
                        ProtoParentClosePolicy::Terminate as i32
                    ),
                    (
                        result.greeting_child_id.clone(),
                        ProtoParentClosePolicy::Abandon as i32
                    ),
                ],
            "unexpected child workflows / policies in the parent's history: {policies:?}"
        );
        ensure!(
            count_events(&events, EventType::ChildWorkflowExecutionCompleted) == 1,
            "the parent should have seen exactly one child complete"
        );

        // The greeting child completed; the keepalive child was terminated by the close policy.
        let greeting_child = client
            .get_workflow_handle::<ComposeGreetingWorkflow>(result.greeting_child_id.clone());
        let described = greeting_child
            .describe(WorkflowDescribeOptions::default())
            .await?;
        println!(
            "child {}: {:?}, parent {:?}",
            result.greeting_child_id,
            described.status(),
            described.parent_id()
        );
        ensure!(
            described.status() == WorkflowExecutionStatus::Completed
                && described.parent_id() == Some(id.as_str()),
            "the greeting child should be completed and know its parent"
        );

        let keepalive = client.get_workflow_handle::<KeepaliveWorkflow>(result.keepalive_child_id.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = keepalive
                .describe(WorkflowDescribeOptions::default())
                .await?
                .status();
            if status == WorkflowExecutionStatus::Terminated {
                println!(
                    "child {}: {status:?} by the parent close policy",
                    result.keepalive_child_id
                );
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the keepalive child is {status:?}, expected the parent close policy to terminate it"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await
}
