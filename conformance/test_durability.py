"""Durability: SIGKILL the server mid-flight, restart it on the same db file, and
every acknowledged workflow must still complete with the right result."""

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

# Long enough that the set-up (six starts, three timers armed) fits before the crash even on
# a loaded machine with a database server of its own (PostgreSQL).
TIMER_S = 6.0

# workflow id -> set when its activity is running on the worker
_activity_running: Dict[str, asyncio.Event] = {}


@activity.defn
async def wait_for_gate(gate_path: str) -> str:
    """Stays in flight until the gate file exists, then returns its content."""
    wf_id = activity.info().workflow_id
    _activity_running.setdefault(wf_id, asyncio.Event()).set()
    gate = Path(gate_path)
    while not gate.exists():
        await asyncio.sleep(0.05)
    return f"{gate.read_text()}:{activity.info().attempt}"


@workflow.defn
class GatedActivityWorkflow:
    @workflow.run
    async def run(self, gate_path: str) -> str:
        result = await workflow.execute_activity(
            wait_for_gate,
            gate_path,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        )
        return f"activity done ({result})"


@workflow.defn
class SleepingWorkflow:
    @workflow.run
    async def run(self, tag: str) -> str:
        await asyncio.sleep(TIMER_S)
        return f"timer done ({tag})"


@activity.defn
async def echo(value: str) -> str:
    return f"echo {value}"


@workflow.defn
class OrphanWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(echo, value, start_to_close_timeout=timedelta(seconds=10))


async def _wait_for_event(handle, event_type: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = await handle.fetch_history()
        if any(e.event_type == event_type for e in history.events):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id}: no {EventType.Name(event_type)} within {timeout}s")


async def test_workflows_survive_server_sigkill(external_address, sundial_factory, tmp_path, new_id):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")

    server = sundial_factory(tmp_path / "durable.db", log_path=tmp_path / "durable.log")
    await server.start()
    client = await Client.connect(server.address, namespace="default")
    tq, orphan_tq = new_id("durable-tq"), new_id("durable-orphan-tq")
    gate = tmp_path / "gate"

    async with Worker(
        client,
        task_queue=tq,
        workflows=[GatedActivityWorkflow, SleepingWorkflow],
        activities=[wait_for_gate],
    ):
        gated = [
            await client.start_workflow(GatedActivityWorkflow.run, str(gate), id=new_id(f"gated{i}"), task_queue=tq)
            for i in range(3)
        ]
        # every activity is in flight on the worker ...
        for h in gated:
            _activity_running.setdefault(h.id, asyncio.Event())
            await asyncio.wait_for(_activity_running[h.id].wait(), 15)

        # ... and every timer is armed on the server
        timers_started_at = time.monotonic()
        sleeping = [
            await client.start_workflow(SleepingWorkflow.run, f"s{i}", id=new_id(f"sleep{i}"), task_queue=tq)
            for i in range(3)
        ]
        for h in sleeping:
            await _wait_for_event(h, EventType.EVENT_TYPE_TIMER_STARTED)

        # acknowledged just before the crash, and no worker polls its queue yet
        orphan = await client.start_workflow(
            OrphanWorkflow.run, "late", id=new_id("orphan"), task_queue=orphan_tq
        )

        # the crash really lands while the timers are still pending
        assert time.monotonic() - timers_started_at < TIMER_S - 0.5
        server.kill()
        await asyncio.sleep(0.5)
        await server.start()

        # let the in-flight activities finish now that the server is back
        gate.write_text("gate-open")

        results = await asyncio.wait_for(
            asyncio.gather(*(h.result() for h in gated + sleeping)), 45
        )
        # the activities started before the crash complete with their original
        # task tokens: attempt 1, no retry needed
        assert results[:3] == ["activity done (gate-open:1)"] * 3
        assert results[3:] == [f"timer done (s{i})" for i in range(3)]
        # the timers were not cut short by the restart
        assert time.monotonic() - timers_started_at >= TIMER_S

        async with Worker(client, task_queue=orphan_tq, workflows=[OrphanWorkflow], activities=[echo]):
            assert await asyncio.wait_for(orphan.result(), 30) == "echo late"

    for h in gated + sleeping:
        history = await h.fetch_history()
        assert history.events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
        ids = [e.event_id for e in history.events]
        assert ids == list(range(1, len(ids) + 1)), "event ids must stay contiguous across the restart"

    # a second crash after completion keeps the closed workflows and their results
    server.kill()
    await server.start()
    client2 = await Client.connect(server.address, namespace="default")
    assert await client2.get_workflow_handle(sleeping[0].id).result() == "timer done (s0)"
    assert await client2.get_workflow_handle(orphan.id).result() == "echo late"
