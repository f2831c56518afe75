"""Local Activity: activities executed inside the workflow worker, recorded as markers."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel
    from temporalio.contrib.pydantic import pydantic_data_converter


class ProcessingInput(BaseModel):
    greeting: str
    name: str


@activity.defn
def compose_greeting(input: ProcessingInput) -> str:
    return f"{input.greeting}, {input.name}!"


@activity.defn
def validate_input(data: str) -> bool:
    return len(data.strip()) > 0


@activity.defn
async def slow_local(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@workflow.defn
class LocalActivityWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        result = await workflow.execute_local_activity(
            compose_greeting,
            ProcessingInput(greeting="Hello", name=name),
            start_to_close_timeout=timedelta(seconds=10),
        )
        is_valid = await workflow.execute_local_activity(
            validate_input, result, start_to_close_timeout=timedelta(seconds=5)
        )
        return result if is_valid else "Invalid result"


@workflow.defn
class LongLocalActivityWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return await workflow.execute_local_activity(
            slow_local, seconds, start_to_close_timeout=timedelta(seconds=20)
        )


def _markers(history):
    return [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


async def test_local_activities_are_recorded_as_markers(client, task_queue, new_id):
    client = Client(**{**client.config(), "data_converter": pydantic_data_converter})
    with ThreadPoolExecutor(2) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[LocalActivityWorkflow],
            activities=[compose_greeting, validate_input],
            activity_executor=executor,
        ):
            handle = await client.start_workflow(
                LocalActivityWorkflow.run, "World", id=new_id("local"), task_queue=task_queue
            )
            result = await asyncio.wait_for(handle.result(), 30)

    assert result == "Hello, World!"
    history = await handle.fetch_history()
    markers = _markers(history)
    assert len(markers) == 2
    assert all(m.marker_name == "core_local_activity" for m in markers)
    # the marker carries the activity's result untouched by the server
    assert any(b"Hello, World!" in p.data for p in markers[0].details["result"].payloads)
    types = [e.event_type for e in history.events]
    # local activities never create activity tasks on the server
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in types
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


async def test_local_activity_longer_than_workflow_task_timeout(client, task_queue, new_id):
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[LongLocalActivityWorkflow],
        activities=[slow_local],
    ):
        t0 = time.monotonic()
        handle = await client.start_workflow(
            LongLocalActivityWorkflow.run,
            3.0,
            id=new_id("local-long"),
            task_queue=task_queue,
            task_timeout=timedelta(seconds=2),
        )
        result = await asyncio.wait_for(handle.result(), 30)
        elapsed = time.monotonic() - t0

    assert result == "slept 3.0"
    assert elapsed >= 3.0
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_task_timeout.ToTimedelta() == timedelta(seconds=2)
    types = [e.event_type for e in history.events]
    # the worker keeps the workflow task alive by completing it early and asking
    # for a new one ("workflow task heartbeat"), so no task ever times out
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT not in types
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
    assert types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) >= 2
    markers = _markers(history)
    assert len(markers) == 1 and markers[0].marker_name == "core_local_activity"
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
