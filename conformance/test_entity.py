"""Long-running Entity (CustomerRewardAccount): queries, signals, validated
updates, an update that runs an activity, cancel by update, waiting for all
handlers before completing, continue-as-new with the entity state, polling an
accepted update, update id dedup and update-with-start."""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Dict, List, Optional

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker


class CustomerRewardLevel(IntEnum):
    BASIC = 1
    GOLD = 2
    PLATINUM = 3


@dataclass
class UserInfo:
    id: str
    name: str


@dataclass
class CustomerRewardAccountInput:
    user_id: str
    starting_points: int = 0
    starting_level: CustomerRewardLevel = CustomerRewardLevel.BASIC
    # test knob: continue as new after this many add_points updates (0 = never)
    max_updates_per_run: int = 0
    run_number: int = 1


@dataclass
class CustomerRewardAccountStatus:
    level: CustomerRewardLevel
    points: int
    is_active: bool


MAX_POINTS_PER_UPDATE = 10_000


@dataclass
class AddPointInput:
    points: int


# activity bookkeeping, per workflow id
_get_user_calls: Dict[str, List[str]] = {}
_approval_gates: Dict[str, asyncio.Event] = {}


@activity.defn
async def get_user(user_id: str) -> UserInfo:
    _get_user_calls.setdefault(activity.info().workflow_id, []).append(user_id)
    return UserInfo(id=user_id, name=f"User {user_id}")


@activity.defn
async def wait_for_approval(points: int) -> int:
    gate = _approval_gates.setdefault(activity.info().workflow_id, asyncio.Event())
    await asyncio.wait_for(gate.wait(), 20)
    return points


@workflow.defn
class CustomerRewardAccount:
    """Long-running entity workflow for managing customer reward accounts."""

    @workflow.init
    def __init__(self, inp: CustomerRewardAccountInput) -> None:
        self._level = inp.starting_level
        self._points = inp.starting_points
        self._is_active = True
        self._user_id: Optional[str] = None
        self._user_name: Optional[str] = None
        self._create_time: Optional[datetime] = None
        self._cancel_time: Optional[datetime] = None
        self._update_count = 0
        self._run_number = inp.run_number

    @workflow.run
    async def run(self, inp: CustomerRewardAccountInput) -> CustomerRewardAccountStatus:
        self._create_time = workflow.now()
        user: UserInfo = await workflow.execute_activity(
            get_user, inp.user_id, start_to_close_timeout=timedelta(seconds=5)
        )
        self._user_id = user.id
        self._user_name = user.name

        while True:
            await workflow.wait_condition(
                lambda: not self._is_active
                or workflow.info().is_continue_as_new_suggested()
                or (0 < inp.max_updates_per_run <= self._update_count)
            )
            if not self._is_active:
                # let in-flight updates finish before the entity closes
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self._status()

            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                CustomerRewardAccountInput(
                    user_id=self._user_id,
                    starting_points=self._points,
                    starting_level=self._level,
                    max_updates_per_run=inp.max_updates_per_run,
                    run_number=self._run_number + 1,
                )
            )

    def _status(self) -> CustomerRewardAccountStatus:
        return CustomerRewardAccountStatus(
            level=self._level, points=self._points, is_active=self._is_active
        )

    def _apply_points(self, points: int) -> None:
        self._points = max(self._points + points, 0)
        if 500 <= self._points < 1000:
            self._level = CustomerRewardLevel.GOLD
        elif self._points >= 1000:
            self._level = CustomerRewardLevel.PLATINUM
        else:
            self._level = CustomerRewardLevel.BASIC

    @workflow.query
    def query_reward_status(self) -> CustomerRewardAccountStatus:
        return self._status()

    @workflow.query
    def query_run_number(self) -> int:
        return self._run_number

    @workflow.signal
    def award_bonus(self, points: int) -> None:
        self._apply_points(points)

    @workflow.update
    async def cancel(self) -> CustomerRewardAccountStatus:
        self._is_active = False
        self._cancel_time = workflow.now()
        return self._status()

    @workflow.update
    async def add_points(self, inp: AddPointInput) -> CustomerRewardAccountStatus:
        self._update_count += 1
        self._apply_points(inp.points)
        return self._status()

    @add_points.validator
    def validate_add_point(self, inp: AddPointInput) -> None:
        if not isinstance(inp.points, int):
            raise ValueError("Points must be an integer.")
        if abs(inp.points) > MAX_POINTS_PER_UPDATE:
            raise ValueError(f"At most {MAX_POINTS_PER_UPDATE} points per update.")

    @workflow.update
    async def refresh_user(self) -> UserInfo:
        # an update whose handler runs an activity
        user = await workflow.execute_activity(
            get_user, self._user_id or "?", start_to_close_timeout=timedelta(seconds=5)
        )
        self._user_name = user.name
        return user

    @workflow.update
    async def add_points_after_approval(self, inp: AddPointInput) -> CustomerRewardAccountStatus:
        approved = await workflow.execute_activity(
            wait_for_approval, inp.points, start_to_close_timeout=timedelta(seconds=30)
        )
        self._apply_points(approved)
        return self._status()


ACTIVITIES = [get_user, wait_for_approval]


def _events(history, event_type: int):
    return [e for e in history.events if e.event_type == event_type]


async def _wait_idle(handle, timeout: float = 10.0) -> None:
    """Until the workflow has no pending activity and no pending workflow task."""
    deadline = time.monotonic() + timeout
    while True:
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        assert time.monotonic() < deadline, f"{handle.id} did not become idle"
        await asyncio.sleep(0.05)


async def _start(client, task_queue, wf_id, **kwargs):
    return await client.start_workflow(
        CustomerRewardAccount.run,
        CustomerRewardAccountInput(user_id="alice", **kwargs),
        id=wf_id,
        task_queue=task_queue,
    )


async def test_entity_queries_signals_updates_and_cancel(client, task_queue, new_id, history_types):
    wf_id = new_id("entity")
    async with Worker(client, task_queue=task_queue, workflows=[CustomerRewardAccount], activities=ACTIVITIES):
        handle = await _start(client, task_queue, wf_id)

        status = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=300))
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.BASIC, 300, True)

        await handle.signal(CustomerRewardAccount.award_bonus, 250)
        # the query sees the signal: signals and queries are processed in order
        status = await handle.query(CustomerRewardAccount.query_reward_status)
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.GOLD, 550, True)

        user = await handle.execute_update(CustomerRewardAccount.refresh_user)
        assert user == UserInfo(id="alice", name="User alice")
        # once when the entity was created, once for the update
        assert _get_user_calls.pop(wf_id) == ["alice", "alice"]

        status = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=500))
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.PLATINUM, 1050, True)
        # negative points are clamped at zero
        status = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=-5000))
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.BASIC, 0, True)

        final = await handle.execute_update(CustomerRewardAccount.cancel)
        assert final == CustomerRewardAccountStatus(CustomerRewardLevel.BASIC, 0, False)
        result = await asyncio.wait_for(handle.result(), 10)
        assert result == final
        # queries still answer on the closed entity
        assert await handle.query(CustomerRewardAccount.query_reward_status) == final

    history = await handle.fetch_history()
    accepted = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    completed = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    assert [a.workflow_execution_update_accepted_event_attributes.accepted_request.input.name for a in accepted] == [
        "add_points", "refresh_user", "add_points", "add_points", "cancel",
    ]
    assert len(completed) == 5
    for acc, comp in zip(accepted, completed):
        a = acc.workflow_execution_update_accepted_event_attributes
        c = comp.workflow_execution_update_completed_event_attributes
        assert c.accepted_event_id == acc.event_id
        assert c.meta.update_id == a.accepted_request.meta.update_id == a.protocol_instance_id
        assert c.outcome.HasField("success")
    assert len(_events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)) == 1
    types = await history_types(handle)
    assert types[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    # the update that ran an activity: accepted, activity scheduled..completed, update completed
    refresh_acc = accepted[1].event_id
    refresh_done = completed[1].event_id
    between = [EventType.Name(e.event_type) for e in history.events if refresh_acc < e.event_id < refresh_done]
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" in between
    assert "EVENT_TYPE_ACTIVITY_TASK_COMPLETED" in between


async def test_rejected_update_leaves_no_trace(client, task_queue, new_id):
    wf_id = new_id("entity-reject")
    async with Worker(client, task_queue=task_queue, workflows=[CustomerRewardAccount], activities=ACTIVITIES):
        handle = await _start(client, task_queue, wf_id)
        await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=10))
        # get_user may still be running: compare histories only once nothing else is pending
        await _wait_idle(handle)
        before = await handle.fetch_history()

        # the validator rejects the update
        with pytest.raises(WorkflowUpdateFailedError) as exc_info:
            await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=50_000))
        cause = exc_info.value.cause
        assert isinstance(cause, ApplicationError), repr(cause)
        assert cause.type == "ValueError"
        assert cause.message == "At most 10000 points per update."

        # arguments that do not decode into AddPointInput are rejected by the SDK before the validator
        with pytest.raises(WorkflowUpdateFailedError) as exc_info:
            await handle.execute_update("add_points", {"points": "lots"}, result_type=CustomerRewardAccountStatus)
        cause = exc_info.value.cause
        assert isinstance(cause, ApplicationError), repr(cause)
        assert (cause.type, cause.message) == ("RuntimeError", "Failed decoding arguments")

        after = await handle.fetch_history()
        # rejected updates ran on speculative workflow tasks that are not persisted
        assert [e.event_type for e in after.events] == [e.event_type for e in before.events]
        assert [e.event_id for e in after.events] == [e.event_id for e in before.events]
        assert await handle.query(CustomerRewardAccount.query_reward_status) == CustomerRewardAccountStatus(
            CustomerRewardLevel.BASIC, 10, True
        )

        # the entity keeps working after a rejection
        status = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=5))
        assert status.points == 15
        await handle.execute_update(CustomerRewardAccount.cancel)
        result = await asyncio.wait_for(handle.result(), 10)
        assert result == CustomerRewardAccountStatus(CustomerRewardLevel.BASIC, 15, False)

    history = await handle.fetch_history()
    accepted = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert len(accepted) == 3
    assert not _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED)
    assert not _events(history, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)


async def test_update_accepted_then_polled_and_handlers_finish_before_close(client, task_queue, new_id):
    wf_id = new_id("entity-poll")
    gate = _approval_gates.setdefault(wf_id, asyncio.Event())
    try:
        async with Worker(client, task_queue=task_queue, workflows=[CustomerRewardAccount], activities=ACTIVITIES):
            handle = await _start(client, task_queue, wf_id)
            upd = await handle.start_update(
                CustomerRewardAccount.add_points_after_approval,
                AddPointInput(points=700),
                id="approval-1",
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            assert upd.id == "approval-1"
            # an independent handle polls the same update (PollWorkflowExecutionUpdate)
            other = client.get_workflow_handle(wf_id).get_update_handle(
                "approval-1", result_type=CustomerRewardAccountStatus
            )
            poll_task = asyncio.create_task(other.result())
            await asyncio.sleep(0.3)
            assert not poll_task.done()

            # cancel the entity while the approval update is still in flight
            closing = await handle.execute_update(CustomerRewardAccount.cancel)
            assert closing == CustomerRewardAccountStatus(CustomerRewardLevel.BASIC, 0, False)
            await asyncio.sleep(0.5)
            # the workflow waits for all handlers to finish before completing
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

            gate.set()
            expected = CustomerRewardAccountStatus(CustomerRewardLevel.GOLD, 700, False)
            assert await asyncio.wait_for(upd.result(), 10) == expected
            assert await asyncio.wait_for(poll_task, 10) == expected
            assert await asyncio.wait_for(handle.result(), 10) == expected
    finally:
        _approval_gates.pop(wf_id, None)

    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    completed = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    by_id = {
        c.workflow_execution_update_completed_event_attributes.meta.update_id: c.event_id for c in completed
    }
    assert "approval-1" in by_id and len(by_id) == 2
    # the approval update completes in the same workflow task that completes the workflow
    assert types[-3:] == [
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]
    assert by_id["approval-1"] == history.events[-2].event_id
    # the cancel update was accepted and completed while the approval was in flight
    (cancel_id,) = set(by_id) - {"approval-1"}
    accepted = {
        a.workflow_execution_update_accepted_event_attributes.protocol_instance_id: a.event_id
        for a in _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    }
    assert accepted["approval-1"] < accepted[cancel_id] < by_id[cancel_id] < by_id["approval-1"]


async def test_update_dedup_by_update_id(client, task_queue, new_id):
    wf_id = new_id("entity-dedup")
    async with Worker(client, task_queue=task_queue, workflows=[CustomerRewardAccount], activities=ACTIVITIES):
        handle = await _start(client, task_queue, wf_id)
        first = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=120), id="same-id")
        second = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=120), id="same-id")
        assert first == second == CustomerRewardAccountStatus(CustomerRewardLevel.BASIC, 120, True)
        # executed once: the points were added once
        assert (await handle.query(CustomerRewardAccount.query_reward_status)).points == 120
        # the completed update can still be fetched by id
        again = await handle.get_update_handle("same-id", result_type=CustomerRewardAccountStatus).result()
        assert again == first
        # concurrent duplicates of a new id also run once
        results = await asyncio.gather(
            *(
                handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=1), id="burst")
                for _ in range(5)
            )
        )
        assert {r.points for r in results} == {121}
        await handle.execute_update(CustomerRewardAccount.cancel)
        assert (await asyncio.wait_for(handle.result(), 10)).points == 121

    history = await handle.fetch_history()
    accepted = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    ids = [a.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id for a in accepted]
    assert ids.count("same-id") == 1
    assert ids.count("burst") == 1
    assert len(_events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)) == 3


async def test_entity_continues_as_new_with_state(client, task_queue, new_id):
    wf_id = new_id("entity-can")
    async with Worker(client, task_queue=task_queue, workflows=[CustomerRewardAccount], activities=ACTIVITIES):
        handle = await _start(client, task_queue, wf_id, max_updates_per_run=3)
        first_run = handle.result_run_id
        for pts in (100, 450, 500):
            status = await handle.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=pts))
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.PLATINUM, 1050, True)

        # the third update made the first run continue as new
        latest = client.get_workflow_handle(wf_id)
        status = await latest.execute_update(CustomerRewardAccount.add_points, AddPointInput(points=-100))
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.GOLD, 950, True)
        assert await latest.query(CustomerRewardAccount.query_run_number) == 2
        desc = await latest.describe()
        assert desc.run_id != first_run
        assert desc.raw_info.first_run_id == first_run

        final = await latest.execute_update(CustomerRewardAccount.cancel)
        # handle.result() follows the chain from the first run
        assert await asyncio.wait_for(handle.result(), 10) == final
        assert final == CustomerRewardAccountStatus(CustomerRewardLevel.GOLD, 950, False)
        # get_user ran once per run
        assert _get_user_calls.pop(wf_id) == ["alice", "alice"]

    first_history = await client.get_workflow_handle(wf_id, run_id=first_run).fetch_history()
    last = first_history.events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id == desc.run_id
    # the update that triggered it completed in the old run, before it continued as new
    completed = _events(first_history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    assert len(completed) == 3
    assert completed[-1].event_id < last.event_id
    second_history = await latest.fetch_history()
    started = second_history.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id == first_run
    carried = client.data_converter.payload_converter.from_payloads(
        started.input.payloads, [CustomerRewardAccountInput]
    )[0]
    assert carried == CustomerRewardAccountInput(
        user_id="alice",
        starting_points=1050,
        starting_level=CustomerRewardLevel.PLATINUM,
        max_updates_per_run=3,
        run_number=2,
    )


async def test_update_with_start(client, task_queue, new_id, history_types):
    wf_id = new_id("entity-uws")

    def start_op(policy=WorkflowIDConflictPolicy.USE_EXISTING):
        return WithStartWorkflowOperation(
            CustomerRewardAccount.run,
            CustomerRewardAccountInput(user_id="bob"),
            id=wf_id,
            task_queue=task_queue,
            id_conflict_policy=policy,
        )

    async with Worker(client, task_queue=task_queue, workflows=[CustomerRewardAccount], activities=ACTIVITIES):
        op1 = start_op()
        status = await client.execute_update_with_start_workflow(
            CustomerRewardAccount.add_points, AddPointInput(points=600), start_workflow_operation=op1
        )
        assert status == CustomerRewardAccountStatus(CustomerRewardLevel.GOLD, 600, True)
        handle = await op1.workflow_handle()
        assert handle.id == wf_id and handle.first_execution_run_id

        # the workflow is running: USE_EXISTING sends the update to the same run
        op2 = start_op()
        upd = await client.start_update_with_start_workflow(
            CustomerRewardAccount.add_points,
            AddPointInput(points=500),
            start_workflow_operation=op2,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            id="uws-2",
        )
        assert (await op2.workflow_handle()).first_execution_run_id == handle.first_execution_run_id
        assert await upd.result() == CustomerRewardAccountStatus(CustomerRewardLevel.PLATINUM, 1100, True)

        final = await handle.execute_update(CustomerRewardAccount.cancel)
        assert await asyncio.wait_for(handle.result(), 10) == final

    history = await handle.fetch_history()
    types = await history_types(handle)
    # the update arrived with the start: it is accepted in the first workflow task
    assert types[:5] == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
    ]
    accepted = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    names = [a.workflow_execution_update_accepted_event_attributes.accepted_request.input.name for a in accepted]
    assert names == ["add_points", "add_points", "cancel"]
    assert len(_events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)) == 1
