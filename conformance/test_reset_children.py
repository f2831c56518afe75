"""ResetWorkflowExecution with cross-run work pending at the cut, as the reference server does
it (history.allowResetWithPendingChildren, on by default): a child started before the cut is
the new run's pending child and its close reaches the new run (the child still names the old
run as its parent); a child's start and close recorded after the cut are copied after the
reset's WorkflowTaskFailed; a child initiated after the cut is left running and reaches
nobody; no parent close policy is applied, neither when the reset terminates the old run nor
when the new run closes with a child it took over; signals and cancellations of other
workflows pending at the cut are sent again. Checked against the reference dev server
(SUNDIAL_ADDRESS).
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio import workflow
from temporalio.api.command.v1 import (
    Command,
    RequestCancelExternalWorkflowExecutionCommandAttributes,
    SignalExternalWorkflowExecutionCommandAttributes,
    StartChildWorkflowExecutionCommandAttributes,
)
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import (
    CommandType,
    EventType,
    ParentClosePolicy as ApiParentClosePolicy,
    StartChildWorkflowExecutionFailedCause,
    WorkflowExecutionStatus,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    PollWorkflowTaskQueueRequest,
    RespondWorkflowTaskCompletedRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.workflow import ParentClosePolicy

from test_reset import completed_ids, describe, events_of, names, reset, wait_for


@workflow.defn(sandboxed=False)
class ResetKid:
    """Returns `name:value` once signalled `finish`."""

    def __init__(self) -> None:
        self.value: str | None = None

    @workflow.signal
    def finish(self, value: str) -> None:
        self.value = value

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.value is not None)
        return f"{name}:{self.value}"


@workflow.defn(sandboxed=False)
class ResetDad:
    """Runs one child (id `<own id>/kid`, close policy TERMINATE) and returns its result."""

    @workflow.run
    async def run(self) -> str:
        result = await workflow.execute_child_workflow(
            ResetKid.run, "kid", id=workflow.info().workflow_id + "/kid",
            parent_close_policy=ParentClosePolicy.TERMINATE,
        )
        return "dad got " + result


def worker(client: Client, task_queue: str) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[ResetDad, ResetKid],
                  workflow_runner=UnsandboxedWorkflowRunner())


async def settled(client: Client, wid: str, run_id: str, n_completed: int) -> list:
    """The run's history once it has `n_completed` completed workflow tasks and is idle."""
    events: list = []

    async def ready() -> bool:
        nonlocal events
        events = await events_of(client, wid, run_id)
        return (len(completed_ids(events)) >= n_completed
                and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)

    await wait_for(ready, f"{n_completed} completed workflow tasks of {run_id}")
    return events


async def status(client: Client, wid: str, run_id: str = "") -> int:
    return (await describe(client, wid, run_id)).workflow_execution_info.status


async def dad_with_a_running_kid(client: Client, task_queue: str) -> tuple[str, str, list]:
    """ResetDad whose child started: 5 initiated, 6 started, 9 the second task's completion."""
    wid = f"reset-kids-{uuid.uuid4()}"
    handle = await client.start_workflow(ResetDad.run, id=wid, task_queue=task_queue)
    events = await settled(client, wid, handle.result_run_id, 2)
    assert names(events)[4:6] == ["START_CHILD_WORKFLOW_EXECUTION_INITIATED", "CHILD_WORKFLOW_EXECUTION_STARTED"]
    return wid, handle.result_run_id, events


async def test_a_running_child_is_taken_over_and_its_result_reaches_the_new_run(client: Client, task_queue):
    async with worker(client, task_queue):
        wid, old_run, events = await dad_with_a_running_kid(client, task_queue)
        kid_run = events[5].child_workflow_execution_started_event_attributes.workflow_execution.run_id
        new_run = await reset(client, wid, completed_ids(events)[1])
        await settled(client, wid, new_run, 1)

        assert await status(client, wid, old_run) == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED
        kid = (await describe(client, f"{wid}/kid")).workflow_execution_info
        assert kid.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING, \
            "the reset applies no close policy"
        assert kid.parent_execution.run_id == old_run, "the child still names the old run"
        pending = list((await describe(client, wid, new_run)).pending_children)
        assert [(p.workflow_id, p.run_id, p.workflow_type_name, p.initiated_id, p.parent_close_policy)
                for p in pending] == [
            (f"{wid}/kid", kid_run, "ResetKid", 5, ApiParentClosePolicy.PARENT_CLOSE_POLICY_TERMINATE)]

        await client.get_workflow_handle(f"{wid}/kid").signal(ResetKid.finish, "done")
        result = await asyncio.wait_for(client.get_workflow_handle(wid).result(), 20)
        assert result == "dad got kid:done"

    new_events = await events_of(client, wid, new_run)
    done = [e for e in new_events if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED]
    assert len(done) == 1
    attrs = done[0].child_workflow_execution_completed_event_attributes
    assert (attrs.initiated_event_id, attrs.started_event_id) == (5, 6)
    assert attrs.workflow_execution.run_id == kid_run
    old_events = await events_of(client, wid, old_run)
    assert names(old_events)[-1] == "WORKFLOW_EXECUTION_TERMINATED", "the old run got nothing"
    assert not list((await describe(client, wid, new_run)).pending_children)


async def test_the_new_run_applies_no_close_policy_to_a_child_it_took_over(client: Client, task_queue):
    async with worker(client, task_queue):
        wid, _, events = await dad_with_a_running_kid(client, task_queue)
        new_run = await reset(client, wid, completed_ids(events)[1])
        await settled(client, wid, new_run, 1)
        await client.get_workflow_handle(wid).terminate("the new run ends")
        await asyncio.sleep(1.5)
        assert await status(client, f"{wid}/kid") == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        await client.get_workflow_handle(f"{wid}/kid").terminate("done")


async def test_a_child_closed_after_the_cut_is_copied_into_the_new_run(client: Client, task_queue):
    async with worker(client, task_queue):
        wid, old_run, events = await dad_with_a_running_kid(client, task_queue)
        await client.get_workflow_handle(f"{wid}/kid").signal(ResetKid.finish, "early")
        assert await client.get_workflow_handle(wid).result() == "dad got kid:early"
        new_run = await reset(client, wid, completed_ids(events)[1])
        assert await asyncio.wait_for(client.get_workflow_handle(wid, run_id=new_run).result(), 20) \
            == "dad got kid:early"
    new_events = await events_of(client, wid, new_run)
    assert names(new_events)[8:11] == [
        "WORKFLOW_TASK_FAILED", "CHILD_WORKFLOW_EXECUTION_COMPLETED", "WORKFLOW_TASK_SCHEDULED"]


async def test_a_child_initiated_after_the_cut_is_left_running_and_reaches_nobody(client: Client, task_queue):
    async with worker(client, task_queue):
        wid, old_run, events = await dad_with_a_running_kid(client, task_queue)
        new_run = await reset(client, wid, completed_ids(events)[0])
        new_handle = client.get_workflow_handle(wid, run_id=new_run)

        async def closed() -> bool:
            return await status(client, wid, new_run) != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING

        await wait_for(closed, "the new run to close")
        new_events = await events_of(client, wid, new_run)
        failed = [e for e in new_events if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED]
        assert len(failed) == 1, names(new_events)
        assert failed[0].start_child_workflow_execution_failed_event_attributes.cause == \
            StartChildWorkflowExecutionFailedCause.START_CHILD_WORKFLOW_EXECUTION_FAILED_CAUSE_WORKFLOW_ALREADY_EXISTS
        assert await status(client, f"{wid}/kid") == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING

        await client.get_workflow_handle(f"{wid}/kid").signal(ResetKid.finish, "late")
        assert await client.get_workflow_handle(f"{wid}/kid").result() == "kid:late"
        await asyncio.sleep(1.0)
        for run in (old_run, new_run):
            assert "CHILD_WORKFLOW_EXECUTION_COMPLETED" not in names(await events_of(client, wid, run))
        assert new_handle.result_run_id == new_run


# A parent driven by hand, to place a workflow task between a command and its outcome.

async def poll(client: Client, task_queue: str):
    return await client.workflow_service.poll_workflow_task_queue(PollWorkflowTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue), identity="by-hand"))


async def respond(client: Client, token: bytes, commands=(), *, again: bool = False):
    return await client.workflow_service.respond_workflow_task_completed(RespondWorkflowTaskCompletedRequest(
        namespace=client.namespace, task_token=token, commands=list(commands), identity="by-hand",
        force_create_new_workflow_task=again, return_new_workflow_task=again))


async def by_hand(client: Client, wid: str, task_queue: str, commands: list) -> str:
    """Starts `wid`, completes its first task with `commands` and a forced second task, which
    completes (event 8, or 9 with two commands) while the commands' outcomes wait in the buffer."""
    await client.workflow_service.start_workflow_execution(StartWorkflowExecutionRequest(
        namespace=client.namespace, workflow_id=wid, workflow_type=WorkflowType(name="ByHand"),
        task_queue=TaskQueue(name=task_queue), request_id=str(uuid.uuid4())))
    task = await poll(client, task_queue)
    second = (await respond(client, task.task_token, commands, again=True)).workflow_task
    await asyncio.sleep(1.0)
    await respond(client, second.task_token)
    return task.workflow_execution.run_id


async def test_a_childs_start_recorded_after_the_cut_is_copied_and_its_close_delivered(client: Client, task_queue):
    wid = f"reset-kids-hand-{uuid.uuid4()}"
    kid_queue = f"{task_queue}-kids"
    async with Worker(client, task_queue=kid_queue, workflows=[ResetKid], workflow_runner=UnsandboxedWorkflowRunner()):
        start = Command(
            command_type=CommandType.COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION,
            start_child_workflow_execution_command_attributes=StartChildWorkflowExecutionCommandAttributes(
                namespace=client.namespace, workflow_id=f"{wid}/kid", workflow_type=WorkflowType(name="ResetKid"),
                task_queue=TaskQueue(name=kid_queue), input=await client.data_converter.encode_wrapper(["kid"])))
        old_run = await by_hand(client, wid, task_queue, [start])

        async def started() -> bool:
            return "CHILD_WORKFLOW_EXECUTION_STARTED" in names(await events_of(client, wid, old_run))

        await wait_for(started, "the child's start")
        old_events = await events_of(client, wid, old_run)
        assert names(old_events)[4:9] == [
            "START_CHILD_WORKFLOW_EXECUTION_INITIATED", "WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED",
            "WORKFLOW_TASK_COMPLETED", "CHILD_WORKFLOW_EXECUTION_STARTED"]
        new_run = await reset(client, wid, 8)
        new_events = await events_of(client, wid, new_run)
        assert names(new_events)[7:] == [
            "WORKFLOW_TASK_FAILED", "CHILD_WORKFLOW_EXECUTION_STARTED", "WORKFLOW_TASK_SCHEDULED"]
        assert new_events[8].child_workflow_execution_started_event_attributes == \
            old_events[8].child_workflow_execution_started_event_attributes
        pending = list((await describe(client, wid, new_run)).pending_children)
        assert [(p.initiated_id, p.run_id) for p in pending] == [
            (5, old_events[8].child_workflow_execution_started_event_attributes.workflow_execution.run_id)]

        task = await poll(client, task_queue)
        assert task.workflow_execution.run_id == new_run
        await respond(client, task.task_token)
        await client.get_workflow_handle(f"{wid}/kid").signal(ResetKid.finish, "x")

        async def delivered() -> bool:
            return "CHILD_WORKFLOW_EXECUTION_COMPLETED" in names(await events_of(client, wid, new_run))

        await wait_for(delivered, "the child's close in the new run")
        done = [e for e in await events_of(client, wid, new_run)
                if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED][0]
        attrs = done.child_workflow_execution_completed_event_attributes
        assert (attrs.initiated_event_id, attrs.started_event_id) == (5, 9)
        await client.get_workflow_handle(wid).terminate("done")


async def test_signals_and_cancels_of_other_workflows_pending_at_the_cut_are_sent_again(client: Client, task_queue):
    wid = f"reset-ext-{uuid.uuid4()}"
    kid_queue = f"{task_queue}-kids"
    async with Worker(client, task_queue=kid_queue, workflows=[ResetKid], workflow_runner=UnsandboxedWorkflowRunner()):
        signaled = await client.start_workflow(ResetKid.run, "t1", id=f"{wid}/t1", task_queue=kid_queue)
        canceled = await client.start_workflow(ResetKid.run, "t2", id=f"{wid}/t2", task_queue=kid_queue)
        commands = [
            Command(command_type=CommandType.COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION,
                    signal_external_workflow_execution_command_attributes=SignalExternalWorkflowExecutionCommandAttributes(
                        namespace=client.namespace, execution=WorkflowExecution(workflow_id=signaled.id),
                        signal_name="other")),
            Command(command_type=CommandType.COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION,
                    request_cancel_external_workflow_execution_command_attributes=(
                        RequestCancelExternalWorkflowExecutionCommandAttributes(
                            namespace=client.namespace, workflow_id=canceled.id))),
        ]
        old_run = await by_hand(client, wid, task_queue, commands)

        async def outcomes(run: str) -> bool:
            got = names(await events_of(client, wid, run))
            return "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED" in got and "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED" in got

        await wait_for(lambda: outcomes(old_run), "the old run's outcomes")
        assert names(await events_of(client, wid, old_run))[4:9] == [
            "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED", "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
            "WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED", "WORKFLOW_TASK_COMPLETED"]

        async def target_canceled() -> bool:
            return await status(client, canceled.id) == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CANCELED

        await wait_for(target_canceled, "the cancelled target to close")
        new_run = await reset(client, wid, 9)
        await wait_for(lambda: outcomes(new_run), "the new run's outcomes")
        tail = names(await events_of(client, wid, new_run))[8:]
        assert tail[:2] == ["WORKFLOW_TASK_FAILED", "WORKFLOW_TASK_SCHEDULED"]
        assert sorted(tail[2:]) == ["EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
                                    "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED"], \
            "sent again; a closed run whose cancellation was requested counts as cancelled"
        target = names(await events_of(client, wid + "/t1"))
        assert target.count("WORKFLOW_EXECUTION_SIGNALED") == 2, "the target got the signal twice"
        await client.get_workflow_handle(wid).terminate("done")
        await signaled.terminate("done")
