"""Polling (infrequent): a short activity fails until ready; the server's retry policy is the poll loop."""

import asyncio
import time
from datetime import timedelta
from typing import Dict, List

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

READY_ON_ATTEMPT = 3

# workflow id -> (attempt, monotonic time) for every attempt the activity saw
_calls: Dict[str, List[tuple]] = {}


@activity.defn
async def poll_service_status(service_url: str) -> str:
    info = activity.info()
    _calls.setdefault(info.workflow_id, []).append((info.attempt, time.monotonic()))
    if info.attempt < READY_ON_ATTEMPT:
        raise RuntimeError("Service not ready")
    return f"{service_url} ready on attempt {info.attempt}"


@workflow.defn
class InfrequentPollingWorkflow:
    @workflow.run
    async def run(self, service_url: str) -> str:
        return await workflow.execute_activity(
            poll_service_status,
            service_url,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                backoff_coefficient=1.0,
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=1),
                maximum_attempts=10,
            ),
        )


async def test_infrequent_polling_via_retry_policy(client, task_queue, new_id):
    wf_id = new_id("poll-infrequent")
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[InfrequentPollingWorkflow],
        activities=[poll_service_status],
    ):
        t0 = time.monotonic()
        handle = await client.start_workflow(
            InfrequentPollingWorkflow.run, "svc://status", id=wf_id, task_queue=task_queue
        )
        result = await asyncio.wait_for(handle.result(), 30)
        elapsed = time.monotonic() - t0

    assert result == "svc://status ready on attempt 3"
    calls = _calls.pop(wf_id)
    assert [attempt for attempt, _ in calls] == [1, 2, 3]
    # two retry intervals of 1s each (backoff 1.0) must separate the three attempts
    gaps = [b - a for (_, a), (_, b) in zip(calls, calls[1:])]
    assert all(g >= 0.9 for g in gaps), gaps
    assert elapsed >= 1.9

    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    # retries are invisible in history: one scheduled, one started (attempt 3), one completed
    assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1
    assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 1
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED not in types
    started = next(
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    )
    assert started.attempt == 3
    assert started.last_failure.message == "Service not ready"
    scheduled = next(
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    policy = scheduled.retry_policy
    assert policy.initial_interval.ToTimedelta() == timedelta(seconds=1)
    assert policy.maximum_interval.ToTimedelta() == timedelta(seconds=1)
    assert policy.backoff_coefficient == 1.0
    assert policy.maximum_attempts == 10
