//! Schedule: the server starts workflows on a timetable (intervals, cron strings, calendars),
//! and a client can trigger, backfill, pause, update, describe, list and delete it.
//!
//! The program creates a schedule that runs `ScheduledWorkflow` every 2 seconds, lets it act
//! twice, triggers it by hand, backfills a past window of three times, pauses it (no more
//! actions), updates its note and adds a cron string, lists it, and deletes it. It checks that
//! every run it was told about happened exactly once, and returned `Processed: <data>`.

use std::{
    collections::BTreeSet,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::{Context, ensure};
use futures::StreamExt;
use sundial_patterns::{Pattern, print_workflow_id, run_pattern, unique};
use temporalio_client::{
    WorkflowGetResultOptions,
    schedules::{
        BackfillScheduleOptions, CreateScheduleOptions, DeleteScheduleOptions,
        ListSchedulesOptions, PauseScheduleOptions, ScheduleAction, ScheduleBackfill,
        ScheduleOverlapPolicy, ScheduleSpec, TriggerScheduleOptions, UnpauseScheduleOptions,
    },
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkerOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
struct ScheduledWorkflow;

#[workflow_methods]
impl ScheduledWorkflow {
    #[run]
    async fn run(_ctx: &mut WorkflowContext<Self>, data: String) -> WorkflowResult<String> {
        Ok(format!("Processed: {data}"))
    }
}

fn main() -> ExitCode {
    run_pattern("schedule", run)
}

/// Polls the schedule until `done` says its description is what we wait for.
async fn wait_for(
    handle: &temporalio_client::schedules::ScheduleHandle<temporalio_client::Client>,
    what: &str,
    done: impl Fn(&temporalio_client::schedules::ScheduleDescription) -> bool,
) -> anyhow::Result<temporalio_client::schedules::ScheduleDescription> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let description = handle.describe(Default::default()).await?;
        if done(&description) {
            return Ok(description);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<ScheduledWorkflow>()?
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    p.with_worker(options, async {
        let schedule_id = unique("schedule-pattern");
        let workflow_id = p.workflow_id("scheduled");
        let handle = client
            .create_schedule(
                schedule_id.clone(),
                CreateScheduleOptions::builder()
                    .action(ScheduleAction::start_workflow(
                        ScheduledWorkflow::run,
                        "scheduled data".to_string(),
                        p.task_queue.clone(),
                        workflow_id.clone(),
                    ))
                    .spec(ScheduleSpec::from_interval(Duration::from_secs(2)))
                    .note("Runs every 2 seconds")
                    .build(),
            )
            .await
            .context("creating the schedule")?;
        println!("created schedule {schedule_id} (every 2 s)");

        wait_for(&handle, "two scheduled runs", |d| d.action_count() >= 2).await?;
        println!("it ran twice on its own");

        handle
            .trigger(
                ScheduleOverlapPolicy::AllowAll,
                TriggerScheduleOptions::default(),
            )
            .await?;
        let before_backfill = wait_for(&handle, "the triggered run", |d| d.action_count() >= 3)
            .await?
            .action_count();
        println!("triggered by hand: {before_backfill} runs");

        // Three past times: the window's start and end are inclusive.
        let now = SystemTime::now();
        let unix = now.duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
        let aligned = SystemTime::UNIX_EPOCH + Duration::from_secs(unix - unix % 2);
        let start = aligned - Duration::from_secs(60);
        let end = start + Duration::from_secs(4);
        handle
            .pause(
                Some("pausing for maintenance"),
                PauseScheduleOptions::default(),
            )
            .await?;
        handle
            .backfill(
                [ScheduleBackfill::new(start, end)
                    .overlap_policy(ScheduleOverlapPolicy::AllowAll)
                    .build()],
                BackfillScheduleOptions::default(),
            )
            .await?;
        let paused = wait_for(&handle, "the backfilled runs", |d| {
            d.action_count() >= before_backfill + 3
        })
        .await?;
        ensure!(paused.paused(), "the schedule should be paused");
        println!(
            "backfilled three past times while paused: {} runs, note {:?}",
            paused.action_count(),
            paused.note()
        );

        handle
            .update(
                |update| {
                    update.set_note("Updated schedule");
                    update.set_spec(
                        ScheduleSpec::builder()
                            .intervals(vec![Duration::from_secs(2).into()])
                            .cron_strings(vec!["0 0 * * SUN".to_string()])
                            .build(),
                    );
                },
                Default::default(),
            )
            .await?;
        handle
            .unpause(
                Some("maintenance complete"),
                UnpauseScheduleOptions::default(),
            )
            .await?;
        handle
            .pause(Some("Updated schedule"), PauseScheduleOptions::default())
            .await?;
        let described = handle.describe(Default::default()).await?;
        ensure!(
            described.note() == Some("Updated schedule"),
            "update not visible: {:?}",
            described.note()
        );
        ensure!(
            described.raw().schedule.as_ref().and_then(|s| s.spec.as_ref()).is_some_and(
                |spec| spec.structured_calendar.len() == 1 && spec.interval.len() == 1
            ),
            "the updated spec should hold the interval and the compiled cron string"
        );
        println!(
            "updated: note {:?}, next times {:?}",
            described.note(),
            described.future_action_times().len()
        );

        let mut listed = client.list_schedules(ListSchedulesOptions::default());
        let mut found = false;
        while let Some(summary) = listed.next().await {
            let summary = summary?;
            if summary.schedule_id() == schedule_id {
                found = true;
                ensure!(summary.workflow_type() == Some("ScheduledWorkflow"));
            }
        }
        ensure!(found, "the schedule should be listed");

        // Every run the schedule reports, exactly once, finished with the expected result.
        let final_description = handle.describe(Default::default()).await?;
        let recent = final_description.recent_actions();
        // (A trigger in the same second as a scheduled time reuses its workflow id, as on
        // Temporal: the run ids tell the runs apart.)
        let runs: BTreeSet<&str> = recent.iter().map(|a| a.run_id.as_str()).collect();
        ensure!(runs.len() == recent.len(), "a run was reported twice");
        let ids: BTreeSet<String> = recent.iter().map(|a| a.workflow_id.clone()).collect();
        for id in &ids {
            ensure!(
                id.starts_with(&format!("{workflow_id}-")),
                "scheduled ids carry the time: {id}"
            );
            print_workflow_id(id);
            let result = client
                .get_workflow_handle::<ScheduledWorkflow>(id.clone())
                .get_result(WorkflowGetResultOptions::default())
                .await?;
            ensure!(
                result == "Processed: scheduled data",
                "unexpected {result:?}"
            );
        }
        println!(
            "{} runs, each once, all returned \"Processed: scheduled data\"",
            runs.len()
        );

        handle.delete(DeleteScheduleOptions::default()).await?;
        ensure!(
            handle.describe(Default::default()).await.is_err(),
            "the deleted schedule should be gone"
        );
        println!("deleted schedule {schedule_id}");
        Ok(())
    })
    .await
}
