"""The seed's Schedule pattern, runnable: interval and cron schedules, manual trigger,
backfill, pause/unpause, update, describe, list, delete, overlap policies, limited actions,
pause on failure, bad input, and catch-up after a kill -9 without duplicates.

Durations are seconds instead of minutes and hours."""

import asyncio
import subprocess
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import ScheduleOverlapPolicy as OverlapProto
from temporalio.api.workflowservice.v1 import UpdateScheduleRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker


@workflow.defn
class ScheduledWorkflow:
    """The seed's workflow, counting its runs through the last completion result."""

    @workflow.run
    async def run(self, data: str) -> str:
        previous = workflow.get_last_completion_result(type_hint=str) if workflow.has_last_completion_result() else None
        count = int(previous.split("#")[1]) + 1 if previous else 1
        return f"Processed: {data} #{count}"


@workflow.defn
class BlockingWorkflow:
    """Runs until signalled (or cancelled): makes overlapping runs visible."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, data: str) -> str:
        await workflow.wait_condition(lambda: self.done)
        return f"finished {data}"

    @workflow.signal
    def finish(self) -> None:
        self.done = True


@workflow.defn
class FailingWorkflow:
    @workflow.run
    async def run(self, data: str) -> str:
        raise ApplicationError(f"cannot process {data}", non_retryable=True)


WORKFLOWS = [ScheduledWorkflow, BlockingWorkflow, FailingWorkflow]


def every(seconds: float) -> ScheduleSpec:
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))])


def action(wf, task_queue: str, workflow_id: str, data: str = "scheduled data"):
    return ScheduleActionStartWorkflow(wf.run, data, id=workflow_id, task_queue=task_queue)


async def wait_for(predicate, timeout: float = 15.0, interval: float = 0.2):
    """Polls an async predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def scheduled_runs(client: Client, schedule_id: str):
    """Every run a schedule started, from visibility."""
    return [
        wf
        async for wf in client.list_workflows(f"TemporalScheduledById = '{schedule_id}'")
    ]


async def test_interval_schedule_runs_and_is_described_listed_and_deleted(client, task_queue, new_id):
    schedule_id = new_id("interval-schedule")
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=action(ScheduledWorkflow, task_queue, "scheduled-workflow"),
                spec=every(1),
                state=ScheduleState(note="Runs every second", paused=False),
            ),
            memo={"owner": "reports"},
        )

        async def three_completed():
            desc = await handle.describe()
            done = [
                a for a in desc.info.recent_actions
                if a.action.workflow_id and desc.info.num_actions >= 3
            ]
            return desc if len(done) >= 3 else None

        desc = await wait_for(three_completed)
        await handle.pause(note="stop for the checks")
        # the runs carry the schedule's id and nominal time; ids end in that time
        await asyncio.sleep(0.5)
        desc = await handle.describe()
        assert desc.schedule.state.paused
        assert desc.schedule.state.note == "stop for the checks"
        assert await desc.memo() == {"owner": "reports"}
        actions = desc.info.recent_actions
        assert desc.info.num_actions == len(actions)
        for a in actions:
            suffix = a.scheduled_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert a.action.workflow_id == f"scheduled-workflow-{suffix}"
        # every run completed; each saw the one before it through the last completion result
        results = []
        for a in actions:
            wf = client.get_workflow_handle(a.action.workflow_id)
            results.append(await wf.result())
        counts = [int(r.split("#")[1]) for r in results]
        assert counts == list(range(1, len(counts) + 1)), results
        assert all(r.startswith("Processed: scheduled data") for r in results)

        runs = await wait_for(
            lambda: _runs_if(client, schedule_id, desc.info.num_actions)
        )
        assert {r.id for r in runs} == {a.action.workflow_id for a in actions}
        for run in runs:
            assert run.search_attributes["TemporalScheduledById"] == [schedule_id]
            assert run.status == WorkflowExecutionStatus.COMPLETED

        listed = [s async for s in await client.list_schedules()]
        entry = next(s for s in listed if s.id == schedule_id)
        assert entry.schedule.state.paused
        assert entry.schedule.state.note == "stop for the checks"
        assert entry.schedule.action.workflow == "ScheduledWorkflow"
        assert len(entry.info.recent_actions) == min(5, desc.info.num_actions)

        await handle.delete()
        with pytest.raises(RPCError) as err:
            await handle.describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND


async def _runs_if(client, schedule_id, expected):
    runs = await scheduled_runs(client, schedule_id)
    return runs if len(runs) == expected else None


async def test_cron_schedule_matching_times_in_its_time_zone(client, task_queue, new_id):
    schedule_id = new_id("cron-schedule")
    handle = await client.create_schedule(
        schedule_id,
        Schedule(
            action=action(ScheduledWorkflow, task_queue, "daily-report-workflow", "daily report"),
            spec=ScheduleSpec(cron_expressions=["0 9 * * MON-FRI"], time_zone_name="Europe/Berlin"),
            state=ScheduleState(note="Daily report generation"),
        ),
    )
    desc = await handle.describe()
    spec = desc.schedule.spec
    # the cron string is shown compiled into a calendar, as Temporal does
    assert spec.cron_expressions == []
    assert spec.calendars == [
        ScheduleCalendarSpec(
            second=(ScheduleRange(0),),
            minute=(ScheduleRange(0),),
            hour=(ScheduleRange(9),),
            day_of_month=(ScheduleRange(1, 31),),
            month=(ScheduleRange(1, 12),),
            year=(),
            day_of_week=(ScheduleRange(1, 5),),
        )
    ]
    assert spec.time_zone_name == "Europe/Berlin"
    future = desc.info.next_action_times
    assert len(future) == 10
    for t in future:
        # 09:00 in Berlin in December is 08:00 UTC; weekdays only
        assert t.astimezone(timezone.utc).hour == 8 and t.minute == 0
        assert t.weekday() < 5
    await handle.delete()


async def test_manual_trigger_runs_even_while_paused(client, task_queue, new_id):
    schedule_id = new_id("trigger-schedule")
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=action(ScheduledWorkflow, task_queue, "triggered"),
                spec=every(3600),
                state=ScheduleState(paused=True, note="only by hand"),
            ),
        )
        await handle.trigger()

        async def one_action():
            d = await handle.describe()
            return d if d.info.num_actions == 1 else None

        desc = await wait_for(one_action)
        run = client.get_workflow_handle(desc.info.recent_actions[0].action.workflow_id)
        assert (await run.result()).startswith("Processed: scheduled data")
        await handle.unpause(note="back on")
        desc = await handle.describe()
        assert not desc.schedule.state.paused
        assert desc.schedule.state.note == "back on"
        await handle.delete()


async def test_backfill_runs_each_past_time_once(client, task_queue, new_id):
    schedule_id = new_id("backfill-schedule")
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=action(ScheduledWorkflow, task_queue, "backfilled"),
                spec=every(60),
                state=ScheduleState(paused=True),
            ),
        )
        now = datetime.now(timezone.utc).replace(microsecond=0)
        start, end = now - timedelta(minutes=5), now - timedelta(minutes=1)
        await handle.backfill(
            ScheduleBackfill(start_at=start, end_at=end, overlap=ScheduleOverlapPolicy.ALLOW_ALL)
        )
        # whole minutes in [start, end]
        first = start.replace(second=0) + (timedelta(minutes=1) if start.second else timedelta())
        expected = []
        t = first
        while t <= end:
            expected.append(t)
            t += timedelta(minutes=1)
        runs = await wait_for(lambda: _runs_if(client, schedule_id, len(expected)))
        started_for = sorted(r.search_attributes["TemporalScheduledStartTime"][0] for r in runs)
        assert started_for == expected
        assert len({r.id for r in runs}) == len(expected)
        await handle.delete()


async def test_update_changes_the_schedule_and_checks_the_conflict_token(client, task_queue, new_id):
    schedule_id = new_id("update-schedule")
    handle = await client.create_schedule(
        schedule_id,
        Schedule(
            action=action(ScheduledWorkflow, task_queue, "updated"),
            spec=every(1800),
            state=ScheduleState(note="Mixed interval and cron schedule", paused=True),
        ),
    )

    def updater(input: ScheduleUpdateInput) -> Optional[ScheduleUpdate]:
        input.description.schedule.state.note = "Updated schedule"
        input.description.schedule.spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=30))],
            cron_expressions=["0 0 * * SUN"],
        )
        return ScheduleUpdate(schedule=input.description.schedule)

    await handle.update(updater)
    desc = await handle.describe()
    assert desc.schedule.state.note == "Updated schedule"
    assert len(desc.schedule.spec.calendars) == 1
    assert desc.schedule.spec.intervals[0].every == timedelta(minutes=30)

    # an update made from a stale description is refused (FailedPrecondition; the reference
    # server accepts the call and silently drops the update)
    stale = UpdateScheduleRequest(
        namespace=client.namespace,
        schedule_id=schedule_id,
        schedule=await _raw_schedule(client, schedule_id),
        conflict_token=(1).to_bytes(8, "big"),
        request_id=str(uuid.uuid4()),
    )
    with pytest.raises(RPCError) as err:
        await client.workflow_service.update_schedule(stale)
    assert err.value.status == RPCStatusCode.FAILED_PRECONDITION
    await handle.delete()


async def _raw_schedule(client, schedule_id):
    from temporalio.api.workflowservice.v1 import DescribeScheduleRequest

    resp = await client.workflow_service.describe_schedule(
        DescribeScheduleRequest(namespace=client.namespace, schedule_id=schedule_id)
    )
    return resp.schedule


async def _describe_after(handle, seconds: float, pause: bool = True):
    await asyncio.sleep(seconds)
    if pause:
        await handle.pause(note="checking")
        await asyncio.sleep(0.3)
    return await handle.describe()


@pytest.mark.parametrize(
    "policy",
    ["SKIP", "BUFFER_ONE", "BUFFER_ALL", "CANCEL_OTHER", "TERMINATE_OTHER", "ALLOW_ALL"],
)
async def test_overlap_policies(client, task_queue, new_id, policy):
    overlap = ScheduleOverlapPolicy[policy]
    schedule_id = new_id(f"overlap-{policy.lower()}")
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=action(BlockingWorkflow, task_queue, f"blocking-{policy.lower()}"),
                spec=every(1),
                policy=SchedulePolicy(overlap=overlap),
            ),
        )
        buffering = policy in ("BUFFER_ONE", "BUFFER_ALL")
        # (pausing drops buffered scheduled starts, so buffering schedules keep running)
        desc = await _describe_after(handle, 3.6, pause=not buffering)
        info = desc.info
        actions = info.recent_actions
        statuses = []
        for a in actions:
            d = await client.get_workflow_handle(a.action.workflow_id).describe()
            statuses.append(d.status)
        running = statuses.count(WorkflowExecutionStatus.RUNNING)
        if policy == "SKIP":
            assert info.num_actions == 1 and running == 1
            assert info.num_actions_skipped_overlap >= 2
            assert len(info.running_actions) == 1
        elif policy in ("BUFFER_ONE", "BUFFER_ALL"):
            assert info.num_actions == 1 and running == 1
            if policy == "BUFFER_ONE":
                assert info.num_actions_skipped_overlap >= 1
            # finishing the running one lets the buffered start go
            await client.get_workflow_handle(actions[0].action.workflow_id).signal(
                BlockingWorkflow.finish
            )

            async def second_started():
                d = await handle.describe()
                return d if d.info.num_actions >= 2 else None

            second = await wait_for(second_started, timeout=10)
            await handle.pause(note="checking")
            first, then = second.info.recent_actions[0], second.info.recent_actions[1]
            # the buffered start is the one after the first (BUFFER_ONE keeps the earliest)
            assert then.scheduled_at - first.scheduled_at == timedelta(seconds=1)
        elif policy == "CANCEL_OTHER":
            assert info.num_actions >= 2
            assert WorkflowExecutionStatus.CANCELED in statuses
            # Never two at once. The pause may land while the latest one is being cancelled,
            # before its successor started (that start waits for the close), so none
            # running is possible too (seen once on PostgreSQL).
            assert running <= 1
        elif policy == "TERMINATE_OTHER":
            assert info.num_actions >= 3
            assert statuses.count(WorkflowExecutionStatus.TERMINATED) == len(statuses) - 1
            assert running == 1
        elif policy == "ALLOW_ALL":
            assert info.num_actions >= 3
            assert running == len(statuses)
            # overlapping runs are not tracked as the schedule's running workflow
            assert info.running_actions == []
        for a in (await handle.describe()).info.recent_actions:
            wf = client.get_workflow_handle(a.action.workflow_id)
            if (await wf.describe()).status == WorkflowExecutionStatus.RUNNING:
                await wf.terminate("test done")
        await handle.delete()


async def test_limited_actions_stop_after_the_count(client, task_queue, new_id):
    schedule_id = new_id("limited-schedule")
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=action(ScheduledWorkflow, task_queue, "limited"),
                spec=every(1),
                state=ScheduleState(limited_actions=True, remaining_actions=2),
            ),
        )
        await asyncio.sleep(4.5)
        desc = await handle.describe()
        assert desc.info.num_actions == 2
        assert desc.schedule.state.remaining_actions == 0
        assert desc.info.next_action_times == []
        await handle.delete()


async def test_pause_on_failure(client, task_queue, new_id):
    schedule_id = new_id("failing-schedule")
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=action(FailingWorkflow, task_queue, "failing"),
                spec=every(1),
                policy=SchedulePolicy(pause_on_failure=True),
            ),
        )

        async def paused():
            d = await handle.describe()
            return d if d.schedule.state.paused else None

        desc = await wait_for(paused)
        assert desc.info.num_actions == 1
        workflow_id = desc.info.recent_actions[0].action.workflow_id
        assert desc.schedule.state.note == (
            f"paused due to workflow failure: {workflow_id}: cannot process scheduled data"
        )
        await handle.delete()


async def test_bad_input_gets_clear_errors(client, task_queue, new_id):
    def schedule(spec: ScheduleSpec) -> Schedule:
        return Schedule(action=action(ScheduledWorkflow, task_queue, "bad"), spec=spec)

    cases = [
        (ScheduleSpec(cron_expressions=["61 * * * *"]), "Minute is not in range [0-59]"),
        (ScheduleSpec(cron_expressions=["* * * *"]), "CronString does not have 5-7 fields"),
        (
            ScheduleSpec(cron_expressions=["0 9 * * *"], time_zone_name="Mars/Olympus"),
            "unknown time zone Mars/Olympus",
        ),
        (ScheduleSpec(cron_expressions=["CRON_TZ=Nowhere/City 0 9 * * *"]), "unknown time zone Nowhere/City"),
        (
            ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(milliseconds=500))]),
            "interval is too small",
        ),
    ]
    for spec, message in cases:
        with pytest.raises(RPCError) as err:
            await client.create_schedule(new_id("bad"), schedule(spec))
        assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
        assert message in err.value.message

    schedule_id = new_id("dup")
    handle = await client.create_schedule(schedule_id, schedule(every(3600)))
    with pytest.raises(ScheduleAlreadyRunningError):
        await client.create_schedule(schedule_id, schedule(every(60)))
    await handle.delete()

    with pytest.raises(RPCError) as err:
        await client.get_schedule_handle(new_id("missing")).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


async def test_empty_action_is_refused(client, new_id):
    """A schedule without an action could never do anything: refused (the reference server
    accepts it)."""
    from temporalio.api.schedule.v1 import Schedule as ScheduleProto
    from temporalio.api.schedule.v1 import ScheduleSpec as SpecProto
    from temporalio.api.workflowservice.v1 import CreateScheduleRequest

    req = CreateScheduleRequest(
        namespace=client.namespace,
        schedule_id=new_id("no-action"),
        schedule=ScheduleProto(spec=SpecProto(cron_string=["0 9 * * *"])),
        request_id=str(uuid.uuid4()),
    )
    with pytest.raises(RPCError) as err:
        await client.workflow_service.create_schedule(req)
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert "action" in err.value.message


async def test_schedule_catches_up_after_kill_without_duplicates(sundial_factory, tmp_path, new_id):
    server = sundial_factory(tmp_path / "schedules.db", log_path=tmp_path / "schedules.log")
    await server.start()
    client = await Client.connect(server.address)
    task_queue = new_id("catchup-tq")
    schedule_id = new_id("catchup")
    await client.create_schedule(
        schedule_id,
        Schedule(
            action=action(ScheduledWorkflow, task_queue, "catchup"),
            spec=every(1),
            policy=SchedulePolicy(
                overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=timedelta(minutes=1)
            ),
        ),
    )
    handle = client.get_schedule_handle(schedule_id)
    await wait_for(lambda: _at_least(handle, 2))
    server.kill()
    down_at = datetime.now(timezone.utc)
    await asyncio.sleep(3.5)
    await server.restart(hard=True)
    client = await Client.connect(server.address)
    handle = client.get_schedule_handle(schedule_id)
    # times missed while down run after the restart
    await asyncio.sleep(2.0)
    await handle.pause(note="count")
    await asyncio.sleep(0.5)
    desc = await handle.describe()
    runs = await wait_for(lambda: _runs_if(client, schedule_id, desc.info.num_actions))
    times = sorted(r.search_attributes["TemporalScheduledStartTime"][0] for r in runs)
    assert len(set(r.id for r in runs)) == len(runs), "no time runs twice"
    assert len(times) == len(set(times))
    # one run per second from the first to the last, including the seconds the server was down
    span = int((times[-1] - times[0]).total_seconds())
    assert len(times) == span + 1, times
    assert times[-1] > down_at + timedelta(seconds=3)
    await handle.delete()


async def _at_least(handle, n):
    return (await handle.describe()).info.num_actions >= n


async def test_temporal_cli_manages_schedules(client, server_address, task_queue, new_id):
    cli = shutil.which("temporal")
    if cli is None:
        pytest.skip("temporal CLI not installed")
    schedule_id = new_id("cli-schedule")
    base = [cli, "--address", server_address, "--namespace", client.namespace]

    def run(*args):
        out = subprocess.run(base[:1] + list(args) + base[1:], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    run("schedule", "create", "--schedule-id", schedule_id, "--cron", "0 12 * * *",
        "--workflow-id", "cli-wf", "--task-queue", task_queue, "--type", "ScheduledWorkflow",
        "--input", '"from cli"')
    assert schedule_id in run("schedule", "list")
    assert "ScheduledWorkflow" in run("schedule", "describe", "--schedule-id", schedule_id)
    run("schedule", "toggle", "--schedule-id", schedule_id, "--pause", "--reason", "cli pause")
    desc = await client.get_schedule_handle(schedule_id).describe()
    assert desc.schedule.state.paused and desc.schedule.state.note == "cli pause"
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        run("schedule", "trigger", "--schedule-id", schedule_id)
        await wait_for(lambda: _at_least(client.get_schedule_handle(schedule_id), 1))
    run("schedule", "delete", "--schedule-id", schedule_id)
    with pytest.raises(RPCError):
        await client.get_schedule_handle(schedule_id).describe()
