"""Compatibility cases found by the Python SDK's own tests (issue 22), each checked against what
the reference server does:

* a zero-length timer (``workflow.sleep(0)``) is accepted and fires at once
  (sdk-python ``test_concurrent_sleeps_use_proper_options``);
* a query reaching a worker that does not cache the run carries the whole history, and a
  query sent while a workflow task is outstanding waits for it
  ("Missing initialize workflow ..." before);
* user metadata (static summary/details, timer and activity summaries) is kept where the
  reference keeps it (``test_user_metadata_is_set``, ``test_workflow_typed_config``);
* the worker's build id is recorded on workflow task events, where
  ``workflow.info().get_current_build_id()`` reads it on replay
  (``test_workflow_current_build_id_appropriately_set``);
* ``start-dev --search-attribute`` registers the attributes (``start_local``);
* ``frontend.enableCancelWorkerPollsOnShutdown`` and the sticky schedule-to-start timeout
  (features ``worker_shutdown/poll_complete_on_shutdown``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.command.v1 import Command, StartTimerCommandAttributes
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import CommandType, EventType, TimeoutType
from temporalio.api.enums.v1 import TaskQueueKind
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import StickyExecutionAttributes, TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    GetWorkflowExecutionHistoryRequest,
    PollWorkflowTaskQueueRequest,
    ResetStickyTaskQueueRequest,
    RespondWorkflowTaskCompletedRequest,
    ShutdownWorkerRequest,
    SignalWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.converter import PayloadConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker


async def history_events(client: Client, workflow_id: str):
    resp = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    return list(resp.history.events)


def summary_of(event) -> str:
    if not event.user_metadata.HasField("summary"):
        return "<none>"
    return PayloadConverter.default.from_payload(event.user_metadata.summary)


async def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


# --- 1. zero-length timers ------------------------------------------------------------------


@workflow.defn
class ZeroTimerWorkflow:
    @workflow.run
    async def run(self) -> str:
        await asyncio.gather(
            workflow.sleep(0.1, summary="t0"),
            workflow.sleep(0, summary="zero_timer"),
            workflow.wait_condition(lambda: False, timeout=0, timeout_summary="zero_wait"),
            workflow.sleep(0.1),
            return_exceptions=True,
        )
        return "done"


async def test_a_zero_length_timer_fires_and_keeps_its_summary(client: Client, task_queue):
    async with Worker(client, task_queue=task_queue, workflows=[ZeroTimerWorkflow]):
        handle = await client.start_workflow(
            ZeroTimerWorkflow.run, id=f"zero-{uuid.uuid4()}", task_queue=task_queue
        )
        assert await asyncio.wait_for(handle.result(), 20) == "done"
        events = await history_events(client, handle.id)
        started = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
        # As on the reference: the SDK resolves the zero wait_condition itself; the zero
        # sleep is a timer of 0 s, and every timer keeps its summary.
        assert [summary_of(e) for e in started] == ["t0", "zero_timer", "<none>"]
        zero = started[1].timer_started_event_attributes
        assert zero.start_to_fire_timeout.ToMilliseconds() == 0
        fired = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
        assert len(fired) == 3
        assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        # A replay (the query) agrees with the history.
        await handle.query("__temporal_workflow_metadata")


async def test_a_negative_timer_fails_the_task_with_the_references_message(client: Client, task_queue):
    wf_id = f"neg-{uuid.uuid4()}"
    svc = client.workflow_service
    await svc.start_workflow_execution(
        StartWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_id=wf_id,
            workflow_type=WorkflowType(name="Raw"),
            task_queue=TaskQueue(name=task_queue),
            request_id=str(uuid.uuid4()),
        )
    )
    task = await svc.poll_workflow_task_queue(
        PollWorkflowTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue))
    )
    timer = StartTimerCommandAttributes(timer_id="t")
    timer.start_to_fire_timeout.FromMilliseconds(-5)
    with pytest.raises(Exception) as err:
        await svc.respond_workflow_task_completed(
            RespondWorkflowTaskCompletedRequest(
                namespace=client.namespace,
                task_token=task.task_token,
                commands=[
                    Command(command_type=CommandType.COMMAND_TYPE_START_TIMER, start_timer_command_attributes=timer)
                ],
            )
        )
    assert "An invalid StartToFireTimeout is set on StartTimerCommand: negative duration. TimerId=t" in str(err.value)


# --- 2. queries on uncached runs --------------------------------------------------------------


@workflow.defn
class CounterWorkflow:
    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.count >= 2)
        return self.count

    @workflow.signal
    def bump(self) -> None:
        self.count += 1

    @workflow.query
    def value(self) -> int:
        return self.count


async def test_queries_reach_a_worker_without_the_run_cached(client: Client, task_queue):
    handle = None
    async with Worker(client, task_queue=task_queue, workflows=[CounterWorkflow], max_cached_workflows=0):
        handle = await client.start_workflow(
            CounterWorkflow.run, id=f"query-{uuid.uuid4()}", task_queue=task_queue
        )
        # Sent while the signal's workflow task is outstanding: it sees the signal.
        await handle.signal(CounterWorkflow.bump)
        assert await handle.query(CounterWorkflow.value) == 1
        assert await handle.query(CounterWorkflow.value) == 1
    # A new worker (the old one, and its cache, gone) answers from the full history.
    async with Worker(client, task_queue=task_queue, workflows=[CounterWorkflow]):
        assert await handle.query(CounterWorkflow.value) == 1
        await handle.signal(CounterWorkflow.bump)
        assert await handle.result() == 2
        assert await handle.query(CounterWorkflow.value) == 2


# --- 3. user metadata -----------------------------------------------------------------------


@activity.defn
async def noop_activity() -> str:
    return "ok"


@workflow.defn
class MetadataChild:
    @workflow.run
    async def run(self) -> str:
        return "child"


@workflow.defn
class MetadataWorkflow:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(
            noop_activity, start_to_close_timeout=timedelta(seconds=10), summary="act summary"
        )
        await workflow.sleep(0.05, summary="timer summary")
        return await workflow.execute_child_workflow(
            MetadataChild.run,
            id=f"{workflow.info().workflow_id}-child",
            static_summary="child summary",
            static_details="child details",
        )


async def test_user_metadata_is_kept_where_the_reference_keeps_it(client: Client, task_queue):
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[MetadataWorkflow, MetadataChild],
        activities=[noop_activity],
    ):
        handle = await client.start_workflow(
            MetadataWorkflow.run,
            id=f"meta-{uuid.uuid4()}",
            task_queue=task_queue,
            static_summary="my summary",
            static_details="my details",
        )
        assert await handle.result() == "child"
    desc = await handle.describe()
    assert await desc.static_summary() == "my summary"
    assert await desc.static_details() == "my details"
    events = await history_events(client, handle.id)
    by_type = {e.event_type: e for e in events}
    assert summary_of(by_type[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]) == "my summary"
    assert summary_of(by_type[EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]) == "act summary"
    assert summary_of(by_type[EventType.EVENT_TYPE_TIMER_STARTED]) == "timer summary"
    initiated = by_type[EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED]
    assert summary_of(initiated) == "child summary"
    # The child is started with the command's metadata.
    child = await client.get_workflow_handle(f"{handle.id}-child").describe()
    assert await child.static_summary() == "child summary"
    assert await child.static_details() == "child details"
    # Events that came from no command carry none.
    assert not by_type[EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED].HasField("user_metadata")


# --- 4. build ids -----------------------------------------------------------------------------


@workflow.defn
class BuildIdWorkflow:
    def __init__(self) -> None:
        self.go_on = False
        self.finish = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.go_on)
        await workflow.wait_condition(lambda: self.finish)

    @workflow.query
    def build_id(self) -> str:
        return workflow.info().get_current_build_id()

    @workflow.signal
    def proceed(self) -> None:
        self.go_on = True

    @workflow.signal
    def done(self) -> None:
        self.finish = True


async def test_the_current_build_id_follows_the_workers(client: Client, task_queue):
    async with Worker(client, task_queue=task_queue, workflows=[BuildIdWorkflow], build_id="1.0"):
        handle = await client.start_workflow(
            BuildIdWorkflow.run, id=f"build-{uuid.uuid4()}", task_queue=task_queue
        )
        assert await handle.query(BuildIdWorkflow.build_id) == "1.0"
    await client.workflow_service.reset_sticky_task_queue(
        ResetStickyTaskQueueRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=handle.id)
        )
    )
    async with Worker(client, task_queue=task_queue, workflows=[BuildIdWorkflow], build_id="1.1"):
        # Replayed: the history says the last task ran on 1.0.
        assert await handle.query(BuildIdWorkflow.build_id) == "1.0"
        await handle.signal(BuildIdWorkflow.proceed)

        async def moved_on():
            assert await handle.query(BuildIdWorkflow.build_id) == "1.1"

        await eventually(moved_on)
        await handle.signal(BuildIdWorkflow.done)
        await handle.result()
    events = await history_events(client, handle.id)
    stamps = [
        e.workflow_task_completed_event_attributes.worker_version.build_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    assert stamps[0] == "1.0" and stamps[-1] == "1.1"
    started = [
        e.workflow_task_started_event_attributes.worker_version.build_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
    assert started[0] == "1.0"


# --- 6. start-dev --search-attribute --------------------------------------------------------


@pytest.mark.skipif(bool(os.environ.get("SUNDIAL_ADDRESS")), reason="needs the Sundial binary")
async def test_start_local_registers_search_attributes():
    from conftest import DEFAULT_BIN  # not at module level: the workflow sandbox re-imports this file

    binary = os.environ.get("SUNDIAL_BIN", str(DEFAULT_BIN))
    keyword = SearchAttributeKey.for_keyword("CompatKeyword")
    number = SearchAttributeKey.for_int("CompatInt")
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary, search_attributes=[keyword, number]
    ) as env:
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=env.client.namespace)
        )
        assert listed.custom_attributes["CompatKeyword"] == keyword.indexed_value_type
        assert listed.custom_attributes["CompatInt"] == number.indexed_value_type
        handle = await env.client.start_workflow(
            "Unpolled",
            id=f"sa-{uuid.uuid4()}",
            task_queue="nobody",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(keyword, "blue"), SearchAttributePair(number, 7)]
            ),
        )

        async def found():
            ids = [w.id async for w in env.client.list_workflows("CompatKeyword = 'blue' AND CompatInt > 5")]
            assert ids == [handle.id]

        await eventually(found)


async def test_a_bad_search_attribute_flag_fails_the_start(sundial_factory):
    server = sundial_factory(extra_args=["--search-attribute", "Color=Colour"])
    with pytest.raises(RuntimeError, match="invalid search attribute value type"):
        await server.start(timeout=5)


# --- 7. polls completed on shutdown, sticky schedule-to-start ---------------------------------


async def capability(client: Client) -> bool:
    ns = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    return ns.namespace_info.capabilities.worker_poll_complete_on_shutdown


async def test_poll_cancellation_on_shutdown_is_off_by_default(client: Client, task_queue):
    assert await capability(client) is False
    svc = client.workflow_service
    key = str(uuid.uuid4())
    poll = asyncio.ensure_future(
        svc.poll_workflow_task_queue(
            PollWorkflowTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), worker_instance_key=key
            ),
            timeout=timedelta(seconds=4),
        )
    )
    await asyncio.sleep(0.3)
    await svc.shutdown_worker(
        ShutdownWorkerRequest(namespace=client.namespace, worker_instance_key=key, task_queue=task_queue)
    )
    await asyncio.sleep(0.5)
    assert not poll.done(), "the poll keeps waiting: cancellation is off"
    poll.cancel()


async def test_shutdown_worker_completes_its_polls_when_enabled(sundial_factory):
    server = sundial_factory(
        extra_args=["--dynamic-config-value", "frontend.enableCancelWorkerPollsOnShutdown=true"]
    )
    await server.start()
    client = await Client.connect(server.address)
    assert await capability(client) is True
    svc = client.workflow_service
    tq = f"shutdown-{uuid.uuid4()}"
    key, other_key = str(uuid.uuid4()), str(uuid.uuid4())

    def poll(worker_key: str):
        return asyncio.ensure_future(
            svc.poll_workflow_task_queue(
                PollWorkflowTaskQueueRequest(
                    namespace=client.namespace, task_queue=TaskQueue(name=tq), worker_instance_key=worker_key
                ),
                timeout=timedelta(seconds=30),
            )
        )

    mine, others = poll(key), poll(other_key)
    await asyncio.sleep(0.3)
    began = time.monotonic()
    await svc.shutdown_worker(
        ShutdownWorkerRequest(namespace=client.namespace, worker_instance_key=key, task_queue=tq)
    )
    answered = await asyncio.wait_for(mine, 5)
    assert not answered.task_token, "an empty response"
    assert time.monotonic() - began < 5
    # Another worker's poll still gets the next task; a later poll of the shut-down worker
    # answers empty at once.
    again = await asyncio.wait_for(poll(key), 5)
    assert not again.task_token
    await svc.start_workflow_execution(
        StartWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_id=f"wf-{uuid.uuid4()}",
            workflow_type=WorkflowType(name="Raw"),
            task_queue=TaskQueue(name=tq),
            request_id=str(uuid.uuid4()),
        )
    )
    got = await asyncio.wait_for(others, 10)
    assert got.task_token


async def test_a_task_left_on_a_dead_sticky_queue_moves_to_the_normal_queue(client: Client, task_queue):
    svc = client.workflow_service
    wf_id = f"sticky-{uuid.uuid4()}"
    await svc.start_workflow_execution(
        StartWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_id=wf_id,
            workflow_type=WorkflowType(name="Raw"),
            task_queue=TaskQueue(name=task_queue),
            request_id=str(uuid.uuid4()),
        )
    )
    normal = PollWorkflowTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue))
    first = await svc.poll_workflow_task_queue(normal)
    sticky = StickyExecutionAttributes(
        worker_task_queue=TaskQueue(name=f"{task_queue}-sticky", kind=TaskQueueKind.TASK_QUEUE_KIND_STICKY)
    )
    sticky.schedule_to_start_timeout.FromSeconds(1)
    await svc.respond_workflow_task_completed(
        RespondWorkflowTaskCompletedRequest(
            namespace=client.namespace, task_token=first.task_token, sticky_attributes=sticky
        )
    )
    # The worker dies without a ShutdownWorker; the next task goes to its sticky queue.
    await svc.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=wf_id),
            signal_name="wake",
            request_id=str(uuid.uuid4()),
        )
    )
    began = time.monotonic()
    moved = await svc.poll_workflow_task_queue(normal, timeout=timedelta(seconds=10))
    assert moved.task_token, "rescheduled on the normal queue"
    assert time.monotonic() - began >= 0.8, "not before the sticky schedule-to-start timeout"
    types = [e.event_type for e in moved.history.events]
    assert types[0] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, "the whole history"
    timed_out = [e for e in moved.history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT]
    assert [e.workflow_task_timed_out_event_attributes.timeout_type for e in timed_out] == [
        TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
    ]
