"""The run cache: idle workflows leave memory and come back on demand.

A server started with ``--dynamic-config-value history.hostLevelCacheMaxSize=1`` keeps at
most one run in memory beyond those with work in flight: every workflow asleep on a timer,
or waiting in a task queue for a worker, is evicted, and each request, timer, signal, query,
update or task that reaches it loads it from the store again. The gauge ``sundial_cached_runs`` shows how many runs are in memory.
Everything must behave as with every run cached, across a kill -9 too.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from conftest import SundialProcess, free_port

SLEEP_S = 4.0
WORKFLOWS = 24


@workflow.defn
class Sleeper:
    def __init__(self) -> None:
        self.signals: list[str] = []
        self.updates = 0

    @workflow.run
    async def run(self, seconds: float) -> list[str]:
        await workflow.sleep(timedelta(seconds=seconds))
        return [*self.signals, f"updates={self.updates}"]

    @workflow.signal
    def note(self, text: str) -> None:
        self.signals.append(text)

    @workflow.query
    def noted(self) -> list[str]:
        return list(self.signals)

    @workflow.update
    def bump(self) -> int:
        self.updates += 1
        return self.updates


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Backlogged:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            shout, text, start_to_close_timeout=timedelta(seconds=30)
        )


class CachedServer(SundialProcess):
    """A server with a one-run cache and a metrics endpoint; ``lookahead_ms`` shortens how
    far ahead the wake index is read (a minute by default)."""

    def __init__(self, *args, lookahead_ms: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.metrics_port = free_port()
        self.lookahead_ms = lookahead_ms

    def command(self) -> list[str]:
        extra = [
            "--metrics-port", str(self.metrics_port),
            "--dynamic-config-value", "history.hostLevelCacheMaxSize=1",
        ]
        if self.lookahead_ms is not None:
            extra += ["--dynamic-config-value", f"sundial.wakeIndexLookaheadMs={self.lookahead_ms}"]
        return super().command() + extra

    def gauge(self, name: str) -> int:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        match = re.search(rf"^{name} (\d+)", text, re.M)
        assert match, f"{name} is not exported"
        return int(match.group(1))

    def cached_runs(self) -> int:
        return self.gauge("sundial_cached_runs")


def _worker(client: Client, queue: str, workflows=(Sleeper,), activities=()) -> Worker:
    # The worker keeps no run cached either: every task replays from full history.
    return Worker(
        client,
        task_queue=queue,
        workflows=list(workflows),
        activities=list(activities),
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_cached_workflows=0,
    )


async def _killed_and_restarted(server: CachedServer) -> Client:
    """kill -9, a new process on the same file, and a client of it."""
    server.kill()
    await server.start()
    return await Client.connect(server.address, namespace="default")


async def _all_have_written(client: Client, ids: list[str], attributes: str, what: str) -> None:
    """Waits until every workflow's history holds an event with ``attributes``."""
    for wid in ids:
        handle = client.get_workflow_handle(wid)
        for _ in range(200):
            events = [e async for e in handle.fetch_history_events()]
            if any(e.HasField(attributes) for e in events):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{wid} never {what}")


async def _all_asleep(client: Client, ids: list[str]) -> None:
    """Waits until every workflow has its timer started (no workflow task left)."""
    await _all_have_written(client, ids, "timer_started_event_attributes", "started its timer")


async def _task_done_after_signal(client: Client, wid: str) -> None:
    """Waits until the workflow task that delivered a signal has completed."""
    handle = client.get_workflow_handle(wid)
    for _ in range(100):
        events = [e async for e in handle.fetch_history_events()]
        signalled = [i for i, e in enumerate(events) if e.HasField("workflow_execution_signaled_event_attributes")]
        if signalled and any(
            e.HasField("workflow_task_completed_event_attributes") for e in events[signalled[-1] :]
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wid} never completed the task of its signal")


async def _settled_cache(server: CachedServer, at_most: int) -> int:
    for _ in range(50):
        cached = server.cached_runs()
        if cached <= at_most:
            return cached
        await asyncio.sleep(0.1)
    return server.cached_runs()


async def test_evicted_workflows_wake_take_signals_queries_updates_and_survive_kill_9(
    external_address, tmp_path, new_id
):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")
    server = CachedServer(tmp_path / "cache.db")
    try:
        await server.start()
        client = await Client.connect(server.address, namespace="default")
        queue = new_id("cache-tq")
        ids = [new_id(f"sleeper{i}") for i in range(WORKFLOWS)]
        async with _worker(client, queue):
            for wid in ids:
                await client.start_workflow(Sleeper.run, SLEEP_S, id=wid, task_queue=queue)
            await _all_asleep(client, ids)
            # Asleep, they left memory: the cache holds at most its one run.
            assert await _settled_cache(server, 1) <= 1

            # Signals, queries, updates and describes reach evicted runs.
            for i, wid in enumerate(ids[:8]):
                await client.get_workflow_handle(wid).signal(Sleeper.note, f"s{i}")
            for i, wid in enumerate(ids[:4]):
                assert await client.get_workflow_handle(wid).query(Sleeper.noted) == [f"s{i}"]
            for wid in ids[4:6]:
                assert await client.get_workflow_handle(wid).execute_update(Sleeper.bump) == 1
            for wid in ids:
                desc = await client.get_workflow_handle(wid).describe()
                assert desc.status == WorkflowExecutionStatus.RUNNING

        # kill -9 while they sleep (out of memory, timers pending); the restarted server
        # loads them, evicts them again, and fires every timer.
        client = await _killed_and_restarted(server)
        assert await _settled_cache(server, 1) <= 1
        async with _worker(client, queue):
            results = await asyncio.wait_for(
                asyncio.gather(*(client.get_workflow_handle(w).result() for w in ids)), 60
            )
        for i, result in enumerate(results):
            signals = [f"s{i}"] if i < 8 else []
            updates = 1 if 4 <= i < 6 else 0
            assert result == [*signals, f"updates={updates}"], (ids[i], result)
        for wid in ids:
            events = [e async for e in client.get_workflow_handle(wid).fetch_history_events()]
            event_ids = [e.event_id for e in events]
            assert event_ids == list(range(1, len(event_ids) + 1)), wid
            fired = [e for e in events if e.HasField("timer_fired_event_attributes")]
            assert len(fired) == 1, wid
    finally:
        server.kill()


async def test_sleepers_past_the_lookahead_live_in_the_wake_index_and_fire_on_time(
    external_address, tmp_path, new_id
):
    """With the wake index read only 300 ms ahead, workflows asleep for 5 s hold neither a
    cache entry nor a timer in memory; the index brings each back when its timer is due,
    also after a kill -9, where start-up loads none of them."""
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")
    sleep_s = 5.0
    count = 12
    server = CachedServer(tmp_path / "wake.db", lookahead_ms=300, log_level="info")
    try:
        await server.start()
        client = await Client.connect(server.address, namespace="default")
        queue = new_id("wake-tq")
        ids = [new_id(f"far{i}") for i in range(count)]
        async with _worker(client, queue):
            for wid in ids[: count // 2]:
                await client.start_workflow(Sleeper.run, sleep_s, id=wid, task_queue=queue)
            await _all_asleep(client, ids[: count // 2])
            assert await _settled_cache(server, 1) <= 1
            # Out of memory and past the horizon: the loop holds (almost) nothing for them.
            assert server.gauge("sundial_timers_pending") <= 3
            # A signal loads one; it leaves again and its timer still fires on time.
            await client.get_workflow_handle(ids[0]).signal(Sleeper.note, "hello")
            await _task_done_after_signal(client, ids[0])

        # kill -9 while half of them sleep; the rest start after the restart.
        server.kill()
        await server.start()
        log = re.sub(r"\x1b\[[0-9;]*m", "", server.log_path.read_text())
        recovered = re.findall(r"running executions recovered.*?recovered=(\d+)", log)
        assert recovered and recovered[-1] == "0", recovered
        client = await Client.connect(server.address, namespace="default")
        async with _worker(client, queue):
            for wid in ids[count // 2 :]:
                await client.start_workflow(Sleeper.run, sleep_s, id=wid, task_queue=queue)
            results = await asyncio.wait_for(
                asyncio.gather(*(client.get_workflow_handle(w).result() for w in ids)), 60
            )
        assert results[0] == ["hello", "updates=0"]
        assert all(r == ["updates=0"] for r in results[1:]), results
        for wid in ids:
            events = [e async for e in client.get_workflow_handle(wid).fetch_history_events()]
            event_ids = [e.event_id for e in events]
            assert event_ids == list(range(1, len(event_ids) + 1)), wid
            started = [e for e in events if e.HasField("timer_started_event_attributes")]
            fired = [e for e in events if e.HasField("timer_fired_event_attributes")]
            assert len(started) == 1 and len(fired) == 1, wid
            late = (
                fired[0].event_time.ToMilliseconds()
                - started[0].event_time.ToMilliseconds()
                - sleep_s * 1000
            )
            # On time, those asleep across the kill too (the restart takes well under 5 s),
            # within the index's read interval and a loaded machine's slack.
            assert -50 <= late <= 3_000, (wid, late)
        assert server.gauge("sundial_timers_pending") == 0
    finally:
        server.kill()


async def test_a_backlog_waiting_for_workers_leaves_memory_and_is_dispatched_once(
    external_address, tmp_path, new_id
):
    """Workflows whose tasks wait in their queues (no worker yet) are not held in memory:
    the queue names each run, which a poll loads again. First their workflow tasks wait
    (across a kill -9: start-up queues them again and lets the runs go), then their activity
    tasks (across another kill -9). Every task is handed out once: one workflow task attempt
    and one activity attempt each, dense event ids, the right result."""
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")
    count = 30
    server = CachedServer(tmp_path / "backlog.db")
    try:
        await server.start()
        client = await Client.connect(server.address, namespace="default")
        queue = new_id("backlog-tq")
        ids = [new_id(f"queued{i}") for i in range(count)]
        for wid in ids:
            await client.start_workflow(Backlogged.run, wid, id=wid, task_queue=queue)
        # No worker: every run has a workflow task in the queue, and none is in memory.
        assert await _settled_cache(server, 1) <= 1
        described = await client.get_workflow_handle(ids[0]).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        client = await _killed_and_restarted(server)
        assert await _settled_cache(server, 1) <= 1

        # A worker with the workflow and no activities: the activity tasks queue up.
        async with _worker(client, queue, workflows=[Backlogged]):
            await _all_have_written(
                client, ids, "activity_task_scheduled_event_attributes", "scheduled its activity"
            )
        assert await _settled_cache(server, 1) <= 1

        client = await _killed_and_restarted(server)
        # Start-up loaded the runs to queue their tasks again, then let them go.
        assert await _settled_cache(server, 1) <= 1
        worker = _worker(client, queue, workflows=[Backlogged], activities=[shout])
        async with worker:
            results = await asyncio.wait_for(
                asyncio.gather(*(client.get_workflow_handle(w).result() for w in ids)), 60
            )
        assert results == [wid.upper() for wid in ids]
        for wid in ids:
            events = [e async for e in client.get_workflow_handle(wid).fetch_history_events()]
            event_ids = [e.event_id for e in events]
            assert event_ids == list(range(1, len(event_ids) + 1)), wid
            started = [e for e in events if e.HasField("activity_task_started_event_attributes")]
            assert [e.activity_task_started_event_attributes.attempt for e in started] == [1], wid
            scheduled = [
                e for e in events if e.HasField("workflow_task_scheduled_event_attributes")
            ]
            assert all(
                e.workflow_task_scheduled_event_attributes.attempt == 1 for e in scheduled
            ), wid
            assert not any(e.HasField("workflow_task_timed_out_event_attributes") for e in events)
            assert not any(e.HasField("workflow_task_failed_event_attributes") for e in events)
    finally:
        server.kill()
