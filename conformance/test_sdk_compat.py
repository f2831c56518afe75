"""More compatibility cases found by the Python SDK's own tests (issue 22, sdk-python 1.31.0),
each checked against what the reference server does:

* a workflow task that only delivers an update (speculative) and fails is written to history
  (Scheduled, Started, Failed) and retried as a second attempt, as on the reference
  (``test_unfinished_update_handler``: the SDK fails the task when the workflow returns while
  an update handler still runs, and the test looks for the WorkflowTaskFailed event);
* RequestCancelWorkflowExecution on a run that already closed succeeds and changes nothing
  (``test_client.py::test_interceptor`` cancels after the result);
* a search attribute value may be a list of values of the attribute's type, as untyped search
  attributes are sent (``test_schedule_workflow_search_attribute_update``).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleSpec,
    WorkflowExecutionStatus,
)
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError
from temporalio.worker import Worker

from test_compat import eventually


async def history_events(client: Client, workflow_id: str):
    resp = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    return list(resp.history.events)


@workflow.defn
class FailingUpdateWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update
    async def boom(self) -> None:
        # Not an ApplicationError: the SDK fails the workflow task instead of the update.
        raise RuntimeError("update handler bug")


async def test_a_failed_update_only_workflow_task_is_written_to_history(client: Client, task_queue):
    async with Worker(client, task_queue=task_queue, workflows=[FailingUpdateWorkflow]):
        handle = await client.start_workflow(
            FailingUpdateWorkflow.run, id=f"specfail-{uuid.uuid4()}", task_queue=task_queue
        )

        async def first_task_completed():
            types = [e.event_type for e in await history_events(client, handle.id)]
            assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in types

        await eventually(first_task_completed)
        # The update rides on a speculative task, which the worker fails (and keeps failing).
        update = asyncio.create_task(handle.execute_update(FailingUpdateWorkflow.boom))
        try:

            async def failure_written():
                events = await history_events(client, handle.id)
                failed = [
                    e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
                ]
                assert failed
                return events, failed[0]

            events, failed = await eventually(failure_written, timeout=20)
            types = [e.event_type for e in events]
            assert types[:7] == [
                EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            ]
            attrs = failed.workflow_task_failed_event_attributes
            assert (attrs.scheduled_event_id, attrs.started_event_id) == (5, 6)
            assert "update handler bug" in attrs.failure.message
            assert events[4].workflow_task_scheduled_event_attributes.attempt == 1
            assert not update.done()
        finally:
            update.cancel()
            await handle.terminate()


@workflow.defn
class QuickWorkflow:
    @workflow.run
    async def run(self) -> str:
        return "done"


async def test_cancelling_a_closed_run_succeeds_and_changes_nothing(client: Client, task_queue):
    async with Worker(client, task_queue=task_queue, workflows=[QuickWorkflow]):
        handle = await client.start_workflow(
            QuickWorkflow.run, id=f"cancel-closed-{uuid.uuid4()}", task_queue=task_queue
        )
        assert await asyncio.wait_for(handle.result(), 20) == "done"
    before = await history_events(client, handle.id)
    await handle.cancel()
    await client.get_workflow_handle(handle.id).cancel()
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert len(await history_events(client, handle.id)) == len(before)
    # Terminating it is still refused.
    with pytest.raises(RPCError):
        await handle.terminate()


async def test_a_search_attribute_value_may_be_a_list_of_its_type(client: Client):
    name = "SdkCompatUntypedKeyword"
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )
    except RPCError:
        pass  # already registered by an earlier run against the same server
    action = ScheduleActionStartWorkflow(
        "some workflow", [], id=f"wf-{uuid.uuid4()}", task_queue=f"tq-{uuid.uuid4()}"
    )
    action.untyped_search_attributes = {name: ["some-untyped-attr1"]}
    handle = await client.create_schedule(
        f"sched-{uuid.uuid4()}", Schedule(action=action, spec=ScheduleSpec())
    )
    try:
        desc = await handle.describe()
        assert isinstance(desc.schedule.action, ScheduleActionStartWorkflow)
        # As on the reference (1.24 on), the value is given the registered type.
        typed = desc.schedule.action.typed_search_attributes
        assert typed[SearchAttributeKey.for_keyword(name)] == "some-untyped-attr1"
    finally:
        await handle.delete()
    # A list with a value of another type is still refused.
    action.untyped_search_attributes = {name: [3]}
    with pytest.raises(RPCError):
        await client.create_schedule(
            f"sched-{uuid.uuid4()}", Schedule(action=action, spec=ScheduleSpec())
        )
