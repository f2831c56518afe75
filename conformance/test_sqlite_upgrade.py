"""An SQLite file written by an earlier release keeps working: `data/sqlite-schema-2.db` was
made on 2026-12-02 by `data/make_sqlite_fixture.py` with the server of that day (SQLite schema
version 2, the layout the releases since 2026-11 write), with one completed workflow and one
waiting for a signal. It is never regenerated: it stands for the files users have. The current
server opens a copy, shows the completed run and its history, finishes the waiting one when
signalled, and starts new work on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

with workflow.unsafe.imports_passed_through():
    from conftest import SundialProcess

FIXTURE = Path(__file__).resolve().parent / "data" / "sqlite-schema-2.db"
QUEUE = "upgrade-fixture"


@workflow.defn(sandboxed=False)
class Greeter:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello {name}"


@workflow.defn(sandboxed=False)
class Waiter:
    def __init__(self) -> None:
        self.names: list[str] = []

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: bool(self.names))
        return "got " + self.names[0]

    @workflow.signal
    def name(self, value: str) -> None:
        self.names.append(value)

    @workflow.query
    def seen(self) -> list[str]:
        return self.names


def keep_closed_runs(db: Path) -> None:
    """Gives the fixture's namespace a retention of ten years, as an operator could with
    UpdateNamespace: its completed run closed on 2026-12-02 with the default retention of one
    day, so on later days the server's retention would rightly delete it at start-up. The
    namespace record keeps the encoding that release wrote; only the retention changes."""
    import sqlite3

    from temporalio.api.workflowservice.v1 import DescribeNamespaceResponse

    with sqlite3.connect(db) as conn:
        (data,) = conn.execute("SELECT data FROM namespaces WHERE name = 'default'").fetchone()
        ns = DescribeNamespaceResponse.FromString(data)
        ns.config.workflow_execution_retention_ttl.FromSeconds(10 * 365 * 24 * 3600)
        conn.execute(
            "UPDATE namespaces SET data = ? WHERE name = 'default'", (ns.SerializeToString(),)
        )


@pytest.mark.sqlite_only
async def test_a_file_of_the_previous_release_keeps_working(tmp_path):
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    keep_closed_runs(db)
    server = SundialProcess(db, log_path=tmp_path / "old.log")
    await server.start()
    try:
        client = await Client.connect(server.address)
        done = client.get_workflow_handle("completed")
        assert (await done.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert await done.result() == "hello old"
        events = [e async for e in done.fetch_history_events()]
        assert len(events) >= 5
        async with Worker(client, task_queue=QUEUE, workflows=[Greeter, Waiter],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            waiting = client.get_workflow_handle("waiting")
            await waiting.signal(Waiter.name, "new")
            assert await waiting.result() == "got new"
            # New work on the upgraded file.
            assert await client.execute_workflow(
                Greeter.run, "again", id="after-upgrade", task_queue=QUEUE
            ) == "hello again"
        listed = [w.id async for w in client.list_workflows("WorkflowType = 'Greeter'")]
        assert sorted(listed) == ["after-upgrade", "completed"]
        # The file survives a restart after the upgrade.
        await server.restart()
        client = await Client.connect(server.address)
        assert await client.get_workflow_handle("waiting").result() == "got new"
    finally:
        server.stop()
