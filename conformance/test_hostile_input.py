"""Hostile or broken input gets a clear error and never takes the server down.

Each test runs its own Sundial process, so that a server killed by one case cannot hide
another, and checks afterwards that the process is alive and still answers.
Limits are Temporal's defaults where Temporal has one (limit.maxIDLength = 1000,
frontend.searchAttributesSizeOfValueLimit = 2 KiB, frontend.searchAttributesTotalSizeLimit
= 40 KiB, limit.memoSize.error = 2 MiB, frontend.visibilityMaxPageSize = 1000, durations
capped at 100 years); the query language's depth and length limits are Sundial's own.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.common.v1 import (
    Memo,
    Payload,
    SearchAttributes,
    WorkflowExecution,
    WorkflowType,
)
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.update.v1 import Input, Meta, Request as UpdateRequest
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryReverseRequest,
    ListSchedulesRequest,
    ListWorkflowExecutionsRequest,
    PollActivityTaskQueueRequest,
    SignalWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

INVALID = RPCStatusCode.INVALID_ARGUMENT
TIMEOUT = timedelta(seconds=10)
MAX_ID = 1000


@pytest.fixture
async def hostile(sundial_factory):
    """A Sundial process of this test's own, and a client on it."""
    proc = sundial_factory()
    await proc.start()
    client = await Client.connect(proc.address, namespace="default")
    yield proc, client


async def assert_alive(proc, client: Client) -> None:
    assert proc.is_running(), f"the server died:\n{proc.log_tail()}"
    resp = await client.workflow_service.count_workflow_executions(
        CountWorkflowExecutionsRequest(namespace="default"), timeout=TIMEOUT
    )
    assert resp.count >= 0


async def refused(call, request, status=INVALID) -> RPCError:
    with pytest.raises(RPCError) as info:
        await call(request, timeout=TIMEOUT)
    assert info.value.status == status, f"{info.value.status.name}: {info.value.message}"
    assert info.value.message.strip()
    return info.value


def start_request(**overrides) -> StartWorkflowExecutionRequest:
    fields = dict(
        namespace="default",
        workflow_id=f"hostile-{uuid.uuid4()}",
        workflow_type=WorkflowType(name="NeverRuns"),
        task_queue=TaskQueue(name=f"hostile-tq-{uuid.uuid4()}"),
        request_id=str(uuid.uuid4()),
    )
    fields.update(overrides)
    return StartWorkflowExecutionRequest(**fields)


def keyword(value) -> Payload:
    return Payload(
        metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode()
    )


async def test_deeply_nested_query_is_refused_and_the_server_survives(hostile):
    proc, client = hostile
    svc = client.workflow_service
    deep = "(" * 10_000 + "WorkflowId = 'x'" + ")" * 10_000
    err = await refused(
        svc.list_workflow_executions,
        ListWorkflowExecutionsRequest(namespace="default", query=deep),
    )
    assert "nested too deeply" in err.message
    nots = "NOT " * 5_000 + "WorkflowId = 'x'"
    err = await refused(
        svc.count_workflow_executions,
        CountWorkflowExecutionsRequest(namespace="default", query=nots),
    )
    assert "nested too deeply" in err.message
    huge = "(" * 50_000 + "WorkflowId = 'x'" + ")" * 50_000
    err = await refused(
        svc.list_workflow_executions,
        ListWorkflowExecutionsRequest(namespace="default", query=huge),
    )
    assert "too long" in err.message
    await assert_alive(proc, client)


async def test_long_chains_and_moderate_nesting_are_answered(hostile):
    proc, client = hostile
    svc = client.workflow_service
    chain = " AND ".join(["HistoryLength >= 0"] * 1200)
    resp = await svc.count_workflow_executions(
        CountWorkflowExecutionsRequest(namespace="default", query=chain), timeout=TIMEOUT
    )
    assert resp.count == 0
    nested = "(" * 60 + "WorkflowId = 'x'" + ")" * 60
    resp = await svc.list_workflow_executions(
        ListWorkflowExecutionsRequest(namespace="default", query=nested), timeout=TIMEOUT
    )
    assert list(resp.executions) == []
    values = ", ".join(f"'id-{i}'" for i in range(1001))
    err = await refused(
        svc.list_workflow_executions,
        ListWorkflowExecutionsRequest(namespace="default", query=f"WorkflowId IN ({values})"),
    )
    assert "too many values" in err.message
    await assert_alive(proc, client)


async def test_oversized_names_are_refused(hostile):
    proc, client = hostile
    svc = client.workflow_service
    req = start_request()
    await svc.start_workflow_execution(req, timeout=TIMEOUT)
    execution = WorkflowExecution(workflow_id=req.workflow_id)
    err = await refused(
        svc.signal_workflow_execution,
        SignalWorkflowExecutionRequest(
            namespace="default",
            workflow_execution=execution,
            signal_name="s" * (MAX_ID + 1),
        ),
    )
    assert "SignalName length exceeds limit." in err.message
    err = await refused(
        svc.update_workflow_execution,
        UpdateWorkflowExecutionRequest(
            namespace="default",
            workflow_execution=execution,
            request=UpdateRequest(
                meta=Meta(update_id="u" * (MAX_ID + 1)), input=Input(name="upd")
            ),
        ),
    )
    assert "UpdateId length exceeds limit." in err.message
    err = await refused(
        svc.poll_activity_task_queue,
        PollActivityTaskQueueRequest(
            namespace="default", task_queue=TaskQueue(name="q" * (MAX_ID + 1))
        ),
    )
    assert "TaskQueue length exceeds limit." in err.message
    err = await refused(
        svc.start_workflow_execution, start_request(identity="i" * (MAX_ID + 1))
    )
    assert "Identity length exceeds limit." in err.message
    await assert_alive(proc, client)


async def test_search_attribute_and_memo_sizes_are_temporals(hostile):
    proc, client = hostile
    names = [f"HostileKeyword{i}" for i in range(25)]
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in names},
        ),
        timeout=TIMEOUT,
    )
    svc = client.workflow_service
    err = await refused(
        svc.start_workflow_execution,
        start_request(
            search_attributes=SearchAttributes(indexed_fields={names[0]: keyword("k" * 3000)})
        ),
    )
    assert "exceeds size limit 2048" in err.message, err.message
    many = {n: keyword("v" * 2000) for n in names}
    err = await refused(
        svc.start_workflow_execution,
        start_request(search_attributes=SearchAttributes(indexed_fields=many)),
    )
    assert "total size of search attributes" in err.message, err.message
    too_many = {f"Unregistered{i}": keyword("v") for i in range(101)}
    err = await refused(
        svc.start_workflow_execution,
        start_request(search_attributes=SearchAttributes(indexed_fields=too_many)),
    )
    assert "number of search attributes 101 exceeds limit 100" in err.message, err.message
    # Each field under the 2 MiB blob limit, the memo over Temporal's 2 MiB memo limit.
    memo = Memo(fields={f"m{i}": keyword("x" * (600 * 1024)) for i in range(4)})
    err = await refused(svc.start_workflow_execution, start_request(memo=memo))
    assert "Memo size exceeds limit." in err.message
    await assert_alive(proc, client)


async def test_overflowing_durations_are_capped_not_crashing(hostile):
    proc, client = hostile
    svc = client.workflow_service
    huge = Duration(seconds=2**63 - 1, nanos=999_999_999)
    req = start_request(workflow_execution_timeout=huge, workflow_run_timeout=huge)
    resp = await svc.start_workflow_execution(req, timeout=TIMEOUT)
    assert resp.run_id
    described = await svc.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace="default", execution=WorkflowExecution(workflow_id=req.workflow_id)
        ),
        timeout=TIMEOUT,
    )
    # Capped at 100 years, as Temporal caps durations.
    timeout = described.execution_config.workflow_execution_timeout.seconds
    assert timeout == 100 * 365 * 24 * 3600, timeout
    err = await refused(
        svc.start_workflow_execution,
        start_request(workflow_run_timeout=Duration(seconds=-(2**63), nanos=-1)),
    )
    assert "negative duration" in err.message
    await assert_alive(proc, client)


async def test_unknown_enum_values_are_refused(hostile):
    proc, client = hostile
    svc = client.workflow_service
    err = await refused(
        svc.start_workflow_execution, start_request(workflow_id_reuse_policy=99)
    )
    assert "WorkflowIdReusePolicy" in err.message
    err = await refused(
        svc.start_workflow_execution, start_request(workflow_id_conflict_policy=-3)
    )
    assert "WorkflowIdConflictPolicy" in err.message
    await assert_alive(proc, client)


async def test_page_sizes_and_forged_page_tokens(hostile):
    proc, client = hostile
    svc = client.workflow_service
    req = start_request()
    await svc.start_workflow_execution(req, timeout=TIMEOUT)
    # Negative and oversized page sizes get the largest page.
    for size in (-5, 2**31 - 1):
        resp = await svc.list_workflow_executions(
            ListWorkflowExecutionsRequest(namespace="default", page_size=size), timeout=TIMEOUT
        )
        assert len(resp.executions) == 1
    await refused(
        svc.list_workflow_executions,
        ListWorkflowExecutionsRequest(namespace="default", next_page_token=b"\xff" * 8),
    )
    resp = await svc.list_schedules(
        ListSchedulesRequest(
            namespace="default",
            maximum_page_size=2**31 - 1,
            next_page_token=str(2**64 - 1).encode(),
        ),
        timeout=TIMEOUT,
    )
    assert list(resp.schedules) == []
    reverse = await svc.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace="default",
            execution=WorkflowExecution(workflow_id=req.workflow_id),
            maximum_page_size=2**31 - 1,
        ),
        timeout=TIMEOUT,
    )
    assert len(reverse.history.events) >= 1
    await refused(
        svc.get_workflow_execution_history_reverse,
        GetWorkflowExecutionHistoryReverseRequest(
            namespace="default",
            execution=WorkflowExecution(workflow_id=req.workflow_id),
            maximum_page_size=2**31 - 1,
            next_page_token=b"\xff" * 8,
        ),
    )
    await assert_alive(proc, client)
