"""Parallel Activity: several activities scheduled at once and gathered."""

import asyncio
from datetime import timedelta
from typing import Dict, List

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

NAMES = ["user1", "user2", "user3", "user4", "user5"]

# workflow id -> barrier that all activities of that workflow must reach together
_barriers: Dict[str, asyncio.Barrier] = {}


@activity.defn
async def say_hello_activity(name: str) -> str:
    barrier = _barriers.get(activity.info().workflow_id)
    if barrier is not None:
        # only passes if every activity of the workflow is in flight at the same time
        await asyncio.wait_for(barrier.wait(), timeout=10)
    return f"Hello, {name}!"


@workflow.defn
class SayHelloWorkflow:
    @workflow.run
    async def run(self, names: List[str]) -> List[str]:
        results = await asyncio.gather(
            *(
                workflow.execute_activity(
                    say_hello_activity,
                    name,
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
                for name in names
            )
        )
        # completion order is non-deterministic
        return list(sorted(results))


async def test_parallel_activities_run_concurrently(client, task_queue, new_id):
    wf_id = new_id("parallel")
    _barriers[wf_id] = asyncio.Barrier(len(NAMES))
    try:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[SayHelloWorkflow],
            activities=[say_hello_activity],
        ):
            handle = await client.start_workflow(
                SayHelloWorkflow.run, NAMES, id=wf_id, task_queue=task_queue
            )
            result = await asyncio.wait_for(handle.result(), 30)
    finally:
        _barriers.pop(wf_id, None)

    assert result == [f"Hello, {n}!" for n in NAMES]

    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    # all five activities are scheduled by the first workflow task completion, back to back
    first_wft_done = types.index(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    assert types[first_wft_done + 1 : first_wft_done + 1 + len(NAMES)] == [
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ] * len(NAMES)
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    assert len({a.activity_id for a in scheduled.values()}) == len(NAMES)
    completed = [
        e.activity_task_completed_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    assert sorted(c.scheduled_event_id for c in completed) == sorted(scheduled)
    # every started event points at a scheduled event and is attempt 1
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert sorted(s.scheduled_event_id for s in started) == sorted(scheduled)
    assert all(s.attempt == 1 for s in started)
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
