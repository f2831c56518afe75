"""Cron workflows (`cron_schedule` on a start) with the spec forms Temporal's workflow cron
accepts (robfig/cron's standard parser): `@every <duration>`, `CRON_TZ=<zone>` prefixes, and
the refusals for everything else.

Facts from the reference (Temporal 1.32 dev server): `@every d` counts from the previous run's
execution time (the first run waits `d`), a zone prefix puts the fields in that zone's wall
clock, backoffs are rounded up to whole seconds, and every refused spec answers
InvalidArgument "invalid CronSchedule." (or "..., no time can be found to satisfy the
schedule" for a spec that never matches).
"""

import asyncio
import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import ContinueAsNewInitiator, EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker


@workflow.defn
class CronTickWorkflow:
    @workflow.run
    async def run(self) -> str:
        return f"run at {workflow.now().isoformat()}"


def started_attrs(history):
    return history.events[0].workflow_execution_started_event_attributes


async def completed_run(handle: WorkflowHandle, timeout: float):
    """The history of `handle`'s run once it is closed (polls until then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        history = await handle.fetch_history()
        if history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            return history
        assert asyncio.get_running_loop().time() < deadline, "run did not complete in time"
        await asyncio.sleep(0.2)


async def test_cron_every_two_seconds_runs_repeatedly(client, task_queue, new_id):
    # as Temporal's features harness (schedule/cron): "@every 2s", at least two runs complete
    wf_id = new_id("cron-every")
    async with Worker(client, task_queue=task_queue, workflows=[CronTickWorkflow]):
        handle = await client.start_workflow(
            CronTickWorkflow.run, id=wf_id, task_queue=task_queue, cron_schedule="@every 2s"
        )
        # the handle follows the chain; the runs are read by their own ids
        first_handle = client.get_workflow_handle(wf_id, run_id=handle.result_run_id)
        first = await completed_run(first_handle, 15)
        first_started = started_attrs(first)
        assert first_started.cron_schedule == "@every 2s"
        assert first_started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_CRON_SCHEDULE
        # the first run waits one whole interval
        assert first_started.first_workflow_task_backoff.ToTimedelta() == timedelta(seconds=2)
        completed = first.events[-1].workflow_execution_completed_event_attributes
        assert completed.result.payloads
        second_run_id = completed.new_execution_run_id
        assert second_run_id

        second_handle = client.get_workflow_handle(wf_id, run_id=second_run_id)
        second = await completed_run(second_handle, 15)
        second_started = started_attrs(second)
        assert second_started.cron_schedule == "@every 2s"
        assert second_started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_CRON_SCHEDULE
        assert second_started.continued_execution_run_id == handle.result_run_id
        assert second_started.last_completion_result == completed.result
        backoff = second_started.first_workflow_task_backoff.ToTimedelta()
        assert backoff.microseconds == 0 and timedelta(0) < backoff <= timedelta(seconds=2), backoff
        # the next time is two seconds after the previous run's execution time (cut to
        # whole seconds), not two seconds after that run closed
        first_exec = first.events[0].event_time.ToDatetime() + timedelta(seconds=2)
        tick = first_exec.replace(microsecond=0) + timedelta(seconds=2)
        second_exec = second.events[0].event_time.ToDatetime() + backoff
        assert tick <= second_exec < tick + timedelta(seconds=1), (first_exec, second_exec)
        assert second.events[-1].workflow_execution_completed_event_attributes.new_execution_run_id

        await client.get_workflow_handle(wf_id).terminate(reason="cron test done")


def next_top_of_hour(after: datetime, zone: str) -> datetime:
    """The first instant strictly after `after` whose wall clock in `zone` reads hh:00:00."""
    local = after.astimezone(ZoneInfo(zone))
    candidate = local.replace(minute=0, second=0, microsecond=0)
    while candidate <= local:
        candidate = (candidate.astimezone(timezone.utc) + timedelta(hours=1)).astimezone(ZoneInfo(zone))
        candidate = candidate.replace(minute=0, second=0, microsecond=0)
    return candidate.astimezone(timezone.utc)


# New York is a whole number of hours from UTC (the requested case); Kolkata, at +05:30,
# shows that the minute field is read on the zone's wall clock
@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
async def test_cron_time_zone_prefix_sets_first_backoff(client, task_queue, new_id, zone):
    spec = f"CRON_TZ={zone} 0 * * * *"
    handle = await client.start_workflow(
        CronTickWorkflow.run, id=new_id("cron-tz"), task_queue=task_queue, cron_schedule=spec
    )
    try:
        history = await handle.fetch_history()
        started = started_attrs(history)
        assert started.cron_schedule == spec
        start = history.events[0].event_time.ToDatetime().replace(tzinfo=timezone.utc)
        backoff = started.first_workflow_task_backoff.ToTimedelta()
        expected = next_top_of_hour(start, zone)
        # rounded up to whole seconds
        assert backoff == timedelta(seconds=math.ceil((expected - start).total_seconds())), (
            start, backoff, expected)
        desc = await handle.describe()
        assert desc.execution_time - desc.start_time == backoff
    finally:
        await handle.terminate(reason="cron test done")


ACCEPTED = ["? * * * *", "@every 0s", "0 0 1 * MON", "TZ=Europe/Paris @daily", "@every 1h30m"]


@pytest.mark.parametrize("spec", ACCEPTED)
async def test_cron_forms_temporal_accepts(client, task_queue, new_id, spec):
    handle = await client.start_workflow(
        CronTickWorkflow.run, id=new_id("cron-ok"), task_queue=task_queue, cron_schedule=spec
    )
    try:
        started = started_attrs(await handle.fetch_history())
        assert started.cron_schedule == spec
        assert started.first_workflow_task_backoff.ToTimedelta() > timedelta(0)
        if spec == "@every 0s":
            # robfig raises an interval under a second to one second
            assert started.first_workflow_task_backoff.ToTimedelta() == timedelta(seconds=1)
    finally:
        await handle.terminate(reason="cron test done")


REFUSED = [
    ("bogus", "invalid CronSchedule."),
    ("* * * * * *", "invalid CronSchedule."),  # seconds are not a workflow cron field
    ("0 0 * * 7", "invalid CronSchedule."),  # day of week is 0-6
    ("0 0 * * MONDAY", "invalid CronSchedule."),  # names are three letters
    ("@every 1d", "invalid CronSchedule."),  # Go durations have no days
    ("@every 1h/5m", "invalid CronSchedule."),  # no phase, unlike schedules
    (" @every 2s", "invalid CronSchedule."),
    ("@every 2s ", "invalid CronSchedule."),
    ("CRON_TZ=Mars/Base 0 * * * *", "invalid CronSchedule."),
    ("0 0 30 2 *", "invalid CronSchedule, no time can be found to satisfy the schedule"),
]


@pytest.mark.parametrize("spec,message", REFUSED)
async def test_cron_forms_temporal_refuses(client, task_queue, new_id, spec, message):
    with pytest.raises(RPCError) as err:
        await client.start_workflow(
            CronTickWorkflow.run, id=new_id("cron-bad"), task_queue=task_queue, cron_schedule=spec
        )
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert err.value.message == message
