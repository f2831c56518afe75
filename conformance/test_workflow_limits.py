"""Per-workflow limits and cross-namespace safety, as the reference server behaves (learned from
Temporal's source and `temporal server start-dev`):

* a workflow task whose commands would pass `limit.numPendingActivities.error` fails with
  cause PENDING_ACTIVITIES_LIMIT_EXCEEDED and Temporal's message;
* an update past `history.maxInFlightUpdates` is refused with RESOURCE_EXHAUSTED, past
  `history.maxTotalUpdates` with FAILED_PRECONDITION;
* a child workflow into a namespace that does not exist: RespondWorkflowTaskCompleted answers
  NOT_FOUND and records nothing; into another existing namespace: the task fails with
  BAD_START_CHILD_EXECUTION_ATTRIBUTES ("cross namespace commands are not allowed");
* a query's answer is only taken from the worker that was handed the query task: a forged
  task token (guessed id, other namespace or run) is NOT_FOUND.

The limits are made small with --dynamic-config-value to keep the tests fast.
"""

import asyncio
import uuid
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.command.v1 import Command, StartChildWorkflowExecutionCommandAttributes
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import (
    CommandType,
    EventType,
    QueryResultType,
    UpdateWorkflowExecutionLifecycleStage,
    WorkflowTaskFailedCause,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.update.v1 import Input, Meta, Request, WaitPolicy
from temporalio.api.workflowservice.v1 import (
    PollWorkflowTaskQueueRequest,
    RespondQueryTaskCompletedRequest,
    RespondWorkflowTaskCompletedRequest,
    StartWorkflowExecutionRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker


@workflow.defn
class ManyActivities:
    @workflow.run
    async def run(self, n: int) -> None:
        # Nobody runs these: they stay pending.
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    "never-run",
                    str(i),
                    start_to_close_timeout=timedelta(minutes=5),
                    task_queue="nobody-polls-this",
                )
                for i in range(n)
            )
        )


@workflow.defn
class UpdateSink:
    def __init__(self) -> None:
        self.release = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update
    async def hold(self) -> str:
        await workflow.wait_condition(lambda: self.release)
        return "released"

    @workflow.update
    def quick(self) -> str:
        return "done"


async def wait_for_event(handle, event_type, timeout=15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        history = await handle.fetch_history()
        for event in history.events:
            if event.event_type == event_type:
                return event, history
        if asyncio.get_running_loop().time() > deadline:
            names = [EventType.Name(e.event_type) for e in history.events]
            raise AssertionError(f"no {EventType.Name(event_type)} in {names}")
        await asyncio.sleep(0.1)


async def test_pending_activity_limit_fails_the_workflow_task(sundial_factory, tmp_path, new_id):
    server = sundial_factory(
        tmp_path / "limits.db",
        extra_args=["--dynamic-config-value", "limit.numPendingActivities.error=3"],
    )
    await server.start()
    client = await Client.connect(server.address)
    task_queue = new_id("limits-tq")
    async with Worker(client, task_queue=task_queue, workflows=[ManyActivities]):
        handle = await client.start_workflow(
            ManyActivities.run, 5, id=new_id("many"), task_queue=task_queue
        )
        event, history = await wait_for_event(handle, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
    failed = event.workflow_task_failed_event_attributes
    assert failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_PENDING_ACTIVITIES_LIMIT_EXCEEDED
    assert failed.failure.message == (
        "PendingActivitiesLimitExceeded: the number of pending activities, 3, "
        "has reached the per-workflow limit of 3"
    )
    assert failed.failure.HasField("server_failure_info")
    scheduled = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == [], "a failed task keeps none of its commands"


async def raw_update(client, workflow_id, update_id, name):
    return await client.workflow_service.update_workflow_execution(
        UpdateWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            wait_policy=WaitPolicy(
                lifecycle_stage=UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED
            ),
            request=Request(meta=Meta(update_id=update_id), input=Input(name=name)),
        ),
        retry=False,
        timeout=timedelta(seconds=10),
    )


async def test_updates_past_the_in_flight_and_total_limits_are_refused(
    sundial_factory, tmp_path, new_id
):
    server = sundial_factory(
        tmp_path / "updates.db",
        extra_args=[
            "--dynamic-config-value", "history.maxInFlightUpdates=2",
            "--dynamic-config-value", "history.maxTotalUpdates=4",
        ],
    )
    await server.start()
    client = await Client.connect(server.address)
    task_queue = new_id("updates-tq")
    async with Worker(client, task_queue=task_queue, workflows=[UpdateSink]):
        held = await client.start_workflow(UpdateSink.run, id=new_id("held"), task_queue=task_queue)
        for i in range(2):
            await held.start_update(
                UpdateSink.hold, id=f"hold-{i}", wait_for_stage=WorkflowUpdateStage.ACCEPTED
            )
        with pytest.raises(RPCError) as refused:
            await raw_update(client, held.id, "hold-2", "hold")
        assert refused.value.status == RPCStatusCode.RESOURCE_EXHAUSTED
        assert refused.value.message == (
            "limit on number of concurrent in-flight updates has been reached (2)"
        )
        # The same update id again is deduplicated, not refused.
        again = await raw_update(client, held.id, "hold-0", "hold")
        assert again.stage >= UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED

        quick = await client.start_workflow(UpdateSink.run, id=new_id("quick"), task_queue=task_queue)
        for i in range(4):
            assert await quick.execute_update(UpdateSink.quick, id=f"quick-{i}") == "done"
        with pytest.raises(RPCError) as refused:
            await raw_update(client, quick.id, "quick-4", "quick")
        assert refused.value.status == RPCStatusCode.FAILED_PRECONDITION
        assert refused.value.message.startswith(
            "The limit on the total number of distinct updates in this workflow has been reached (4)."
        )


async def start_raw(client, namespace, task_queue, workflow_id):
    await client.workflow_service.start_workflow_execution(
        StartWorkflowExecutionRequest(
            namespace=namespace,
            workflow_id=workflow_id,
            workflow_type=WorkflowType(name="Raw"),
            task_queue=TaskQueue(name=task_queue),
            request_id=str(uuid.uuid4()),
            workflow_task_timeout=Duration(seconds=10),
        )
    )
    return await client.workflow_service.poll_workflow_task_queue(
        PollWorkflowTaskQueueRequest(
            namespace=namespace, task_queue=TaskQueue(name=task_queue), identity="raw"
        ),
        timeout=timedelta(seconds=10),
    )


def start_child_command(namespace, workflow_id, task_queue):
    return Command(
        command_type=CommandType.COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION,
        start_child_workflow_execution_command_attributes=StartChildWorkflowExecutionCommandAttributes(
            namespace=namespace,
            workflow_id=workflow_id,
            workflow_type=WorkflowType(name="Child"),
            task_queue=TaskQueue(name=task_queue),
        ),
    )


async def test_child_into_a_missing_or_other_namespace(sundial_factory, tmp_path, new_id):
    server = sundial_factory(tmp_path / "children.db", extra_args=["--namespace", "other"])
    await server.start()
    client = await Client.connect(server.address)
    task_queue = new_id("raw-tq")

    # A namespace that does not exist: NOT_FOUND at once, nothing recorded.
    workflow_id = new_id("parent")
    task = await start_raw(client, "default", task_queue, workflow_id)
    with pytest.raises(RPCError) as refused:
        await asyncio.wait_for(
            client.workflow_service.respond_workflow_task_completed(
                RespondWorkflowTaskCompletedRequest(
                    namespace="default",
                    task_token=task.task_token,
                    identity="raw",
                    commands=[start_child_command("missing-ns", new_id("child"), task_queue)],
                ),
                retry=False,
            ),
            timeout=10,
        )
    assert refused.value.status == RPCStatusCode.NOT_FOUND
    assert refused.value.message == "Namespace missing-ns is not found."
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED not in types
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in types

    # Another namespace that exists: cross-namespace commands are off, as on Temporal.
    workflow_id = new_id("parent")
    child_id = new_id("child")
    task = await start_raw(client, "default", task_queue, workflow_id)
    with pytest.raises(RPCError) as refused:
        await client.workflow_service.respond_workflow_task_completed(
            RespondWorkflowTaskCompletedRequest(
                namespace="default",
                task_token=task.task_token,
                identity="raw",
                commands=[start_child_command("other", child_id, task_queue)],
            ),
            retry=False,
        )
    assert refused.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert refused.value.message == (
        "BadStartChildExecutionAttributes: cross namespace commands are not allowed"
    )
    handle = client.get_workflow_handle(workflow_id)
    event, _ = await wait_for_event(handle, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
    failed = event.workflow_task_failed_event_attributes
    assert failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_START_CHILD_EXECUTION_ATTRIBUTES
    other = await Client.connect(server.address, namespace="other")
    with pytest.raises(RPCError) as missing:
        await other.get_workflow_handle(child_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def forged_query_token(namespace: str, workflow_id: str, run_id: str, query_id: int) -> bytes:
    """A task token in Sundial's layout (magic byte, then protobuf fields): what a hostile
    worker, which sees real tokens, can build."""
    def string(field, value):
        data = value.encode()
        return _varint(field << 3 | 2) + _varint(len(data)) + data

    return (
        b"\x5d"
        + string(1, namespace)
        + string(2, workflow_id)
        + string(3, run_id)
        + _varint(8 << 3)
        + _varint(query_id)
    )


async def test_forged_query_answers_are_refused(sundial_factory, tmp_path, new_id):
    server = sundial_factory(tmp_path / "queries.db", extra_args=["--namespace", "other"])
    await server.start()
    client = await Client.connect(server.address)
    attacker = await Client.connect(server.address, namespace="other")
    # The victim's workflow: nobody polls its task queue, so its query waits.
    victim_id = new_id("victim")
    handle = await client.start_workflow("Victim", id=victim_id, task_queue=new_id("idle-tq"))
    run_id = handle.result_run_id
    query = asyncio.create_task(handle.query("state", rpc_timeout=timedelta(seconds=4)))
    await asyncio.sleep(0.5)

    async def forge(c, namespace, workflow_id, run, query_id):
        try:
            await c.workflow_service.respond_query_task_completed(
                RespondQueryTaskCompletedRequest(
                    namespace=namespace,
                    task_token=forged_query_token(namespace, workflow_id, run, query_id),
                    completed_type=QueryResultType.QUERY_RESULT_TYPE_ANSWERED,
                ),
                retry=False,
            )
        except RPCError as e:
            return e
        return None

    refusals = []
    for query_id in range(1, 65):
        # From another namespace, and from the victim's own namespace and run with a guess.
        refusals.append(await forge(attacker, "other", "mine", str(uuid.uuid4()), query_id))
        refusals.append(await forge(client, "default", victim_id, run_id, query_id))
    assert all(r is not None for r in refusals), "a forged answer was taken"
    assert {r.status for r in refusals} == {RPCStatusCode.NOT_FOUND}
    assert {r.message for r in refusals} == {"query task not found, or already expired"}
    with pytest.raises(Exception) as no_answer:
        await query
    assert "forged" not in str(no_answer.value)
