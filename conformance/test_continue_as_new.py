"""Continue-as-New: state carried to the next run through its input, the run
chain visible in history and describe, and the server's continue-as-new
suggestion driven by the history length."""

import asyncio
from datetime import timedelta
from typing import List, Optional

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import ContinueAsNewInitiator, EventType, SuggestContinueAsNewReason
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecutionStatus,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel
    from temporalio.contrib.pydantic import pydantic_data_converter


class WorkflowState(BaseModel):
    iteration: int = 0
    processed_items: int = 0
    runs: int = 1


class WorkflowInput(BaseModel):
    state: Optional[WorkflowState] = None
    max_iterations: int = 6
    # continue as new after this many iterations of one run
    iterations_per_run: int = 2


@workflow.defn
class LongRunningWorkflow:
    @workflow.run
    async def run(self, input: WorkflowInput) -> WorkflowState:
        # initialize or restore state
        self.state = input.state or WorkflowState()
        done_in_this_run = 0
        while self.state.iteration < input.max_iterations:
            await self.process_batch()
            self.state.iteration += 1
            done_in_this_run += 1
            if (
                done_in_this_run >= input.iterations_per_run
                or workflow.info().is_continue_as_new_suggested()
            ) and self.state.iteration < input.max_iterations:
                await workflow.wait_condition(workflow.all_handlers_finished)
                self.state.runs += 1
                workflow.continue_as_new(
                    WorkflowInput(
                        state=self.state,
                        max_iterations=input.max_iterations,
                        iterations_per_run=input.iterations_per_run,
                    )
                )
        return self.state

    async def process_batch(self) -> None:
        await asyncio.sleep(0.1)
        self.state.processed_items += 10


def _pydantic_client(client: Client) -> Client:
    return Client(**{**client.config(), "data_converter": pydantic_data_converter})


async def test_continue_as_new_carries_state_across_runs(client, task_queue, new_id):
    client = _pydantic_client(client)
    wf_id = new_id("can")
    async with Worker(client, task_queue=task_queue, workflows=[LongRunningWorkflow]):
        handle = await client.start_workflow(
            LongRunningWorkflow.run,
            WorkflowInput(max_iterations=6, iterations_per_run=2),
            id=wf_id,
            task_queue=task_queue,
        )
        # the handle is bound to the first run; result() follows the chain
        result = await asyncio.wait_for(handle.result(), 30)

    assert result == WorkflowState(iteration=6, processed_items=60, runs=3)
    first_run_id = handle.result_run_id
    assert first_run_id and first_run_id == handle.first_execution_run_id

    # not following the chain: the first run reports it continued as new
    first = client.get_workflow_handle(wf_id, run_id=first_run_id)
    with pytest.raises(WorkflowContinuedAsNewError) as exc_info:
        await first.result(follow_runs=False)
    second_run_id = exc_info.value.new_execution_run_id

    # walk the chain through history
    run_ids: List[str] = [first_run_id]
    histories = []
    while True:
        h = client.get_workflow_handle(wf_id, run_id=run_ids[-1])
        history = await h.fetch_history()
        histories.append(history)
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            break
        attrs = last.workflow_execution_continued_as_new_event_attributes
        assert attrs.workflow_type.name == "LongRunningWorkflow"
        assert attrs.task_queue.name == task_queue
        # the reference leaves the initiator of a workflow-requested continue-as-new unset
        assert attrs.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_UNSPECIFIED
        assert attrs.workflow_task_completed_event_id == history.events[-2].event_id
        run_ids.append(attrs.new_execution_run_id)
        assert len(run_ids) <= 3, "more runs than expected"

    assert len(run_ids) == 3 and len(set(run_ids)) == 3
    assert run_ids[1] == second_run_id
    assert histories[-1].events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED

    for i, history in enumerate(histories):
        started = history.events[0].workflow_execution_started_event_attributes
        assert history.events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        assert started.first_execution_run_id == first_run_id
        assert started.original_execution_run_id == run_ids[i]
        assert started.attempt == 1
        # the state arrives through the input of the next run
        arg = pydantic_data_converter.payload_converter.from_payloads(
            started.input.payloads, [WorkflowInput]
        )[0]
        if i == 0:
            assert started.continued_execution_run_id == ""
            assert started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_UNSPECIFIED
            assert started.first_workflow_task_backoff.ToTimedelta() == timedelta(0)
            assert arg.state is None
        else:
            assert started.continued_execution_run_id == run_ids[i - 1]
            # ... but the started event of the new run names it
            assert started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_WORKFLOW
            assert arg.state == WorkflowState(iteration=2 * i, processed_items=20 * i, runs=i + 1)
        # every run starts its own history with event id 1
        assert [e.event_id for e in history.events] == list(range(1, len(history.events) + 1))
        timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
        assert len(timers) == 2

    # describe without a run id shows the latest run
    latest = await client.get_workflow_handle(wf_id).describe()
    assert latest.run_id == run_ids[-1]
    assert latest.status == WorkflowExecutionStatus.COMPLETED
    assert latest.raw_info.first_run_id == first_run_id
    desc_first = await first.describe()
    assert desc_first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert desc_first.raw_info.first_run_id == first_run_id
    # the continued run's close time is the next run's start time
    assert desc_first.close_time is not None


# --- is_continue_as_new_suggested driven by limit.historyCount.suggestContinueAsNew

SUGGEST_AT = 20


@workflow.defn
class SuggestedContinueAsNewWorkflow:
    @workflow.run
    async def run(self, previous: Optional[List[int]] = None) -> List[int]:
        if previous is not None:
            # second run: report what the first run saw and stop
            return previous + [workflow.info().get_current_history_length()]
        iterations = 0
        while not workflow.info().is_continue_as_new_suggested():
            if iterations >= 100:
                raise ApplicationError("continue-as-new was never suggested", non_retryable=True)
            await asyncio.sleep(0.01)
            iterations += 1
        workflow.continue_as_new(
            [iterations, workflow.info().get_current_history_length()]
        )


async def test_continue_as_new_suggested_by_history_count(
    external_address, sundial_factory, tmp_path, new_id
):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")

    server = sundial_factory(tmp_path / "suggest.db", log_path=tmp_path / "suggest.log")
    base_command = server.command
    # SundialProcess has no hook for extra flags: extend its command line
    server.command = lambda: base_command() + [
        "--dynamic-config-value",
        f"limit.historyCount.suggestContinueAsNew={SUGGEST_AT}",
    ]
    await server.start()
    client = await Client.connect(server.address, namespace="default")
    tq = new_id("suggest-tq")
    async with Worker(client, task_queue=tq, workflows=[SuggestedContinueAsNewWorkflow]):
        handle = await client.start_workflow(
            SuggestedContinueAsNewWorkflow.run, id=new_id("can-suggest"), task_queue=tq
        )
        iterations, length_when_suggested, second_run_length = await asyncio.wait_for(
            handle.result(), 30
        )

    # each timer iteration adds 5 events (TimerStarted, TimerFired, WFT scheduled/started/completed)
    # so the suggestion shows up once the history count reaches the threshold
    assert iterations >= 2
    assert SUGGEST_AT <= length_when_suggested < SUGGEST_AT + 6, length_when_suggested
    # the second run starts with a fresh history and is not suggested to continue again
    assert second_run_length == 3

    first = await client.get_workflow_handle(handle.id, run_id=handle.result_run_id).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(first.events) <= SUGGEST_AT + 6
    started = [e for e in first.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]
    flags = [e.workflow_task_started_event_attributes.suggest_continue_as_new for e in started]
    # only the last workflow task (the one that continued as new) carried the suggestion
    assert flags[-1] is True
    assert not any(flags[:-1])
    assert started[-1].event_id >= SUGGEST_AT
    assert list(started[-1].workflow_task_started_event_attributes.suggest_continue_as_new_reasons) == [
        SuggestContinueAsNewReason.SUGGEST_CONTINUE_AS_NEW_REASON_TOO_MANY_HISTORY_EVENTS
    ]
