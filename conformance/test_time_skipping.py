"""Sundial as the SDK's time-skipping test server.

Every test starts its own ``sundial-test-server`` through the Python SDK's
``WorkflowEnvironment.start_time_skipping(test_server_existing_path=...)``, exactly as
it would start Temporal's Java test server, and checks what the SDK documents: time
skips while the environment waits for a result or sleeps, and stays with the wall
clock while it is locked.

The binary is ``$SUNDIAL_TEST_SERVER_BIN``, else ``sundial-test-server`` beside
``$SUNDIAL_BIN``, else ``<repo>/target/debug/sundial-test-server``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator, List, Optional

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

REPO_ROOT = Path(__file__).resolve().parent.parent
DAY = timedelta(days=1)


def _test_server_path() -> Path:
    explicit = os.environ.get("SUNDIAL_TEST_SERVER_BIN")
    if explicit:
        return Path(explicit)
    server = os.environ.get("SUNDIAL_BIN")
    if server:
        return Path(server).parent / "sundial-test-server"
    return REPO_ROOT / "target" / "debug" / "sundial-test-server"


pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SUNDIAL_ADDRESS")),
    reason="starts its own time-skipping test server",
)


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    path = _test_server_path()
    assert path.exists(), f"{path} is missing: build it with cargo build"
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(path))
    try:
        yield env
    finally:
        await env.shutdown()


def _queue() -> str:
    return f"ts-{uuid.uuid4().hex[:12]}"


def _worker(env: WorkflowEnvironment, queue: str, workflows, activities=()) -> Worker:
    # Unsandboxed: a CPython 3.11.7 ast bug breaks the sandbox's import validation.
    return Worker(
        env.client,
        task_queue=queue,
        workflows=list(workflows),
        activities=list(activities),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


# ---------------------------------------------------------------------------------------
# Workflows and activities


@workflow.defn
class LongSleep:
    """Sleeps and reports workflow.now() before and after."""

    @workflow.run
    async def run(self, seconds: float) -> List[str]:
        before = workflow.now()
        await workflow.sleep(seconds)
        return [before.isoformat(), workflow.now().isoformat()]


_attempts: dict[str, int] = {}


@activity.defn
async def flaky(key: str) -> int:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] < 3:
        raise ApplicationError(f"attempt {_attempts[key]} fails")
    return _attempts[key]


@workflow.defn
class HourlyRetries:
    """Runs an activity whose first two attempts fail, retried an hour apart."""

    @workflow.run
    async def run(self, key: str) -> list:
        start = workflow.now()
        attempts = await workflow.execute_activity(
            flaky,
            key,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(hours=1), backoff_coefficient=1.0
            ),
        )
        return [attempts, (workflow.now() - start).total_seconds()]


@workflow.defn
class Stages:
    """Reports its stage by query: waiting, then woke after a day; ends on a signal."""

    def __init__(self) -> None:
        self.stage = "waiting"
        self.finish = False

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(DAY)
        self.stage = "woke"
        await workflow.wait_condition(lambda: self.finish)
        return "finished"

    @workflow.query
    def current_stage(self) -> str:
        return self.stage

    @workflow.signal
    def done(self) -> None:
        self.finish = True


@workflow.defn
class WaitForSignal:
    """Waits up to a week for a signal; returns whether it came and the wait in seconds."""

    def __init__(self) -> None:
        self.signalled = False

    @workflow.run
    async def run(self) -> list:
        start = workflow.now()
        try:
            await workflow.wait_condition(lambda: self.signalled, timeout=7 * DAY)
        except asyncio.TimeoutError:
            pass
        return [self.signalled, (workflow.now() - start).total_seconds()]

    @workflow.signal
    def wake(self) -> None:
        self.signalled = True


@workflow.defn
class Tick:
    @workflow.run
    async def run(self) -> str:
        return workflow.now().isoformat()


@workflow.defn
class Approval:
    """An update approves it; then it waits ten days and records a search attribute."""

    def __init__(self) -> None:
        self.approved_by: Optional[str] = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.approved_by is not None)
        await workflow.sleep(10 * DAY)
        workflow.upsert_search_attributes(
            [SearchAttributePair(REVIEW_STATE, "archived")]
        )
        return f"approved by {self.approved_by}"

    @workflow.update
    def approve(self, who: str) -> str:
        self.approved_by = who
        return f"ok {who}"


REVIEW_STATE = SearchAttributeKey.for_keyword("ReviewState")

_heartbeat_env: dict[str, WorkflowEnvironment] = {}


@activity.defn
async def sleeps_past_heartbeat(key: str) -> str:
    activity.heartbeat()
    # The environment sleeps while the activity runs: time skips past the heartbeat timeout.
    await _heartbeat_env[key].sleep(timedelta(minutes=10))
    return "not timed out"


@workflow.defn
class HeartbeatTimeout:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            sleeps_past_heartbeat,
            key,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


@workflow.defn
class SleepyChild:
    @workflow.run
    async def run(self, days: int) -> str:
        await workflow.sleep(days * DAY)
        return f"slept {days} days"


@workflow.defn
class Parent:
    """Starts two children that sleep for days, and waits for both."""

    @workflow.run
    async def run(self) -> list:
        start = workflow.now()
        results = await asyncio.gather(
            workflow.execute_child_workflow(SleepyChild.run, 2, id=f"{workflow.info().workflow_id}-a"),
            workflow.execute_child_workflow(SleepyChild.run, 5, id=f"{workflow.info().workflow_id}-b"),
        )
        return [list(results), (workflow.now() - start).total_seconds()]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------------------------------
# Tests


async def test_a_thirty_day_sleep_finishes_in_well_under_a_second(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [LongSleep]):
        env_before = await env.get_current_time()
        started = time.monotonic()
        before, after = await env.client.execute_workflow(
            LongSleep.run, (30 * DAY).total_seconds(), id=f"sleep-{queue}", task_queue=queue
        )
        wall = time.monotonic() - started
        env_after = await env.get_current_time()
    print(f"30-day sleep: {wall:.3f} s of wall time")
    assert wall < 2.0, f"the 30-day sleep took {wall:.2f} s of wall time"
    assert _ts(after) - _ts(before) >= 30 * DAY
    assert env_after - env_before >= 30 * DAY
    # Event times are virtual too.
    handle = env.client.get_workflow_handle(f"sleep-{queue}")
    desc = await handle.describe()
    assert desc.close_time is not None and desc.close_time - desc.start_time >= 30 * DAY
    events = [e async for e in handle.fetch_history_events()]
    fired = [e for e in events if e.HasField("timer_fired_event_attributes")]
    assert len(fired) == 1
    assert fired[0].event_time.ToDatetime(tzinfo=timezone.utc) - desc.start_time >= 30 * DAY


async def test_activity_retries_an_hour_apart_are_skipped(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [HourlyRetries], [flaky]):
        started = time.monotonic()
        attempts, elapsed = await env.client.execute_workflow(
            HourlyRetries.run, queue, id=f"retry-{queue}", task_queue=queue
        )
        wall = time.monotonic() - started
    assert attempts == 3
    assert elapsed >= 2 * 3600, elapsed
    assert wall < 5.0, wall


async def test_workflow_execution_timeout_fires_in_virtual_time(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [LongSleep]):
        started = time.monotonic()
        with pytest.raises(WorkflowFailureError) as failure:
            await env.client.execute_workflow(
                LongSleep.run,
                (10 * DAY).total_seconds(),
                id=f"timeout-{queue}",
                task_queue=queue,
                execution_timeout=DAY,
            )
        wall = time.monotonic() - started
    assert isinstance(failure.value.cause, TimeoutError)
    desc = await env.client.get_workflow_handle(f"timeout-{queue}").describe()
    assert desc.status == WorkflowExecutionStatus.TIMED_OUT
    assert desc.close_time is not None
    assert DAY <= desc.close_time - desc.start_time < 2 * DAY
    assert wall < 5.0, wall


async def test_env_sleep_advances_time_manually(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [Stages]):
        handle = await env.client.start_workflow(
            Stages.run, id=f"stages-{queue}", task_queue=queue
        )
        assert await handle.query(Stages.current_stage) == "waiting"
        t0 = await env.get_current_time()
        await env.sleep(timedelta(hours=12))
        t1 = await env.get_current_time()
        assert timedelta(hours=12) <= t1 - t0 < timedelta(hours=13)
        assert await handle.query(Stages.current_stage) == "waiting"
        await env.sleep(timedelta(hours=13))
        assert await handle.query(Stages.current_stage) == "woke"
        await handle.signal(Stages.done)
        assert await handle.result() == "finished"


async def test_time_is_locked_unless_a_result_is_awaited(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [LongSleep]):
        handle = await env.client.start_workflow(
            LongSleep.run, 3600.0, id=f"locked-{queue}", task_queue=queue
        )
        t0 = await env.get_current_time()
        await asyncio.sleep(1.0)
        desc = await handle.describe()
        t1 = await env.get_current_time()
        # Locked: the timer has not fired, and time moved only with the wall clock.
        assert desc.status == WorkflowExecutionStatus.RUNNING
        assert t1 - t0 < timedelta(seconds=30)
        started = time.monotonic()
        before, after = await handle.result()
        assert time.monotonic() - started < 2.0
        assert _ts(after) - _ts(before) >= timedelta(hours=1)


async def test_auto_skipping_disabled_runs_at_wall_pace(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [LongSleep]):
        with env.auto_time_skipping_disabled():
            started = time.monotonic()
            await env.client.execute_workflow(
                LongSleep.run, 2.0, id=f"wall-{queue}", task_queue=queue
            )
            assert time.monotonic() - started >= 1.9


async def test_a_signal_mid_sleep_wakes_the_workflow(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [WaitForSignal]):
        handle = await env.client.start_workflow(
            WaitForSignal.run, id=f"signal-{queue}", task_queue=queue
        )
        await env.sleep(2 * DAY)
        await handle.signal(WaitForSignal.wake)
        signalled, waited = await handle.result()
    assert signalled is True
    assert 2 * DAY.total_seconds() <= waited < 3 * DAY.total_seconds(), waited
    # Without the signal the wait times out after a week of virtual time.
    async with _worker(env, queue, [WaitForSignal]):
        signalled, waited = await env.client.execute_workflow(
            WaitForSignal.run, id=f"nosignal-{queue}", task_queue=queue
        )
    assert signalled is False
    assert waited >= 7 * DAY.total_seconds()


async def test_an_hourly_schedule_fires_168_times_in_a_simulated_week(
    env: WorkflowEnvironment,
):
    queue = _queue()
    schedule_id = f"hourly-{queue}"
    async with _worker(env, queue, [Tick]):
        handle = await env.client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    Tick.run, id=f"tick-{queue}", task_queue=queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            ),
        )
        started = time.monotonic()
        await env.sleep(7 * DAY)
        wall = time.monotonic() - started
        desc = await handle.describe()
        # Visibility sees every run the schedule started (all closed, an hour apart).
        runs = [
            wf
            async for wf in env.client.list_workflows(
                f"TemporalScheduledById = '{schedule_id}'"
            )
        ]
        await handle.delete()
    print(f"a simulated week of hourly actions: {wall:.1f} s of wall time")
    assert 167 <= desc.info.num_actions <= 168, desc.info.num_actions
    assert len(runs) == desc.info.num_actions
    assert all(r.status == WorkflowExecutionStatus.COMPLETED for r in runs)
    starts = sorted(r.start_time for r in runs)
    gaps = {round((b - a).total_seconds() / 60) for a, b in zip(starts, starts[1:])}
    assert gaps == {60}, gaps
    times = [a.scheduled_at for a in desc.info.recent_actions]
    assert all(t.minute == 0 and t.second == 0 for t in times), times


async def test_workflow_now_matches_the_environment_time(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [LongSleep]):
        env_before = await env.get_current_time()
        before, after = await env.client.execute_workflow(
            LongSleep.run, (5 * DAY).total_seconds(), id=f"now-{queue}", task_queue=queue
        )
        env_after = await env.get_current_time()
    slack = timedelta(seconds=5)
    assert env_before - slack <= _ts(before) <= env_before + slack
    assert _ts(after) - _ts(before) >= 5 * DAY
    assert _ts(after) <= env_after <= _ts(after) + slack


async def test_a_delayed_start_is_skipped(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [Tick]):
        env_before = await env.get_current_time()
        handle = await env.client.start_workflow(
            Tick.run, id=f"delay-{queue}", task_queue=queue, start_delay=3 * DAY
        )
        ran_at = _ts(await handle.result())
    assert ran_at - env_before >= 3 * DAY


async def test_child_workflows_sleep_in_virtual_time(env: WorkflowEnvironment):
    queue = _queue()
    async with _worker(env, queue, [Parent, SleepyChild]):
        started = time.monotonic()
        results, elapsed = await env.client.execute_workflow(
            Parent.run, id=f"parent-{queue}", task_queue=queue
        )
        wall = time.monotonic() - started
    assert results == ["slept 2 days", "slept 5 days"]
    assert 5 * DAY.total_seconds() <= elapsed < 6 * DAY.total_seconds(), elapsed
    assert wall < 5.0, wall


async def test_a_cron_workflow_runs_every_hour_in_virtual_time(env: WorkflowEnvironment):
    queue = _queue()
    workflow_id = f"cron-{queue}"
    async with _worker(env, queue, [Tick]):
        handle = await env.client.start_workflow(
            Tick.run, id=workflow_id, task_queue=queue, cron_schedule="0 * * * *"
        )
        await env.sleep(timedelta(hours=5))
        runs = [
            wf
            async for wf in env.client.list_workflows(f"WorkflowId = '{workflow_id}'")
        ]
        await handle.terminate("test over")
    completed = sorted(
        r.start_time for r in runs if r.status == WorkflowExecutionStatus.COMPLETED
    )
    # Five hourly firings, each a run (the last one's successor waits for the next hour).
    assert 4 <= len(completed) <= 5, [(r.status, r.start_time) for r in runs]


async def test_updates_and_search_attributes_in_virtual_time(env: WorkflowEnvironment):
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                REVIEW_STATE.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
            },
        )
    )
    queue = _queue()
    async with _worker(env, queue, [Approval]):
        handle = await env.client.start_workflow(
            Approval.run,
            id=f"approval-{queue}",
            task_queue=queue,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(REVIEW_STATE, "pending")]
            ),
        )
        assert await handle.execute_update(Approval.approve, "ada") == "ok ada"
        assert await handle.result() == "approved by ada"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(REVIEW_STATE) == "archived"
    assert desc.close_time is not None and desc.close_time - desc.start_time >= 10 * DAY
    found = [
        wf.id
        async for wf in env.client.list_workflows(
            f"ReviewState = 'archived' AND WorkflowType = 'Approval'"
        )
    ]
    assert found == [handle.id]
    count = await env.client.count_workflows("ExecutionStatus = 'Completed'")
    assert count.count >= 1


async def test_an_activity_sleeping_the_environment_times_out_on_heartbeat(
    env: WorkflowEnvironment,
):
    queue = _queue()
    _heartbeat_env[queue] = env
    try:
        async with _worker(env, queue, [HeartbeatTimeout], [sleeps_past_heartbeat]):
            started = time.monotonic()
            with pytest.raises(WorkflowFailureError) as failure:
                await env.client.execute_workflow(
                    HeartbeatTimeout.run, queue, id=f"hb-{queue}", task_queue=queue
                )
            wall = time.monotonic() - started
    finally:
        _heartbeat_env.pop(queue, None)
    cause = failure.value.cause
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, TimeoutError)
    assert cause.cause.type == TimeoutType.HEARTBEAT
    assert wall < 10.0, wall


TS_DIR = Path(__file__).resolve().parent / "ts"


@pytest.mark.skipif(
    shutil.which("node") is None
    or not (TS_DIR / "node_modules" / "@temporalio" / "testing").exists(),
    reason="needs node and conformance/ts/node_modules (scripts/test.sh runs npm ci there)",
)
async def test_typescript_time_skipping_environment():
    """TypeScript's TestWorkflowEnvironment.createTimeSkipping on the same binary: timers,
    activity retries and env.sleep (conformance/ts/time-skipping)."""
    env = dict(
        os.environ, SUNDIAL_TEST_SERVER_BIN=str(_test_server_path()), NO_COLOR="1"
    )
    proc = await asyncio.to_thread(
        subprocess.run,
        ["node", "--test", "--test-reporter=tap", "time-skipping/time_skipping.test.js"],
        cwd=TS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    output = f"{proc.stdout}\n{proc.stderr}"
    print(output)
    assert proc.returncode == 0, output
    passed = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert len(passed) == 3, output
