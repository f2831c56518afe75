"""Workflow-level RetryPolicy (a new run per attempt) and cron workflows
(the first run waits for the next schedule time)."""

import asyncio
import time
from datetime import timedelta
from typing import List

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import ContinueAsNewInitiator, EventType, RetryState
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, TerminatedError
from temporalio.worker import Worker


@workflow.defn
class FlakyWorkflow:
    @workflow.run
    async def run(self, succeed_on: int) -> str:
        attempt = workflow.info().attempt
        if attempt < succeed_on:
            raise ApplicationError(f"attempt {attempt} failed", type="Flaky")
        return f"succeeded on attempt {attempt}"


# 1 s: the reference spaces the starts of retried runs at least 1 s apart, so a
# shorter interval shows up as a longer, timing-dependent backoff
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=1.0, maximum_attempts=5)


async def test_workflow_retry_policy_new_run_per_attempt(client, task_queue, new_id):
    wf_id = new_id("wf-retry")
    async with Worker(client, task_queue=task_queue, workflows=[FlakyWorkflow]):
        t0 = time.monotonic()
        handle = await client.start_workflow(
            FlakyWorkflow.run, 3, id=wf_id, task_queue=task_queue, retry_policy=RETRY
        )
        result = await asyncio.wait_for(handle.result(), 15)
        elapsed = time.monotonic() - t0
    assert result == "succeeded on attempt 3"
    # two retry backoffs of 1 s
    assert elapsed >= 2.0, elapsed

    # walk the run chain: each failed attempt names the next run
    run_ids: List[str] = [handle.result_run_id]
    histories = []
    for attempt in (1, 2, 3):
        history = await client.get_workflow_handle(wf_id, run_id=run_ids[-1]).fetch_history()
        histories.append(history)
        first, last = history.events[0], history.events[-1]
        started = first.workflow_execution_started_event_attributes
        assert started.attempt == attempt
        assert started.first_execution_run_id == run_ids[0]
        assert started.original_execution_run_id == run_ids[-1]
        assert started.retry_policy.maximum_attempts == 5
        assert started.retry_policy.initial_interval.ToTimedelta() == timedelta(seconds=1)
        # the server fills in the default maximum interval: 100 x the initial interval
        assert started.retry_policy.maximum_interval.ToTimedelta() == timedelta(seconds=100)
        if attempt == 1:
            assert started.continued_execution_run_id == ""
            assert started.first_workflow_task_backoff.ToTimedelta() == timedelta(0)
        else:
            assert started.continued_execution_run_id == run_ids[-2]
            assert started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_RETRY
            # the retry interval is spent as a backoff before the first workflow task
            assert started.first_workflow_task_backoff.ToTimedelta() == timedelta(seconds=1)
            # the new run is created when the previous one fails
            previous_failed_at = histories[-2].events[-1].event_time.ToDatetime()
            assert first.event_time.ToDatetime() - previous_failed_at < timedelta(milliseconds=500)
            assert started.continued_failure.application_failure_info.type == "Flaky"
            assert started.continued_failure.message == f"attempt {attempt - 1} failed"
        if attempt < 3:
            assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
            failed = last.workflow_execution_failed_event_attributes
            assert failed.failure.message == f"attempt {attempt} failed"
            assert failed.retry_state == RetryState.RETRY_STATE_IN_PROGRESS
            assert failed.new_execution_run_id
            run_ids.append(failed.new_execution_run_id)
        else:
            assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED

    assert len(set(run_ids)) == 3
    # a retried run is FAILED; describe without run id shows the successful last run
    assert (await client.get_workflow_handle(wf_id, run_id=run_ids[0]).describe()).status == (
        WorkflowExecutionStatus.FAILED
    )
    latest = await client.get_workflow_handle(wf_id).describe()
    assert latest.run_id == run_ids[-1]
    assert latest.status == WorkflowExecutionStatus.COMPLETED


async def test_workflow_retry_exhausted(client, task_queue, new_id):
    wf_id = new_id("wf-retry-exhausted")
    async with Worker(client, task_queue=task_queue, workflows=[FlakyWorkflow]):
        handle = await client.start_workflow(
            FlakyWorkflow.run,
            99,
            id=wf_id,
            task_queue=task_queue,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=2),
        )
        with pytest.raises(WorkflowFailureError) as exc_info:
            await asyncio.wait_for(handle.result(), 15)
    cause = exc_info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.message == "attempt 2 failed"
    last_run = await client.get_workflow_handle(wf_id).fetch_history()
    started = last_run.events[0].workflow_execution_started_event_attributes
    assert started.attempt == 2
    failed = last_run.events[-1].workflow_execution_failed_event_attributes
    assert failed.retry_state == RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED
    assert failed.new_execution_run_id == ""


@workflow.defn
class CronWorkflow:
    @workflow.run
    async def run(self) -> str:
        return f"cron run at {workflow.now().isoformat()}"


async def test_cron_first_run_waits_for_schedule(client, task_queue, new_id):
    wf_id = new_id("cron")
    async with Worker(client, task_queue=task_queue, workflows=[CronWorkflow]):
        handle = await client.start_workflow(
            CronWorkflow.run, id=wf_id, task_queue=task_queue, cron_schedule="* * * * *"
        )
        history = await handle.fetch_history()
        started_event = history.events[0]
        started = started_event.workflow_execution_started_event_attributes
        assert started.cron_schedule == "* * * * *"
        assert started.attempt == 1
        # even the first run of a cron workflow is marked as started by the cron schedule
        assert started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_CRON_SCHEDULE
        backoff = started.first_workflow_task_backoff.ToTimedelta()
        # the first run waits until the next whole minute; the reference rounds the
        # backoff up to whole seconds
        assert timedelta(0) < backoff <= timedelta(minutes=1), backoff
        assert backoff.microseconds == 0, backoff
        event_time = started_event.event_time.ToDatetime()
        next_minute = event_time.replace(second=0, microsecond=0) + timedelta(minutes=1)
        assert next_minute <= event_time + backoff < next_minute + timedelta(seconds=1)

        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        # describe has no cron field; the backoff shows up as the execution time
        assert desc.execution_time is not None
        assert desc.execution_time - desc.start_time == backoff
        if backoff > timedelta(seconds=2):
            # nothing is scheduled until the backoff is over
            types = [e.event_type for e in (await handle.fetch_history()).events]
            assert types == [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
            assert not desc.raw_description.HasField("pending_workflow_task")

        await handle.terminate(reason="cron test done")
        with pytest.raises(WorkflowFailureError) as exc_info:
            await asyncio.wait_for(handle.result(), 10)
    assert isinstance(exc_info.value.cause, TerminatedError)
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.TERMINATED
    last = (await handle.fetch_history()).events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    # terminating ends the cron chain: no next run
    assert (await client.get_workflow_handle(wf_id).describe()).run_id == handle.result_run_id
