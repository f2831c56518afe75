"""Durability of messages: SIGKILL the server while signals and an accepted
update are in flight; after a restart on the same db file every acknowledged
signal is delivered exactly once and the accepted update completes exactly once."""

import asyncio
from typing import List

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.worker import Worker

BEFORE_KILL = 8
AFTER_RESTART = 4


@workflow.defn
class MessageSinkWorkflow:
    def __init__(self) -> None:
        self._signals: List[str] = []
        self._released = False
        self._update_runs = 0

    @workflow.run
    async def run(self, expected_signals: int) -> dict:
        await workflow.wait_condition(
            lambda: len(self._signals) >= expected_signals
            and self._released
            and workflow.all_handlers_finished()
        )
        return {"signals": self._signals, "update_runs": self._update_runs}

    @workflow.signal
    def add(self, value: str) -> None:
        self._signals.append(value)

    @workflow.signal
    def release(self) -> None:
        self._released = True

    @workflow.update
    async def wait_for_release(self, tag: str) -> str:
        self._update_runs += 1
        await workflow.wait_condition(lambda: self._released)
        return f"{tag} released after {len(self._signals)} signals"

    @workflow.query
    def signals(self) -> List[str]:
        return self._signals


async def test_signals_and_accepted_update_survive_sigkill(external_address, sundial_factory, tmp_path, new_id):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")

    server = sundial_factory(tmp_path / "messages.db", log_path=tmp_path / "messages.log")
    await server.start()
    client = await Client.connect(server.address, namespace="default")
    tq = new_id("durable-msg-tq")
    expected = [f"s{i}" for i in range(BEFORE_KILL + AFTER_RESTART)]

    async with Worker(client, task_queue=tq, workflows=[MessageSinkWorkflow]):
        handle = await client.start_workflow(
            MessageSinkWorkflow.run, len(expected), id=new_id("durable-msg"), task_queue=tq
        )
        await handle.signal(MessageSinkWorkflow.add, expected[0])
        upd = await handle.start_update(
            MessageSinkWorkflow.wait_for_release,
            "upd",
            id="upd-1",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        # a burst of acknowledged signals, then the crash before the worker caught up
        await asyncio.gather(
            *(handle.signal(MessageSinkWorkflow.add, v) for v in expected[1:BEFORE_KILL])
        )
        server.kill()
        await asyncio.sleep(0.5)
        await server.start()

        client2 = await Client.connect(server.address, namespace="default")
        handle2 = client2.get_workflow_handle(handle.id)
        for v in expected[BEFORE_KILL:]:
            await handle2.signal(MessageSinkWorkflow.add, v)
        await handle2.signal(MessageSinkWorkflow.release)

        # the update accepted before the crash completes after it
        upd_result = await asyncio.wait_for(
            handle2.get_update_handle("upd-1", result_type=str).result(), 30
        )
        result = await asyncio.wait_for(handle2.result(), 30)
        # the pre-crash update handle still resolves too
        assert await asyncio.wait_for(upd.result(), 10) == upd_result

        # the same update id again: deduplicated, not run a second time
        again = await handle2.execute_update(MessageSinkWorkflow.wait_for_release, "again", id="upd-1")
        assert again == upd_result

    assert result["update_runs"] == 1
    # every acknowledged signal exactly once, in the order they were acknowledged per sender
    assert sorted(result["signals"]) == sorted(expected)
    assert len(result["signals"]) == len(set(result["signals"]))
    assert result["signals"][0] == "s0"
    assert result["signals"][BEFORE_KILL:] == expected[BEFORE_KILL:]
    assert upd_result == f"upd released after {len(expected)} signals"

    history = await handle2.fetch_history()
    ids = [e.event_id for e in history.events]
    assert ids == list(range(1, len(ids) + 1)), "event ids must stay contiguous across the restart"
    signaled = [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert [s.signal_name for s in signaled].count("add") == len(expected)
    assert [s.signal_name for s in signaled].count("release") == 1
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    completed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED]
    assert len(accepted) == 1 and len(completed) == 1
    assert accepted[0].workflow_execution_update_accepted_event_attributes.protocol_instance_id == "upd-1"
    assert completed[0].workflow_execution_update_completed_event_attributes.accepted_event_id == accepted[0].event_id
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


@workflow.defn
class UpdateCounterWorkflow:
    def __init__(self) -> None:
        self._total = 0
        self._done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self._done and workflow.all_handlers_finished())
        return self._total

    @workflow.update
    async def add(self, n: int) -> int:
        self._total += n
        return self._total

    @workflow.signal
    def finish(self) -> None:
        self._done = True


async def test_completed_updates_survive_sigkill(external_address, sundial_factory, tmp_path, new_id):
    """Completed updates are durable: after a crash they are neither lost nor
    re-run when the same update id is sent again."""
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")

    server = sundial_factory(tmp_path / "updates.db", log_path=tmp_path / "updates.log")
    await server.start()
    client = await Client.connect(server.address, namespace="default")
    tq = new_id("durable-upd-tq")
    async with Worker(client, task_queue=tq, workflows=[UpdateCounterWorkflow]):
        handle = await client.start_workflow(UpdateCounterWorkflow.run, id=new_id("durable-upd"), task_queue=tq)
        totals = [await handle.execute_update(UpdateCounterWorkflow.add, n, id=f"add-{n}") for n in (1, 2, 3)]
        assert totals == [1, 3, 6]
        server.kill()
        await server.start()

        client2 = await Client.connect(server.address, namespace="default")
        handle2 = client2.get_workflow_handle(handle.id)
        # replaying the ids after the crash returns the recorded outcomes
        again = [await handle2.execute_update(UpdateCounterWorkflow.add, n, id=f"add-{n}") for n in (1, 2, 3)]
        assert again == totals
        assert await handle2.execute_update(UpdateCounterWorkflow.add, 10, id="add-10") == 16
        await handle2.signal(UpdateCounterWorkflow.finish)
        assert await asyncio.wait_for(handle2.result(), 30) == 16

    history = await handle2.fetch_history()
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.protocol_instance_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted == ["add-1", "add-2", "add-3", "add-10"]
