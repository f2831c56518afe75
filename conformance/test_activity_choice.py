"""Activity Choice: the workflow picks which activity to run from its (pydantic) input."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from enum import IntEnum
from typing import List

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus, WorkflowTaskFailedCause
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel
    from temporalio.contrib.pydantic import pydantic_data_converter


class Fruit(IntEnum):
    APPLE = 1
    BANANA = 2
    CHERRY = 3


class ShoppingItem(BaseModel):
    fruit: Fruit
    amount: int


class ShoppingList(BaseModel):
    items: List[ShoppingItem]


@activity.defn
def order_apples(amount: int) -> str:
    return f"Ordered {amount} Apples..."


@activity.defn
def order_bananas(amount: int) -> str:
    return f"Ordered {amount} Bananas..."


@workflow.defn
class PurchaseFruitsWorkflow:
    @workflow.run
    async def run(self, shopping_list: ShoppingList) -> str:
        ordered = []
        for item in shopping_list.items:
            if item.fruit is Fruit.APPLE:
                order_function = order_apples
            elif item.fruit is Fruit.BANANA:
                order_function = order_bananas
            else:
                # Not a Temporal failure type: fails the workflow *task*, which
                # the server keeps retrying while the workflow stays open.
                raise ValueError(f"Unrecognized fruit: {item.fruit}")
            ordered.append(
                await workflow.execute_activity(
                    order_function, item.amount, start_to_close_timeout=timedelta(seconds=5)
                )
            )
        return "".join(ordered)


def _pydantic_client(client: Client) -> Client:
    config = client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


def _worker(client: Client, task_queue: str, executor: ThreadPoolExecutor) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PurchaseFruitsWorkflow],
        activities=[order_apples, order_bananas],
        activity_executor=executor,
    )


async def test_activity_choice_follows_input(client, task_queue, new_id):
    client = _pydantic_client(client)
    shopping = ShoppingList(
        items=[
            ShoppingItem(fruit=Fruit.APPLE, amount=8),
            ShoppingItem(fruit=Fruit.BANANA, amount=5),
            ShoppingItem(fruit=Fruit.APPLE, amount=1),
        ]
    )
    with ThreadPoolExecutor(4) as executor:
        async with _worker(client, task_queue, executor):
            handle = await client.start_workflow(
                PurchaseFruitsWorkflow.run, shopping, id=new_id("fruits"), task_queue=task_queue
            )
            result = await asyncio.wait_for(handle.result(), 30)

    assert result == "Ordered 8 Apples...Ordered 5 Bananas...Ordered 1 Apples..."

    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert [a.activity_type.name for a in scheduled] == ["order_apples", "order_bananas", "order_apples"]
    assert all(a.task_queue.name == task_queue for a in scheduled)
    # activities run one after another: each completes before the next is scheduled
    kinds = [
        e.event_type
        for e in history.events
        if e.event_type
        in (EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    ]
    assert kinds == [
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    ] * 3
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    # the pydantic input is stored as JSON
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == "PurchaseFruitsWorkflow"
    assert started.input.payloads[0].metadata["encoding"] == b"json/plain"
    assert b'"amount":8' in started.input.payloads[0].data.replace(b" ", b"")


async def test_unrecognized_choice_fails_workflow_task(client, task_queue, new_id):
    client = _pydantic_client(client)
    shopping = ShoppingList(items=[ShoppingItem(fruit=Fruit.CHERRY, amount=2)])
    with ThreadPoolExecutor(2) as executor:
        async with _worker(client, task_queue, executor):
            handle = await client.start_workflow(
                PurchaseFruitsWorkflow.run, shopping, id=new_id("cherry"), task_queue=task_queue
            )
            failed = None
            for _ in range(100):
                history = await handle.fetch_history()
                failed = next(
                    (e for e in history.events
                     if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED),
                    None,
                )
                if failed:
                    break
                await asyncio.sleep(0.1)
            assert failed is not None, "expected a WorkflowTaskFailed event"
            attrs = failed.workflow_task_failed_event_attributes
            assert attrs.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE
            assert "Unrecognized fruit" in attrs.failure.message

            # a failed workflow task does not close the workflow
            desc = await handle.describe()
            assert desc.raw_description.workflow_execution_info.status == (
                WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
            )
            await handle.terminate("test cleanup")

    desc = await handle.describe()
    assert desc.raw_description.workflow_execution_info.status == (
        WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED
    )
    history = await handle.fetch_history()
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    assert not any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in history.events)
