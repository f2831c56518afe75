"""Updates on runs that close, continue as new, or are reached through update-with-start, as the
reference server answers them (learned from `temporal server start-dev` and Temporal's
service/history/workflow/update, api/updateworkflow, api/pollupdate, api/multioperation):

* a completed update's outcome is answered from history, also after the run closed;
* an update accepted and not completed when the run closes is completed with the server
  failure `AcceptedUpdateCompletedWorkflow` (also after continue-as-new, and on every later poll);
* an update admitted and not accepted when the run closes for good fails with NOT_FOUND
  "workflow update was aborted by closing workflow"; when the run continues as new it fails
  with a retryable RESOURCE_EXHAUSTED and the client's retry is handled by the new run;
* UpdateWorkflowExecution honours `first_execution_run_id`;
* update-with-start attaches to a running run under USE_EXISTING, answers an update the latest
  run completed from its history whatever the policies, starts a new run when the closed run
  did not complete it and the reuse policy allows, and reports errors per operation
  (MultiOperationExecutionFailure), which the SDK turns into WorkflowAlreadyStartedError.

Written after sdk-python 1.31.0 tests/worker/test_update_with_start.py and test_workflow.py and
the features harness (update/async_accepted, continue_as_new/updates_do_not_block_continue_as_new).
Runs against the reference server too: SUNDIAL_ADDRESS=127.0.0.1:7233.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.errordetails.v1 import MultiOperationExecutionFailure
from temporalio.api.update.v1 import Input, Meta, Request, UpdateRef
from temporalio.api.workflowservice.v1 import (
    ExecuteMultiOperationRequest,
    PollWorkflowExecutionUpdateRequest,
    StartWorkflowExecutionRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.api.common.v1 import WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


# Not sandboxed: the sandbox's module validation fails now and then under CPython 3.11
# ("AST constructor recursion depth mismatch") when several workers load this module.
@workflow.defn(sandboxed=False)
class Updatable:
    """Runs until `finish`; `slow` updates wait for `unblock`, others fail or answer at once."""

    def __init__(self) -> None:
        self.done = False
        self.proceed = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done)
        return "done"

    @workflow.update(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def slow(self, fail: bool) -> int:
        if fail:
            raise ApplicationError("Dying on purpose")
        await workflow.wait_condition(lambda: self.proceed)
        return 123

    @workflow.update
    def quick(self, s: str) -> str:
        return f"quick-{s}-{workflow.info().run_id}"

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.signal
    def unblock(self) -> None:
        self.proceed = True


async def poll_update(client: Client, workflow_id: str, update_id: str, run_id: str = ""):
    return await client.workflow_service.poll_workflow_execution_update(
        PollWorkflowExecutionUpdateRequest(
            namespace=client.namespace,
            update_ref=UpdateRef(
                workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                update_id=update_id,
            ),
        )
    )


async def eventually_admitted(client: Client, workflow_id: str, update_id: str) -> None:
    for _ in range(100):
        try:
            await poll_update(client, workflow_id, update_id)
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.05)
    raise AssertionError(f"update {update_id} was never admitted")


def assert_accepted_update_completed_workflow(err: WorkflowUpdateFailedError) -> None:
    assert isinstance(err.cause, ApplicationError)
    assert err.cause.type == "AcceptedUpdateCompletedWorkflow"
    assert err.cause.non_retryable
    assert "Workflow completed before the Update completed" in err.cause.message


async def test_accepted_update_outcome_is_read_from_history_after_close(
    client: Client, task_queue: str, new_id
):
    """features update/async_accepted: handle.result() after the workflow completed."""
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        handle = await client.start_workflow(Updatable.run, id=new_id("wf"), task_queue=task_queue)
        ok = await handle.start_update(
            Updatable.slow, False, id="sleepy", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        await handle.signal(Updatable.unblock)
        assert await ok.result() == 123
        failing = await handle.start_update(
            Updatable.slow, True, id="failing", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await failing.result()
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.message == "Dying on purpose"
        await handle.signal(Updatable.finish)
        assert await handle.result() == "done"

        # After the close: the outcomes still come from history, through fresh handles.
        again = client.get_workflow_handle(handle.id)
        assert await again.get_update_handle("sleepy", result_type=int).result() == 123
        with pytest.raises(WorkflowUpdateFailedError):
            await again.get_update_handle("failing").result()
        # Sending the same update id again attaches to the completed update.
        assert await handle.execute_update(Updatable.slow, False, id="sleepy") == 123
        # A new update on the closed run is refused.
        with pytest.raises(RPCError) as refused:
            await handle.execute_update(Updatable.quick, "x", id="new-one")
        assert refused.value.status == RPCStatusCode.NOT_FOUND
        assert refused.value.message == "workflow execution already completed"
        # An update the run never saw.
        with pytest.raises(RPCError) as unknown:
            await poll_update(client, handle.id, "never-sent")
        assert unknown.value.status == RPCStatusCode.NOT_FOUND
        assert unknown.value.message == 'update "never-sent" not found'


@pytest.mark.parametrize("close", ["complete", "terminate", "cancel"])
async def test_accepted_update_fails_when_run_closes(
    client: Client, task_queue: str, new_id, close: str
):
    """An accepted, unfinished update gets AcceptedUpdateCompletedWorkflow, now and later."""
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        handle = await client.start_workflow(Updatable.run, id=new_id("wf"), task_queue=task_queue)
        pending = await handle.start_update(
            Updatable.slow, False, id="stuck", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        waiting = asyncio.create_task(pending.result())
        await asyncio.sleep(0.2)
        if close == "complete":
            await handle.signal(Updatable.finish)
        elif close == "terminate":
            await handle.terminate("bye")
        else:
            await handle.cancel()
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await waiting
        assert_accepted_update_completed_workflow(err.value)
        # A later poll, and the same update id sent again, answer the same.
        with pytest.raises(WorkflowUpdateFailedError) as later:
            await client.get_workflow_handle(handle.id).get_update_handle("stuck").result()
        assert_accepted_update_completed_workflow(later.value)
        with pytest.raises(WorkflowUpdateFailedError) as resent:
            await handle.execute_update(Updatable.slow, False, id="stuck")
        assert_accepted_update_completed_workflow(resent.value)
        response = await poll_update(client, handle.id, "stuck")
        assert response.stage == WorkflowUpdateStage.COMPLETED.value
        assert response.outcome.failure.application_failure_info.type == (
            "AcceptedUpdateCompletedWorkflow"
        )


# Workflows below block their worker thread until the client saw an update admitted, so the
# update arrives while the workflow task that closes the run is running (the technique of
# features continue_as_new/updates_do_not_block_continue_as_new; never do this in real code).
_in_task: dict[str, threading.Event] = {}
_admitted: dict[str, threading.Event] = {}


def _gates(workflow_id: str) -> tuple[threading.Event, threading.Event]:
    return _in_task.setdefault(workflow_id, threading.Event()), _admitted.setdefault(
        workflow_id, threading.Event()
    )


@workflow.defn(sandboxed=False)
class ClosesWhileUpdateArrives:
    def __init__(self) -> None:
        self.received = False

    @workflow.run
    async def run(self, continue_as_new: bool) -> str:
        info = workflow.info()
        if info.continued_run_id is not None:
            await workflow.wait_condition(lambda: self.received)
            return info.run_id
        in_task, admitted = _gates(info.workflow_id)
        in_task.set()
        admitted.wait(5)
        if continue_as_new:
            workflow.continue_as_new(True)
        return "closed"

    @workflow.update
    async def update(self) -> str:
        self.received = True
        return workflow.info().run_id


async def _update_during_closing_task(
    client: Client, task_queue: str, workflow_id: str, continue_as_new: bool
):
    in_task, admitted = _gates(workflow_id)
    handle = await client.start_workflow(
        ClosesWhileUpdateArrives.run,
        continue_as_new,
        id=workflow_id,
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=1),
    )
    await asyncio.to_thread(in_task.wait, 10)
    update = asyncio.create_task(
        handle.execute_update(ClosesWhileUpdateArrives.update, id="late")
    )
    await eventually_admitted(client, workflow_id, "late")
    admitted.set()
    return handle, update


async def test_update_admitted_while_run_continues_as_new_reaches_new_run(
    client: Client, task_queue: str, new_id
):
    """features continue_as_new/updates_do_not_block_continue_as_new."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ClosesWhileUpdateArrives],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle, update = await _update_during_closing_task(
            client, task_queue, new_id("wf"), continue_as_new=True
        )
        update_run_id = await update
        first_run_id = handle.first_execution_run_id
        assert first_run_id and update_run_id and update_run_id != first_run_id
        assert await handle.result() == update_run_id

        update_events = {
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
        }

        async def event_types(run_id: str) -> set:
            history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
            return {e.event_type for e in history.events}

        assert not update_events & await event_types(first_run_id)
        assert update_events <= await event_types(update_run_id)
        # On the first run, the update was aborted with the retryable error.
        with pytest.raises(RPCError) as err:
            await poll_update(client, handle.id, "late", run_id=first_run_id)
        assert err.value.status == RPCStatusCode.RESOURCE_EXHAUSTED
        assert err.value.message == (
            "workflow operation can not be applied because workflow is closing"
        )


async def test_update_admitted_while_run_completes_is_aborted(
    client: Client, task_queue: str, new_id
):
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ClosesWhileUpdateArrives],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle, update = await _update_during_closing_task(
            client, task_queue, new_id("wf"), continue_as_new=False
        )
        with pytest.raises(RPCError) as err:
            await update
        assert err.value.status == RPCStatusCode.NOT_FOUND
        assert err.value.message == "workflow update was aborted by closing workflow"
        assert await handle.result() == "closed"
        with pytest.raises(RPCError) as later:
            await poll_update(client, handle.id, "late")
        assert later.value.message == "workflow update was aborted by closing workflow"


async def test_update_respects_first_execution_run_id(client: Client, task_queue: str, new_id):
    """sdk-python test_workflow_update_respects_first_execution_run_id."""
    workflow_id = new_id("wf")
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        first = await client.start_workflow(Updatable.run, id=workflow_id, task_queue=task_queue)
        await first.signal(Updatable.finish)
        await first.result()
        second = await client.start_workflow(Updatable.run, id=workflow_id, task_queue=task_queue)
        with pytest.raises(RPCError) as err:
            await first.execute_update(Updatable.quick, "x")
        assert err.value.status == RPCStatusCode.NOT_FOUND
        assert "workflow execution not found" in str(err.value)
        result = await second.execute_update(Updatable.quick, "y")
        assert result == f"quick-y-{second.first_execution_run_id}"
        await second.signal(Updatable.finish)


def _start_op(workflow_id: str, task_queue: str, conflict, reuse=None) -> WithStartWorkflowOperation:
    kwargs = {"id_reuse_policy": reuse} if reuse is not None else {}
    return WithStartWorkflowOperation(
        Updatable.run, id=workflow_id, task_queue=task_queue, id_conflict_policy=conflict, **kwargs
    )


async def test_update_with_start_use_existing_attaches_to_running_run(
    client: Client, task_queue: str, new_id
):
    workflow_id = new_id("wf")
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        op1 = _start_op(workflow_id, task_queue, WorkflowIDConflictPolicy.USE_EXISTING)
        first = await client.execute_update_with_start_workflow(
            Updatable.quick, "1", start_workflow_operation=op1
        )
        run_id = (await op1.workflow_handle()).first_execution_run_id
        assert first == f"quick-1-{run_id}"
        op2 = _start_op(workflow_id, task_queue, WorkflowIDConflictPolicy.USE_EXISTING)
        second = await client.execute_update_with_start_workflow(
            Updatable.quick, "2", start_workflow_operation=op2
        )
        assert second == f"quick-2-{run_id}"
        assert (await op2.workflow_handle()).first_execution_run_id == run_id

        # Under FAIL the running run is an error for both the update and the start operation.
        op3 = _start_op(workflow_id, task_queue, WorkflowIDConflictPolicy.FAIL)
        with pytest.raises(WorkflowAlreadyStartedError):
            await client.execute_update_with_start_workflow(
                Updatable.quick, "3", start_workflow_operation=op3
            )
        with pytest.raises(WorkflowAlreadyStartedError):
            await op3.workflow_handle()
        await (await op1.workflow_handle()).signal(Updatable.finish)


@pytest.mark.parametrize("reuse", ["ALLOW_DUPLICATE", "REJECT_DUPLICATE"])
@pytest.mark.parametrize("conflict", ["USE_EXISTING", "FAIL"])
async def test_update_with_start_attaches_to_completed_update_of_closed_run(
    client: Client, task_queue: str, new_id, reuse: str, conflict: str
):
    """sdk-python test_update_with_start_always_attaches_to_completed_update."""
    workflow_id = new_id("wf")
    policies = (WorkflowIDConflictPolicy[conflict], WorkflowIDReusePolicy[reuse])
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        op1 = _start_op(workflow_id, task_queue, *policies)
        first = await client.execute_update_with_start_workflow(
            Updatable.quick, "1", id="shared", start_workflow_operation=op1
        )
        handle = await op1.workflow_handle()
        await handle.signal(Updatable.finish)
        await handle.result()
        op2 = _start_op(workflow_id, task_queue, *policies)
        second = await client.execute_update_with_start_workflow(
            Updatable.quick, "2", id="shared", start_workflow_operation=op2
        )
        assert second == first
        assert (await op2.workflow_handle()).first_execution_run_id == handle.first_execution_run_id


@pytest.mark.parametrize("reuse", ["ALLOW_DUPLICATE", "REJECT_DUPLICATE"])
async def test_update_with_start_after_closed_run_left_update_unfinished(
    client: Client, task_queue: str, new_id, reuse: str
):
    """sdk-python test_update_with_start_does_not_attach_to_non_completed_update_in_closed_workflow."""
    workflow_id = new_id("wf")
    policies = (WorkflowIDConflictPolicy.FAIL, WorkflowIDReusePolicy[reuse])
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        op1 = _start_op(workflow_id, task_queue, *policies)
        await client.start_update_with_start_workflow(
            Updatable.slow,
            False,
            id="shared",
            start_workflow_operation=op1,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        handle = await op1.workflow_handle()
        await handle.signal(Updatable.finish)
        await handle.result()
        op2 = _start_op(workflow_id, task_queue, *policies)
        if reuse == "REJECT_DUPLICATE":
            with pytest.raises(WorkflowAlreadyStartedError):
                await client.execute_update_with_start_workflow(
                    Updatable.quick, "2", id="shared", start_workflow_operation=op2
                )
            return
        result = await client.execute_update_with_start_workflow(
            Updatable.quick, "2", id="shared", start_workflow_operation=op2
        )
        second = await op2.workflow_handle()
        assert second.first_execution_run_id != handle.first_execution_run_id
        assert result == f"quick-2-{second.first_execution_run_id}"
        await second.signal(Updatable.finish)


async def test_update_with_start_attaches_to_in_flight_update_under_fail(
    client: Client, task_queue: str, new_id
):
    """sdk-python test_update_with_start_attaches_to_non_completed_update_in_running_workflow."""
    workflow_id = new_id("wf")
    async with Worker(client, task_queue=task_queue, workflows=[Updatable]):
        op1 = _start_op(workflow_id, task_queue, WorkflowIDConflictPolicy.FAIL)
        first = await client.start_update_with_start_workflow(
            Updatable.slow,
            False,
            id="shared",
            start_workflow_operation=op1,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        op2 = _start_op(workflow_id, task_queue, WorkflowIDConflictPolicy.FAIL)
        second = await client.start_update_with_start_workflow(
            Updatable.slow,
            True,  # ignored: the update is the one already accepted
            id="shared",
            start_workflow_operation=op2,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        handle = await op1.workflow_handle()
        assert (await op2.workflow_handle()).first_execution_run_id == handle.first_execution_run_id
        await handle.signal(Updatable.unblock)
        assert await first.result() == await second.result() == 123
        await handle.signal(Updatable.finish)


async def test_update_with_start_errors_name_their_operation(client: Client, new_id):
    workflow_id = new_id("wf")
    start = StartWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_id=workflow_id,
        workflow_type=WorkflowType(name="Updatable"),
        task_queue=TaskQueue(name="nobody"),
        request_id=str(uuid.uuid4()),
        workflow_id_conflict_policy=WorkflowIDConflictPolicy.FAIL.value,
    )
    update = UpdateWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=str(uuid.uuid4())),
        request=Request(meta=Meta(update_id="u"), input=Input(name="quick")),
    )
    with pytest.raises(RPCError) as err:
        await client.workflow_service.execute_multi_operation(
            ExecuteMultiOperationRequest(
                namespace=client.namespace,
                operations=[
                    ExecuteMultiOperationRequest.Operation(start_workflow=start),
                    ExecuteMultiOperationRequest.Operation(update_workflow=update),
                ],
            )
        )
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    failure = MultiOperationExecutionFailure()
    assert err.value.grpc_status.details[0].Unpack(failure)
    start_status, update_status = failure.statuses
    assert start_status.code == RPCStatusCode.ABORTED
    assert start_status.message == "Operation was aborted."
    assert update_status.code == RPCStatusCode.INVALID_ARGUMENT
    assert update_status.message == "RunId is not allowed."
