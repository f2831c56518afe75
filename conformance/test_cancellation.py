"""Cancellation: client cancel reaches a heartbeating activity, the workflow's
``finally`` runs a cleanup activity and the workflow ends CANCELED.  Also timer
cancellation, terminate with a reason and the workflow execution timeout."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Dict, List

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import CancelledError, TerminatedError, TimeoutError, TimeoutType
from temporalio.worker import Worker

# workflow id -> what the activities observed (written from activity threads)
_observed: Dict[str, List[str]] = {}
_observed_lock = threading.Lock()


def _note(wf_id: str, what: str) -> None:
    with _observed_lock:
        _observed.setdefault(wf_id, []).append(what)


@activity.defn
def never_complete_activity() -> None:
    wf_id = activity.info().workflow_id
    _note(wf_id, "started")
    try:
        while True:
            activity.heartbeat()  # required for the cancellation to be delivered
            time.sleep(0.05)
    except CancelledError:
        _note(wf_id, "cancelled")
        raise


@activity.defn
def cleanup_activity() -> str:
    _note(activity.info().workflow_id, "cleanup")
    return "cleaned up"


@workflow.defn
class CancellationWorkflow:
    @workflow.run
    async def run(self) -> None:
        try:
            await workflow.execute_activity(
                never_complete_activity,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=1),
                retry_policy=RetryPolicy(maximum_attempts=1),
                # wait for the activity to acknowledge, so ActivityTaskCanceled is
                # recorded before the cleanup is scheduled
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        finally:
            # cleanup always executes, even on cancellation
            await workflow.execute_activity(
                cleanup_activity, start_to_close_timeout=timedelta(seconds=5)
            )


def _first(history, event_type: int):
    return next(e for e in history.events if e.event_type == event_type)


async def _wait_for_event(handle, event_type: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = await handle.fetch_history()
        if any(e.event_type == event_type for e in history.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: no {EventType.Name(event_type)} within {timeout}s")


async def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_cancel_reaches_heartbeating_activity_and_cleanup_runs(
    client, task_queue, new_id, history_types
):
    wf_id = new_id("cancel")
    with ThreadPoolExecutor(4) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[CancellationWorkflow],
            activities=[never_complete_activity, cleanup_activity],
            activity_executor=executor,
        ):
            handle = await client.start_workflow(
                CancellationWorkflow.run, id=wf_id, task_queue=task_queue
            )
            # the started event is only written when the attempt closes: watch the worker
            await _wait_until(lambda: "started" in _observed.get(wf_id, []))
            await handle.cancel()
            with pytest.raises(WorkflowFailureError) as exc_info:
                await asyncio.wait_for(handle.result(), 15)

    assert isinstance(exc_info.value.cause, CancelledError), repr(exc_info.value.cause)
    assert _observed.pop(wf_id) == ["started", "cancelled", "cleanup"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

    types = await history_types(handle)
    expected_order = [
        "WORKFLOW_EXECUTION_STARTED",
        "ACTIVITY_TASK_SCHEDULED",
        "WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "ACTIVITY_TASK_CANCEL_REQUESTED",
        # the started event of a retryable activity is written when the attempt closes
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_CANCELED",
        "ACTIVITY_TASK_SCHEDULED",
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_CANCELED",
    ]
    interesting = [t for t in types if not t.startswith("WORKFLOW_TASK_")]
    assert interesting == expected_order, types
    assert types[-2] == "WORKFLOW_TASK_COMPLETED"

    history = await handle.fetch_history()
    scheduled = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert [s.activity_task_scheduled_event_attributes.activity_type.name for s in scheduled] == [
        "never_complete_activity",
        "cleanup_activity",
    ]
    cancel_req = _first(history, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
    assert cancel_req.activity_task_cancel_requested_event_attributes.scheduled_event_id == scheduled[0].event_id
    canceled = _first(history, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED)
    assert canceled.activity_task_canceled_event_attributes.scheduled_event_id == scheduled[0].event_id
    assert canceled.activity_task_canceled_event_attributes.started_event_id == canceled.event_id - 1
    assert (
        canceled.activity_task_canceled_event_attributes.latest_cancel_requested_event_id
        == cancel_req.event_id
    )
    completed = _first(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    assert completed.activity_task_completed_event_attributes.scheduled_event_id == scheduled[1].event_id
    last = history.events[-1]
    assert last.workflow_execution_canceled_event_attributes.workflow_task_completed_event_id == (
        history.events[-2].event_id
    )


@workflow.defn
class SleepForeverWorkflow:
    @workflow.run
    async def run(self) -> str:
        await asyncio.sleep(60)
        return "woke up"


async def test_cancel_timer_sleeping_workflow(client, task_queue, new_id, history_types):
    async with Worker(client, task_queue=task_queue, workflows=[SleepForeverWorkflow]):
        handle = await client.start_workflow(
            SleepForeverWorkflow.run, id=new_id("cancel-timer"), task_queue=task_queue
        )
        await _wait_for_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as exc_info:
            await asyncio.wait_for(handle.result(), 10)
    assert isinstance(exc_info.value.cause, CancelledError), repr(exc_info.value.cause)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

    types = await history_types(handle)
    assert types == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "TIMER_STARTED",
        "WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "TIMER_CANCELED",
        "WORKFLOW_EXECUTION_CANCELED",
    ]
    history = await handle.fetch_history()
    started = _first(history, EventType.EVENT_TYPE_TIMER_STARTED).timer_started_event_attributes
    canceled = _first(history, EventType.EVENT_TYPE_TIMER_CANCELED).timer_canceled_event_attributes
    assert canceled.timer_id == started.timer_id
    assert started.start_to_fire_timeout.ToTimedelta() == timedelta(seconds=60)


async def test_terminate_with_reason(client, task_queue, new_id, history_types):
    async with Worker(client, task_queue=task_queue, workflows=[SleepForeverWorkflow]):
        handle = await client.start_workflow(
            SleepForeverWorkflow.run, id=new_id("terminate"), task_queue=task_queue
        )
        await _wait_for_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)
        await handle.terminate("detail-1", reason="operator says stop")
        with pytest.raises(WorkflowFailureError) as exc_info:
            await asyncio.wait_for(handle.result(), 10)

    assert isinstance(exc_info.value.cause, TerminatedError), repr(exc_info.value.cause)
    assert exc_info.value.cause.message == "operator says stop"
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
    history = await handle.fetch_history()
    last = history.events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    attrs = last.workflow_execution_terminated_event_attributes
    assert attrs.reason == "operator says stop"
    assert [p.data for p in attrs.details.payloads] == [b'"detail-1"']
    # terminating does not cancel the timer: the run just ends
    types = await history_types(handle)
    assert types == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "TIMER_STARTED",
        "WORKFLOW_EXECUTION_TERMINATED",
    ]


async def test_terminate_without_reason_gets_default_reason(client, new_id):
    # no worker needed: terminate a workflow whose first task was never picked up
    handle = await client.start_workflow(
        "NoSuchWorkflow", id=new_id("terminate-noreason"), task_queue=new_id("tq-nobody")
    )
    await handle.terminate()
    with pytest.raises(WorkflowFailureError) as exc_info:
        await asyncio.wait_for(handle.result(), 10)
    assert isinstance(exc_info.value.cause, TerminatedError)
    # the reference fills in a reason when the request has none
    assert exc_info.value.cause.message == "terminated by user via frontend"
    history = await handle.fetch_history()
    assert [e.event_type for e in history.events] == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    ]
    attrs = history.events[-1].workflow_execution_terminated_event_attributes
    assert attrs.reason == "terminated by user via frontend"
    assert len(attrs.details.payloads) == 0


async def test_execution_timeout_ends_timed_out(client, task_queue, new_id, history_types):
    async with Worker(client, task_queue=task_queue, workflows=[SleepForeverWorkflow]):
        t0 = time.monotonic()
        handle = await client.start_workflow(
            SleepForeverWorkflow.run,
            id=new_id("exec-timeout"),
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=2),
        )
        with pytest.raises(WorkflowFailureError) as exc_info:
            await asyncio.wait_for(handle.result(), 10)
        elapsed = time.monotonic() - t0

    assert 1.9 <= elapsed < 6, elapsed
    cause = exc_info.value.cause
    assert isinstance(cause, TimeoutError), repr(cause)
    assert cause.type == TimeoutType.START_TO_CLOSE
    assert (await handle.describe()).status == WorkflowExecutionStatus.TIMED_OUT

    types = await history_types(handle)
    assert types == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "TIMER_STARTED",
        "WORKFLOW_EXECUTION_TIMED_OUT",
    ]
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_execution_timeout.ToTimedelta() == timedelta(seconds=2)
    # the run timeout defaults to the execution timeout
    assert started.workflow_run_timeout.ToTimedelta() == timedelta(seconds=2)
    timed_out = history.events[-1].workflow_execution_timed_out_event_attributes
    assert timed_out.new_execution_run_id == ""
