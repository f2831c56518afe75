"""ResetWorkflowExecution as the reference server does it: the new run's history is the old
run's up to the chosen workflow task, then WorkflowTaskFailed (RESET_WORKFLOW), the signals
that came after the cut, and a new workflow task; the old run is terminated; DescribeWorkflow
shows the reset points. Driven through the SDK client's raw service call and the `temporal`
CLI; the expectations were checked against the reference dev server (SUNDIAL_ADDRESS).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    EventType,
    ResetReapplyExcludeType,
    ResetReapplyType,
    UpdateAdmittedEventOrigin,
    WorkflowExecutionStatus,
    WorkflowTaskFailedCause,
)
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from test_cli import find_temporal_cli


@activity.defn
async def reset_echo(x: str) -> str:
    return "got " + x


@workflow.defn
class ResetProbe:
    """Runs an activity, then waits for two signals and returns them."""

    def __init__(self) -> None:
        self.signals: list[str] = []

    @workflow.signal
    def sig(self, value: str) -> None:
        self.signals.append(value)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.execute_activity(reset_echo, "a", start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: len(self.signals) >= 2)
        return self.signals


def worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ResetProbe],
        activities=[reset_echo],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


def names(events) -> list[str]:
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events]


async def events_of(client: Client, workflow_id: str, run_id: str = "") -> list:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id or None)
    return list((await handle.fetch_history()).events)


async def wait_for(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def idle_after(client: Client, handle: WorkflowHandle, n_completed: int) -> list:
    """Waits until the run has `n_completed` completed workflow tasks and none pending."""
    events: list = []

    async def ready() -> bool:
        nonlocal events
        events = await events_of(client, handle.id, handle.result_run_id or "")
        completed = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        return len(completed) >= n_completed and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED

    await wait_for(ready, f"{n_completed} completed workflow tasks")
    return events


def completed_ids(events) -> list[int]:
    return [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]


async def reset(client: Client, workflow_id: str, event_id: int, *, run_id: str = "", reason: str = "test reset",
                request_id: str | None = None, exclude: list[int] | None = None) -> str:
    resp = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            reason=reason,
            workflow_task_finish_event_id=event_id,
            request_id=request_id or str(uuid.uuid4()),
            reset_reapply_exclude_types=exclude or [],
        )
    )
    return resp.run_id


async def describe(client: Client, workflow_id: str, run_id: str = ""):
    return await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
        )
    )


async def test_reset_to_the_first_task_copies_its_prefix_terminates_the_old_run_and_reapplies_signals(
    client: Client, task_queue
):
    wid = f"reset-first-{uuid.uuid4()}"
    async with worker(client, task_queue):
        handle = await client.start_workflow(ResetProbe.run, id=wid, task_queue=task_queue)
        old_run = handle.result_run_id
        await idle_after(client, handle, 2)
        await handle.signal(ResetProbe.sig, "s1")
        old_events = await idle_after(client, handle, 3)
        first = completed_ids(old_events)[0]
        assert first == 4

        new_run = await reset(client, wid, first, reason="back to the start")
        assert new_run and new_run != old_run

        old_after = await events_of(client, wid, old_run)
        terminated = old_after[-1]
        assert terminated.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
        attrs = terminated.workflow_execution_terminated_event_attributes
        assert attrs.reason == "back to the start"
        assert attrs.identity == "history-resetter"

        await handle.signal(ResetProbe.sig, "s2")
        result = await client.get_workflow_handle(wid).result()
        assert result == ["s1", "s2"], "the signal after the cut was reapplied, then s2 arrived"

    new_events = await events_of(client, wid, new_run)
    assert names(new_events)[:6] == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_FAILED",
        "WORKFLOW_EXECUTION_SIGNALED",
        "WORKFLOW_TASK_SCHEDULED",
    ]
    for copied, original in zip(new_events[:3], old_events[:3]):
        assert copied == original, "events before the cut are copied as they were"
    failed = new_events[3].workflow_task_failed_event_attributes
    assert failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
    assert (failed.scheduled_event_id, failed.started_event_id) == (2, 3)
    assert failed.base_run_id == old_run
    assert failed.new_run_id == new_run
    assert failed.identity == "history-service"
    assert failed.failure.message == "back to the start"
    assert failed.failure.HasField("reset_workflow_failure_info")
    signaled = new_events[4].workflow_execution_signaled_event_attributes
    assert signaled.signal_name == "sig"
    rescheduled = new_events[5].workflow_task_scheduled_event_attributes
    assert rescheduled.task_queue.name == task_queue, "the new task goes to the normal queue"
    assert [e.event_id for e in new_events] == list(range(1, len(new_events) + 1))

    info = (await describe(client, wid, new_run)).workflow_execution_info
    assert info.first_run_id == old_run
    assert info.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED
    old_info = (await describe(client, wid, old_run)).workflow_execution_info
    assert old_info.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED


async def test_reset_points_name_the_first_task_of_each_build(client: Client, task_queue):
    wid = f"reset-points-{uuid.uuid4()}"
    async with worker(client, task_queue):
        handle = await client.start_workflow(ResetProbe.run, id=wid, task_queue=task_queue)
        await idle_after(client, handle, 2)
        events = await events_of(client, wid)
        build_id = events[3].workflow_task_completed_event_attributes.worker_version.build_id
        info = (await describe(client, wid)).workflow_execution_info
        points = list(info.auto_reset_points.points)
        assert len(points) == 1, points
        point = points[0]
        assert point.build_id == build_id and build_id
        assert point.run_id == handle.result_run_id
        assert point.first_workflow_task_completed_id == 4
        assert point.resettable
        assert point.HasField("create_time")

        new_run = await reset(client, wid, 4)
        fresh = (await describe(client, wid, new_run)).workflow_execution_info
        assert not fresh.auto_reset_points.points, "a cut before any completion keeps no point"
        new_events = await idle_after(client, client.get_workflow_handle(wid, run_id=new_run), 2)
        new_first = completed_ids(new_events)[0]

        def summary(info):
            return [(p.build_id, p.run_id, p.first_workflow_task_completed_id) for p in info.auto_reset_points.points]

        assert summary((await describe(client, wid, new_run)).workflow_execution_info) == [
            (build_id, new_run, new_first)
        ]
        later = await reset(client, wid, completed_ids(new_events)[1])
        assert summary((await describe(client, wid, later)).workflow_execution_info) == [
            (build_id, later, new_first)
        ], "the points before the cut are kept, as the new run's own"
        await client.get_workflow_handle(wid).terminate("done")


async def test_a_completed_run_can_be_reset_and_signals_can_be_left_out(client: Client, task_queue):
    wid = f"reset-closed-{uuid.uuid4()}"
    async with worker(client, task_queue):
        handle = await client.start_workflow(ResetProbe.run, id=wid, task_queue=task_queue)
        await idle_after(client, handle, 2)
        await handle.signal(ResetProbe.sig, "a")
        await handle.signal(ResetProbe.sig, "b")
        assert await handle.result() == ["a", "b"]
        old_run = handle.result_run_id
        old_events = await events_of(client, wid, old_run)

        new_run = await reset(
            client, wid, completed_ids(old_events)[0],
            exclude=[ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL],
        )
        old_after = await events_of(client, wid, old_run)
        assert old_after == old_events, "a closed run is left as it was"
        await idle_after(client, client.get_workflow_handle(wid, run_id=new_run), 2)
        new_events = await events_of(client, wid, new_run)
        assert "WORKFLOW_EXECUTION_SIGNALED" not in names(new_events)
        info = (await describe(client, wid)).workflow_execution_info
        assert info.execution.run_id == new_run
        assert info.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        new_handle = client.get_workflow_handle(wid)
        await new_handle.signal(ResetProbe.sig, "c")
        await new_handle.signal(ResetProbe.sig, "d")
        assert await new_handle.result() == ["c", "d"]


async def test_cuts_off_a_task_boundary_are_refused(client: Client, task_queue):
    wid = f"reset-bad-{uuid.uuid4()}"
    async with worker(client, task_queue):
        handle = await client.start_workflow(ResetProbe.run, id=wid, task_queue=task_queue)
        await idle_after(client, handle, 2)
        out_of_range = "Workflow task finish ID must be > 1 && <= workflow last event ID."
        last = len(await events_of(client, wid))
        for event_id in (0, 1, last + 1, 999):
            with pytest.raises(RPCError) as err:
                await reset(client, wid, event_id)
            assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
            assert err.value.message == out_of_range
        with pytest.raises(RPCError) as err:
            await reset(client, wid, 2)
        assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
        assert "must be at the boundary" in err.value.message
        with pytest.raises(RPCError) as err:
            await reset(client, f"missing-{wid}", 4)
        assert err.value.status == RPCStatusCode.NOT_FOUND
        await handle.terminate("done")


@pytest.mark.skipif(bool(os.environ.get("SUNDIAL_ADDRESS")), reason="Sundial's request id dedup")
async def test_a_reset_repeated_with_its_request_id_finds_the_run_it_made(client: Client, task_queue):
    wid = f"reset-dedup-{uuid.uuid4()}"
    async with worker(client, task_queue):
        handle = await client.start_workflow(ResetProbe.run, id=wid, task_queue=task_queue)
        await idle_after(client, handle, 2)
        request_id = str(uuid.uuid4())
        first = await reset(client, wid, 4, request_id=request_id)
        again = await reset(client, wid, 4, request_id=request_id)
        assert again == first
        await client.get_workflow_handle(wid).terminate("done")


def cli(server_address: str, *args: str) -> subprocess.CompletedProcess:
    path = find_temporal_cli()
    if path is None:
        pytest.skip("no `temporal` CLI found")
    return subprocess.run(
        [path, *args, "--address", server_address, "--namespace", "default"],
        capture_output=True, text=True, timeout=60,
    )


async def test_the_cli_resets_to_the_first_and_last_task_and_to_an_event_id(
    client: Client, server_address, task_queue
):
    wid = f"reset-cli-{uuid.uuid4()}"
    async with worker(client, task_queue):
        handle = await client.start_workflow(ResetProbe.run, id=wid, task_queue=task_queue)
        await idle_after(client, handle, 2)
        await handle.signal(ResetProbe.sig, "s1")
        events = await idle_after(client, handle, 3)
        runs = [handle.result_run_id]

        async def latest_run() -> str:
            return (await describe(client, wid)).workflow_execution_info.execution.run_id

        for how in (["--type", "LastWorkflowTask"], ["--type", "FirstWorkflowTask"], ["--event-id"]):
            if how == ["--event-id"]:
                events = await events_of(client, wid)
                how = ["--event-id", str(completed_ids(events)[1])]
            out = await asyncio.to_thread(cli, server_address, "workflow", "reset", "-w", wid, *how,
                                          "--reason", "cli reset")
            assert out.returncode == 0, out.stdout + out.stderr
            run = await latest_run()
            assert run not in runs, f"{how} made a new run"
            runs.append(run)
            await idle_after(client, client.get_workflow_handle(wid, run_id=run), 1)

        shown = await asyncio.to_thread(cli, server_address, "workflow", "show", "-w", wid, "--output", "json")
        assert shown.returncode == 0, shown.stderr
        history = json.loads(shown.stdout)["events"]
        failed = [e for e in history if e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_FAILED"]
        assert failed and failed[0]["workflowTaskFailedEventAttributes"]["cause"] == \
            "WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW"
        cut = completed_ids(events)[1]
        assert int(failed[-1]["eventId"]) == cut, "the last reset's failure takes the cut's event id"

        described = await asyncio.to_thread(cli, server_address, "workflow", "describe", "-w", wid,
                                            "--output", "json")
        assert described.returncode == 0, described.stderr
        info = json.loads(described.stdout)["workflowExecutionInfo"]
        assert info["firstRunId"] == runs[0]
        assert info["autoResetPoints"]["points"][0]["runId"] == runs[-1]
        for run in runs[:-1]:
            status = (await describe(client, wid, run)).workflow_execution_info.status
            assert status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED
        await client.get_workflow_handle(wid).terminate("done")


@workflow.defn(sandboxed=False)
class ResetUpdates:
    """Adds what its `bump` updates and `sig` signals bring; ends on `finish`."""

    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @workflow.update
    def bump(self, k: int) -> int:
        self.total += k
        return self.total

    @workflow.signal
    def sig(self, k: int) -> None:
        self.total += 100 * k

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.total


def update_worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client, task_queue=task_queue, workflows=[ResetUpdates], workflow_runner=UnsandboxedWorkflowRunner()
    )


async def base_with_an_update_after_the_first_task(client: Client, task_queue: str) -> tuple[str, int]:
    """A run whose first workflow task completed before an update (bump 5, id `upd-5`) and a
    signal (sig 1); returns its workflow id and the first WorkflowTaskCompleted's id."""
    wid = f"reset-upd-{uuid.uuid4()}"
    handle = await client.start_workflow(ResetUpdates.run, id=wid, task_queue=task_queue)
    first = completed_ids(await idle_after(client, handle, 1))[0]
    assert await handle.execute_update(ResetUpdates.bump, 5, id="upd-5") == 5
    await handle.signal(ResetUpdates.sig, 1)
    await idle_after(client, handle, 3)
    return wid, first


async def test_a_reset_reapplies_updates_accepted_after_the_cut_as_admitted_events(client: Client, task_queue):
    async with update_worker(client, task_queue):
        wid, first = await base_with_an_update_after_the_first_task(client, task_queue)
        new_run = await reset(client, wid, first)
        events = await events_of(client, wid, new_run)
        tail = names(events[first - 1:first + 3])
        assert tail == [
            "WORKFLOW_TASK_FAILED",
            "WORKFLOW_EXECUTION_UPDATE_ADMITTED",
            "WORKFLOW_EXECUTION_SIGNALED",
            "WORKFLOW_TASK_SCHEDULED",
        ], tail
        admitted = events[first].workflow_execution_update_admitted_event_attributes
        assert admitted.origin == UpdateAdmittedEventOrigin.UPDATE_ADMITTED_EVENT_ORIGIN_REAPPLY
        assert admitted.request.meta.update_id == "upd-5"
        assert admitted.request.input.name == "bump"

        # The new run's worker takes the update from history: it is accepted (pointing at the
        # admitted event, without repeating the request) and completed again, and its outcome
        # is the new run's.
        handle = client.get_workflow_handle(wid, run_id=new_run)
        assert await handle.get_update_handle("upd-5").result() == 5
        events = await events_of(client, wid, new_run)
        accepted = [
            e.workflow_execution_update_accepted_event_attributes
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
        assert len(accepted) == 1
        assert accepted[0].protocol_instance_id == "upd-5"
        assert accepted[0].accepted_request_sequencing_event_id == events[first].event_id
        assert not accepted[0].HasField("accepted_request")
        await handle.signal(ResetUpdates.finish)
        assert await handle.result() == 105


async def test_a_reset_excluding_updates_or_asking_for_signals_only_leaves_them_out(client: Client, task_queue):
    async with update_worker(client, task_queue):
        wid, first = await base_with_an_update_after_the_first_task(client, task_queue)
        without_updates = await reset(
            client, wid, first, exclude=[ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE]
        )
        tail = names((await events_of(client, wid, without_updates))[first - 1:first + 2])
        assert tail == ["WORKFLOW_TASK_FAILED", "WORKFLOW_EXECUTION_SIGNALED", "WORKFLOW_TASK_SCHEDULED"], tail

        # The deprecated reapply type SIGNAL means signals only.
        wid, first = await base_with_an_update_after_the_first_task(client, task_queue)
        resp = await client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=wid),
                reason="signals only",
                workflow_task_finish_event_id=first,
                request_id=str(uuid.uuid4()),
                reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_SIGNAL,
            )
        )
        tail = names((await events_of(client, wid, resp.run_id))[first - 1:first + 2])
        assert tail == ["WORKFLOW_TASK_FAILED", "WORKFLOW_EXECUTION_SIGNALED", "WORKFLOW_TASK_SCHEDULED"], tail

        # Excluding both leaves only the reset's own events.
        wid, first = await base_with_an_update_after_the_first_task(client, task_queue)
        bare = await reset(
            client,
            wid,
            first,
            exclude=[
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
            ],
        )
        tail = names((await events_of(client, wid, bare))[first - 1:first + 1])
        assert tail == ["WORKFLOW_TASK_FAILED", "WORKFLOW_TASK_SCHEDULED"], tail


async def test_the_cli_reset_reapplies_updates_unless_told_to_exclude_them(
    client: Client, server_address, task_queue
):
    async with update_worker(client, task_queue):
        wid, first = await base_with_an_update_after_the_first_task(client, task_queue)
        out = cli(server_address, "workflow", "reset", "-w", wid, "--event-id", str(first), "--reason", "cli")
        assert out.returncode == 0, out.stderr
        tail = names((await events_of(client, wid))[first - 1:])
        assert "WORKFLOW_EXECUTION_UPDATE_ADMITTED" in tail, tail

        wid, first = await base_with_an_update_after_the_first_task(client, task_queue)
        out = cli(
            server_address, "workflow", "reset", "-w", wid, "--event-id", str(first), "--reason", "cli",
            "--reapply-exclude", "Update",
        )
        assert out.returncode == 0, out.stderr
        tail = names((await events_of(client, wid))[first - 1:])
        assert "WORKFLOW_EXECUTION_UPDATE_ADMITTED" not in tail, tail
        assert "WORKFLOW_EXECUTION_SIGNALED" in tail, tail
