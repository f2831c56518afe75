"""Activity timeouts as Temporal's features harness checks them (features/eager_activity/
non_remote_activities_worker, features/activity/basic_no_workflow_timeout): written after the
harness's Python features, run through the official SDK against a real Sundial."""

from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.worker import Worker


@activity.defn
async def dummy() -> str:
    return "ran"


@workflow.defn(sandboxed=False)
class ScheduleToCloseOnly:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(dummy, schedule_to_close_timeout=timedelta(seconds=2))
        except ActivityError as e:
            assert isinstance(e.cause, TimeoutError), e.cause
            return TimeoutType(e.cause.type).name
        return "ran"


@workflow.defn(sandboxed=False)
class StartToCloseOnly:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(dummy, start_to_close_timeout=timedelta(seconds=5))


async def test_an_activity_nobody_polls_times_out_schedule_to_start(client: Client, new_id):
    """Only schedule-to-close is set: schedule-to-start takes its value, both expire together,
    and the reference reports SCHEDULE_TO_START (eager activities requested, but the worker runs
    no remote activities, so nobody ever takes the task)."""
    tq = new_id("no-remote")
    async with Worker(
        client,
        task_queue=tq,
        workflows=[ScheduleToCloseOnly],
        activities=[dummy],
        no_remote_activities=True,
    ):
        result = await client.execute_workflow(
            ScheduleToCloseOnly.run, id=new_id("no-remote"), task_queue=tq
        )
    assert result == "SCHEDULE_TO_START"


async def test_an_activity_with_only_start_to_close_runs(client: Client, new_id):
    tq = new_id("stc-only")
    async with Worker(client, task_queue=tq, workflows=[StartToCloseOnly], activities=[dummy]):
        handle = await client.start_workflow(StartToCloseOnly.run, id=new_id("stc-only"), task_queue=tq)
        assert await handle.result() == "ran"
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert len(scheduled) == 1
    # As the reference records them: every timeout present, unset ones as zero.
    for name in ("schedule_to_close_timeout", "schedule_to_start_timeout"):
        assert scheduled[0].HasField(name), name
