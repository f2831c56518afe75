"""Nexus operations survive a server crash: SIGKILL (kill -9) the server while an operation
is in flight, restart it on the same database (and port), and the operation must end exactly
once, with the right outcome, and leave a history without duplicate Nexus events.

* an async (``workflow_run_operation``) operation whose handler workflow waits for a signal:
  the pending operation (state STARTED, same token) and the handler workflow outlive the
  crash, and the handler's result reaches the caller once;
* a sync operation whose handler is blocked in the start request at the crash: the server
  dispatches the start request again after the restart (same request id), and the operation
  completes once;
* the handler workflow completes right before the crash (signal, then kill within a few
  ms): the completion callback, or the restart's check of the handler workflow, delivers the
  result exactly once;
* a pending operation whose schedule-to-close timeout passes while the server is down
  times out shortly after the restart.

Every test runs the caller workflow, the handler workflow and the Nexus service on one task
queue of one worker, against a server process of its own (``sundial_factory``); run with
``SUNDIAL_TEST_BACKEND=postgres`` the server keeps its state in a PostgreSQL database of its
own instead of a SQLite file.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional

import nexusrpc
import nexusrpc.handler
import pytest
from temporalio import nexus, workflow
from temporalio.api.enums.v1 import CallbackState, EventType, PendingNexusOperationState
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import CreateNexusEndpointRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import NexusOperationError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from test_nexus import (
    _describe_error_chain,
    _history,
    _nexus_types,
    _only,
    _terminate_quietly,
    _type_name,
    _types,
    _wait_for,
)

STARTED = PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_STARTED
SCHEDULED = PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_SCHEDULED

# ---------------------------------------------------------------------------
# Service contract, handler workflow, caller workflow
# ---------------------------------------------------------------------------


@dataclass
class HandlerInput:
    workflow_id: str


@nexusrpc.service
class DurableService:
    gated_echo: nexusrpc.Operation[str, str]
    run_workflow: nexusrpc.Operation[HandlerInput, str]


@workflow.defn
class SignalledHandlerWorkflow:
    """The workflow an async operation starts: returns once signalled ``finish``."""

    def __init__(self) -> None:
        self._value: Optional[str] = None

    @workflow.signal
    def finish(self, value: str) -> None:
        self._value = value

    @workflow.run
    async def run(self, input: HandlerInput) -> str:
        await workflow.wait_condition(lambda: self._value is not None)
        return f"handled: {self._value}"


@dataclass
class StartCall:
    """One start request the sync handler saw."""

    request_id: str
    input: str
    at: float


@nexusrpc.handler.service_handler(service=DurableService)
class DurableServiceHandler:
    def __init__(self) -> None:
        self.calls: List[StartCall] = []
        # the first ``gated_echo`` call of each input blocks until this is set
        self.release = asyncio.Event()
        self.first_call_entered = asyncio.Event()

    @nexusrpc.handler.sync_operation
    async def gated_echo(self, ctx: nexusrpc.handler.StartOperationContext, input: str) -> str:
        self.calls.append(StartCall(ctx.request_id, input, time.monotonic()))
        n = sum(1 for c in self.calls if c.input == input)
        if n == 1:
            self.first_call_entered.set()
            await self.release.wait()
        return f"echo: {input} (call {n})"

    @nexus.workflow_run_operation
    async def run_workflow(
        self, ctx: nexus.WorkflowRunOperationContext, input: HandlerInput
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(SignalledHandlerWorkflow.run, input, id=input.workflow_id)


@dataclass
class CallInput:
    endpoint: str
    operation: str
    arg: str = ""
    handler: Optional[HandlerInput] = None
    schedule_to_close_seconds: Optional[float] = None


@workflow.defn
class DurableCallerWorkflow:
    @workflow.run
    async def run(self, input: CallInput) -> Dict[str, Any]:
        client = workflow.create_nexus_client(service=DurableService, endpoint=input.endpoint)
        arg: Any = input.handler if input.operation == "run_workflow" else input.arg
        timeout = (
            timedelta(seconds=input.schedule_to_close_seconds)
            if input.schedule_to_close_seconds is not None
            else None
        )
        handle = None
        try:
            handle = await client.start_operation(
                input.operation, arg, output_type=str, schedule_to_close_timeout=timeout
            )
            return {"result": await handle, "operation_token": handle.operation_token}
        except NexusOperationError as err:
            return {
                "error": _describe_error_chain(err),
                "operation_token": handle.operation_token if handle else None,
            }


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


async def _server(sundial_factory, tmp_path: Path, name: str):
    server = sundial_factory(tmp_path / f"{name}.db", log_path=tmp_path / f"{name}.log")
    await server.start()
    return server


async def _create_endpoint(client: Client, task_queue: str) -> str:
    """An endpoint targeting ``task_queue``; it lives in the server's database, so it must
    outlive the restarts too (the server is discarded with its database at test end)."""
    name = f"nexus-durable-{uuid.uuid4().hex}"
    await client.operator_service.create_nexus_endpoint(
        CreateNexusEndpointRequest(
            spec=EndpointSpec(
                name=name,
                target=EndpointTarget(
                    worker=EndpointTarget.Worker(namespace=client.namespace, task_queue=task_queue)
                ),
            )
        )
    )
    return name


def _worker(client: Client, task_queue: str, handler: DurableServiceHandler) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[DurableCallerWorkflow, SignalledHandlerWorkflow],
        nexus_service_handlers=[handler],
        # A run's next task goes to the sticky queue of the worker that ran it last; after a
        # restart the server no longer knows that worker shut down, so the task waits out this
        # timeout before it moves to the normal queue (the SDK's default is 10 s).
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("nexusrpc", "test_nexus", __name__)
        ),
    )


async def _crash_and_restart(server, *, down_for: float = 0.3) -> None:
    """kill -9 the server, leave it down ``down_for`` seconds, start it on the same
    database and port (clients and workers reconnect to the same address)."""
    server.kill()
    await asyncio.sleep(down_for)
    await server.start()












def _assert_dense(events) -> None:
    ids = [e.event_id for e in events]
    assert ids == list(range(1, len(ids) + 1)), f"event ids not dense across the restart: {ids}"


def _assert_nexus_events_once(events, expected: List[str]) -> None:
    """``expected`` Nexus events, once each and in that order, nothing else Nexus."""
    counts = Counter(_nexus_types(events))
    for name in expected:
        assert counts[name] == 1, f"{name} x{counts[name]} in {_types(events)}"
    assert _nexus_types(events) == expected, _types(events)


async def _pending_ops(handle: WorkflowHandle):
    return list((await handle.describe()).raw_description.pending_nexus_operations)


async def _wait_started(handle: WorkflowHandle, timeout: float = 10.0):
    """The caller's single pending operation once it is STARTED (has a token)."""

    async def started():
        ops = await _pending_ops(handle)
        if len(ops) == 1 and ops[0].state == STARTED and ops[0].operation_token:
            return ops[0]
        return None

    return await _wait_for(started, timeout, what=f"{handle.id}: operation STARTED")


async def _start_caller(client: Client, task_queue: str, call: CallInput) -> WorkflowHandle:
    return await client.start_workflow(
        DurableCallerWorkflow.run, call, id=f"nexus-durable-caller-{uuid.uuid4()}", task_queue=task_queue
    )




@asynccontextmanager
async def _running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background; on exit shut it down (the server must be up)."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await asyncio.wait_for(worker.shutdown(), 30)
        try:
            await task
        except Exception:  # noqa: BLE001 - a worker that failed already reported it
            pass


@pytest.fixture
def managed_only(external_address) -> None:
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


async def test_started_async_operation_survives_sigkill(managed_only, sundial_factory, tmp_path, task_queue):
    """An async operation is STARTED and its handler workflow waits for a signal; the server
    is killed -9 with no worker connected and restarted; describe still shows the pending
    operation with the same token, the handler workflow still runs, and once signalled its
    result reaches the caller (on a fresh worker, which replays the caller from history)."""
    server = await _server(sundial_factory, tmp_path, "async")
    client = await Client.connect(server.address, namespace="default")
    endpoint = await _create_endpoint(client, task_queue)
    handler_id = f"nexus-durable-handler-{uuid.uuid4()}"

    async with _running(_worker(client, task_queue, DurableServiceHandler())):
        caller = await _start_caller(
            client, task_queue, CallInput(endpoint, "run_workflow", handler=HandlerInput(handler_id))
        )
        before = await _wait_started(caller)
        h_before = await client.get_workflow_handle(handler_id).describe()
        assert h_before.status == WorkflowExecutionStatus.RUNNING
        # the caller's workflow task that handled NexusOperationStarted has completed
        await _wait_for(
            lambda: _history_ends_with(caller, "WORKFLOW_TASK_COMPLETED"),
            what="caller idle after NexusOperationStarted",
        )
        events_before = await _history(caller)

    await _crash_and_restart(server)
    client = await Client.connect(server.address, namespace="default")
    caller = client.get_workflow_handle(caller.id)
    h_handle = client.get_workflow_handle(handler_id)

    [after] = await _pending_ops(caller)
    assert after.state == STARTED
    assert after.operation_token == before.operation_token
    assert after.scheduled_event_id == before.scheduled_event_id
    assert (after.endpoint, after.service, after.operation) == (endpoint, "DurableService", "run_workflow")
    assert after.scheduled_time == before.scheduled_time
    h_after = await h_handle.describe()
    assert h_after.status == WorkflowExecutionStatus.RUNNING
    assert h_after.run_id == h_before.run_id
    # nothing was added to the caller while it waited
    assert _types(await _history(caller)) == _types(events_before)

    async with _running(_worker(client, task_queue, DurableServiceHandler())):
        await h_handle.signal(SignalledHandlerWorkflow.finish, "after-crash")
        out = await asyncio.wait_for(caller.result(), 20)
    assert out == {"result": "handled: after-crash", "operation_token": before.operation_token}
    assert await h_handle.result() == "handled: after-crash"

    events = await _history(caller)
    _assert_dense(events)
    _assert_nexus_events_once(
        events, ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_COMPLETED"]
    )
    assert _types(events)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    started = _only(events, "NEXUS_OPERATION_STARTED").nexus_operation_started_event_attributes
    assert started.operation_token == before.operation_token
    completed = _only(events, "NEXUS_OPERATION_COMPLETED").nexus_operation_completed_event_attributes
    assert completed.scheduled_event_id == before.scheduled_event_id
    assert completed.result.data == b'"handled: after-crash"'
    assert not await _pending_ops(caller)
    _assert_dense(await _history(h_handle))


async def _history_ends_with(handle: WorkflowHandle, name: str) -> bool:
    events = await _history(handle)
    return bool(events) and _type_name(events[-1]) == name


async def test_sync_start_request_in_flight_is_dispatched_again(
    managed_only, sundial_factory, tmp_path, task_queue
):
    """The worker is inside a sync operation's start request when the server is killed -9;
    after the restart the server dispatches the start request again (the worker stays up
    and reconnects), with the same request id, and the operation completes exactly once."""
    server = await _server(sundial_factory, tmp_path, "sync")
    client = await Client.connect(server.address, namespace="default")
    endpoint = await _create_endpoint(client, task_queue)
    handler = DurableServiceHandler()

    try:
        async with _running(_worker(client, task_queue, handler)):
            caller = await _start_caller(client, task_queue, CallInput(endpoint, "gated_echo", arg="x"))
            await asyncio.wait_for(handler.first_call_entered.wait(), 10)
            [op] = await _pending_ops(caller)
            assert op.state == SCHEDULED
            scheduled = _only(await _history(caller), "NEXUS_OPERATION_SCHEDULED")
            request_id = scheduled.nexus_operation_scheduled_event_attributes.request_id
            assert handler.calls[0].request_id == request_id

            killed_at = time.monotonic()
            await _crash_and_restart(server)

            # the restarted server hands the start request to the (reconnected) worker again
            async def dispatched_again():
                return len(handler.calls) >= 2

            await _wait_for(dispatched_again, 15, what="start request dispatched again")
            assert handler.calls[1].at > killed_at
            assert [c.request_id for c in handler.calls] == [request_id, request_id]
            assert [c.input for c in handler.calls] == ["x", "x"]

            out = await asyncio.wait_for(caller.result(), 15)
            assert out == {"result": "echo: x (call 2)", "operation_token": None}

            # the first attempt's late answer (to the dead server's dispatch) changes nothing
            handler.release.set()
            await asyncio.sleep(0.5)
            assert len(handler.calls) == 2, [c.request_id for c in handler.calls]
    finally:
        handler.release.set()

    events = await _history(caller)
    _assert_dense(events)
    _assert_nexus_events_once(events, ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_COMPLETED"])
    completed = _only(events, "NEXUS_OPERATION_COMPLETED").nexus_operation_completed_event_attributes
    assert completed.request_id == request_id
    assert completed.result.data == b'"echo: x (call 2)"'
    assert _types(events)[-1] == "WORKFLOW_EXECUTION_COMPLETED"


async def test_handler_completion_racing_sigkill_is_delivered_once(
    managed_only, sundial_factory, tmp_path, task_queue
):
    """Signal the handler workflow and kill -9 the server a few ms later (random delays, so
    the crash lands before, during or after the handler's completion and its callback);
    after the restart the caller gets the handler's result exactly once."""
    server = await _server(sundial_factory, tmp_path, "race")
    client = await Client.connect(server.address, namespace="default")
    endpoint = await _create_endpoint(client, task_queue)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    landed: List[str] = []

    async with _running(_worker(client, task_queue, DurableServiceHandler())):
        for i in range(3):
            handler_id = f"nexus-durable-handler-{uuid.uuid4()}"
            caller = await _start_caller(
                client, task_queue, CallInput(endpoint, "run_workflow", handler=HandlerInput(handler_id))
            )
            op = await _wait_started(caller)
            h_handle = client.get_workflow_handle(handler_id)
            delay = rng.uniform(0.0, 0.04)

            await h_handle.signal(SignalledHandlerWorkflow.finish, f"v{i}")
            await asyncio.sleep(delay)
            server.kill()
            await asyncio.sleep(0.2)
            await server.start()

            # where the crash landed (for the report): had the handler closed, had the
            # caller recorded the completion?
            h_status = (await h_handle.describe()).status
            caller_had = "NEXUS_OPERATION_COMPLETED" in _types(await _history(caller))
            landed.append(f"iter {i}: delay {delay * 1000:.1f} ms, handler {h_status.name}, completed recorded {caller_had}")

            out = await asyncio.wait_for(caller.result(), 20)
            assert out == {"result": f"handled: v{i}", "operation_token": op.operation_token}, landed
            assert await h_handle.result() == f"handled: v{i}"

            events = await _history(caller)
            _assert_dense(events)
            _assert_nexus_events_once(
                events, ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_COMPLETED"]
            )
            completed = _only(events, "NEXUS_OPERATION_COMPLETED").nexus_operation_completed_event_attributes
            assert completed.result.data == f'"handled: v{i}"'.encode()
            assert not await _pending_ops(caller)
            h_events = await _history(h_handle)
            _assert_dense(h_events)
            assert Counter(_types(h_events))["WORKFLOW_EXECUTION_COMPLETED"] == 1

            # the handler's completion callback ends SUCCEEDED (delivered, by the callback
            # or by the restart's check, and not left retrying against a closed operation)
            async def callback_succeeded():
                cbs = (await h_handle.describe()).raw_description.callbacks
                return cbs if len(cbs) == 1 and cbs[0].state == CallbackState.CALLBACK_STATE_SUCCEEDED else None

            await _wait_for(callback_succeeded, 10, what=f"iter {i} (seed {seed}): callback SUCCEEDED; {landed}")
    print(f"seed {seed}:", *landed, sep="\n  ")


async def test_schedule_to_close_timeout_passes_while_server_is_down(
    managed_only, sundial_factory, tmp_path, task_queue
):
    """An async operation with a 4 s schedule-to-close timeout is pending (STARTED, its
    handler workflow waiting) when the server is killed -9; the server stays down past the
    deadline and, once restarted, times the operation out promptly."""
    server = await _server(sundial_factory, tmp_path, "timeout")
    client = await Client.connect(server.address, namespace="default")
    endpoint = await _create_endpoint(client, task_queue)
    handler_id = f"nexus-durable-handler-{uuid.uuid4()}"
    h_handle = client.get_workflow_handle(handler_id)
    timeout_s = 4.0

    async with _running(_worker(client, task_queue, DurableServiceHandler())):
        t0 = time.monotonic()
        caller = await _start_caller(
            client, task_queue,
            CallInput(
                endpoint, "run_workflow", handler=HandlerInput(handler_id), schedule_to_close_seconds=timeout_s
            ),
        )
        op = await _wait_started(caller)
        assert op.schedule_to_close_timeout.ToTimedelta() == timedelta(seconds=timeout_s)
        assert time.monotonic() - t0 < timeout_s - 1, "operation started too late to crash before its deadline"

        server.kill()
        # stay down until well past the deadline
        await asyncio.sleep(max(0.0, t0 + timeout_s + 1.0 - time.monotonic()))
        restarted_at = time.monotonic()
        await server.start()
        ready_at = time.monotonic()

        out = await asyncio.wait_for(caller.result(), 20)
        answered_at = time.monotonic()
        # the deadline had passed: the timeout fires right after the restart (the worker,
        # which kept polling across the crash, needs a moment to reconnect)
        assert answered_at - ready_at < 5, (answered_at - restarted_at, answered_at - ready_at)
        nexus_err, cause = out["error"]
        assert nexus_err["class"] == "NexusOperationError"
        assert cause == {"class": "TimeoutError", "message": "operation timed out", "timeout_type": "SCHEDULE_TO_CLOSE"}
        assert out["operation_token"] == op.operation_token

        events = await _history(caller)
        _assert_dense(events)
        _assert_nexus_events_once(
            events, ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_TIMED_OUT"]
        )
        timed_out = _only(events, "NEXUS_OPERATION_TIMED_OUT")
        assert timed_out.nexus_operation_timed_out_event_attributes.scheduled_event_id == op.scheduled_event_id
        # recorded after the restart, i.e. past the deadline, not before the crash
        scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
        assert (
            timed_out.event_time.ToDatetime() - scheduled.event_time.ToDatetime()
        ).total_seconds() >= timeout_s
        assert _types(events)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
        assert not await _pending_ops(caller)
        # as in the reference, the timeout does not cancel the handler workflow
        assert (await h_handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await _terminate_quietly(h_handle)
