"""Nexus operations: a caller workflow invokes operations of a Nexus service
through an endpoint whose target is a worker task queue.

Covers sync operations (success, operation failure, non-retryable and retryable
handler errors), async ``workflow_run_operation`` operations (success, handler
workflow failure, cancellation, schedule-to-close timeout), the caller's
``pending_nexus_operations`` in describe, a cancel requested while the start
request is still with the handler, an unknown endpoint name, endpoint name
validation, and the worker interceptor view of a started-then-cancelled operation.

Every test runs caller workflows, handler workflows and the Nexus service on one
worker and one task queue; the endpoint (one per test, deleted at its end)
targets that task queue in the ``default`` namespace.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, AsyncIterator, Dict, List, Optional

import nexusrpc
import nexusrpc.handler
import pytest
from temporalio import nexus, workflow
from temporalio.api.enums.v1 import (
    CallbackState,
    EventType,
    PendingNexusOperationState,
    TimeoutType,
    WorkflowTaskFailedCause,
)
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import (
    CreateNexusEndpointRequest,
    DeleteNexusEndpointRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.exceptions import (
    ApplicationError,
    NexusOperationError,
    TimeoutError as TemporalTimeoutError,
)
from temporalio.worker import (
    ExecuteNexusOperationCancelInput,
    ExecuteNexusOperationStartInput,
    ExecuteWorkflowInput,
    Interceptor,
    NexusOperationInboundInterceptor,
    StartNexusOperationInput,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# ---------------------------------------------------------------------------
# Service contract and handler workflow
# ---------------------------------------------------------------------------


@dataclass
class HandlerWorkflowInput:
    workflow_id: str
    # "succeed": return "handled: <value>"; "fail": raise a non-retryable ApplicationError;
    # "wait": block until cancelled; "wait_slow_cancel": same, but end 1 s after the cancel;
    # "sleep": sleep an hour; "expect_cancel": fail unless cancelled within 10 s
    mode: str
    value: str = ""
    # the operation handler waits for ``ConformanceServiceHandler.start_release`` before
    # starting the workflow
    gate_start: bool = False


@nexusrpc.service
class ConformanceService:
    echo: nexusrpc.Operation[str, str]
    fail: nexusrpc.Operation[str, str]
    bad_request: nexusrpc.Operation[str, str]
    flaky: nexusrpc.Operation[str, str]
    run_workflow: nexusrpc.Operation[HandlerWorkflowInput, str]


@workflow.defn
class HandlerWorkflow:
    """The workflow an async operation starts."""

    @workflow.run
    async def run(self, input: HandlerWorkflowInput) -> str:
        if input.mode == "succeed":
            return f"handled: {input.value}"
        if input.mode == "fail":
            raise ApplicationError(
                "handler workflow failed", type="HandlerWorkflowFailure", non_retryable=True
            )
        if input.mode == "wait":
            await workflow.wait_condition(lambda: False)
        if input.mode == "wait_slow_cancel":
            try:
                await workflow.wait_condition(lambda: False)
            except asyncio.CancelledError:
                # end CANCELED only 1 s after the cancel request: by then the server has
                # recorded NexusOperationCancelRequestCompleted in the caller
                await workflow.sleep(timedelta(seconds=1))
                raise
        if input.mode == "sleep":
            await workflow.sleep(timedelta(hours=1))
        if input.mode == "expect_cancel":
            try:
                await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=10))
            except asyncio.TimeoutError:
                raise ApplicationError("expected cancellation", non_retryable=True)
        raise ApplicationError(f"unexpected mode {input.mode}", non_retryable=True)


@nexusrpc.handler.service_handler(service=ConformanceService)
class ConformanceServiceHandler:
    def __init__(self, flaky_failures: int = 1) -> None:
        # attempts seen by ``flaky`` per input; it fails ``flaky_failures`` times per input
        self.flaky_attempts: Counter[str] = Counter()
        self.flaky_failures = flaky_failures
        self.flaky_attempt_times: List[float] = []
        # ``flaky``'s successful attempt waits for this before answering
        self.flaky_release = asyncio.Event()
        self.flaky_release.set()
        # ``run_workflow`` with ``gate_start``: entered / waits for release
        self.start_entered = asyncio.Event()
        self.start_release = asyncio.Event()
        self.bad_request_calls = 0

    @nexusrpc.handler.sync_operation
    async def echo(self, ctx: nexusrpc.handler.StartOperationContext, input: str) -> str:
        return f"echo: {input}"

    @nexusrpc.handler.sync_operation
    async def fail(self, ctx: nexusrpc.handler.StartOperationContext, input: str) -> str:
        raise nexusrpc.OperationError(
            f"operation failed for {input}", state=nexusrpc.OperationErrorState.FAILED
        )

    @nexusrpc.handler.sync_operation
    async def bad_request(self, ctx: nexusrpc.handler.StartOperationContext, input: str) -> str:
        self.bad_request_calls += 1
        raise nexusrpc.HandlerError(
            f"bad input {input}", type=nexusrpc.HandlerErrorType.BAD_REQUEST
        )

    @nexusrpc.handler.sync_operation
    async def flaky(self, ctx: nexusrpc.handler.StartOperationContext, input: str) -> str:
        self.flaky_attempts[input] += 1
        self.flaky_attempt_times.append(time.monotonic())
        attempt = self.flaky_attempts[input]
        if attempt <= self.flaky_failures:
            raise RuntimeError(f"transient failure {attempt}")
        await self.flaky_release.wait()
        return f"flaky ok after {attempt} attempts"

    @nexus.workflow_run_operation
    async def run_workflow(
        self, ctx: nexus.WorkflowRunOperationContext, input: HandlerWorkflowInput
    ) -> nexus.WorkflowHandle[str]:
        if input.gate_start:
            self.start_entered.set()
            await self.start_release.wait()
        return await ctx.start_workflow(HandlerWorkflow.run, input, id=input.workflow_id)


# ---------------------------------------------------------------------------
# Caller workflow
# ---------------------------------------------------------------------------


@dataclass
class CallInput:
    endpoint: str
    operation: str
    arg: str = ""
    workflow_input: Optional[HandlerWorkflowInput] = None
    schedule_to_close_seconds: Optional[float] = None
    # cancel the operation right after it started
    cancel: bool = False


def _describe_error_chain(err: BaseException) -> List[Dict[str, Any]]:
    chain: List[Dict[str, Any]] = []
    cur: Optional[BaseException] = err
    while cur is not None:
        entry: Dict[str, Any] = {"class": type(cur).__name__, "message": getattr(cur, "message", str(cur))}
        if isinstance(cur, NexusOperationError):
            entry.update(
                endpoint=cur.endpoint,
                service=cur.service,
                operation=cur.operation,
                operation_token=cur.operation_token,
                scheduled_event_id=cur.scheduled_event_id,
            )
        elif isinstance(cur, ApplicationError):
            entry.update(type=cur.type, non_retryable=cur.non_retryable)
        elif isinstance(cur, TemporalTimeoutError):
            entry.update(timeout_type=cur.type.name if cur.type is not None else None)
        elif isinstance(cur, nexusrpc.HandlerError):
            entry.update(type=cur.type.name, retryable=cur.retryable)
        chain.append(entry)
        cur = cur.__cause__
    return chain


@workflow.defn
class CallerWorkflow:
    @workflow.run
    async def run(self, input: CallInput) -> Dict[str, Any]:
        client = workflow.create_nexus_client(service=ConformanceService, endpoint=input.endpoint)
        arg: Any = input.workflow_input if input.operation == "run_workflow" else input.arg
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
            if input.cancel:
                handle.cancel()
            result = await handle
            return {"result": result, "operation_token": handle.operation_token}
        except NexusOperationError as err:
            return {
                "error": _describe_error_chain(err),
                "operation_token": handle.operation_token if handle else None,
            }


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


@asynccontextmanager
async def nexus_endpoint(client: Client, task_queue: str) -> AsyncIterator[str]:
    """An endpoint (unique name) that targets ``task_queue``; deleted afterwards."""
    name = f"nexus-conformance-{uuid.uuid4().hex}"
    resp = await client.operator_service.create_nexus_endpoint(
        CreateNexusEndpointRequest(
            spec=EndpointSpec(
                name=name,
                target=EndpointTarget(
                    worker=EndpointTarget.Worker(namespace=client.namespace, task_queue=task_queue)
                ),
            )
        )
    )
    try:
        yield name
    finally:
        await client.operator_service.delete_nexus_endpoint(
            DeleteNexusEndpointRequest(id=resp.endpoint.id, version=resp.endpoint.version)
        )


def _worker(
    client: Client, task_queue: str, handler: Optional[ConformanceServiceHandler] = None, **kwargs
) -> Worker:
    """Caller and handler workflows plus the Nexus service, on one task queue.  This module
    is passed through the sandbox (not re-imported per workflow), which keeps worker start
    fast."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CallerWorkflow, HandlerWorkflow, CancelBeforeStartWorkflow, InterceptedCallerWorkflow],
        nexus_service_handlers=[handler or ConformanceServiceHandler()],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("nexusrpc", __name__)
        ),
        **kwargs,
    )


def _type_name(event) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


async def _history(handle: WorkflowHandle):
    return (await handle.fetch_history()).events


def _types(events) -> List[str]:
    return [_type_name(e) for e in events]


def _nexus_types(events) -> List[str]:
    return [t for t in _types(events) if t.startswith("NEXUS_OPERATION")]


def _only(events, name: str):
    found = [e for e in events if _type_name(e) == name]
    assert len(found) == 1, f"expected one {name} in {_types(events)}"
    return found[0]


async def _start_caller(
    client: Client, task_queue: str, call: CallInput, workflow=CallerWorkflow.run
) -> WorkflowHandle:
    # no execution timeout: the reference then leaves schedule_to_close_timeout unset
    return await client.start_workflow(
        workflow, call, id=f"nexus-caller-{uuid.uuid4()}", task_queue=task_queue
    )


def _assert_scheduled(event, endpoint: str, operation: str) -> None:
    attrs = event.nexus_operation_scheduled_event_attributes
    assert attrs.endpoint == endpoint
    assert attrs.service == "ConformanceService"
    assert attrs.operation == operation
    assert attrs.endpoint_id
    assert attrs.request_id
    assert attrs.workflow_task_completed_event_id > 0
    assert attrs.input.data  # the serialized argument


async def _wait_for(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)


async def _terminate_quietly(handle: WorkflowHandle) -> None:
    try:
        await handle.terminate("test cleanup")
    except Exception:  # noqa: BLE001 - already closed
        pass


def _nexus_failure(event, kind: str):
    """The ``failure`` of a Nexus Failed/Canceled/TimedOut event, with the checks that
    hold for all of them (the server wraps the handler's failure)."""
    attrs = getattr(event, f"nexus_operation_{kind}_event_attributes")
    failure = attrs.failure
    assert failure.message == "nexus operation completed unsuccessfully"
    assert failure.HasField("nexus_operation_execution_failure_info")
    return attrs, failure


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


async def test_endpoint_name_must_match_reference_pattern(client: Client):
    """Underscores are rejected: names match ^[a-zA-Z][a-zA-Z0-9\\-]*[a-zA-Z0-9]$."""
    for bad in ("bad_name", "1starts-with-digit", "ends-with-dash-"):
        with pytest.raises(RPCError) as err:
            await client.operator_service.create_nexus_endpoint(
                CreateNexusEndpointRequest(
                    spec=EndpointSpec(
                        name=bad,
                        target=EndpointTarget(
                            worker=EndpointTarget.Worker(namespace=client.namespace, task_queue="tq")
                        ),
                    )
                )
            )
        assert err.value.status == RPCStatusCode.INVALID_ARGUMENT, bad
        assert "endpoint name must match the regex" in err.value.message, bad


async def test_sync_operation_success(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        handle = await _start_caller(client, task_queue, CallInput(endpoint, "echo", arg="hi"))
        out = await handle.result()
        assert out == {"result": "echo: hi", "operation_token": None}

        events = await _history(handle)
        assert _nexus_types(events) == ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_COMPLETED"]
        scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
        _assert_scheduled(scheduled, endpoint, "echo")
        s_attrs = scheduled.nexus_operation_scheduled_event_attributes
        assert s_attrs.input.data == b'"hi"'
        # no timeout requested and no workflow run timeout: left unset
        assert not s_attrs.HasField("schedule_to_close_timeout")
        assert _types(events)[_types(events).index("NEXUS_OPERATION_SCHEDULED") - 1] == (
            "WORKFLOW_TASK_COMPLETED"
        )
        assert s_attrs.workflow_task_completed_event_id == scheduled.event_id - 1
        completed = _only(events, "NEXUS_OPERATION_COMPLETED").nexus_operation_completed_event_attributes
        assert completed.scheduled_event_id == scheduled.event_id
        assert completed.request_id == s_attrs.request_id
        assert completed.result.data == b'"echo: hi"'
        # a sync operation has no NexusOperationStarted; completion schedules a workflow task
        types = _types(events)
        assert types[types.index("NEXUS_OPERATION_COMPLETED") + 1] == "WORKFLOW_TASK_SCHEDULED"
        assert types[-1] == "WORKFLOW_EXECUTION_COMPLETED"
        assert not (await handle.describe()).raw_description.pending_nexus_operations


async def test_schedule_to_close_timeout_capped_by_run_timeout(client: Client, task_queue: str):
    """The reference caps the operation's schedule_to_close_timeout at the caller's run
    timeout, both when one was requested (30 s > 20 s) and when none was."""
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        for requested in (30, None):
            handle = await client.start_workflow(
                CallerWorkflow.run,
                CallInput(endpoint, "echo", arg="t", schedule_to_close_seconds=requested),
                id=f"nexus-caller-{uuid.uuid4()}",
                task_queue=task_queue,
                run_timeout=timedelta(seconds=20),
            )
            assert (await handle.result())["result"] == "echo: t"
            scheduled = _only(await _history(handle), "NEXUS_OPERATION_SCHEDULED")
            attrs = scheduled.nexus_operation_scheduled_event_attributes
            assert attrs.schedule_to_close_timeout.ToTimedelta() == timedelta(seconds=20), requested


async def test_sync_operation_error_fails_operation(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        handle = await _start_caller(client, task_queue, CallInput(endpoint, "fail", arg="x"))
        out = await handle.result()
        nexus_err, cause = out["error"]
        assert nexus_err["class"] == "NexusOperationError"
        assert nexus_err["message"] == "nexus operation completed unsuccessfully"
        assert (nexus_err["endpoint"], nexus_err["service"], nexus_err["operation"]) == (
            endpoint, "ConformanceService", "fail",
        )
        assert nexus_err["operation_token"] == ""
        assert cause["class"] == "ApplicationError"
        assert cause["type"] == "OperationError"
        assert cause["message"] == "operation failed for x"
        assert cause["non_retryable"] is True

        events = await _history(handle)
        assert _nexus_types(events) == ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_FAILED"]
        scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
        assert nexus_err["scheduled_event_id"] == scheduled.event_id
        attrs, failure = _nexus_failure(_only(events, "NEXUS_OPERATION_FAILED"), "failed")
        assert attrs.scheduled_event_id == scheduled.event_id
        assert attrs.request_id == scheduled.nexus_operation_scheduled_event_attributes.request_id
        info = failure.nexus_operation_execution_failure_info
        assert (info.scheduled_event_id, info.endpoint, info.service, info.operation) == (
            scheduled.event_id, endpoint, "ConformanceService", "fail",
        )
        assert info.operation_token == ""
        assert failure.cause.message == "operation failed for x"
        assert failure.cause.application_failure_info.type == "OperationError"
        assert failure.cause.application_failure_info.non_retryable


async def test_sync_handler_bad_request_is_not_retried(client: Client, task_queue: str):
    handler = ConformanceServiceHandler()
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue, handler):
        handle = await _start_caller(client, task_queue, CallInput(endpoint, "bad_request", arg="x"))
        out = await handle.result()
        nexus_err, cause = out["error"]
        assert nexus_err["class"] == "NexusOperationError"
        assert nexus_err["operation"] == "bad_request"
        assert cause == {
            "class": "HandlerError", "message": "bad input x", "type": "BAD_REQUEST", "retryable": False,
        }

        events = await _history(handle)
        assert _nexus_types(events) == ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_FAILED"]
        _, failure = _nexus_failure(_only(events, "NEXUS_OPERATION_FAILED"), "failed")
        assert failure.nexus_operation_execution_failure_info.operation == "bad_request"
        assert failure.cause.message == "bad input x"
        assert failure.cause.HasField("nexus_handler_failure_info")
        assert failure.cause.nexus_handler_failure_info.type == "BAD_REQUEST"
        assert handler.bad_request_calls == 1


async def test_sync_handler_retryable_error_is_retried(client: Client, task_queue: str):
    """A plain exception on the first attempt is an INTERNAL (retryable) handler error:
    the server backs off (~1 s) and retries; history shows only Scheduled/Completed."""
    handler = ConformanceServiceHandler(flaky_failures=1)
    handler.flaky_release.clear()  # the second attempt waits until released
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue, handler):
        handle = await _start_caller(client, task_queue, CallInput(endpoint, "flaky", arg="x"))

        async def backing_off():
            ops = (await handle.describe()).raw_description.pending_nexus_operations
            if ops and ops[0].state == PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_BACKING_OFF:
                return ops[0]
            return None

        op = await _wait_for(backing_off)
        assert (op.endpoint, op.service, op.operation) == (endpoint, "ConformanceService", "flaky")
        assert op.attempt == 1
        assert op.scheduled_event_id == 5
        assert op.operation_token == ""
        assert op.HasField("last_attempt_complete_time")
        assert op.HasField("next_attempt_schedule_time")
        backoff = (
            op.next_attempt_schedule_time.ToDatetime() - op.last_attempt_complete_time.ToDatetime()
        ).total_seconds()
        assert 0.5 <= backoff <= 1.5, backoff
        failure = op.last_attempt_failure
        assert failure.message == "Internal handler error"
        assert failure.nexus_handler_failure_info.type == "INTERNAL"
        assert failure.cause.message == "transient failure 1"
        assert failure.cause.application_failure_info.type == "RuntimeError"

        # the retry is in flight (blocked in the handler): state SCHEDULED again, the
        # attempt count still 1 (it counts finished attempts), the last failure kept
        async def second_attempt_running():
            if handler.flaky_attempts["x"] < 2:
                return None
            return (await handle.describe()).raw_description.pending_nexus_operations

        ops = await _wait_for(second_attempt_running)
        assert len(ops) == 1
        assert ops[0].state == PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_SCHEDULED
        assert ops[0].attempt == 1
        assert ops[0].last_attempt_failure.cause.message == "transient failure 1"
        assert not ops[0].HasField("next_attempt_schedule_time")
        handler.flaky_release.set()

        out = await handle.result()
        assert out["result"] == "flaky ok after 2 attempts"
        first, second = handler.flaky_attempt_times
        assert 0.5 <= second - first <= 2.5, second - first

        events = await _history(handle)
        # failed attempts leave no trace in history
        assert _nexus_types(events) == ["NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_COMPLETED"]


async def test_async_workflow_run_operation_success(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        wf_id = f"nexus-handler-{uuid.uuid4()}"
        handle = await _start_caller(
            client, task_queue,
            CallInput(endpoint, "run_workflow", workflow_input=HandlerWorkflowInput(wf_id, "succeed", "v")),
        )
        out = await handle.result()
        assert out["result"] == "handled: v"
        assert out["operation_token"]

        events = await _history(handle)
        types = _types(events)
        assert _nexus_types(events) == [
            "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_COMPLETED",
        ]
        # Started and Completed each schedule a workflow task
        assert types[types.index("NEXUS_OPERATION_STARTED") + 1] == "WORKFLOW_TASK_SCHEDULED"
        assert types[types.index("NEXUS_OPERATION_COMPLETED") + 1] == "WORKFLOW_TASK_SCHEDULED"
        scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
        _assert_scheduled(scheduled, endpoint, "run_workflow")
        request_id = scheduled.nexus_operation_scheduled_event_attributes.request_id

        started_event = _only(events, "NEXUS_OPERATION_STARTED")
        started = started_event.nexus_operation_started_event_attributes
        assert started.scheduled_event_id == scheduled.event_id
        assert started.request_id == request_id
        assert started.operation_token == out["operation_token"]
        assert started.operation_id == started.operation_token  # deprecated copy
        # the Started event links to the handler workflow's start
        [link] = started_event.links
        assert link.workflow_event.namespace == "default"
        assert link.workflow_event.workflow_id == wf_id
        assert link.workflow_event.run_id
        assert link.workflow_event.event_ref.event_id == 1
        assert link.workflow_event.event_ref.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED

        completed = _only(events, "NEXUS_OPERATION_COMPLETED").nexus_operation_completed_event_attributes
        assert completed.scheduled_event_id == scheduled.event_id
        assert completed.request_id == request_id
        assert completed.result.data == b'"handled: v"'

        # the handler workflow carries the completion callback and a link back to the caller
        h_handle = client.get_workflow_handle(wf_id)
        h_desc = await h_handle.describe()
        assert h_desc.status == WorkflowExecutionStatus.COMPLETED
        assert link.workflow_event.run_id == h_desc.run_id
        h_events = await _history(h_handle)
        assert _types(h_events) == [
            "WORKFLOW_EXECUTION_STARTED", "WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED",
            "WORKFLOW_TASK_COMPLETED", "WORKFLOW_EXECUTION_COMPLETED",
        ]
        h_started = h_events[0].workflow_execution_started_event_attributes
        assert h_started.workflow_type.name == "HandlerWorkflow"
        assert h_started.task_queue.name == task_queue
        [callback] = h_started.completion_callbacks
        assert callback.nexus.url == "temporal://system"
        headers = {k.lower(): v for k, v in callback.nexus.header.items()}
        assert headers.get("nexus-operation-token") == out["operation_token"]
        assert headers.get("temporal-callback-token")
        callback_links = list(callback.links) or list(h_events[0].links)
        caller_links = [l.workflow_event for l in callback_links if l.HasField("workflow_event")]
        assert len(caller_links) == 1
        assert caller_links[0].namespace == "default"
        assert caller_links[0].workflow_id == handle.id
        assert caller_links[0].run_id == (await handle.describe()).run_id
        assert caller_links[0].event_ref.event_id == scheduled.event_id
        assert caller_links[0].event_ref.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED
        # the callback was delivered once, on close
        async def callback_done():
            cbs = (await h_handle.describe()).raw_description.callbacks
            return cbs if cbs and cbs[0].state == CallbackState.CALLBACK_STATE_SUCCEEDED else None

        [cb_info] = await _wait_for(callback_done)
        assert cb_info.callback.nexus.url == "temporal://system"
        assert cb_info.trigger.HasField("workflow_closed")
        assert cb_info.attempt == 1


async def test_async_operation_handler_workflow_fails(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        wf_id = f"nexus-handler-{uuid.uuid4()}"
        handle = await _start_caller(
            client, task_queue,
            CallInput(endpoint, "run_workflow", workflow_input=HandlerWorkflowInput(wf_id, "fail")),
        )
        out = await handle.result()
        nexus_err, cause = out["error"]
        assert nexus_err["class"] == "NexusOperationError"
        assert nexus_err["operation_token"] == out["operation_token"] != ""
        assert cause["class"] == "ApplicationError"
        assert cause["type"] == "HandlerWorkflowFailure"
        assert cause["message"] == "handler workflow failed"

        events = await _history(handle)
        assert _nexus_types(events) == [
            "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_FAILED",
        ]
        attrs, failure = _nexus_failure(_only(events, "NEXUS_OPERATION_FAILED"), "failed")
        scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
        assert attrs.scheduled_event_id == scheduled.event_id
        info = failure.nexus_operation_execution_failure_info
        assert info.operation == "run_workflow"
        assert info.operation_token == out["operation_token"]
        assert failure.cause.message == "handler workflow failed"
        assert failure.cause.application_failure_info.type == "HandlerWorkflowFailure"
        assert failure.cause.application_failure_info.non_retryable
        h_desc = await client.get_workflow_handle(wf_id).describe()
        assert h_desc.status == WorkflowExecutionStatus.FAILED


async def test_async_operation_cancel(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        wf_id = f"nexus-handler-{uuid.uuid4()}"
        handle = await _start_caller(
            client, task_queue,
            CallInput(
                endpoint, "run_workflow",
                workflow_input=HandlerWorkflowInput(wf_id, "wait_slow_cancel"), cancel=True,
            ),
        )
        out = await handle.result()
        nexus_err, cause = out["error"]
        assert nexus_err["class"] == "NexusOperationError"
        assert nexus_err["operation_token"] == out["operation_token"] != ""
        assert cause["class"] == "CancelledError"
        assert cause["message"] == "operation canceled"

        events = await _history(handle)
        nexus_types = _nexus_types(events)
        assert nexus_types == [
            "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_CANCEL_REQUESTED",
            "NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED", "NEXUS_OPERATION_CANCELED",
        ]
        types = _types(events)
        # RequestCancelNexusOperation is a command event; CancelRequestCompleted, Canceled
        # (and Started) each schedule a workflow task
        i = types.index("NEXUS_OPERATION_CANCEL_REQUESTED")
        assert types[i - 1] == "WORKFLOW_TASK_COMPLETED"
        for name in (
            "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED", "NEXUS_OPERATION_CANCELED",
        ):
            assert types[types.index(name) + 1] == "WORKFLOW_TASK_SCHEDULED", name
        scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
        requested = _only(events, "NEXUS_OPERATION_CANCEL_REQUESTED")
        r_attrs = requested.nexus_operation_cancel_requested_event_attributes
        assert r_attrs.scheduled_event_id == scheduled.event_id
        assert r_attrs.workflow_task_completed_event_id == requested.event_id - 1
        rc_attrs = _only(
            events, "NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED"
        ).nexus_operation_cancel_request_completed_event_attributes
        assert rc_attrs.requested_event_id == requested.event_id
        assert rc_attrs.scheduled_event_id == scheduled.event_id
        attrs, failure = _nexus_failure(_only(events, "NEXUS_OPERATION_CANCELED"), "canceled")
        assert attrs.scheduled_event_id == scheduled.event_id
        assert attrs.request_id == scheduled.nexus_operation_scheduled_event_attributes.request_id
        assert failure.nexus_operation_execution_failure_info.operation_token == out["operation_token"]
        assert failure.cause.message == "operation canceled"
        assert failure.cause.HasField("canceled_failure_info")

        h_handle = client.get_workflow_handle(wf_id)
        assert (await h_handle.describe()).status == WorkflowExecutionStatus.CANCELED
        h_events = await _history(h_handle)
        h_types = _types(h_events)
        assert h_types[:5] == [
            "WORKFLOW_EXECUTION_STARTED", "WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED",
            "WORKFLOW_TASK_COMPLETED", "WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        ]
        assert h_types[-1] == "WORKFLOW_EXECUTION_CANCELED"


@workflow.defn
class CancelBeforeStartWorkflow:
    """Starts an operation and, on signal, cancels it while its start request is still
    with the handler (so the server has no operation token yet)."""

    def __init__(self) -> None:
        self._cancel = False

    @workflow.signal
    def cancel_now(self) -> None:
        self._cancel = True

    @workflow.run
    async def run(self, input: CallInput) -> Dict[str, Any]:
        client = workflow.create_nexus_client(service=ConformanceService, endpoint=input.endpoint)
        arg: Any = input.workflow_input if input.operation == "run_workflow" else input.arg
        # start_operation resolves once the operation started (or completed, if sync)
        start = asyncio.ensure_future(client.start_operation(input.operation, arg, output_type=str))
        await workflow.wait_condition(lambda: self._cancel)
        start.cancel()
        try:
            handle = await start
            return {"result": await handle}
        except NexusOperationError as err:
            return {"error": _describe_error_chain(err)}


async def _cancel_while_starting(client: Client, task_queue: str, call: CallInput, entered, release):
    """Run CancelBeforeStartWorkflow: wait until the handler is inside the start request,
    signal the cancel, check the pending operation, then let the start request finish."""
    handle = await _start_caller(client, task_queue, call, CancelBeforeStartWorkflow.run)
    try:
        await asyncio.wait_for(entered(), 10)
        [op] = (await handle.describe()).raw_description.pending_nexus_operations
        # first attempt in flight: SCHEDULED, attempt 0 (no attempt finished yet)
        assert op.state == PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_SCHEDULED
        assert op.attempt == 0
        assert not op.HasField("cancellation_info")
        await handle.signal(CancelBeforeStartWorkflow.cancel_now)

        async def cancel_recorded():
            events = await _history(handle)
            return "NEXUS_OPERATION_CANCEL_REQUESTED" in _types(events)

        await _wait_for(cancel_recorded)
        [op] = (await handle.describe()).raw_description.pending_nexus_operations
        # the cancel request waits for the start: the operation stays SCHEDULED and
        # the cancellation is only noted
        assert op.state == PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_SCHEDULED
        assert op.HasField("cancellation_info")
        assert not op.operation_token
        await asyncio.sleep(0.5)
        assert _nexus_types(await _history(handle)) == [
            "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_CANCEL_REQUESTED",
        ]
        release()
        out = await asyncio.wait_for(handle.result(), 15)
        return handle, out, await _history(handle)
    finally:
        release()
        await _terminate_quietly(handle)


async def test_cancel_sync_operation_before_it_completes(client: Client, task_queue: str):
    """A cancel requested while a sync start request is in flight is recorded but not
    sent; the sync result then completes the operation normally."""
    handler = ConformanceServiceHandler(flaky_failures=0)
    handler.flaky_release.clear()

    async def entered():
        while handler.flaky_attempts["y"] < 1:
            await asyncio.sleep(0.05)

    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue, handler):
        handle, out, events = await _cancel_while_starting(
            client, task_queue, CallInput(endpoint, "flaky", arg="y"), entered, handler.flaky_release.set,
        )
    assert out == {"result": "flaky ok after 1 attempts"}
    assert _nexus_types(events) == [
        "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_CANCEL_REQUESTED", "NEXUS_OPERATION_COMPLETED",
    ]
    types = _types(events)
    # CancelRequested is a command event (schedules no workflow task); Completed follows it
    i = types.index("NEXUS_OPERATION_CANCEL_REQUESTED")
    assert types[i - 1] == "WORKFLOW_TASK_COMPLETED"
    assert types[i + 1 : i + 3] == ["NEXUS_OPERATION_COMPLETED", "WORKFLOW_TASK_SCHEDULED"]
    assert handler.flaky_attempts["y"] == 1


async def test_cancel_async_operation_before_it_started(client: Client, task_queue: str):
    """A cancel requested while an async start request is in flight is delivered once the
    operation has started (has a token): Started, then CancelRequestCompleted, Canceled."""
    handler = ConformanceServiceHandler()
    wf_id = f"nexus-handler-{uuid.uuid4()}"

    async def entered():
        await handler.start_entered.wait()

    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue, handler):
        handle, out, events = await _cancel_while_starting(
            client, task_queue,
            CallInput(
                endpoint, "run_workflow",
                workflow_input=HandlerWorkflowInput(wf_id, "wait_slow_cancel", gate_start=True),
            ),
            entered, handler.start_release.set,
        )
        h_handle = client.get_workflow_handle(wf_id)
        try:
            nexus_err, cause = out["error"]
            assert nexus_err["class"] == "NexusOperationError"
            assert nexus_err["operation_token"]
            assert cause["class"] == "CancelledError"
            assert _nexus_types(events) == [
                "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_CANCEL_REQUESTED", "NEXUS_OPERATION_STARTED",
                "NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED", "NEXUS_OPERATION_CANCELED",
            ]
            assert (await h_handle.describe()).status == WorkflowExecutionStatus.CANCELED
        finally:
            await _terminate_quietly(h_handle)


async def test_async_operation_schedule_to_close_timeout(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        wf_id = f"nexus-handler-{uuid.uuid4()}"
        h_handle = client.get_workflow_handle(wf_id)
        try:
            t0 = time.monotonic()
            handle = await _start_caller(
                client, task_queue,
                CallInput(
                    endpoint, "run_workflow",
                    workflow_input=HandlerWorkflowInput(wf_id, "sleep"),
                    # not shorter: each start attempt needs >= 1.5 s left (else the reference
                    # times the operation out at once) and matching keeps a 1 s buffer
                    schedule_to_close_seconds=4,
                ),
            )
            out = await handle.result()
            elapsed = time.monotonic() - t0
            assert 3.5 <= elapsed <= 8, elapsed
            nexus_err, cause = out["error"]
            assert nexus_err["class"] == "NexusOperationError"
            assert cause == {
                "class": "TimeoutError", "message": "operation timed out", "timeout_type": "SCHEDULE_TO_CLOSE",
            }

            events = await _history(handle)
            assert _nexus_types(events) == [
                "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_TIMED_OUT",
            ]
            scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED")
            s_attrs = scheduled.nexus_operation_scheduled_event_attributes
            assert s_attrs.schedule_to_close_timeout.ToTimedelta() == timedelta(seconds=4)
            attrs, failure = _nexus_failure(_only(events, "NEXUS_OPERATION_TIMED_OUT"), "timed_out")
            assert attrs.scheduled_event_id == scheduled.event_id
            assert failure.nexus_operation_execution_failure_info.operation_token == out["operation_token"]
            assert failure.cause.message == "operation timed out"
            assert failure.cause.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE
            # the reference does not cancel the handler workflow on timeout
            await asyncio.sleep(0.5)
            h_desc = await h_handle.describe()
            assert h_desc.status == WorkflowExecutionStatus.RUNNING
            assert "WORKFLOW_EXECUTION_CANCEL_REQUESTED" not in _types(await _history(h_handle))
        finally:
            await _terminate_quietly(h_handle)


async def test_describe_pending_async_operation(client: Client, task_queue: str):
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(client, task_queue):
        wf_id = f"nexus-handler-{uuid.uuid4()}"
        h_handle = client.get_workflow_handle(wf_id)
        handle = await _start_caller(
            client, task_queue,
            CallInput(
                endpoint, "run_workflow",
                workflow_input=HandlerWorkflowInput(wf_id, "wait"),
                schedule_to_close_seconds=30,
            ),
        )
        try:
            async def started():
                ops = (await handle.describe()).raw_description.pending_nexus_operations
                if ops and ops[0].operation_token:
                    return ops
                return None

            ops = await _wait_for(started)
            [op] = ops
            assert op.endpoint == endpoint
            assert op.service == "ConformanceService"
            assert op.operation == "run_workflow"
            assert op.state == PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_STARTED
            assert op.attempt == 1
            assert op.scheduled_event_id == _only(await _history(handle), "NEXUS_OPERATION_SCHEDULED").event_id
            assert op.operation_id == op.operation_token
            assert op.schedule_to_close_timeout.ToTimedelta() == timedelta(seconds=30)
            assert op.HasField("scheduled_time")
            assert not op.HasField("last_attempt_failure")
            assert not op.HasField("cancellation_info")
            # the token is the one the handler workflow's callback carries
            h_events = await _history(h_handle)
            [callback] = h_events[0].workflow_execution_started_event_attributes.completion_callbacks
            headers = {k.lower(): v for k, v in callback.nexus.header.items()}
            assert headers["nexus-operation-token"] == op.operation_token
        finally:
            await _terminate_quietly(handle)
            await _terminate_quietly(h_handle)


async def test_unknown_endpoint_fails_workflow_task(client: Client, task_queue: str):
    async with _worker(client, task_queue):
        handle = await _start_caller(client, task_queue, CallInput("no-such-endpoint", "echo", arg="x"))
        try:
            async def failed_task():
                events = await _history(handle)
                return events if "WORKFLOW_TASK_FAILED" in _types(events) else None

            events = await _wait_for(failed_task)
            assert _types(events)[:4] == [
                "WORKFLOW_EXECUTION_STARTED", "WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED",
                "WORKFLOW_TASK_FAILED",
            ]
            assert not _nexus_types(events)
            attrs = events[3].workflow_task_failed_event_attributes
            assert attrs.cause == (
                WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_NEXUS_OPERATION_ATTRIBUTES
            )
            assert attrs.failure.message == (
                'BadScheduleNexusOperationAttributes: endpoint "no-such-endpoint" not found'
            )
            assert attrs.failure.HasField("server_failure_info")
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        finally:
            await _terminate_quietly(handle)


# ---------------------------------------------------------------------------
# worker interceptors see a started-then-cancelled workflow_run_operation
# ---------------------------------------------------------------------------


class _TracingWorkflowOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, traces: List[tuple]) -> None:
        super().__init__(next)
        self._traces = traces

    async def start_nexus_operation(self, input: StartNexusOperationInput):
        if not workflow.unsafe.is_replaying():
            op = input.operation
            if not isinstance(op, str):
                op = getattr(op, "name", op)
            self._traces.append(("workflow.start_nexus_operation", input.endpoint, input.service, op, input.input))
        return await super().start_nexus_operation(input)


class _TracingWorkflowInbound(WorkflowInboundInterceptor):
    traces: List[tuple] = []  # replaced per interceptor by a subclass

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_TracingWorkflowOutbound(outbound, self.traces))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if not workflow.unsafe.is_replaying():
            self.traces.append(("workflow.execute", workflow.info().workflow_type, input.args))
        return await super().execute_workflow(input)


class _TracingNexusInbound(NexusOperationInboundInterceptor):
    def __init__(self, next: NexusOperationInboundInterceptor, traces: List[tuple]) -> None:
        super().__init__(next)
        self._traces = traces

    async def execute_nexus_operation_start(self, input: ExecuteNexusOperationStartInput):
        self._traces.append(("nexus.start", input.ctx.service, input.ctx.operation, input.input, input.ctx))
        return await super().execute_nexus_operation_start(input)

    async def execute_nexus_operation_cancel(self, input: ExecuteNexusOperationCancelInput):
        self._traces.append(("nexus.cancel", input.ctx.service, input.ctx.operation, input.token, input.ctx))
        return await super().execute_nexus_operation_cancel(input)


class _TracingInterceptor(Interceptor):
    def __init__(self) -> None:
        self.traces: List[tuple] = []

    def intercept_nexus_operation(self, next: NexusOperationInboundInterceptor) -> NexusOperationInboundInterceptor:
        return _TracingNexusInbound(next, self.traces)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput):
        return type("_BoundTracingWorkflowInbound", (_TracingWorkflowInbound,), {"traces": self.traces})


@workflow.defn
class InterceptedCallerWorkflow:
    """Start a workflow_run_operation, cancel it at once after it started, await it."""

    @workflow.run
    async def run(self, input: CallInput) -> Dict[str, Any]:
        client = workflow.create_nexus_client(service=ConformanceService, endpoint=input.endpoint)
        handle = await client.start_operation(ConformanceService.run_workflow, input.workflow_input)
        token = handle.operation_token
        handle.cancel()
        try:
            await handle
        except NexusOperationError as err:
            return {"error": _describe_error_chain(err), "operation_token": token}
        return {"error": None, "operation_token": token}


async def test_worker_interceptors_see_started_then_cancelled_operation(client: Client, task_queue: str):
    interceptor = _TracingInterceptor()
    wf_id = f"nexus-handler-{uuid.uuid4()}"
    async with nexus_endpoint(client, task_queue) as endpoint, _worker(
        client, task_queue, interceptors=[interceptor]
    ):
        handle = await _start_caller(
            client, task_queue,
            CallInput(
                endpoint, "run_workflow",
                workflow_input=HandlerWorkflowInput(wf_id, "expect_cancel", "nexus-workflow"),
            ),
            InterceptedCallerWorkflow.run,
        )
        out = await handle.result()
        h_handle = client.get_workflow_handle(wf_id)
        assert (await h_handle.describe()).status == WorkflowExecutionStatus.CANCELED
        events = await _history(handle)

    token = out["operation_token"]
    assert token
    nexus_err, cause = out["error"]
    assert nexus_err["class"] == "NexusOperationError"
    assert nexus_err["operation_token"] == token
    assert cause["class"] == "CancelledError"

    traces = interceptor.traces
    kinds = [t[0] for t in traces]
    # caller start, nexus start, handler workflow start, nexus cancel: once each
    assert sorted(kinds) == sorted([
        "workflow.execute", "workflow.start_nexus_operation", "nexus.start", "workflow.execute", "nexus.cancel",
    ])
    executes = [t for t in traces if t[0] == "workflow.execute"]
    assert [t[1] for t in executes] == ["InterceptedCallerWorkflow", "HandlerWorkflow"]
    [handler_args] = [t[2] for t in executes if t[1] == "HandlerWorkflow"]
    assert handler_args[0].value == "nexus-workflow"

    [(_, ep, service, op, arg)] = [t for t in traces if t[0] == "workflow.start_nexus_operation"]
    assert (ep, service, op) == (endpoint, "ConformanceService", "run_workflow")
    assert arg.workflow_id == wf_id

    [(_, service, op, arg, start_ctx)] = [t for t in traces if t[0] == "nexus.start"]
    assert (service, op) == ("ConformanceService", "run_workflow")
    assert arg.value == "nexus-workflow"
    # what the server put in the start request it dispatched to the worker
    scheduled = _only(events, "NEXUS_OPERATION_SCHEDULED").nexus_operation_scheduled_event_attributes
    assert start_ctx.request_id == scheduled.request_id
    assert start_ctx.callback_url == "temporal://system"
    assert {k.lower() for k in start_ctx.callback_headers} >= {"temporal-callback-token"}
    assert len(start_ctx.inbound_links) == 1

    [(_, service, op, cancel_token, cancel_ctx)] = [t for t in traces if t[0] == "nexus.cancel"]
    assert (service, op) == ("ConformanceService", "run_workflow")
    assert cancel_token == token
    assert kinds.index("workflow.start_nexus_operation") < kinds.index("nexus.start") < kinds.index("nexus.cancel")

    nexus_types = _nexus_types(events)
    assert nexus_types[:3] == [
        "NEXUS_OPERATION_SCHEDULED", "NEXUS_OPERATION_STARTED", "NEXUS_OPERATION_CANCEL_REQUESTED",
    ]
    # the handler workflow ends at once on cancel, so its completion callback may beat the
    # cancel request's response; the reference then records no CancelRequestCompleted
    assert nexus_types[3:] in (
        ["NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED", "NEXUS_OPERATION_CANCELED"],
        ["NEXUS_OPERATION_CANCELED"],
    )
