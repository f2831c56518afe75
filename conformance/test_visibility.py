"""Visibility: listing and counting workflows with Temporal's list filter language,
custom search attributes (register, set on start, upsert from a workflow, query),
memo, DescribeTaskQueue, GetClusterInfo, DeleteWorkflowExecution,
GetWorkflowExecutionHistoryReverse, the older ListOpen/ListClosed/Scan RPCs and
the errors for malformed queries and bad search attributes.

Visibility on the reference server is eventually consistent, so every check of
a list or count polls (``assert_ids``/``assert_count``) for a few seconds until
the expected answer shows up.  Every query is scoped to a task queue or a
workflow-id prefix unique to this test run, so other workflows in the
namespace never disturb the result.

The custom search attributes (``Custom*Field``) are registered in the test
namespace when missing and left in place; they are reused by later runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterable

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import WorkflowExecution as ApiWorkflowExecution
from temporalio.api.enums.v1 import EventType, IndexedValueType, TaskQueueType
from temporalio.api.enums.v1 import WorkflowExecutionStatus as ApiStatus
from temporalio.api.filter.v1 import StartTimeFilter, StatusFilter, WorkflowExecutionFilter, WorkflowTypeFilter
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DeleteWorkflowExecutionRequest,
    DescribeTaskQueueRequest,
    GetClusterInfoRequest,
    GetSearchAttributesRequest,
    GetWorkflowExecutionHistoryReverseRequest,
    ListClosedWorkflowExecutionsRequest,
    ListOpenWorkflowExecutionsRequest,
    ListWorkflowExecutionsRequest,
    ScanWorkflowExecutionsRequest,
)
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

INVALID = RPCStatusCode.INVALID_ARGUMENT
NOT_FOUND = RPCStatusCode.NOT_FOUND

# how long a list/count may lag behind a change before a check fails
VISIBILITY_TIMEOUT_S = 5.0

# ---------------------------------------------------------------------------
# custom search attributes used throughout (registered if missing)

KEYWORD = SearchAttributeKey.for_keyword("CustomKeywordField")
TEXT = SearchAttributeKey.for_text("CustomTextField")
INT = SearchAttributeKey.for_int("CustomIntField")
DOUBLE = SearchAttributeKey.for_float("CustomDoubleField")
BOOL = SearchAttributeKey.for_bool("CustomBoolField")
DATETIME = SearchAttributeKey.for_datetime("CustomDatetimeField")
KEYWORD_LIST = SearchAttributeKey.for_keyword_list("CustomKeywordListField")

CUSTOM_ATTRIBUTES = {
    KEYWORD.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    TEXT.name: IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    INT.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    DOUBLE.name: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    BOOL.name: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    DATETIME.name: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    KEYWORD_LIST.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}

# system search attributes every server lists, with their types
SYSTEM_ATTRIBUTES = {
    "WorkflowId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RunId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "WorkflowType": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "ExecutionStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "TaskQueue": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "StartTime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "CloseTime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "ExecutionTime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "ExecutionDuration": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "HistoryLength": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "ParentWorkflowId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "ParentRunId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


# ---------------------------------------------------------------------------
# helpers


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def midpoint(a: datetime, b: datetime) -> datetime:
    return a + (b - a) / 2


async def eventually(probe: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], what: str,
                     timeout: float = VISIBILITY_TIMEOUT_S) -> Any:
    """Call ``probe`` until ``ok(result)`` holds; fail with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        last = await probe()
        if ok(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {last!r} after {timeout}s")
        await asyncio.sleep(0.05)


async def list_ids(client: Client, query: str, **kwargs) -> list[str]:
    return [w.id async for w in client.list_workflows(query, **kwargs)]


async def list_entries(client: Client, query: str) -> list[WorkflowExecution]:
    return [w async for w in client.list_workflows(query)]


async def assert_ids(client: Client, query: str, expected: Iterable[str], among: Iterable[str] | None = None) -> list[str]:
    """Poll until ``list_workflows(query)`` returns exactly ``expected`` (as a set, without
    duplicates); with ``among`` only the returned ids that are in ``among`` are compared."""
    expected = set(expected)
    among = set(among) if among is not None else None

    def ok(ids: list[str]) -> bool:
        got = [i for i in ids if among is None or i in among]
        return len(got) == len(set(got)) and set(got) == expected

    return await eventually(lambda: list_ids(client, query), ok, f"list {query!r} (want {sorted(expected)})")


async def assert_count(client: Client, query: str, expected: int) -> None:
    await eventually(lambda: count(client, query), lambda n: n == expected, f"count {query!r} (want {expected})")


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def count_by_status(client: Client, query: str) -> tuple[int, dict[str, int]]:
    """``count_workflows(query + ' GROUP BY ExecutionStatus')`` as (total, {status: count})."""
    result = await client.count_workflows(f"{query} GROUP BY ExecutionStatus")
    groups: dict[str, int] = {}
    for g in result.groups:
        assert len(g.group_values) == 1, g
        groups[g.group_values[0]] = g.count
    return result.count, groups


async def ensure_search_attributes(client: Client, wanted: dict[str, int]) -> None:
    """Register the custom search attributes that are missing; fail on a type conflict."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    existing = dict(listed.custom_attributes)
    conflicts = {n: IndexedValueType.Name(existing[n]) for n, t in wanted.items() if n in existing and existing[n] != t}
    assert not conflicts, f"search attributes registered with another type: {conflicts}"
    missing = {n: t for n, t in wanted.items() if n not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )

    async def listed_custom() -> dict[str, int]:
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        return dict(resp.custom_attributes)

    await eventually(listed_custom, lambda attrs: all(attrs.get(n) == t for n, t in wanted.items()),
                     "custom search attributes listed")

    # ... and usable in a query (a server may cache the attribute map)
    probe = " AND ".join(f"{n} IS NULL" for n in wanted) + f" AND WorkflowId = 'probe-{uuid.uuid4()}'"

    async def usable() -> bool:
        try:
            await client.count_workflows(probe)
            return True
        except RPCError:
            return False

    await eventually(usable, bool, "custom search attributes usable in queries")


def status_name(status: WorkflowExecutionStatus | None) -> str:
    return {
        WorkflowExecutionStatus.RUNNING: "Running",
        WorkflowExecutionStatus.COMPLETED: "Completed",
        WorkflowExecutionStatus.FAILED: "Failed",
        WorkflowExecutionStatus.CANCELED: "Canceled",
        WorkflowExecutionStatus.TERMINATED: "Terminated",
        WorkflowExecutionStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
        WorkflowExecutionStatus.TIMED_OUT: "TimedOut",
    }[status]


# ---------------------------------------------------------------------------
# workflows


@activity.defn
async def vis_noop_activity() -> None:
    return None


@workflow.defn(sandboxed=False)
class VisCompleteWorkflow:
    @workflow.run
    async def run(self) -> str:
        return "done"


@workflow.defn(sandboxed=False)
class VisFailWorkflow:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("failing on purpose", non_retryable=True)


@workflow.defn(sandboxed=False)
class VisWaitWorkflow:
    """Runs until signalled ``finish`` (or cancelled / terminated)."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._done)
        return "finished"

    @workflow.signal
    def finish(self) -> None:
        self._done = True


@workflow.defn(sandboxed=False)
class VisActivitiesWorkflow:
    """A few activities one after the other: a history of some length for the reverse-history test."""

    @workflow.run
    async def run(self, activities: int) -> int:
        for _ in range(activities):
            await workflow.execute_activity(vis_noop_activity, start_to_close_timeout=timedelta(seconds=10))
        return activities


@workflow.defn(sandboxed=False)
class VisUpsertWorkflow:
    """Upserts search attributes and memo, waits for ``finish``, then upserts once more."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self, tag: str) -> str:
        workflow.upsert_search_attributes([
            KEYWORD.value_set(tag),
            INT.value_set(42),
            KEYWORD_LIST.value_set(["x", "y"]),
            BOOL.value_unset(),
        ])
        workflow.upsert_memo({"note": "upserted", "drop": None})
        await workflow.wait_condition(lambda: self._done)
        workflow.upsert_search_attributes([INT.value_set(43)])
        return tag

    @workflow.signal
    def finish(self) -> None:
        self._done = True


# ---------------------------------------------------------------------------
# fixtures

RUN = uuid.uuid4().hex[:12]
WORKER_TASK_QUEUE = f"tq-vis-{RUN}"
WORKER_IDENTITY = f"vis-worker-{RUN}"


@pytest.fixture(scope="module")
async def custom_attributes(client):
    await ensure_search_attributes(client, CUSTOM_ATTRIBUTES)


@pytest.fixture(scope="module")
async def worker(client):
    async with Worker(
        client,
        task_queue=WORKER_TASK_QUEUE,
        workflows=[VisCompleteWorkflow, VisFailWorkflow, VisWaitWorkflow, VisActivitiesWorkflow, VisUpsertWorkflow],
        activities=[vis_noop_activity],
        identity=WORKER_IDENTITY,
    ):
        yield WORKER_TASK_QUEUE


# role -> (workflow, status the role ends in); started in this order
POPULATION_ROLES = [
    ("completed-0", VisCompleteWorkflow, "Completed"),
    ("failed-0", VisFailWorkflow, "Failed"),
    ("running-0", VisWaitWorkflow, "Running"),
    ("completed-1", VisCompleteWorkflow, "Completed"),
    ("terminated-0", VisWaitWorkflow, "Terminated"),
    ("canceled-0", VisWaitWorkflow, "Canceled"),
    ("running-1", VisWaitWorkflow, "Running"),
    ("completed-2", VisCompleteWorkflow, "Completed"),
]


@dataclass
class Population:
    """Eight workflows on one task queue in every terminal state and running."""

    task_queue: str
    prefix: str
    ids: dict[str, str]  # role -> workflow id, in start order
    status: dict[str, str]  # workflow id -> ExecutionStatus name
    entries: dict[str, WorkflowExecution] = field(default_factory=dict)  # from the list, after settling

    @property
    def base(self) -> str:
        return f"TaskQueue = '{self.task_queue}'"

    def with_status(self, *statuses: str) -> set[str]:
        return {i for i, s in self.status.items() if s in statuses}

    @property
    def start_order(self) -> list[str]:
        return list(self.ids.values())


@pytest.fixture(scope="module")
async def population(client) -> Population:
    # its own task queue and worker, so that no other test's workflows share the queue
    tq = f"tq-vis-pop-{RUN}"
    async with Worker(client, task_queue=tq, workflows=[VisCompleteWorkflow, VisFailWorkflow, VisWaitWorkflow]):
        pop = await _populate(client, tq)
        yield pop
        for wf_id in pop.with_status("Running"):
            try:
                await client.get_workflow_handle(wf_id).terminate("visibility test done")
            except RPCError:
                pass


async def _populate(client: Client, task_queue: str) -> Population:
    prefix = f"vis-{RUN}"
    pop = Population(task_queue=task_queue, prefix=prefix, ids={}, status={})
    handles = {}
    for role, wf, status in POPULATION_ROLES:
        wf_id = f"{prefix}-{role}"
        handles[role] = await client.start_workflow(wf.run, id=wf_id, task_queue=task_queue)
        pop.ids[role] = wf_id
        pop.status[wf_id] = status
        await asyncio.sleep(0.01)  # distinct start times
    for role in ("completed-0", "completed-1", "completed-2"):
        assert await asyncio.wait_for(handles[role].result(), 10) == "done"
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handles["failed-0"].result(), 10)
    await handles["terminated-0"].terminate("terminated by the visibility test")
    await handles["canceled-0"].cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handles["canceled-0"].result(), 10)

    expected = {}
    for s in pop.status.values():
        expected[s] = expected.get(s, 0) + 1
    await eventually(lambda: count_by_status(client, pop.base), lambda r: r == (len(pop.ids), expected),
                     "population settled in visibility")
    pop.entries = {w.id: w for w in await list_entries(client, pop.base)}
    assert set(pop.entries) == set(pop.ids.values())
    return pop


# three workflows nobody executes, with custom search attributes and memo
DT_A = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
DT_B = datetime(2025, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
ATTRS_A = [
    SearchAttributePair(KEYWORD, "alpha"),
    SearchAttributePair(TEXT, "hello brave world"),
    SearchAttributePair(INT, 5),
    SearchAttributePair(DOUBLE, 2.5),
    SearchAttributePair(BOOL, True),
    SearchAttributePair(DATETIME, DT_A),
    SearchAttributePair(KEYWORD_LIST, ["red", "green"]),
]
ATTRS_B = [
    SearchAttributePair(KEYWORD, "beta"),
    SearchAttributePair(TEXT, "goodbye cruel world"),
    SearchAttributePair(INT, 10),
    SearchAttributePair(DOUBLE, 7.25),
    SearchAttributePair(BOOL, False),
    SearchAttributePair(DATETIME, DT_B),
    SearchAttributePair(KEYWORD_LIST, ["blue"]),
]


@dataclass
class Tagged:
    task_queue: str
    a: str
    b: str
    c: str

    @property
    def base(self) -> str:
        return f"TaskQueue = '{self.task_queue}'"


@pytest.fixture(scope="module")
async def tagged(client, custom_attributes) -> Tagged:
    tq = f"tq-vis-sa-{RUN}"  # nobody polls it: the workflows stay running
    t = Tagged(tq, f"vis-sa-{RUN}-a", f"vis-sa-{RUN}-b", f"vis-sa-{RUN}-c")
    handles = [
        await client.start_workflow("VisNobodyRuns", id=t.a, task_queue=tq,
                                    search_attributes=TypedSearchAttributes(ATTRS_A), memo={"owner": "a", "n": 1}),
        await client.start_workflow("VisNobodyRuns", id=t.b, task_queue=tq,
                                    search_attributes=TypedSearchAttributes(ATTRS_B), memo={"owner": "b"}),
        await client.start_workflow("VisNobodyRuns", id=t.c, task_queue=tq),
    ]
    await assert_ids(client, t.base, [t.a, t.b, t.c])
    yield t
    for h in handles:
        try:
            await h.terminate("visibility test done")
        except RPCError:
            pass


# ---------------------------------------------------------------------------
# search attribute registry


async def test_list_search_attributes(client, custom_attributes):
    resp = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    custom = dict(resp.custom_attributes)
    for name, typ in CUSTOM_ATTRIBUTES.items():
        assert custom.get(name) == typ, f"{name}: {custom.get(name)}"
    system = dict(resp.system_attributes)
    for name, typ in SYSTEM_ATTRIBUTES.items():
        assert system.get(name) == typ, f"{name}: {system.get(name)}"
    # system attributes are not listed as custom ones
    assert not set(custom) & set(SYSTEM_ATTRIBUTES)

    # the older WorkflowService.GetSearchAttributes lists the system attributes too
    keys = dict((await client.workflow_service.get_search_attributes(GetSearchAttributesRequest())).keys)
    for name, typ in SYSTEM_ATTRIBUTES.items():
        assert keys.get(name) == typ, f"{name}: {keys.get(name)}"


async def test_add_and_remove_search_attribute(client):
    name = f"VisTemp{uuid.uuid4().hex[:10]}"

    async def custom() -> dict[str, int]:
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        return dict(resp.custom_attributes)

    assert name not in await custom()
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace, search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}))
    try:
        await eventually(custom, lambda c: c.get(name) == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, f"{name} added")
        # usable in a query
        await eventually(lambda: count(client, f"{name} = 'x' AND WorkflowId = 'vis-{RUN}-none'"),
                         lambda n: n == 0, f"query on {name}")
    finally:
        await client.operator_service.remove_search_attributes(RemoveSearchAttributesRequest(
            namespace=client.namespace, search_attributes=[name]))
    await eventually(custom, lambda c: name not in c, f"{name} removed")


@pytest.mark.parametrize(
    "name, reference_message",
    [
        ("WorkflowId", "Search attribute WorkflowId is reserved by system."),
        ("ExecutionStatus", "Search attribute ExecutionStatus is reserved by system."),
        ("TemporalFoo", "Search attribute TemporalFoo is reserved by system."),
    ],
)
async def test_add_reserved_search_attribute_rejected(client, name, reference_message):
    with pytest.raises(RPCError) as info:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=client.namespace, search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}))
    assert info.value.status == INVALID, f"{info.value.status.name}: {info.value.message!r} (reference: {reference_message!r})"
    assert name in info.value.message


async def test_remove_system_search_attribute_rejected(client):
    with pytest.raises(RPCError) as info:
        await client.operator_service.remove_search_attributes(RemoveSearchAttributesRequest(
            namespace=client.namespace, search_attributes=["WorkflowId"]))
    # reference: "Unable to remove non-custom search attributes: WorkflowId."
    assert info.value.status == INVALID, info.value.message
    assert "WorkflowId" in info.value.message


async def test_search_attributes_unknown_namespace(client):
    with pytest.raises(RPCError) as info:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=f"no-such-namespace-{RUN}",
            search_attributes={"VisNever": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}))
    # reference: "Namespace no-such-namespace-... is not found."
    assert info.value.status == NOT_FOUND, info.value.message


# ---------------------------------------------------------------------------
# list and count on system attributes


async def test_count_total_and_group_by_status(client, population):
    assert await count(client, population.base) == 8
    total, groups = await count_by_status(client, population.base)
    assert total == 8
    assert groups == {"Completed": 3, "Failed": 1, "Running": 2, "Terminated": 1, "Canceled": 1}
    # the raw response: one group value per group, a Keyword payload holding the status name
    raw = await client.count_workflows(f"{population.base} AND ExecutionStatus = 'Completed' GROUP BY ExecutionStatus")
    assert raw.count == 3
    assert [(g.group_values, g.count) for g in raw.groups] == [(["Completed"], 3)]
    # no match: zero, and no groups
    empty = await client.count_workflows(f"TaskQueue = 'tq-vis-empty-{RUN}' GROUP BY ExecutionStatus")
    assert (empty.count, list(empty.groups)) == (0, [])
    assert await count(client, f"TaskQueue = 'tq-vis-empty-{RUN}'") == 0


@pytest.mark.parametrize("status", ["Running", "Completed", "Failed", "Terminated", "Canceled"])
async def test_list_by_execution_status(client, population, status):
    ids = await assert_ids(client, f"{population.base} AND ExecutionStatus = '{status}'", population.with_status(status))
    for wf_id in ids:
        assert status_name((await client.get_workflow_handle(wf_id).describe()).status) == status


async def test_list_entry_fields(client, population):
    for wf_id, entry in population.entries.items():
        role = wf_id.removeprefix(population.prefix + "-")
        wf_class = next(c for r, c, _ in POPULATION_ROLES if r == role)
        assert entry.workflow_type == wf_class.__name__
        assert entry.task_queue == population.task_queue
        assert entry.run_id
        assert status_name(entry.status) == population.status[wf_id]
        assert entry.start_time is not None and entry.execution_time is not None
        assert entry.parent_id is None
        if population.status[wf_id] == "Running":
            assert entry.close_time is None
        else:
            assert entry.close_time is not None and entry.close_time >= entry.start_time
            assert entry.history_length >= 3


async def test_filter_by_workflow_type_id_and_run_id(client, population):
    base, ids = population.base, population.ids
    await assert_ids(client, f"{base} AND WorkflowType = 'VisFailWorkflow'", [ids["failed-0"]])
    await assert_ids(client, f"{base} AND WorkflowType = 'VisWaitWorkflow'",
                     [ids["running-0"], ids["running-1"], ids["terminated-0"], ids["canceled-0"]])
    await assert_ids(client, f"{base} AND WorkflowType != 'VisWaitWorkflow'",
                     [ids["completed-0"], ids["completed-1"], ids["completed-2"], ids["failed-0"]])
    await assert_ids(client, f"WorkflowId = '{ids['completed-1']}'", [ids["completed-1"]])
    # double quotes work as string delimiters too
    await assert_ids(client, f'WorkflowId = "{ids["completed-1"]}"', [ids["completed-1"]])
    run_id = population.entries[ids["terminated-0"]].run_id
    await assert_ids(client, f"RunId = '{run_id}'", [ids["terminated-0"]])
    await assert_ids(client, f"TaskQueue = 'tq-vis-none-{RUN}'", [])


async def test_starts_with_and_in(client, population):
    ids = population.ids
    await assert_ids(client, f"WorkflowId STARTS_WITH '{population.prefix}-completed-'",
                     [ids["completed-0"], ids["completed-1"], ids["completed-2"]])
    await assert_ids(client, f"WorkflowId STARTS_WITH '{population.prefix}-'", ids.values())
    await assert_ids(client, f"WorkflowId IN ('{ids['failed-0']}', '{ids['running-1']}', 'vis-{RUN}-nope')",
                     [ids["failed-0"], ids["running-1"]])
    await assert_ids(client, f"{population.base} AND ExecutionStatus IN ('Failed', 'Terminated', 'Canceled')",
                     population.with_status("Failed", "Terminated", "Canceled"))
    await assert_ids(client, f"{population.base} AND WorkflowType IN ('VisFailWorkflow')", [ids["failed-0"]])


async def test_and_or_parentheses(client, population):
    base, ids = population.base, population.ids
    await assert_ids(client, f"{base} AND (ExecutionStatus = 'Failed' OR WorkflowType = 'VisCompleteWorkflow')",
                     population.with_status("Failed", "Completed"))
    await assert_ids(client, f"(ExecutionStatus = 'Failed' OR ExecutionStatus = 'Terminated') AND {base}",
                     population.with_status("Failed", "Terminated"))
    # AND binds tighter than OR
    await assert_ids(client, f"{base} AND ExecutionStatus = 'Running' OR {base} AND ExecutionStatus = 'Canceled'",
                     population.with_status("Running", "Canceled"))
    await assert_ids(client, f"{base} AND ExecutionStatus != 'Completed' AND ExecutionStatus != 'Running'",
                     population.with_status("Failed", "Terminated", "Canceled"))
    await assert_ids(
        client,
        f"({base}) AND ((WorkflowId = '{ids['completed-0']}' OR WorkflowId = '{ids['running-0']}') "
        f"AND (ExecutionStatus = 'Running'))",
        [ids["running-0"]],
    )


async def test_close_time_null_and_not_null(client, population):
    await assert_ids(client, f"{population.base} AND CloseTime IS NULL", population.with_status("Running"))
    await assert_ids(client, f"{population.base} AND CloseTime IS NOT NULL",
                     population.with_status("Completed", "Failed", "Terminated", "Canceled"))
    await assert_ids(client, f"{population.base} AND ParentWorkflowId IS NULL", population.ids.values())
    await assert_ids(client, f"{population.base} AND ParentWorkflowId IS NOT NULL", [])


async def test_start_time_ranges(client, population):
    order = population.start_order
    starts = [population.entries[i].start_time for i in order]
    assert starts == sorted(starts), "start times follow the start order"
    lo, hi = rfc3339(midpoint(starts[1], starts[2])), rfc3339(midpoint(starts[5], starts[6]))
    await assert_ids(client, f"{population.base} AND StartTime BETWEEN '{lo}' AND '{hi}'", order[2:6])
    await assert_ids(client, f"{population.base} AND StartTime >= '{hi}'", order[6:])
    await assert_ids(client, f"{population.base} AND StartTime > '{hi}'", order[6:])
    await assert_ids(client, f"{population.base} AND StartTime < '{lo}'", order[:2])
    await assert_ids(client, f"{population.base} AND StartTime <= '{lo}'", order[:2])
    await assert_ids(client, f"{population.base} AND StartTime >= '{lo}' AND StartTime <= '{hi}'", order[2:6])
    # whole seconds and a numeric offset parse too
    early = (starts[0] - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    await assert_ids(client, f"{population.base} AND StartTime > '{early.strftime('%Y-%m-%dT%H:%M:%S+02:00')}'", order)
    await assert_ids(client, f"{population.base} AND StartTime < '2000-01-01T00:00:00Z'", [])


async def test_close_time_ranges(client, population):
    closed = sorted(
        (e for e in population.entries.values() if e.close_time is not None), key=lambda e: e.close_time
    )
    assert len(closed) == 6
    # split where two consecutive close times differ
    k = next(i for i in range(len(closed) // 2, len(closed)) if closed[i].close_time > closed[i - 1].close_time)
    cut = rfc3339(midpoint(closed[k - 1].close_time, closed[k].close_time))
    await assert_ids(client, f"{population.base} AND CloseTime > '{cut}'", [e.id for e in closed[k:]])
    await assert_ids(client, f"{population.base} AND CloseTime < '{cut}'", [e.id for e in closed[:k]])
    lo = rfc3339(closed[0].close_time - timedelta(seconds=1))
    hi = rfc3339(closed[-1].close_time + timedelta(seconds=1))
    await assert_ids(client, f"{population.base} AND CloseTime BETWEEN '{lo}' AND '{hi}'", [e.id for e in closed])


async def test_default_order_running_first_then_by_close_time(client, population):
    listed = await list_entries(client, population.base)
    running = [e for e in listed if e.close_time is None]
    closed = [e for e in listed if e.close_time is not None]
    assert listed == running + closed, "running workflows come first"
    assert [e.start_time for e in running] == sorted((e.start_time for e in running), reverse=True)
    assert [e.close_time for e in closed] == sorted((e.close_time for e in closed), reverse=True)


# The reference dev server's SQLite visibility store rejects any ORDER BY with this message.
REFERENCE_ORDER_BY_REJECTION = "operation is not supported: 'ORDER BY' clause"


async def test_order_by_start_time(client, population):
    order = population.start_order
    try:
        asc = await list_ids(client, f"{population.base} ORDER BY StartTime ASC")
    except RPCError as err:
        if err.status == INVALID and REFERENCE_ORDER_BY_REJECTION in err.message:
            pytest.skip(f"server rejects ORDER BY like the reference SQLite visibility store: {err.message!r}")
        raise
    assert asc == order
    assert await list_ids(client, f"{population.base} ORDER BY StartTime DESC") == order[::-1]
    assert await list_ids(client, f"{population.base} ORDER BY StartTime") == order
    assert await list_ids(client, f"{population.base} AND ExecutionStatus = 'Completed' ORDER BY StartTime DESC") == [
        population.ids["completed-2"], population.ids["completed-1"], population.ids["completed-0"]]
    # paging keeps the order
    assert await list_ids(client, f"{population.base} ORDER BY StartTime DESC", page_size=3) == order[::-1]


async def test_paging(client, population):
    every = set(population.ids.values())
    # the SDK iterator follows next_page_token
    ids = await list_ids(client, population.base, page_size=3)
    assert sorted(ids) == sorted(every)
    assert await list_ids(client, population.base, page_size=1) == ids
    assert len(await list_ids(client, population.base, limit=5)) == 5

    # by hand
    pages: list[list[str]] = []
    token = b""
    while True:
        resp = await client.workflow_service.list_workflow_executions(ListWorkflowExecutionsRequest(
            namespace=client.namespace, query=population.base, page_size=3, next_page_token=token))
        pages.append([e.execution.workflow_id for e in resp.executions])
        assert len(pages[-1]) <= 3
        token = resp.next_page_token
        if not token:
            break
        assert len(pages) < 10, "paging does not end"
    flat = [i for p in pages for i in p]
    assert sorted(flat) == sorted(every), pages
    assert [len(p) for p in pages[:3]] == [3, 3, 2]
    assert flat == ids, "pages come in the same order as a single listing"


async def test_system_attributes_history_length_and_duration(client, population):
    completed = population.with_status("Completed")
    await assert_ids(client, f"{population.base} AND ExecutionStatus = 'Completed' AND HistoryLength >= 5", completed)
    await assert_ids(client, f"{population.base} AND HistoryLength > 1000", [])
    await assert_ids(client, f"{population.base} AND ExecutionTime IS NOT NULL", population.ids.values())
    await assert_ids(client, f"{population.base} AND ExecutionStatus = 'Completed' AND ExecutionDuration >= 0",
                     completed)


# ---------------------------------------------------------------------------
# custom search attributes and memo


def _by_name(tsa: TypedSearchAttributes) -> dict[str, Any]:
    return {pair.key.name: pair.value for pair in tsa}


async def test_start_with_search_attributes_and_memo(client, tagged):
    want_a = {p.key.name: p.value for p in ATTRS_A}
    desc = await client.get_workflow_handle(tagged.a).describe()
    got = _by_name(desc.typed_search_attributes)
    for name, value in want_a.items():
        got_value = list(got.get(name)) if name == KEYWORD_LIST.name else got.get(name)
        assert got_value == value, f"{name}: {got.get(name)!r}"
    assert desc.typed_search_attributes.get(INT) == 5
    assert desc.typed_search_attributes.get(DATETIME) == DT_A
    assert await desc.memo() == {"owner": "a", "n": 1}
    assert await desc.memo_value("owner") == "a"

    desc_c = await client.get_workflow_handle(tagged.c).describe()
    assert not set(_by_name(desc_c.typed_search_attributes)) & set(CUSTOM_ATTRIBUTES)
    assert await desc_c.memo() == {}

    # the list shows the same attributes and memo
    listed = {w.id: w for w in await list_entries(client, tagged.base)}
    got = _by_name(listed[tagged.b].typed_search_attributes)
    for pair in ATTRS_B:
        got_value = list(got.get(pair.key.name)) if pair.key is KEYWORD_LIST else got.get(pair.key.name)
        assert got_value == pair.value, f"{pair.key.name}: {got.get(pair.key.name)!r}"
    assert await listed[tagged.b].memo() == {"owner": "b"}
    assert await listed[tagged.c].memo() == {}


# (query on the custom attributes, the expected subset of {a, b, c}, compare only a and b)
CUSTOM_QUERIES = [
    ("CustomKeywordField = 'alpha'", "a", False),
    ("CustomKeywordField != 'alpha'", "b", True),
    ("CustomKeywordField IN ('alpha', 'beta', 'gamma')", "ab", False),
    ("CustomKeywordField STARTS_WITH 'alp'", "a", False),
    ("CustomKeywordField IS NULL", "c", False),
    ("CustomKeywordField IS NOT NULL", "ab", False),
    ("CustomTextField = 'brave'", "a", False),
    ("CustomTextField = 'world'", "ab", False),
    ("CustomTextField != 'brave'", "b", True),
    ("CustomIntField = 5", "a", False),
    ("CustomIntField != 5", "b", True),
    ("CustomIntField > 6", "b", False),
    ("CustomIntField >= 5", "ab", False),
    ("CustomIntField < 6", "a", False),
    ("CustomIntField <= 10", "ab", False),
    ("CustomIntField IN (5, 99)", "a", False),
    ("CustomIntField BETWEEN 4 AND 6", "a", False),
    ("CustomDoubleField = 2.5", "a", False),
    ("CustomDoubleField > 3.0", "b", False),
    ("CustomDoubleField < 3", "a", False),
    ("CustomBoolField = true", "a", False),
    ("CustomBoolField = false", "b", False),
    ("CustomDatetimeField > '2024-12-31T00:00:00Z'", "b", False),
    ("CustomDatetimeField < '2024-12-31T00:00:00Z'", "a", False),
    ("CustomDatetimeField BETWEEN '2024-05-06T00:00:00Z' AND '2024-05-07T00:00:00Z'", "a", False),
    ("CustomDatetimeField > '2024-05-06T09:00:00+03:00'", "ab", False),
    ("CustomKeywordListField = 'red'", "a", False),
    ("CustomKeywordListField = 'blue'", "b", False),
    ("CustomKeywordListField IN ('green', 'blue')", "ab", False),
    ("CustomKeywordListField IN ('purple')", "", False),
    ("CustomKeywordListField != 'red'", "b", True),
    ("CustomIntField > 1 AND CustomBoolField = false", "b", False),
    ("(CustomKeywordField = 'alpha' OR CustomIntField = 10) AND CustomDoubleField < 100", "ab", False),
    ("CustomKeywordField = 'alpha' OR CustomKeywordField IS NULL", "ac", False),
]


@pytest.mark.parametrize("query, expected, only_ab", CUSTOM_QUERIES, ids=[q for q, _, _ in CUSTOM_QUERIES])
async def test_query_custom_attributes(client, tagged, query, expected, only_ab):
    ids = {"a": tagged.a, "b": tagged.b, "c": tagged.c}
    among = [tagged.a, tagged.b] if only_ab else None
    await assert_ids(client, f"{tagged.base} AND ({query})", [ids[x] for x in expected], among=among)


async def test_upsert_search_attributes_and_memo(client, worker, custom_attributes, new_id, history_types):
    tag = new_id("vis-upsert-tag")
    handle = await client.start_workflow(
        VisUpsertWorkflow.run, tag, id=new_id("vis-upsert"), task_queue=worker,
        search_attributes=TypedSearchAttributes([SearchAttributePair(BOOL, True), SearchAttributePair(KEYWORD, "initial")]),
        memo={"keep": "yes", "drop": 1},
    )
    # visible under the upserted values while it runs
    await assert_ids(client, f"CustomKeywordField = '{tag}'", [handle.id])
    await assert_ids(client, f"CustomKeywordField = '{tag}' AND ExecutionStatus = 'Running' AND CustomIntField = 42 "
                             f"AND CustomKeywordListField = 'y' AND CustomBoolField IS NULL", [handle.id])
    await assert_ids(client, f"WorkflowId = '{handle.id}' AND CustomKeywordField = 'initial'", [])

    desc = await handle.describe()
    attrs = _by_name(desc.typed_search_attributes)
    assert attrs[KEYWORD.name] == tag
    assert attrs[INT.name] == 42
    assert list(attrs[KEYWORD_LIST.name]) == ["x", "y"]
    assert BOOL.name not in attrs
    assert await desc.memo() == {"keep": "yes", "note": "upserted"}
    listed = await list_entries(client, f"WorkflowId = '{handle.id}'")
    assert await listed[0].memo() == {"keep": "yes", "note": "upserted"}

    await handle.signal(VisUpsertWorkflow.finish)
    assert await asyncio.wait_for(handle.result(), 10) == tag
    await assert_ids(client, f"CustomKeywordField = '{tag}' AND CustomIntField = 43 AND ExecutionStatus = 'Completed'",
                     [handle.id])
    assert (await handle.describe()).typed_search_attributes.get(INT) == 43

    types = await history_types(handle)
    assert types.count("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES") == 2
    assert types.count("WORKFLOW_PROPERTIES_MODIFIED") == 1


@pytest.mark.parametrize(
    "pair, reference_message",
    [
        (SearchAttributePair(SearchAttributeKey.for_keyword("VisNoSuchAttribute"), "x"),
         "Namespace default has no mapping defined for search attribute VisNoSuchAttribute"),
        (SearchAttributePair(SearchAttributeKey.for_keyword("CustomIntField"), "abc"),
         "invalid value for search attribute CustomIntField of type Int: abc"),
        (SearchAttributePair(SearchAttributeKey.for_int("CustomKeywordField"), 5),
         "invalid value for search attribute CustomKeywordField of type Keyword: 5"),
        (SearchAttributePair(SearchAttributeKey.for_keyword("WorkflowId"), "x"),
         "WorkflowId attribute can't be set in SearchAttributes"),
        (SearchAttributePair(SearchAttributeKey.for_keyword("ExecutionStatus"), "Running"),
         "ExecutionStatus attribute can't be set in SearchAttributes"),
    ],
    ids=["unknown", "int-given-string", "keyword-given-int", "reserved-WorkflowId", "reserved-ExecutionStatus"],
)
async def test_start_with_bad_search_attribute(client, custom_attributes, new_id, pair, reference_message):
    with pytest.raises(RPCError) as info:
        await client.start_workflow("VisNobodyRuns", id=new_id("vis-bad-sa"), task_queue=f"tq-vis-bad-sa-{RUN}",
                                    search_attributes=TypedSearchAttributes([pair]))
    err = info.value
    assert err.status == INVALID, f"{err.status.name}: {err.message!r} (reference: {reference_message!r})"
    assert pair.key.name in err.message, f"{err.message!r} (reference: {reference_message!r})"


# ---------------------------------------------------------------------------
# malformed queries

# (query, a word the message must contain or None, the reference dev server's message).
# The reference's "position N" counts from the start of the SQL statement it wraps the
# query in ("select * from table1 where <query>", 27 characters before the query) and
# points just past the token where parsing failed.
MALFORMED_QUERIES = [
    ("WorkflowType = ", None, "invalid query: malformed SQL query: syntax error at position 42"),
    ("Foo ==== 1", None, "invalid query: malformed SQL query: syntax error at position 34"),
    ("WorkflowType = 'x' AND", None, "invalid query: malformed SQL query: syntax error at position 50"),
    ("(WorkflowType = 'x'", None, "invalid query: malformed SQL query: syntax error at position 47"),
    ("WorkflowType IN ()", None, "invalid query: malformed SQL query: syntax error at position 46"),
    ("WorkflowType", None, "invalid query: invalid expression: incomplete expression"),
    ("VisNoSuchAttribute = 'x'", "VisNoSuchAttribute", "invalid query: invalid search attribute: VisNoSuchAttribute"),
    ("workflowtype = 'x'", "workflowtype", "invalid query: invalid search attribute: workflowtype"),
    ("CustomIntField = 'abc'", "CustomIntField",
     'invalid query: invalid expression: invalid value type for search attribute CustomIntField of type Int: '
     '"abc" (type: string)'),
    ("CustomBoolField = 'maybe'", "CustomBoolField",
     'invalid query: invalid expression: invalid value type for search attribute CustomBoolField of type Bool: '
     '"maybe" (type: string)'),
    ("CustomDoubleField = 'x'", "CustomDoubleField",
     'invalid query: invalid expression: invalid value type for search attribute CustomDoubleField of type Double: '
     '"x" (type: string)'),
    ("CustomDatetimeField > 'yesterday'", "yesterday",
     "invalid query: invalid expression: unable to parse datetime 'yesterday'"),
    ("StartTime > 'not-a-date'", "not-a-date", "invalid query: invalid expression: unable to parse datetime 'not-a-date'"),
    ("ExecutionStatus = 'Bogus'", "Bogus", "invalid query: invalid expression: invalid ExecutionStatus value 'Bogus'"),
    ("CustomTextField > 'a'", "CustomTextField",
     "invalid query: operation is not supported: operator '>' not supported for Text type search attribute "
     "'CustomTextField'"),
    ("WorkflowType LIKE 'x%'", None,
     "invalid query: operation is not supported: operator 'LIKE' not supported for Keyword type search attribute "
     "'WorkflowType'"),
    ("WorkflowType = 'x' GROUP BY WorkflowType", "WorkflowType",
     "invalid query: operation is not supported: 'GROUP BY' clause is not supported for search attribute WorkflowType"),
]


@pytest.mark.parametrize("rpc", ["list", "count"])
@pytest.mark.parametrize("query, needle, reference_message", MALFORMED_QUERIES, ids=[q for q, _, _ in MALFORMED_QUERIES])
async def test_malformed_query_rejected(client, custom_attributes, rpc, query, needle, reference_message):
    with pytest.raises(RPCError) as info:
        if rpc == "list":
            await list_ids(client, query)
        else:
            await client.count_workflows(query)
    err = info.value
    assert err.status == INVALID, f"{err.status.name}: {err.message!r} (reference: {reference_message!r})"
    assert err.message.strip(), "the error says what is wrong"
    if needle:
        assert needle in err.message, f"{err.message!r} (reference: {reference_message!r})"


# ---------------------------------------------------------------------------
# other visibility-adjacent RPCs


async def test_describe_task_queue_lists_pollers(client, worker):
    async def pollers(kind: int):
        resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=worker), task_queue_type=kind))
        return list(resp.pollers)

    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        found = await eventually(lambda: pollers(kind), lambda ps: any(p.identity == WORKER_IDENTITY for p in ps),
                                 f"{TaskQueueType.Name(kind)} poller {WORKER_IDENTITY}")
        poller = next(p for p in found if p.identity == WORKER_IDENTITY)
        assert poller.HasField("last_access_time")
        age = time.time() - poller.last_access_time.ToDatetime(tzinfo=timezone.utc).timestamp()
        assert -60 < age < 60, f"last access {age:.1f}s ago"

    # a queue nobody polls has no pollers
    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=f"tq-vis-nobody-{RUN}"),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    assert list(resp.pollers) == []


async def test_get_cluster_info(client):
    info = await client.workflow_service.get_cluster_info(GetClusterInfoRequest())
    assert info.server_version
    assert info.cluster_name
    assert info.cluster_id
    assert info.history_shard_count >= 1
    # reference: server_version "1.32.0", cluster_name "active", persistence/visibility store "sqlite",
    # supported_clients {"temporal-cli": "<2.0.0", "temporal-go": "<2.0.0", ...}


async def _describe_status(handle) -> Any:
    try:
        await handle.describe()
        return "found"
    except RPCError as err:
        return err.status


def _delete_request(client: Client, wf_id: str) -> DeleteWorkflowExecutionRequest:
    return DeleteWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=ApiWorkflowExecution(workflow_id=wf_id))


async def test_delete_running_workflow_execution(client, new_id):
    tq = new_id("tq-vis-delete")
    base = f"TaskQueue = '{tq}'"
    handle = await client.start_workflow("VisNobodyRuns", id=new_id("vis-delete-running"), task_queue=tq)
    other = await client.start_workflow("VisNobodyRuns", id=new_id("vis-delete-other"), task_queue=tq)
    await assert_ids(client, base, [handle.id, other.id])

    # a running workflow is terminated and deleted (at once on the reference)
    await client.workflow_service.delete_workflow_execution(_delete_request(client, handle.id))
    await eventually(lambda: _describe_status(handle), lambda s: s == NOT_FOUND, f"describe {handle.id} after delete")
    await assert_ids(client, base, [other.id])
    await assert_count(client, base, 1)
    await assert_count(client, f"WorkflowId = '{handle.id}'", 0)
    with pytest.raises(RPCError) as info:
        await handle.fetch_history()
    assert info.value.status == NOT_FOUND
    # deleting again finds nothing; reference: "workflow not found for ID: <id>"
    with pytest.raises(RPCError) as info:
        await client.workflow_service.delete_workflow_execution(_delete_request(client, handle.id))
    assert info.value.status == NOT_FOUND
    await other.terminate("visibility test done")


async def test_delete_closed_workflow_execution(client, new_id):
    tq = new_id("tq-vis-delete-closed")
    handle = await client.start_workflow("VisNobodyRuns", id=new_id("vis-delete-closed"), task_queue=tq)
    await handle.terminate("closing before delete")
    await assert_ids(client, f"TaskQueue = '{tq}' AND ExecutionStatus = 'Terminated'", [handle.id])
    await client.workflow_service.delete_workflow_execution(_delete_request(client, handle.id))
    try:
        await eventually(lambda: _describe_status(handle), lambda s: s == NOT_FOUND,
                         f"describe {handle.id} after delete", timeout=6.0)
    except AssertionError:
        # The reference dev server removes a deleted *closed* workflow only 30-50 s later
        # (a running one at once); too slow for this suite.
        pytest.skip("deleted closed workflow still described after 6 s (reference: removed after 30-50 s)")
    await assert_ids(client, f"TaskQueue = '{tq}'", [])
    with pytest.raises(RPCError) as info:
        await handle.fetch_history()
    assert info.value.status == NOT_FOUND


async def test_history_reverse(client, worker, new_id):
    handle = await client.start_workflow(VisActivitiesWorkflow.run, 4, id=new_id("vis-reverse"), task_queue=worker)
    assert await asyncio.wait_for(handle.result(), 10) == 4
    forward = (await handle.fetch_history()).events
    assert len(forward) > 10

    events = []
    token = b""
    while True:
        resp = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace, execution=ApiWorkflowExecution(workflow_id=handle.id),
                maximum_page_size=4, next_page_token=token))
        events.extend(resp.history.events)
        token = resp.next_page_token
        if not token:
            break
        assert len(events) <= len(forward), "paging does not end"
    assert [e.event_id for e in events] == [e.event_id for e in reversed(forward)]
    assert [e.event_type for e in events] == [e.event_type for e in reversed(forward)]
    assert events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED

    # with an explicit run id too
    resp = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=ApiWorkflowExecution(workflow_id=handle.id, run_id=handle.result_run_id)))
    assert resp.history.events[0].event_id == forward[-1].event_id

    with pytest.raises(RPCError) as info:
        await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace, execution=ApiWorkflowExecution(workflow_id=f"vis-{RUN}-no-such")))
    # reference: "workflow not found for ID: vis-...-no-such"
    assert info.value.status == NOT_FOUND


def _start_time_filter() -> StartTimeFilter:
    f = StartTimeFilter()
    now = datetime.now(timezone.utc)
    f.earliest_time.FromDatetime(now - timedelta(hours=1))
    f.latest_time.FromDatetime(now + timedelta(hours=1))
    return f


async def _all_pages(call, make_request) -> list:
    out, token = [], b""
    for _ in range(100):
        resp = await call(make_request(token))
        out.extend(resp.executions)
        token = resp.next_page_token
        if not token:
            return out
    raise AssertionError("paging does not end")


async def test_list_open_and_closed_workflow_executions(client, population):
    ws, ns, ids = client.workflow_service, client.namespace, population.ids
    pop_ids = set(ids.values())

    async def open_by_id(wf_id: str):
        resp = await ws.list_open_workflow_executions(ListOpenWorkflowExecutionsRequest(
            namespace=ns, maximum_page_size=10, start_time_filter=_start_time_filter(),
            execution_filter=WorkflowExecutionFilter(workflow_id=wf_id)))
        return [(e.execution.workflow_id, e.status, e.type.name) for e in resp.executions]

    async def closed_by_id(wf_id: str):
        resp = await ws.list_closed_workflow_executions(ListClosedWorkflowExecutionsRequest(
            namespace=ns, maximum_page_size=10, start_time_filter=_start_time_filter(),
            execution_filter=WorkflowExecutionFilter(workflow_id=wf_id)))
        return [(e.execution.workflow_id, e.status, e.type.name) for e in resp.executions]

    assert await open_by_id(ids["running-0"]) == [
        (ids["running-0"], ApiStatus.WORKFLOW_EXECUTION_STATUS_RUNNING, "VisWaitWorkflow")]
    assert await open_by_id(ids["completed-0"]) == []
    assert await closed_by_id(ids["failed-0"]) == [
        (ids["failed-0"], ApiStatus.WORKFLOW_EXECUTION_STATUS_FAILED, "VisFailWorkflow")]
    assert await closed_by_id(ids["terminated-0"]) == [
        (ids["terminated-0"], ApiStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED, "VisWaitWorkflow")]
    assert await closed_by_id(ids["running-0"]) == []

    # by type and by status (other workflows in the namespace may match: compare ours only)
    open_wait = await _all_pages(ws.list_open_workflow_executions, lambda t: ListOpenWorkflowExecutionsRequest(
        namespace=ns, maximum_page_size=100, next_page_token=t, start_time_filter=_start_time_filter(),
        type_filter=WorkflowTypeFilter(name="VisWaitWorkflow")))
    assert {e.execution.workflow_id for e in open_wait} & pop_ids == {ids["running-0"], ids["running-1"]}
    closed_canceled = await _all_pages(ws.list_closed_workflow_executions, lambda t: ListClosedWorkflowExecutionsRequest(
        namespace=ns, maximum_page_size=100, next_page_token=t, start_time_filter=_start_time_filter(),
        status_filter=StatusFilter(status=ApiStatus.WORKFLOW_EXECUTION_STATUS_CANCELED)))
    assert {e.execution.workflow_id for e in closed_canceled} & pop_ids == {ids["canceled-0"]}
    assert all(e.status == ApiStatus.WORKFLOW_EXECUTION_STATUS_CANCELED for e in closed_canceled)


async def test_scan_workflow_executions(client, population):
    # deprecated, but the reference still serves it with paging
    found = await _all_pages(client.workflow_service.scan_workflow_executions, lambda t: ScanWorkflowExecutionsRequest(
        namespace=client.namespace, query=population.base, page_size=3, next_page_token=t))
    assert sorted(e.execution.workflow_id for e in found) == sorted(population.ids.values())
    with pytest.raises(RPCError) as info:
        await client.workflow_service.scan_workflow_executions(
            ScanWorkflowExecutionsRequest(namespace=client.namespace, query="Foo ==== 1"))
    assert info.value.status == INVALID
