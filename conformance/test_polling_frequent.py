"""Polling (frequent): one long-lived, heartbeating activity polls a service."""

import asyncio
from datetime import timedelta
from typing import Dict, List, Optional

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

POLL_INTERVAL_S = 0.2


class FakeService:
    """Returns None until it has been called ``ready_after`` times; fails every 2nd call."""

    def __init__(self, ready_after: int) -> None:
        self.ready_after = ready_after
        self.calls = 0

    async def fetch(self) -> Optional[str]:
        self.calls += 1
        if self.calls >= self.ready_after:
            return f"ready after {self.calls} calls"
        if self.calls % 2 == 0:
            raise ConnectionError("service temporarily unavailable")
        return None


_services: Dict[str, FakeService] = {}


@activity.defn
async def poll_external_service(service_name: str) -> str:
    service = _services[service_name]
    while True:
        try:
            result = await service.fetch()
            if result is not None:
                return result
        except Exception as err:  # the service may be temporarily down: keep polling
            activity.logger.debug("poll failed: %s", err)
        activity.heartbeat(f"polled {service.calls} times")
        await asyncio.sleep(POLL_INTERVAL_S)


@workflow.defn
class FrequentPollingWorkflow:
    @workflow.run
    async def run(self, service_name: str) -> str:
        return await workflow.execute_activity(
            poll_external_service,
            service_name,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=2),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_frequent_polling_with_heartbeats(client, task_queue, new_id):
    name = new_id("svc")
    # 12 polls * 0.2s = ~2.4s of polling: longer than the 2s heartbeat timeout,
    # so it only passes if the server honours the heartbeats
    _services[name] = FakeService(ready_after=12)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[FrequentPollingWorkflow],
        activities=[poll_external_service],
    ):
        handle = await client.start_workflow(
            FrequentPollingWorkflow.run, name, id=new_id("poll-frequent"), task_queue=task_queue
        )
        result = await asyncio.wait_for(handle.result(), 30)

    assert result == "ready after 12 calls"
    assert _services.pop(name).calls == 12
    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT not in types
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert [s.attempt for s in started] == [1]
    scheduled = next(
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    assert scheduled.heartbeat_timeout.ToTimedelta() == timedelta(seconds=2)
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


# --- heartbeat timeout enforcement and heartbeat details carried to the next attempt

_seen_details: Dict[str, List[list]] = {}


@activity.defn
async def resumable_poll() -> str:
    info = activity.info()
    _seen_details.setdefault(info.workflow_id, []).append(list(info.heartbeat_details))
    if info.attempt == 1:
        activity.heartbeat("checkpoint-7")
        # stop heartbeating: the server must time this attempt out (heartbeat timeout 1s)
        await asyncio.sleep(4)
        return "attempt 1 should have been timed out"
    return f"resumed from {info.heartbeat_details[0]} on attempt {info.attempt}"


@workflow.defn
class ResumablePollingWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            resumable_poll,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
        )


async def test_missed_heartbeat_times_out_and_details_survive(client, task_queue, new_id):
    wf_id = new_id("poll-resume")
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ResumablePollingWorkflow],
        activities=[resumable_poll],
    ):
        handle = await client.start_workflow(
            ResumablePollingWorkflow.run, id=wf_id, task_queue=task_queue
        )
        result = await asyncio.wait_for(handle.result(), 30)

    assert result == "resumed from checkpoint-7 on attempt 2"
    # attempt 1 started with no details, attempt 2 got the last heartbeat of attempt 1
    assert _seen_details.pop(wf_id) == [[], ["checkpoint-7"]]
    history = await handle.fetch_history()
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert [s.attempt for s in started] == [2]
    last_failure = started[0].last_failure
    assert last_failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
