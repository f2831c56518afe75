//! Long-running entity: one workflow per customer reward account, living as long as the account.
//!
//! * a **signal** (`record_purchase`) changes state without waiting for an answer,
//! * a **query** (`query_reward_status`) reads state without changing it,
//! * **updates** (`add_points`, `cancel`) change state and return a result; `add_points` has a
//!   **validator** that rejects bad input before anything is written to history,
//! * the run loop waits until the account is closed (or until continue-as-new is suggested,
//!   when it hands its state to a fresh run) and waits for running handlers before leaving.

use std::{process::ExitCode, time::Duration};

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, count_events, history, run_pattern};
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowQueryOptions,
    WorkflowSignalOptions, errors::WorkflowUpdateError,
};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ContinueAsNewOptions, SyncWorkflowContext, WorkerOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

/// Largest change a single `add_points` update may make.
const MAX_POINTS_PER_UPDATE: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
enum RewardLevel {
    #[default]
    Basic,
    Gold,
    Platinum,
}

impl RewardLevel {
    fn for_points(points: i64) -> Self {
        match points {
            p if p >= 1000 => RewardLevel::Platinum,
            p if p >= 500 => RewardLevel::Gold,
            _ => RewardLevel::Basic,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AccountStatus {
    level: RewardLevel,
    points: i64,
    is_active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountInput {
    user_id: String,
    starting_points: i64,
    starting_level: RewardLevel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AddPointsInput {
    points: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserInfo {
    id: String,
    name: String,
}

struct AccountActivities;

#[activities]
impl AccountActivities {
    /// Looks the user up in "another system".
    #[activity]
    async fn get_user(_ctx: ActivityContext, user_id: String) -> Result<UserInfo, ActivityError> {
        Ok(UserInfo {
            name: format!("Customer {user_id}"),
            id: user_id,
        })
    }
}

#[workflow]
struct CustomerRewardAccount {
    level: RewardLevel,
    points: i64,
    is_active: bool,
    user_id: String,
    update_count: u32,
}

#[workflow_methods]
impl CustomerRewardAccount {
    #[init]
    fn new(_ctx: &WorkflowContextView, input: AccountInput) -> Self {
        Self {
            level: input.starting_level,
            points: input.starting_points,
            is_active: true,
            user_id: input.user_id,
            update_count: 0,
        }
    }

    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<AccountStatus> {
        let user_id = ctx.state(|s| s.user_id.clone());
        let user = ctx
            .execute_activity(
                AccountActivities::get_user,
                user_id,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(5)),
            )
            .await?;
        if !ctx.is_replaying() {
            println!(
                "  workflow: reward account for {} ({}) created",
                user.id, user.name
            );
        }

        loop {
            // Wait for the account to close, or for the SDK to suggest continue-as-new.
            let view = ctx.clone();
            ctx.wait_condition(move |s| !s.is_active || view.continue_as_new_suggested())
                .await?;
            // Let update handlers that are still running finish first.
            let view = ctx.clone();
            ctx.wait_condition(move |_| view.all_handlers_finished())
                .await?;

            if !ctx.state(|s| s.is_active) {
                return Ok(ctx.state(Self::status));
            }
            let next = ctx.state(|s| AccountInput {
                user_id: s.user_id.clone(),
                starting_points: s.points,
                starting_level: s.level,
            });
            ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
        }
    }

    fn status(&self) -> AccountStatus {
        AccountStatus {
            level: self.level,
            points: self.points,
            is_active: self.is_active,
        }
    }

    fn apply_points(&mut self, points: i64) {
        self.points = (self.points + points).max(0);
        self.level = RewardLevel::for_points(self.points);
    }

    /// Signal: a purchase earns one point per whole currency unit. No answer is sent back.
    #[signal]
    fn record_purchase(&mut self, _ctx: &mut SyncWorkflowContext<Self>, amount: i64) {
        self.apply_points(amount);
    }

    /// Query: the current status, read-only.
    #[query]
    fn query_reward_status(&self, _ctx: &WorkflowContextView) -> AccountStatus {
        self.status()
    }

    /// Rejects an `add_points` update before it is accepted; a rejected update leaves no
    /// trace in the history.
    #[update_validator(add_points)]
    fn validate_add_points(
        &self,
        _ctx: &WorkflowContextView,
        input: &AddPointsInput,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.is_active {
            return Err("the account is closed".into());
        }
        if input.points == 0 || input.points.abs() > MAX_POINTS_PER_UPDATE {
            return Err(format!(
                "points must be non-zero and at most {MAX_POINTS_PER_UPDATE} in size, got {}",
                input.points
            )
            .into());
        }
        Ok(())
    }

    /// Update: add (or remove) points and return the new status.
    #[update]
    fn add_points(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        input: AddPointsInput,
    ) -> AccountStatus {
        self.update_count += 1;
        self.apply_points(input.points);
        self.status()
    }

    /// Update: close the account; the run loop then ends the workflow.
    #[update]
    fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>) -> AccountStatus {
        self.is_active = false;
        self.status()
    }
}

fn main() -> ExitCode {
    run_pattern("entity", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<CustomerRewardAccount>()?
        .register_activities(AccountActivities)
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("account");
        let input = AccountInput {
            user_id: "alice".to_string(),
            starting_points: 0,
            starting_level: RewardLevel::Basic,
        };
        let handle = p.start(CustomerRewardAccount::run, input, &id).await?;

        // Signal: fire and forget.
        handle
            .signal(
                CustomerRewardAccount::record_purchase,
                120,
                WorkflowSignalOptions::default(),
            )
            .await?;
        println!("signal record_purchase(120) sent");

        // Update: the server orders it after the signal, so the result includes both.
        let status = handle
            .execute_update(
                CustomerRewardAccount::add_points,
                AddPointsInput { points: 400 },
                WorkflowExecuteUpdateOptions::default(),
            )
            .await?;
        println!("update add_points(400) -> {status:?}");
        ensure!(
            status
                == AccountStatus {
                    level: RewardLevel::Gold,
                    points: 520,
                    is_active: true
                },
            "unexpected status after the signal and the first update: {status:?}"
        );

        // Query: read the state.
        let queried = handle
            .query(
                CustomerRewardAccount::query_reward_status,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        println!("query query_reward_status -> {queried:?}");
        ensure!(queried == status, "query disagrees with the update: {queried:?}");

        // Update with bad input: the validator rejects it.
        match handle
            .execute_update(
                CustomerRewardAccount::add_points,
                AddPointsInput { points: 0 },
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
        {
            Err(WorkflowUpdateError::Failed(failure)) => {
                println!("update add_points(0) rejected: {}", failure.message);
                ensure!(
                    failure.message.contains("must be non-zero"),
                    "the rejection should carry the validator's message, got {failure:?}"
                );
            }
            other => bail!("expected add_points(0) to be rejected, got {other:?}"),
        }
        let after_reject = handle
            .query(
                CustomerRewardAccount::query_reward_status,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        ensure!(
            after_reject == status,
            "a rejected update must not change the state: {after_reject:?}"
        );

        let status = handle
            .execute_update(
                CustomerRewardAccount::add_points,
                AddPointsInput { points: 600 },
                WorkflowExecuteUpdateOptions::default(),
            )
            .await?;
        println!("update add_points(600) -> {status:?}");
        ensure!(
            status.level == RewardLevel::Platinum && status.points == 1120,
            "unexpected status: {status:?}"
        );

        // Close the account: the workflow finishes with its final status.
        let closed = handle
            .execute_update(
                CustomerRewardAccount::cancel,
                (),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await?;
        println!("update cancel -> {closed:?}");
        let result = handle.get_result(WorkflowGetResultOptions::default()).await?;
        println!("workflow result: {result:?}");
        let expected = AccountStatus {
            level: RewardLevel::Platinum,
            points: 1120,
            is_active: false,
        };
        ensure!(closed == expected && result == expected, "unexpected final status {result:?}");

        // The history holds the signal and the three accepted updates, not the rejected one.
        let events = history(client, &id, None).await?;
        let signals = count_events(&events, EventType::WorkflowExecutionSignaled);
        let accepted = count_events(&events, EventType::WorkflowExecutionUpdateAccepted);
        let completed = count_events(&events, EventType::WorkflowExecutionUpdateCompleted);
        println!("history: {signals} signal(s), {accepted} accepted update(s), {completed} completed update(s)");
        ensure!(
            signals == 1 && accepted == 3 && completed == 3,
            "expected 1 signal and 3 accepted/completed updates in the history"
        );
        Ok(())
    })
    .await
}
