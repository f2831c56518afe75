"""Kill -9 soak: a steady mixed workload through the Python SDK while the server is killed and
restarted at random moments, then an exactly-once ledger check.

Workload per workflow: an activity (retries allowed), a timer, a signal, an update, a child
workflow and one continue-as-new. Ledger: every workflow completes once with the right result,
no activity attempt runs twice, every run's event ids are 1..n with none reused.

Run alone for a long soak:
    python conformance/soak.py --workflows 400 --seconds 600 --binary target/release/sundial
The test command runs a short version (conformance/test_soak.py). `--seconds` is how long the
kills go on; the workload then has three more minutes to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    # The suite's server manager (run as a script, this file's folder is on sys.path).
    from conftest import SundialProcess, free_port

LEDGER: Path | None = None


@activity.defn
async def soak_activity(value: int) -> int:
    info = activity.info()
    assert LEDGER is not None
    with LEDGER.open("a") as f:
        f.write(json.dumps([info.workflow_id, info.workflow_run_id, info.activity_id, info.attempt]) + "\n")
    await asyncio.sleep(random.uniform(0, 0.05))
    return value + 1


@workflow.defn
class SoakChild:
    @workflow.run
    async def run(self, value: int) -> int:
        return value * 2


@workflow.defn
class SoakWorkflow:
    def __init__(self) -> None:
        self.go = False
        self.bumps = 0

    @workflow.run
    async def run(self, value: int, continued: bool) -> str:
        if not continued:
            # The first run takes the signal and the update, then continues as new.
            await workflow.wait_condition(lambda: self.go and self.bumps > 0)
            await workflow.sleep(0.1)
            workflow.continue_as_new(args=[value, True])
        a = await workflow.execute_activity(
            soak_activity,
            value,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=20),
        )
        await workflow.sleep(1.0)
        c = await workflow.execute_child_workflow(
            SoakChild.run, a, id=f"{workflow.info().workflow_id}-child", task_queue=workflow.info().task_queue
        )
        return f"{value}:{a}:{c}"

    @workflow.signal
    def release(self) -> None:
        self.go = True

    @workflow.update
    def bump(self) -> int:
        self.bumps = 1
        return self.bumps


def expected(value: int) -> str:
    return f"{value}:{value + 1}:{(value + 1) * 2}"


async def retrying(what, call, deadline: float):
    """Calls `call` until it succeeds (the server may be down or restarting)."""
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@dataclass
class Report:
    workflows: int = 0
    kills: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)


async def soak(binary: str | None, workflows: int, seconds: float, kill_every: tuple[float, float], workdir: Path) -> Report:
    global LEDGER
    LEDGER = workdir / "ledger.jsonl"
    LEDGER.write_text("")
    server = SundialProcess(workdir / "soak.db", port=free_port(), log_path=workdir / "soak.log", binary=binary)
    await server.start()
    report = Report(workflows=workflows)
    client = await Client.connect(server.address)
    tq = f"soak-{uuid.uuid4()}"
    prefix = f"soak-{uuid.uuid4()}"
    # Kills happen during the first `seconds`; then everything must still finish.
    kills_end = time.monotonic() + seconds
    deadline = kills_end + 180
    stop = asyncio.Event()

    async def killer() -> None:
        while not stop.is_set() and time.monotonic() < kills_end:
            try:
                await asyncio.wait_for(stop.wait(), random.uniform(*kill_every))
                return
            except asyncio.TimeoutError:
                pass
            server.kill()
            report.kills += 1
            await asyncio.sleep(random.uniform(0.05, 0.3))
            await server.start()

    async def one(i: int) -> str:
        # Starts spread over the kill window, so kills land at every stage of the workload.
        await asyncio.sleep(seconds * i / workflows)
        wf_id = f"{prefix}-{i}"
        await retrying(
            "start",
            lambda: client.start_workflow(
                SoakWorkflow.run,
                args=[i, False],
                id=wf_id,
                task_queue=tq,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            ),
            deadline,
        )
        handle = client.get_workflow_handle(wf_id)
        await retrying(
            "signal", lambda: handle.signal(SoakWorkflow.release, rpc_timeout=timedelta(seconds=10)), deadline
        )
        update_id = f"bump-{wf_id}"
        await retrying(
            "update",
            lambda: handle.execute_update(SoakWorkflow.bump, id=update_id, rpc_timeout=timedelta(seconds=10)),
            deadline,
        )
        return await retrying("result", lambda: asyncio.wait_for(handle.result(), 60), deadline)

    async with Worker(client, task_queue=tq, workflows=[SoakWorkflow, SoakChild], activities=[soak_activity]):
        kill_task = asyncio.create_task(killer())
        sem = asyncio.Semaphore(max(20, workflows))

        async def bounded(i: int):
            async with sem:
                try:
                    return await one(i)
                except Exception as e:  # counted as lost below
                    return e

        results = await asyncio.gather(*(bounded(i) for i in range(workflows)))
        stop.set()
        await kill_task
    if not server.is_running():
        await server.start()
    # Ledger checks on a fresh connection.
    client = await Client.connect(server.address)
    for i, result in enumerate(results):
        if result == expected(i):
            report.completed += 1
        else:
            report.lost += 1
            report.problems.append(f"workflow {i}: {result!r}")
    attempts: dict[tuple, int] = {}
    for line in LEDGER.read_text().splitlines():
        key = tuple(json.loads(line))
        attempts[key] = attempts.get(key, 0) + 1
    for key, n in attempts.items():
        if n > 1:
            report.duplicated += 1
            report.problems.append(f"activity attempt ran {n} times: {key}")
    for i in range(workflows):
        wf_id = f"{prefix}-{i}"
        completed = 0
        async for execution in client.list_workflows(f"WorkflowId = '{wf_id}'"):
            history = await client.get_workflow_handle(wf_id, run_id=execution.run_id).fetch_history()
            ids = [e.event_id for e in history.events]
            if ids != list(range(1, len(ids) + 1)):
                report.problems.append(f"{wf_id}/{execution.run_id}: event ids {ids}")
            completed += sum(
                1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
            )
        if completed != 1:
            report.duplicated += completed > 1
            report.problems.append(f"{wf_id}: completed {completed} times")
    server.kill()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--kill-min", type=float, default=0.5)
    parser.add_argument("--kill-max", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        started = time.monotonic()
        report = asyncio.run(soak(args.binary, args.workflows, args.seconds, (args.kill_min, args.kill_max), Path(d)))
        print(
            f"workflows={report.workflows} kills={report.kills} completed={report.completed} "
            f"lost={report.lost} duplicated={report.duplicated} wall={time.monotonic() - started:.1f}s"
        )
        for p in report.problems[:50]:
            print("  ", p)
        sys.exit(0 if not report.problems else 1)


if __name__ == "__main__":
    main()
