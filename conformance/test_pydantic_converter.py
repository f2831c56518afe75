"""Pydantic Converter: pydantic models as workflow/activity inputs and results."""

import asyncio
import json
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from typing import List

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, field_validator
    from temporalio.contrib.pydantic import pydantic_data_converter


class UserData(BaseModel):
    user_id: int
    ip_address: IPv4Address
    seen_at: datetime

    @field_validator("user_id")
    @classmethod
    def validate_user_id(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("user_id must be positive")
        return v


class ProcessedBatch(BaseModel):
    count: int
    addresses: List[IPv4Address]
    latest: datetime


@activity.defn
async def process_users(users: List[UserData]) -> ProcessedBatch:
    # types are restored by the converter, not left as dicts/strings
    assert all(isinstance(u, UserData) for u in users)
    assert all(isinstance(u.ip_address, IPv4Address) for u in users)
    return ProcessedBatch(
        count=len(users),
        addresses=[u.ip_address for u in users],
        latest=max(u.seen_at for u in users),
    )


@workflow.defn
class PydanticWorkflow:
    @workflow.run
    async def run(self, users: List[UserData]) -> ProcessedBatch:
        return await workflow.execute_activity(
            process_users, users, start_to_close_timeout=timedelta(seconds=10)
        )


async def test_pydantic_models_round_trip(client, task_queue, new_id):
    client = Client(**{**client.config(), "data_converter": pydantic_data_converter})
    users = [
        UserData(user_id=1, ip_address="192.168.1.1", seen_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        UserData(user_id=2, ip_address="10.0.0.1", seen_at=datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)),
    ]
    async with Worker(
        client, task_queue=task_queue, workflows=[PydanticWorkflow], activities=[process_users]
    ):
        handle = await client.start_workflow(
            PydanticWorkflow.run, users, id=new_id("pydantic"), task_queue=task_queue
        )
        result = await asyncio.wait_for(handle.result(), 30)

    assert isinstance(result, ProcessedBatch)
    assert result.count == 2
    assert result.addresses == [IPv4Address("192.168.1.1"), IPv4Address("10.0.0.1")]
    assert result.latest == datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)

    # the server stores exactly the JSON the client produced
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    payload = started.input.payloads[0]
    assert payload.metadata["encoding"] == b"json/plain"
    stored = json.loads(payload.data)
    assert stored == [
        {"user_id": 1, "ip_address": "192.168.1.1", "seen_at": "2024-01-02T03:04:05Z"},
        {"user_id": 2, "ip_address": "10.0.0.1", "seen_at": "2024-06-01T12:00:00Z"},
    ]
    completed = history.events[-1]
    assert completed.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    out = json.loads(completed.workflow_execution_completed_event_attributes.result.payloads[0].data)
    assert out["count"] == 2 and out["addresses"] == ["192.168.1.1", "10.0.0.1"]


async def test_result_readable_without_pydantic_converter(client, task_queue, new_id):
    """A plain client decodes the same stored JSON into plain Python values."""
    pyd_client = Client(**{**client.config(), "data_converter": pydantic_data_converter})
    users = [UserData(user_id=7, ip_address="127.0.0.7", seen_at=datetime(2025, 1, 1, tzinfo=timezone.utc))]
    async with Worker(
        pyd_client, task_queue=task_queue, workflows=[PydanticWorkflow], activities=[process_users]
    ):
        handle = await pyd_client.start_workflow(
            PydanticWorkflow.run, users, id=new_id("pydantic-plain"), task_queue=task_queue
        )
        await asyncio.wait_for(handle.result(), 30)
    plain = await client.get_workflow_handle(handle.id).result()
    assert plain == {"count": 1, "addresses": ["127.0.0.7"], "latest": "2025-01-01T00:00:00Z"}
