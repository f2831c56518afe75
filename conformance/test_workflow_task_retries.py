"""A workflow task that keeps timing out, as the reference server handles it (found by the
Python SDK's ``test_workflow_cancel_activity``, whose worker needs more than the 1 s task
timeout for a cold start on a slow machine):

* from the fourth attempt on, the task's start-to-close timeout grows (the task timeout plus
  5 s, doubling per attempt, less up to a fifth as jitter), so a slow worker's task completes;
* a completion of a task that timed out is refused ("Workflow task not found") and the query
  answers it carried are dropped: a query buffered before the failures keeps waiting and is
  answered by the attempt that completes, instead of the SDK seeing an early answer and its
  next query being refused while the task fails.

The test drives the worker side by hand (raw PollWorkflowTaskQueue / RespondWorkflowTaskCompleted)
to control when each attempt answers. Run against the reference dev server, it passes too.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.api.command.v1 import Command, CompleteWorkflowExecutionCommandAttributes
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import CommandType, EventType, QueryResultType
from temporalio.api.query.v1 import WorkflowQueryResult
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    PollWorkflowTaskQueueRequest,
    PollWorkflowTaskQueueResponse,
    RespondWorkflowTaskCompletedRequest,
)
from temporalio.client import Client
from temporalio.converter import PayloadConverter
from temporalio.service import RPCError

TASK_TIMEOUT = timedelta(seconds=1)


async def poll(client: Client, queue: str) -> PollWorkflowTaskQueueResponse:
    while True:
        task = await client.workflow_service.poll_workflow_task_queue(
            PollWorkflowTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=queue), identity="by-hand"
            )
        )
        if task.task_token:
            return task


async def complete(client: Client, task: PollWorkflowTaskQueueResponse, **fields) -> None:
    await client.workflow_service.respond_workflow_task_completed(
        RespondWorkflowTaskCompletedRequest(
            namespace=client.namespace, task_token=task.task_token, identity="by-hand", **fields
        )
    )


def finish() -> list[Command]:
    return [
        Command(
            command_type=CommandType.COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION,
            complete_workflow_execution_command_attributes=CompleteWorkflowExecutionCommandAttributes(),
        )
    ]


def answers(task: PollWorkflowTaskQueueResponse, value: str) -> dict[str, WorkflowQueryResult]:
    payload = PayloadConverter.default.to_payloads([value])[0]
    return {
        query_id: WorkflowQueryResult(
            result_type=QueryResultType.QUERY_RESULT_TYPE_ANSWERED, answer={"payloads": [payload]}
        )
        for query_id in task.queries
    }


async def history(client: Client, workflow_id: str):
    resp = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    return list(resp.history.events)


async def test_the_fourth_attempt_of_a_timing_out_task_gets_a_longer_timeout(client: Client):
    queue = f"retries-{uuid.uuid4()}"
    workflow_id = f"retries-{uuid.uuid4()}"
    await client.start_workflow("W", id=workflow_id, task_queue=queue, task_timeout=TASK_TIMEOUT)
    # Attempts 1 to 3 are taken and left to time out after the task timeout.
    for attempt in (1, 2, 3):
        task = await poll(client, queue)
        assert task.attempt == attempt
    fourth = await poll(client, queue)
    assert fourth.attempt == 4
    # Past the task timeout, within the fourth attempt's own: accepted.
    await asyncio.sleep(2.5)
    await complete(client, fourth, commands=finish())
    events = await history(client, workflow_id)
    kinds = [e.event_type for e in events]
    assert kinds == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]
    scheduled = events[4].workflow_task_scheduled_event_attributes
    assert scheduled.attempt == 4
    # 1 s plus 5 s less up to a fifth.
    timeout = scheduled.start_to_close_timeout.ToTimedelta()
    assert timedelta(seconds=5) <= timeout <= timedelta(seconds=6), timeout
    first = events[1].workflow_task_scheduled_event_attributes
    assert first.start_to_close_timeout.ToTimedelta() == TASK_TIMEOUT


async def test_a_late_completion_is_refused_and_its_query_answers_dropped(client: Client):
    queue = f"retries-{uuid.uuid4()}"
    workflow_id = f"retries-{uuid.uuid4()}"
    handle = await client.start_workflow(
        "W", id=workflow_id, task_queue=queue, task_timeout=TASK_TIMEOUT
    )
    first = await poll(client, queue)
    # A query sent while the first task is outstanding is buffered for the next task.
    query = asyncio.create_task(handle.query("state", rpc_timeout=timedelta(seconds=30)))
    await asyncio.sleep(1.5)  # the first attempt times out meanwhile
    with pytest.raises(RPCError, match="Workflow task not found"):
        await complete(client, first, commands=finish())
    second = await poll(client, queue)
    assert second.attempt == 2 and len(second.queries) == 1
    await asyncio.sleep(1.5)
    # The late completion of the second attempt carries an answer: refused, answer dropped.
    with pytest.raises(RPCError, match="Workflow task not found"):
        await complete(client, second, query_results=answers(second, "too late"))
    assert not query.done()
    third = await poll(client, queue)
    assert third.attempt == 3 and len(third.queries) == 1
    await complete(client, third, query_results=answers(third, "answered"))
    assert await asyncio.wait_for(query, 10) == "answered"
