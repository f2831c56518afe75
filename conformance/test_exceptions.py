"""Exceptions: activity failures, retry policies and the client-side causal chain."""

import asyncio
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Dict, List

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel
    from temporalio.contrib.pydantic import pydantic_data_converter


class ProcessingInput(BaseModel):
    data: str
    # "ok", "retryable", "non_retryable_flag" or "non_retryable_type"
    mode: str = "ok"
    maximum_attempts: int = 3


class NotRetriedError(Exception):
    pass


# workflow id -> attempts observed by the activity
_attempts: Dict[str, List[int]] = defaultdict(list)


@activity.defn
def process_data(input: ProcessingInput) -> str:
    info = activity.info()
    _attempts[info.workflow_id].append(info.attempt)
    if input.mode == "retryable":
        raise RuntimeError(f"Processing failed for: {input.data}")
    if input.mode == "non_retryable_flag":
        raise ApplicationError(
            f"Permanent failure for: {input.data}", "some-detail", type="PermanentError", non_retryable=True
        )
    if input.mode == "non_retryable_type":
        raise NotRetriedError(f"Listed as non-retryable: {input.data}")
    if input.mode == "succeed_on_2":
        if info.attempt < 2:
            raise RuntimeError("transient")
        return f"Processed on attempt {info.attempt}: {input.data}"
    return f"Processed: {input.data}"


@workflow.defn
class DataProcessingWorkflow:
    @workflow.run
    async def run(self, input: ProcessingInput) -> str:
        return await workflow.execute_activity(
            process_data,
            input,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=2.0,
                maximum_attempts=input.maximum_attempts,
                non_retryable_error_types=["NotRetriedError"],
            ),
        )


@pytest.fixture
async def env(client, task_queue):
    client = Client(**{**client.config(), "data_converter": pydantic_data_converter})
    with ThreadPoolExecutor(4) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[DataProcessingWorkflow],
            activities=[process_data],
            activity_executor=executor,
        ):
            yield client


async def _run(client: Client, task_queue: str, wf_id: str, input: ProcessingInput):
    handle = await client.start_workflow(
        DataProcessingWorkflow.run, input, id=wf_id, task_queue=task_queue
    )
    try:
        return handle, await asyncio.wait_for(handle.result(), 30), None
    except WorkflowFailureError as err:
        return handle, None, err


def _failure_chain(err: WorkflowFailureError):
    assert isinstance(err.cause, ActivityError), repr(err.cause)
    assert isinstance(err.cause.cause, ApplicationError), repr(err.cause.cause)
    return err.cause, err.cause.cause


async def _started_attempts(handle) -> List[int]:
    history = await handle.fetch_history()
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


async def test_retries_exhausted_gives_causal_chain(env, task_queue, new_id):
    wf_id = new_id("exc-retry")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    handle, result, err = await _run(env, task_queue, wf_id, ProcessingInput(data="test-data", mode="retryable"))
    elapsed = loop.time() - t0
    assert result is None and err is not None, "workflow should have failed"

    act_err, app_err = _failure_chain(err)
    assert app_err.type == "RuntimeError"
    assert app_err.message == "Processing failed for: test-data"
    assert not app_err.non_retryable
    assert act_err.activity_type == "process_data"
    assert act_err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert _attempts[wf_id] == [1, 2, 3]
    # backoff 100ms then 200ms must have been honoured
    assert elapsed >= 0.3

    # only the last attempt is recorded in history: one started event with attempt 3
    assert await _started_attempts(handle) == [3]
    history = await handle.fetch_history()
    last = history.events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    wf_failure = last.workflow_execution_failed_event_attributes.failure
    assert wf_failure.activity_failure_info.activity_type.name == "process_data"
    assert wf_failure.cause.application_failure_info.type == "RuntimeError"
    failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
    assert len(failed) == 1
    assert failed[0].activity_task_failed_event_attributes.retry_state == (
        RetryState.MAXIMUM_ATTEMPTS_REACHED.value
    )


async def test_non_retryable_application_error_stops_at_first_attempt(env, task_queue, new_id):
    wf_id = new_id("exc-nonretry")
    handle, result, err = await _run(
        env, task_queue, wf_id, ProcessingInput(data="x", mode="non_retryable_flag", maximum_attempts=5)
    )
    assert err is not None
    act_err, app_err = _failure_chain(err)
    assert app_err.type == "PermanentError"
    assert app_err.non_retryable
    assert app_err.message == "Permanent failure for: x"
    assert list(app_err.details) == ["some-detail"]
    assert act_err.retry_state == RetryState.NON_RETRYABLE_FAILURE
    assert _attempts[wf_id] == [1]
    assert await _started_attempts(handle) == [1]


async def test_non_retryable_error_type_stops_at_first_attempt(env, task_queue, new_id):
    wf_id = new_id("exc-nonretry-type")
    handle, result, err = await _run(
        env, task_queue, wf_id, ProcessingInput(data="y", mode="non_retryable_type", maximum_attempts=5)
    )
    assert err is not None
    act_err, app_err = _failure_chain(err)
    assert app_err.type == "NotRetriedError"
    # the worker does not mark it non-retryable: the server applies the policy's type list
    assert not app_err.non_retryable
    assert act_err.retry_state == RetryState.NON_RETRYABLE_FAILURE
    assert _attempts[wf_id] == [1]


async def test_transient_failure_then_success(env, task_queue, new_id):
    wf_id = new_id("exc-transient")
    handle, result, err = await _run(env, task_queue, wf_id, ProcessingInput(data="z", mode="succeed_on_2"))
    assert err is None
    assert result == "Processed on attempt 2: z"
    assert _attempts[wf_id] == [1, 2]
    assert await _started_attempts(handle) == [2]
    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED not in types
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
