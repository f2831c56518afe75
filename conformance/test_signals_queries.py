"""Signals and queries: request-id dedup, signal-with-start, signals racing a
running workflow task, queries on open/closed workflows, reject conditions,
unknown query types, queries without a worker and signals to closed workflows."""

import asyncio
import time
import uuid
from datetime import timedelta
from typing import List

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.enums.v1 import QueryRejectCondition as ApiQueryRejectCondition
from temporalio.api.enums.v1 import WorkflowExecutionStatus as ApiWorkflowExecutionStatus
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest, SignalWorkflowExecutionRequest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import QueryRejectCondition
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker


@workflow.defn
class SignalCollectorWorkflow:
    """Collects ``add`` signals until it has ``expected`` of them."""

    def __init__(self) -> None:
        self._values: List[int] = []

    @workflow.run
    async def run(self, expected: int, block_first_task_s: float = 0.0) -> List[int]:
        if block_first_task_s and not workflow.unsafe.is_replaying():
            # keep the first workflow task busy on the worker so that signals arrive
            # while it is in flight
            with workflow.unsafe.sandbox_unrestricted():
                time.sleep(block_first_task_s)
        await workflow.wait_condition(lambda: len(self._values) >= expected)
        return self._values

    @workflow.signal
    def add(self, value: int) -> None:
        self._values.append(value)

    @workflow.query
    def values(self) -> List[int]:
        return self._values


@pytest.fixture(scope="module")
async def task_queue():
    return f"tq-signals-queries-{uuid.uuid4()}"


@pytest.fixture(scope="module")
async def worker(client, task_queue):
    async with Worker(client, task_queue=task_queue, workflows=[SignalCollectorWorkflow]):
        yield


def _signaled(history) -> List:
    return [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


def _decode_ints(client, attrs_list) -> List[int]:
    return [client.data_converter.payload_converter.from_payloads(a.input.payloads, [int])[0] for a in attrs_list]


async def _wait_for_event(handle, event_type: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.event_type == event_type for e in (await handle.fetch_history()).events):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{handle.id}: no {EventType.Name(event_type)} within {timeout}s")


async def test_signal_dedup_by_request_id(client, worker, task_queue, new_id):
    handle = await client.start_workflow(SignalCollectorWorkflow.run, 2, id=new_id("sig-dedup"), task_queue=task_queue)

    def request(value: int, request_id: str) -> SignalWorkflowExecutionRequest:
        return SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id),
            signal_name="add",
            input=Payloads(payloads=[client.data_converter.payload_converter.to_payload(value)]),
            identity="conformance",
            request_id=request_id,
        )

    # the same request twice (a client retry): delivered once
    await client.workflow_service.signal_workflow_execution(request(1, "req-dup"))
    await client.workflow_service.signal_workflow_execution(request(1, "req-dup"))
    await client.workflow_service.signal_workflow_execution(request(2, "req-other"))
    assert await asyncio.wait_for(handle.result(), 10) == [1, 2]

    signaled = _signaled(await handle.fetch_history())
    assert _decode_ints(client, signaled) == [1, 2]
    assert [s.identity for s in signaled] == ["conformance", "conformance"]
    assert all(s.signal_name == "add" for s in signaled)


async def test_signal_with_start(client, worker, task_queue, new_id, history_types):
    wf_id = new_id("sig-with-start")
    # not running yet: the workflow is started and the signal is in its first task
    first = await client.start_workflow(
        SignalCollectorWorkflow.run, 2, id=wf_id, task_queue=task_queue, start_signal="add", start_signal_args=[10]
    )
    await _wait_for_event(first, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    assert await first.query(SignalCollectorWorkflow.values) == [10]
    # already running: the same run is signalled, nothing new is started
    second = await client.start_workflow(
        SignalCollectorWorkflow.run, 2, id=wf_id, task_queue=task_queue, start_signal="add", start_signal_args=[11]
    )
    assert second.result_run_id == first.result_run_id
    assert await asyncio.wait_for(first.result(), 10) == [10, 11]

    types = await history_types(first)
    assert types[:3] == ["WORKFLOW_EXECUTION_STARTED", "WORKFLOW_EXECUTION_SIGNALED", "WORKFLOW_TASK_SCHEDULED"]
    assert types.count("WORKFLOW_EXECUTION_STARTED") == 1
    assert types.count("WORKFLOW_EXECUTION_SIGNALED") == 2
    assert types[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    history = await first.fetch_history()
    assert _decode_ints(client, _signaled(history)) == [10, 11]
    started = history.events[0].workflow_execution_started_event_attributes
    assert client.data_converter.payload_converter.from_payloads(started.input.payloads, [int]) == [2]


async def test_concurrent_signals_during_workflow_task_delivered_once(client, worker, task_queue, new_id):
    count = 20
    handle = await client.start_workflow(
        SignalCollectorWorkflow.run, args=[count, 1.0], id=new_id("sig-burst"), task_queue=task_queue
    )
    # the first workflow task is now running on the worker for ~1 s
    await _wait_for_event(handle, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    await asyncio.gather(*(handle.signal(SignalCollectorWorkflow.add, i) for i in range(count)))
    result = await asyncio.wait_for(handle.result(), 15)
    assert sorted(result) == list(range(count))

    history = await handle.fetch_history()
    signaled = _signaled(history)
    assert sorted(_decode_ints(client, signaled)) == list(range(count))
    # the worker saw them in history order
    assert result == _decode_ints(client, signaled)
    types = [e.event_type for e in history.events]
    # signals that arrive during a running task are written after it completes
    first_completed = types.index(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    assert types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) > first_completed
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
    ids = [e.event_id for e in history.events]
    assert ids == list(range(1, len(ids) + 1))


async def test_query_open_and_closed_workflow(client, worker, task_queue, new_id):
    handle = await client.start_workflow(SignalCollectorWorkflow.run, 2, id=new_id("query"), task_queue=task_queue)
    await handle.signal(SignalCollectorWorkflow.add, 7)
    assert await handle.query(SignalCollectorWorkflow.values) == [7]
    # NOT_OPEN does not reject a running workflow
    assert await handle.query(SignalCollectorWorkflow.values, reject_condition=QueryRejectCondition.NOT_OPEN) == [7]

    await handle.signal(SignalCollectorWorkflow.add, 8)
    assert await asyncio.wait_for(handle.result(), 10) == [7, 8]
    # a closed workflow is still queryable (the worker replays it) ...
    assert await handle.query(SignalCollectorWorkflow.values) == [7, 8]
    # ... NOT_COMPLETED_CLEANLY does not reject a successfully completed one ...
    assert await handle.query(
        SignalCollectorWorkflow.values, reject_condition=QueryRejectCondition.NOT_COMPLETED_CLEANLY
    ) == [7, 8]
    # ... but NOT_OPEN does
    with pytest.raises(WorkflowQueryRejectedError) as exc_info:
        await handle.query(SignalCollectorWorkflow.values, reject_condition=QueryRejectCondition.NOT_OPEN)
    assert exc_info.value.status == WorkflowExecutionStatus.COMPLETED
    # on the wire a rejection is a successful response carrying query_rejected
    resp = await client.workflow_service.query_workflow(
        QueryWorkflowRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=handle.id),
            query=WorkflowQuery(query_type="values"),
            query_reject_condition=ApiQueryRejectCondition.QUERY_REJECT_CONDITION_NOT_OPEN,
        )
    )
    assert resp.query_rejected.status == ApiWorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED
    assert not resp.HasField("query_result")


async def test_unknown_query_type_fails_query_not_workflow(client, worker, task_queue, new_id):
    handle = await client.start_workflow(SignalCollectorWorkflow.run, 1, id=new_id("query-unknown"), task_queue=task_queue)
    with pytest.raises(WorkflowQueryFailedError) as exc_info:
        await handle.query("no_such_query")
    assert exc_info.value.message == (
        "Query handler for 'no_such_query' expected but not found, known queries: "
        "[__enhanced_stack_trace __stack_trace __temporal_workflow_metadata values]"
    )
    # on the wire: INVALID_ARGUMENT with a QueryFailedFailure detail
    with pytest.raises(RPCError) as raw_info:
        await client.workflow_service.query_workflow(
            QueryWorkflowRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=handle.id),
                query=WorkflowQuery(query_type="no_such_query"),
            ),
            retry=False,
        )
    assert raw_info.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert raw_info.value.message == exc_info.value.message
    assert [d.type_url for d in raw_info.value.grpc_status.details] == [
        "type.googleapis.com/temporal.api.errordetails.v1.QueryFailedFailure"
    ]
    # the workflow is unharmed
    await handle.signal(SignalCollectorWorkflow.add, 1)
    assert await asyncio.wait_for(handle.result(), 10) == [1]
    types = [e.event_type for e in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types


async def test_query_without_worker_times_out(client, new_id):
    tq = new_id("tq-query-noworker")
    async with Worker(client, task_queue=tq, workflows=[SignalCollectorWorkflow]):
        handle = await client.start_workflow(SignalCollectorWorkflow.run, 1, id=new_id("query-noworker"), task_queue=tq)
        assert await handle.query(SignalCollectorWorkflow.values) == []
    # the worker is gone: the server holds the query until the caller's deadline
    request = QueryWorkflowRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=handle.id),
        query=WorkflowQuery(query_type="values"),
    )
    t0 = time.monotonic()
    with pytest.raises(RPCError) as exc_info:
        await client.workflow_service.query_workflow(request, retry=False, timeout=timedelta(seconds=3))
    elapsed = time.monotonic() - t0
    assert 2.5 <= elapsed < 4.5, elapsed
    # on the reference either the client's deadline fires first (CANCELLED "Timeout expired")
    # or the server answers DEADLINE_EXCEEDED "query timed out before a worker could process it"
    assert exc_info.value.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED), exc_info.value

    # through the SDK: rpc_timeout bounds each attempt; the SDK may retry a
    # DEADLINE_EXCEEDED once, so allow two attempts
    t0 = time.monotonic()
    with pytest.raises(RPCError) as exc_info:
        await handle.query(SignalCollectorWorkflow.values, rpc_timeout=timedelta(seconds=2))
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 2 * 2 + 1.5, elapsed
    assert exc_info.value.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED), exc_info.value
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.terminate(reason="test done")


async def test_signal_to_closed_workflow_is_not_found(client, worker, task_queue, new_id):
    handle = await client.start_workflow(SignalCollectorWorkflow.run, 1, id=new_id("sig-closed"), task_queue=task_queue)
    await handle.signal(SignalCollectorWorkflow.add, 3)
    assert await asyncio.wait_for(handle.result(), 10) == [3]
    with pytest.raises(RPCError) as exc_info:
        await handle.signal(SignalCollectorWorkflow.add, 4)
    assert exc_info.value.status == RPCStatusCode.NOT_FOUND
    assert exc_info.value.message == "workflow execution already completed"
    assert [d.type_url for d in exc_info.value.grpc_status.details] == [
        "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"
    ]
    assert len(_signaled(await handle.fetch_history())) == 1

    missing_id = new_id("sig-missing")
    with pytest.raises(RPCError) as exc_info:
        await client.get_workflow_handle(missing_id).signal(SignalCollectorWorkflow.add, 5)
    assert exc_info.value.status == RPCStatusCode.NOT_FOUND
    assert exc_info.value.message == f"workflow not found for ID: {missing_id}"
