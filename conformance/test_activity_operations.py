"""Operating live activities (issue 23): PauseActivity, UnpauseActivity, ResetActivity and
UpdateActivityOptions, through the Python SDK and ``temporal activity pause / unpause / reset /
update-options``, checked against what the reference server does:

* none of them writes a history event; they change the pending activity that
  DescribeWorkflowExecution shows (``paused``, ``pause_info``, state PAUSED or PAUSE_REQUESTED,
  ``attempt``, ``activity_options``);
* a running attempt continues when paused: its heartbeats report the pause (the SDK cancels it
  with ``cancellation_details().paused``), and when it fails the next attempt waits, not
  dispatched, until the activity is unpaused;
* a reset starts the attempt count over; the running attempt's heartbeats report
  ``activity_reset``;
* updated options apply to the running attempt's deadlines and the next attempts (task queue
  included);
* the pause is in the run's persisted state: it survives a kill -9 and restart.

The scenarios follow the Python SDK's tests ``test_activity_pause_unpause``,
``test_activity_pause_cancellation_details``, ``test_external_activity_cancellation_details``,
``test_activity_reset_catch`` and ``test_activity_reset_history``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.activity import ActivityCancellationDetails
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import (
    PauseActivityRequest,
    ResetActivityRequest,
    UnpauseActivityRequest,
    UpdateActivityOptionsRequest,
)
from temporalio.client import AsyncActivityCancelledError, Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from conftest import unique

TEMPORAL = os.environ.get("TEMPORAL_CLI") or str(
    Path(__file__).resolve().parent.parent / ".venv" / "bin" / "temporal"
)
if not Path(TEMPORAL).exists():
    TEMPORAL = "/work/main/.venv/bin/temporal"

# Activities that catch the cancellation a pause causes wait here (when the test registered an
# event for their activity id) until the test has seen the pause in DescribeWorkflowExecution.
_release: dict[str, threading.Event] = {}


def _wait_released(activity_id: str) -> None:
    event = _release.get(activity_id)
    if event is not None:
        event.wait(10)


async def eventually(check, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


async def pending(handle: WorkflowHandle, activity_id: str):
    desc = await handle.describe()
    for a in desc.raw_description.pending_activities:
        if a.activity_id == activity_id:
            return a
    return None


async def pending_eventually(handle: WorkflowHandle, activity_id: str):
    async def check():
        a = await pending(handle, activity_id)
        assert a is not None, f"activity {activity_id} not pending"
        return a

    return await eventually(check)


def execution(handle: WorkflowHandle) -> WorkflowExecution:
    return WorkflowExecution(workflow_id=handle.id, run_id=handle.result_run_id or "")


async def pause_and_see_it(client: Client, handle: WorkflowHandle, activity_id: str) -> None:
    _release[activity_id] = threading.Event()
    try:
        await client.workflow_service.pause_activity(
            PauseActivityRequest(
                namespace=client.namespace, execution=execution(handle), id=activity_id
            )
        )

        async def paused():
            a = await pending_eventually(handle, activity_id)
            assert a.paused, f"{activity_id} not paused yet"

        await eventually(paused)
    finally:
        _release.pop(activity_id).set()


async def unpause_and_see_it(client: Client, handle: WorkflowHandle, activity_id: str) -> None:
    await client.workflow_service.unpause_activity(
        UnpauseActivityRequest(namespace=client.namespace, execution=execution(handle), id=activity_id)
    )

    async def unpaused():
        a = await pending(handle, activity_id)
        assert a is None or not a.paused, f"{activity_id} still paused"

    await eventually(unpaused)


# ---------------------------------------------------------------------------------------------
# Heartbeating activities paused while they run (sdk-python test_activity_pause_*)


@activity.defn
async def beat_async(catch: bool) -> ActivityCancellationDetails | None:
    try:
        while True:
            activity.heartbeat()
            if activity.info().heartbeat_details:
                # A later attempt, after an unpause: the previous one left its details.
                return activity.cancellation_details()
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        if not catch:
            raise
        await asyncio.get_running_loop().run_in_executor(
            None, _wait_released, activity.info().activity_id
        )
        return activity.cancellation_details()
    finally:
        activity.heartbeat("finally")


@activity.defn
def beat_sync(catch: bool) -> ActivityCancellationDetails | None:
    try:
        while True:
            activity.heartbeat()
            if activity.info().heartbeat_details:
                return activity.cancellation_details()
            time.sleep(0.1)
    except CancelledError:
        if not catch:
            raise
        _wait_released(activity.info().activity_id)
        return activity.cancellation_details()
    finally:
        activity.heartbeat("finally")


@workflow.defn
class TwoBeatingActivities:
    @workflow.run
    async def run(self, activity_id: str, catch: bool, attempts: int) -> list:
        out = []
        for fn, suffix in ((beat_sync, ""), (beat_async, "-2")):
            out.append(
                await workflow.execute_activity(
                    fn,
                    catch,
                    activity_id=activity_id + suffix,
                    start_to_close_timeout=timedelta(seconds=20),
                    heartbeat_timeout=timedelta(seconds=2),
                    retry_policy=RetryPolicy(maximum_attempts=attempts),
                )
            )
        return out


def beating_worker(client: Client, executor) -> Worker:
    return Worker(
        client,
        task_queue=unique("tq-actops"),
        workflows=[TwoBeatingActivities],
        activities=[beat_async, beat_sync],
        activity_executor=executor,
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_heartbeat_throttle_interval=timedelta(milliseconds=300),
        default_heartbeat_throttle_interval=timedelta(milliseconds=300),
    )


async def test_pause_cancels_the_running_attempt_with_paused_details(client: Client):
    with concurrent.futures.ThreadPoolExecutor() as executor:
        async with beating_worker(client, executor) as worker:
            aid = unique("beat")
            handle = await client.start_workflow(
                TwoBeatingActivities.run,
                args=[aid, True, 1],
                id=unique("wf-pause-details"),
                task_queue=worker.task_queue,
            )
            for activity_id in (aid, f"{aid}-2"):
                info = await pending_eventually(handle, activity_id)
                assert not info.paused
                await pause_and_see_it(client, handle, activity_id)
            result = await handle.result()
    assert [ActivityCancellationDetails(**r) if isinstance(r, dict) else r for r in result] == [
        ActivityCancellationDetails(paused=True),
        ActivityCancellationDetails(paused=True),
    ]


async def test_paused_attempt_that_fails_waits_for_unpause(client: Client, history_types):
    with concurrent.futures.ThreadPoolExecutor() as executor:
        async with beating_worker(client, executor) as worker:
            aid = unique("beat")
            handle = await client.start_workflow(
                TwoBeatingActivities.run,
                args=[aid, False, 2],
                id=unique("wf-pause-unpause"),
                task_queue=worker.task_queue,
            )
            for activity_id in (aid, f"{aid}-2"):
                assert not (await pending_eventually(handle, activity_id)).paused
                await pause_and_see_it(client, handle, activity_id)

                # The attempt saw the pause, failed, and left its last heartbeat; the next
                # attempt is counted and waits.
                async def failed_and_waiting():
                    a = await pending(handle, activity_id)
                    assert a is not None
                    assert len(a.heartbeat_details.payloads) > 0, "no heartbeat details yet"
                    assert a.attempt == 2, a
                    assert a.state == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED, a
                    return a

                waiting = await eventually(failed_and_waiting)
                assert waiting.paused and waiting.pause_info.pause_time.seconds > 0
                assert waiting.last_failure.message.startswith("Unhandled activity cancel")
                await asyncio.sleep(1.5)  # past any backoff: still not dispatched
                again = await pending(handle, activity_id)
                assert again.state == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED
                await unpause_and_see_it(client, handle, activity_id)
            assert await handle.result() == [None, None]
    types = await history_types(handle)
    # Pausing and unpausing wrote nothing: each activity is scheduled, started, completed.
    assert types.count("ACTIVITY_TASK_SCHEDULED") == 2
    assert types.count("ACTIVITY_TASK_STARTED") == 2
    assert types.count("ACTIVITY_TASK_COMPLETED") == 2
    assert "ACTIVITY_TASK_FAILED" not in types


@activity.defn
async def completes_elsewhere() -> str:
    activity.raise_complete_async()


@workflow.defn
class AsyncCompletion:
    @workflow.run
    async def run(self, activity_id: str) -> str:
        return await workflow.execute_activity(
            completes_elsewhere,
            activity_id=activity_id,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=2),
        )


def async_worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AsyncCompletion],
        activities=[completes_elsewhere],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def test_heartbeat_by_id_reports_the_pause(client: Client, task_queue: str):
    async with async_worker(client, task_queue):
        aid = unique("ext")
        handle = await client.start_workflow(
            AsyncCompletion.run, aid, id=unique("wf-ext-pause"), task_queue=task_queue
        )
        info = await pending_eventually(handle, aid)
        assert not info.paused
        external = client.get_async_activity_handle(
            workflow_id=handle.id, run_id=handle.result_run_id, activity_id=aid
        )
        await external.heartbeat()
        await pause_and_see_it(client, handle, aid)
        with pytest.raises(AsyncActivityCancelledError) as err:
            await external.heartbeat()
        assert err.value.details == ActivityCancellationDetails(paused=True)
        # Still completable while paused.
        await external.complete("done")
        assert await handle.result() == "done"


# ---------------------------------------------------------------------------------------------
# Reset (sdk-python test_activity_reset_*)


async def _reset_myself(client: Client) -> None:
    info = activity.info()
    await client.workflow_service.reset_activity(
        ResetActivityRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(
                workflow_id=info.workflow_id or "", run_id=info.workflow_run_id or ""
            ),
            id=info.activity_id,
        )
    )


def reset_activities(client: Client):
    @activity.defn(name="reset_catch_async")
    async def reset_catch_async() -> str:
        await _reset_myself(client)
        try:
            while True:
                await asyncio.sleep(0.3)
                activity.heartbeat()
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            assert details is not None
            return f"reset? {details.reset}"

    @activity.defn(name="reset_catch_sync")
    def reset_catch_sync() -> str:
        asyncio.run(_reset_myself(client))
        try:
            while True:
                time.sleep(0.3)
                activity.heartbeat()
        except CancelledError:
            details = activity.cancellation_details()
            assert details is not None
            return f"reset? {details.reset}"

    @activity.defn(name="reset_uncaught")
    async def reset_uncaught() -> str:
        await _reset_myself(client)
        while True:
            await asyncio.sleep(0.3)
            activity.heartbeat()

    return [reset_catch_async, reset_catch_sync, reset_uncaught]


@workflow.defn
class RunOneActivity:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            name,
            start_to_close_timeout=timedelta(seconds=20),
            heartbeat_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_reset_is_reported_to_the_running_attempt(client: Client, task_queue: str):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[RunOneActivity],
            activities=reset_activities(client),
            activity_executor=executor,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            for name in ("reset_catch_async", "reset_catch_sync"):
                result = await client.execute_workflow(
                    RunOneActivity.run, name, id=unique("wf-reset-catch"), task_queue=task_queue
                )
                assert result == "reset? True", name


async def test_reset_uncaught_fails_the_attempt(client: Client, task_queue: str, history_types):
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[RunOneActivity],
        activities=[a for a in reset_activities(client) if a.__name__ == "reset_uncaught"],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            RunOneActivity.run, "reset_uncaught", id=unique("wf-reset-hist"), task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
    assert isinstance(err.value.cause, ActivityError)
    assert isinstance(err.value.cause.cause, ApplicationError)
    assert err.value.cause.cause.message == "Unhandled activity cancel error produced by activity reset"
    assert (await history_types(handle))[4:7] == [
        "ACTIVITY_TASK_SCHEDULED",
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_FAILED",
    ]


# ---------------------------------------------------------------------------------------------
# Retries, deadlines and queues of paused and updated activities


@activity.defn
async def fails_twice() -> str:
    if activity.info().attempt < 3:
        raise ApplicationError(f"attempt {activity.info().attempt}")
    return f"attempt {activity.info().attempt}"


@activity.defn
async def slow_first_attempt() -> str:
    if activity.info().attempt == 1:
        await asyncio.sleep(30)
    return f"attempt {activity.info().attempt}"


@workflow.defn
class Retried:
    @workflow.run
    async def run(self, name: str, activity_id: str) -> str:
        return await workflow.execute_activity(
            name,
            activity_id=activity_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=1),
        )


def retry_worker(client: Client, task_queue: str, **kwargs) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[Retried],
        activities=[fails_twice, slow_first_attempt],
        workflow_runner=UnsandboxedWorkflowRunner(),
        **kwargs,
    )


async def test_paused_retry_is_not_dispatched_until_unpaused(client: Client, task_queue: str):
    async with retry_worker(client, task_queue):
        handle = await client.start_workflow(
            Retried.run, args=["fails_twice", "a1"], id=unique("wf-pause-retry"), task_queue=task_queue
        )

        async def in_backoff():
            a = await pending_eventually(handle, "a1")
            assert a.attempt == 2 and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED, a

        await eventually(in_backoff)
        await client.workflow_service.pause_activity(
            PauseActivityRequest(namespace=client.namespace, execution=execution(handle), id="a1", reason="hold")
        )
        await asyncio.sleep(2.5)  # the 1 s backoff passed long ago
        a = await pending(handle, "a1")
        assert a.state == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED, a
        assert a.attempt == 2 and a.paused
        assert a.pause_info.manual.reason == "hold"
        query = f"WorkflowId = '{handle.id}' AND TemporalPauseInfo = 'property:activityType=fails_twice'"

        async def listed():
            assert (await client.count_workflows(query)).count == 1

        await eventually(listed)
        await client.workflow_service.unpause_activity(
            UnpauseActivityRequest(
                namespace=client.namespace, execution=execution(handle), id="a1", reset_attempts=True
            )
        )
        # Attempts counted from 1 again: two more failures before the third attempt succeeds.
        assert await handle.result() == "attempt 3"

    async def unlisted():
        assert (await client.count_workflows(query)).count == 0

    await eventually(unlisted)


async def test_updated_start_to_close_applies_to_the_running_attempt(client: Client, task_queue: str):
    async with retry_worker(client, task_queue):
        handle = await client.start_workflow(
            Retried.run,
            args=["slow_first_attempt", "a1"],
            id=unique("wf-update-timeout"),
            task_queue=task_queue,
        )

        async def started():
            a = await pending_eventually(handle, "a1")
            assert a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED, a

        await eventually(started)
        started_at = time.monotonic()
        resp = await client.workflow_service.update_activity_options(
            UpdateActivityOptionsRequest(
                namespace=client.namespace,
                execution=execution(handle),
                id="a1",
                activity_options={"start_to_close_timeout": {"seconds": 2}},
                update_mask={"paths": ["start_to_close_timeout"]},
            )
        )
        assert resp.activity_options.start_to_close_timeout.seconds == 2
        assert await handle.result() == "attempt 2"
        assert time.monotonic() - started_at < 15


async def test_update_options_moves_a_waiting_activity_to_another_queue(client: Client, task_queue: str):
    other = unique("tq-other")
    # The workflow's worker runs no activities: the activity waits on the workflow's queue.
    async with Worker(
        client, task_queue=task_queue, workflows=[Retried], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await client.start_workflow(
            Retried.run, args=["fails_twice", "a1"], id=unique("wf-update-queue"), task_queue=task_queue
        )
        await pending_eventually(handle, "a1")
        await client.workflow_service.update_activity_options(
            UpdateActivityOptionsRequest(
                namespace=client.namespace,
                execution=execution(handle),
                id="a1",
                activity_options={"task_queue": {"name": other}},
                update_mask={"paths": ["task_queue.name"]},
            )
        )
        a = await pending(handle, "a1")
        assert a.activity_options.task_queue.name == other
        async with Worker(client, task_queue=other, activities=[fails_twice]):
            assert await handle.result() == "attempt 3"


# ---------------------------------------------------------------------------------------------
# The CLI


def cli(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TEMPORAL, *args, "--address", address, "--namespace", "default"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def described_activity(address: str, workflow_id: str, activity_id: str) -> dict:
    out = cli(address, "workflow", "describe", "-w", workflow_id, "--output", "json")
    assert out.returncode == 0, out.stderr
    for a in json.loads(out.stdout).get("pendingActivities", []):
        if a["activityId"] == activity_id:
            return a
    raise AssertionError(f"{activity_id} not pending: {out.stdout}")


async def test_cli_pause_update_reset_unpause(client: Client, server_address: str, task_queue: str):
    async with async_worker(client, task_queue):
        aid = "a1"
        wid = unique("wf-cli-actops")
        handle = await client.start_workflow(AsyncCompletion.run, aid, id=wid, task_queue=task_queue)

        async def started():
            a = await pending_eventually(handle, aid)
            assert a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED

        await eventually(started)
        out = cli(server_address, "activity", "pause", "-w", wid, "-a", aid, "--reason", "because", "--identity", "me")
        assert out.returncode == 0, out.stderr
        a = described_activity(server_address, wid, aid)
        assert a["state"] == "PENDING_ACTIVITY_STATE_PAUSE_REQUESTED"
        assert a["paused"] is True
        assert a["pauseInfo"]["manual"] == {"identity": "me", "reason": "because"}
        assert a["attempt"] == 1
        assert a["activityOptions"]["startToCloseTimeout"] == "60s"
        assert a["activityOptions"]["heartbeatTimeout"] == "30s"
        assert a["activityOptions"]["retryPolicy"]["maximumAttempts"] == 2

        again = cli(server_address, "activity", "pause", "-w", wid, "-a", aid)
        assert again.returncode != 0 and "activity is already paused" in again.stderr
        unknown = cli(server_address, "activity", "pause", "-w", wid, "-a", "nope")
        assert unknown.returncode != 0 and "Can't find pending activity" in unknown.stderr

        out = cli(
            server_address, "activity", "update-options", "-w", wid, "-a", aid,
            "--start-to-close-timeout", "45s", "--heartbeat-timeout", "50s", "--retry-maximum-attempts", "7",
        )
        assert out.returncode == 0, out.stderr
        shown = dict(line.split(None, 1) for line in out.stdout.strip().splitlines())
        assert shown["StartToCloseTimeout"] == "45s"
        assert shown["HeartbeatTimeout"] == "45s", "capped by start-to-close"
        assert shown["MaximumAttempts"] == "7"
        bad = cli(server_address, "activity", "update-options", "-w", wid, "-a", aid, "--retry-backoff-coefficient", "0.5")
        assert bad.returncode != 0 and "BackoffCoefficient cannot be less than 1" in bad.stderr
        a = described_activity(server_address, wid, aid)
        assert a["activityOptions"]["startToCloseTimeout"] == "45s"
        assert a["maximumAttempts"] == 7

        out = cli(server_address, "activity", "reset", "-w", wid, "-a", aid, "--keep-paused")
        assert out.returncode == 0, out.stderr
        a = described_activity(server_address, wid, aid)
        assert a["paused"] is True and a["attempt"] == 1
        assert a["state"] == "PENDING_ACTIVITY_STATE_PAUSE_REQUESTED"

        out = cli(server_address, "activity", "unpause", "-w", wid, "-a", aid)
        assert out.returncode == 0, out.stderr
        assert cli(server_address, "activity", "unpause", "-w", wid, "-a", aid).returncode == 0
        a = described_activity(server_address, wid, aid)
        assert a["state"] == "PENDING_ACTIVITY_STATE_STARTED"
        assert "paused" not in a and "pauseInfo" not in a

        await client.get_async_activity_handle(workflow_id=wid, run_id=None, activity_id=aid).complete("ok")
        assert await handle.result() == "ok"

    closed = cli(server_address, "activity", "pause", "-w", wid, "-a", aid)
    assert closed.returncode != 0 and "workflow execution already completed" in closed.stderr
    shown = cli(server_address, "workflow", "show", "-w", wid, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    types = [e["eventType"].removeprefix("EVENT_TYPE_") for e in json.loads(shown.stdout)["events"]]
    assert types == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "ACTIVITY_TASK_SCHEDULED",
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_COMPLETED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ]


# ---------------------------------------------------------------------------------------------
# Bad input


async def test_bad_requests_are_refused(client: Client, task_queue: str):
    async with async_worker(client, task_queue):
        handle = await client.start_workflow(
            AsyncCompletion.run, "a1", id=unique("wf-actops-bad"), task_queue=task_queue
        )
        await pending_eventually(handle, "a1")
        ex = execution(handle)
        svc = client.workflow_service
        ns = client.namespace
        cases = [
            (svc.pause_activity(PauseActivityRequest(namespace=ns, execution=ex)),
             RPCStatusCode.INVALID_ARGUMENT, "Either Activity.Id or Activity.Type should be set on request."),
            (svc.pause_activity(PauseActivityRequest(namespace=ns, id="a1")),
             RPCStatusCode.INVALID_ARGUMENT, "WorkflowId is not set on request."),
            (svc.unpause_activity(UnpauseActivityRequest(namespace=ns, execution=ex)),
             RPCStatusCode.INVALID_ARGUMENT, "Either Activity.Id or Activity.Type should be set on request."),
            (svc.update_activity_options(UpdateActivityOptionsRequest(namespace=ns, execution=ex, id="a1")),
             RPCStatusCode.INVALID_ARGUMENT, "ActivityOptions are not provided"),
            (svc.update_activity_options(
                UpdateActivityOptionsRequest(namespace=ns, execution=ex, id="a1", activity_options={})),
             RPCStatusCode.INVALID_ARGUMENT, "UpdateMask is not provided"),
            (svc.pause_activity(PauseActivityRequest(namespace=ns, execution=ex, type="no_such_type")),
             RPCStatusCode.NOT_FOUND, "Can't find pending activity"),
            (svc.reset_activity(ResetActivityRequest(namespace=ns, execution=ex, id="nope")),
             RPCStatusCode.NOT_FOUND, "Can't find pending activity"),
            (svc.pause_activity(
                PauseActivityRequest(namespace=ns, execution=WorkflowExecution(workflow_id=unique("none")), id="a1")),
             RPCStatusCode.NOT_FOUND, ""),
        ]
        for call, status, message in cases:
            with pytest.raises(RPCError) as err:
                await call
            assert err.value.status == status, err.value.message
            assert message in err.value.message, err.value.message
        await handle.terminate()


# ---------------------------------------------------------------------------------------------
# Durability (Sundial only: the reference dev server keeps nothing across restarts)


async def test_pause_survives_a_hard_restart(external_address, sundial_factory):
    if external_address:
        pytest.skip("restarts a Sundial process of its own")
    server = sundial_factory()
    await server.start()
    client = await Client.connect(server.address, namespace="default")
    task_queue = unique("tq-actops-restart")
    # No activity worker yet: the activity waits, scheduled, and is paused so.
    async with Worker(client, task_queue=task_queue, workflows=[Retried], workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await client.start_workflow(
            Retried.run, args=["fails_twice", "a1"], id=unique("wf-actops-restart"), task_queue=task_queue
        )
        await pending_eventually(handle, "a1")
        await client.workflow_service.pause_activity(
            PauseActivityRequest(namespace="default", execution=execution(handle), id="a1", reason="restart")
        )
    await server.restart(hard=True)
    client = await Client.connect(server.address, namespace="default")
    handle = client.get_workflow_handle(handle.id)
    a = await pending(handle, "a1")
    assert a.paused and a.pause_info.manual.reason == "restart"
    assert a.state == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED
    async with retry_worker(client, task_queue):
        await asyncio.sleep(1.5)
        a = await pending(handle, "a1")
        assert a.state == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED, "dispatched while paused"
        await client.workflow_service.unpause_activity(
            UnpauseActivityRequest(namespace="default", execution=execution(handle), id="a1")
        )
        assert await handle.result() == "attempt 3"


# ---------------------------------------------------------------------------------------------
# Targets other than one id: a type, all pending activities


@workflow.defn
class TwoAsyncActivities:
    @workflow.run
    async def run(self) -> list:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        completes_elsewhere,
                        activity_id=aid,
                        start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=RetryPolicy(maximum_attempts=3),
                    )
                    for aid in ("x", "y")
                )
            )
        )


async def test_pause_by_type_unpause_all_reset_all_restore_options(
    client: Client, server_address: str, task_queue: str
):
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[TwoAsyncActivities],
        activities=[completes_elsewhere],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            TwoAsyncActivities.run, id=unique("wf-actops-all"), task_queue=task_queue
        )
        for aid in ("x", "y"):
            await pending_eventually(handle, aid)
        ex, ns, svc = execution(handle), client.namespace, client.workflow_service
        await svc.pause_activity(PauseActivityRequest(namespace=ns, execution=ex, type="completes_elsewhere"))
        for aid in ("x", "y"):
            assert (await pending(handle, aid)).paused
        await svc.update_activity_options(
            UpdateActivityOptionsRequest(
                namespace=ns,
                execution=ex,
                match_all=True,
                activity_options={"start_to_close_timeout": {"seconds": 40}},
                update_mask={"paths": ["start_to_close_timeout"]},
            )
        )
        for aid in ("x", "y"):
            assert (await pending(handle, aid)).activity_options.start_to_close_timeout.seconds == 40
        await svc.unpause_activity(UnpauseActivityRequest(namespace=ns, execution=ex, unpause_all=True))
        for aid in ("x", "y"):
            assert not (await pending(handle, aid)).paused
        await svc.reset_activity(
            ResetActivityRequest(namespace=ns, execution=ex, match_all=True, restore_original_options=True)
        )
        for aid in ("x", "y"):
            a = await pending(handle, aid)
            assert a.activity_options.start_to_close_timeout.seconds == 60, a
            assert a.attempt == 1
        out = cli(server_address, "activity", "update-options", "-w", handle.id, "-a", "x", "--restore-original-options")
        assert out.returncode == 0, out.stderr
        for aid in ("x", "y"):
            await client.get_async_activity_handle(workflow_id=handle.id, run_id=None, activity_id=aid).complete(aid)
        assert await handle.result() == ["x", "y"]
