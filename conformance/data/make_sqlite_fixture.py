"""Writes conformance/data/sqlite-schema-2.db with the server binary given (the release whose
file format the upgrade test keeps readable): one workflow completed, one waiting for a signal.

    python conformance/data/make_sqlite_fixture.py target/debug/sundial
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

from conftest import SundialProcess  # noqa: E402
from test_sqlite_upgrade import QUEUE, Greeter, Waiter  # noqa: E402

TARGET = Path(__file__).resolve().parent / "sqlite-schema-2.db"


async def main(binary: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(TARGET) + suffix).unlink(missing_ok=True)
    server = SundialProcess(TARGET, binary=binary, log_path=Path("/tmp/fixture.log"))
    await server.start()
    client = await Client.connect(server.address)
    async with Worker(client, task_queue=QUEUE, workflows=[Greeter, Waiter],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        assert await client.execute_workflow(Greeter.run, "old", id="completed", task_queue=QUEUE) == "hello old"
        waiter = await client.start_workflow(Waiter.run, id="waiting", task_queue=QUEUE)
        await waiter.query(Waiter.seen)
    server.stop()
    # One self-contained file: copy the write-ahead log into it (the last connection to
    # close removes the log).
    connection = sqlite3.connect(TARGET)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    for suffix in ("-wal", "-shm"):
        assert not Path(str(TARGET) + suffix).exists(), suffix


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
