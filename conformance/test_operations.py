"""Production operations: graceful shutdown on SIGTERM (open long polls answered, exit 0,
acknowledged work kept), retention (closed runs deleted after their namespace's retention),
and bad configuration refused at start with a message naming the problem."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import PollWorkflowTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

with workflow.unsafe.imports_passed_through():
    from conftest import DEFAULT_BIN, free_port
    from tlskit import ConfiguredSundial, Pki, write_config


BIN = os.environ.get("SUNDIAL_BIN") or str(DEFAULT_BIN)


async def test_sigterm_answers_long_polls_and_exits_zero(tmp_path):
    port = free_port()
    db = tmp_path / "sundial.db"
    config = write_config(tmp_path / "sundial.toml", port=port, db=db, shutdown_grace="5s")
    server = ConfiguredSundial(config, port=port, db=db)
    await server.start()
    try:
        client = await server.connect()
        # Acknowledged work: a started workflow with a signal.
        handle = await client.start_workflow("Nobody", id=f"shutdown-{uuid.uuid4()}", task_queue="shutdown-none")
        await handle.signal("kept", "payload")
        # A long poll on a queue nobody feeds, waiting when the signal arrives.
        poll = asyncio.create_task(
            client.workflow_service.poll_workflow_task_queue(
                PollWorkflowTaskQueueRequest(namespace="default", task_queue=TaskQueue(name="shutdown-idle")),
                timeout=timedelta(seconds=70),
            )
        )
        await asyncio.sleep(0.5)
        assert not poll.done()
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        # The poll is answered (empty) rather than left hanging.
        response = await asyncio.wait_for(poll, timeout=10)
        assert not response.task_token
        code = await asyncio.to_thread(server.proc.wait, 15)
        assert code == 0, server.log_tail()
        assert time.monotonic() - started < 8
    finally:
        server.kill()

    # Everything acknowledged is there after a restart.
    await server.start()
    try:
        client = await server.connect()
        desc = await client.get_workflow_handle(handle.id).describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        history = await client.get_workflow_handle(handle.id).fetch_history()
        signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
        assert [s.workflow_execution_signaled_event_attributes.signal_name for s in signals] == ["kept"]
    finally:
        server.kill()


async def test_closed_runs_are_deleted_after_retention(tmp_path):
    port = free_port()
    db = tmp_path / "sundial.db"
    config = write_config(
        tmp_path / "sundial.toml", port=port, db=db, retention_scan="200ms",
        namespaces=[{"name": "short", "retention": "2s"}],
    )
    server = ConfiguredSundial(config, port=port, db=db, ready_namespace="short")
    await server.start()
    try:
        short = await server.connect(namespace="short")
        default = await server.connect(namespace="default")
        closed = await short.start_workflow("Nobody", id=f"ret-{uuid.uuid4()}", task_queue="ret-none")
        await closed.terminate()
        running = await short.start_workflow("Nobody", id=f"ret-{uuid.uuid4()}", task_queue="ret-none")
        kept = await default.start_workflow("Nobody", id=f"ret-{uuid.uuid4()}", task_queue="ret-none")
        await kept.terminate()  # default retention is a day: stays
        # Right after closing it is still there.
        assert (await closed.describe()).status == WorkflowExecutionStatus.TERMINATED
        deadline = time.monotonic() + 15
        gone = False
        while time.monotonic() < deadline and not gone:
            await asyncio.sleep(0.3)
            try:
                await closed.describe()
            except RPCError as err:
                assert err.status == RPCStatusCode.NOT_FOUND
                gone = True
        assert gone, "closed run still present long after its retention"
        assert (await running.describe()).status == WorkflowExecutionStatus.RUNNING
        assert (await kept.describe()).status == WorkflowExecutionStatus.TERMINATED
        listed = [w.id async for w in short.list_workflows(f"WorkflowId = '{closed.id}'")]
        assert listed == []
    finally:
        server.kill()


def start_fails(config: Path) -> str:
    proc = subprocess.run(
        [BIN, "server", "start", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode != 0, proc.stderr
    return proc.stderr


def test_bad_configuration_fails_at_start_naming_the_problem(tmp_path):
    pki = Pki(tmp_path / "pki", "bad")
    server = pki.issue("server", server=True, file_stem="server")
    other = pki.issue("other", server=True, file_stem="other")
    port = free_port()
    db = tmp_path / "x.db"

    missing = write_config(tmp_path / "missing.toml", port=port, db=db,
                           tls={"cert": tmp_path / "nope.pem", "key": server.key})
    assert "nope.pem" in start_fails(missing)

    mismatch = write_config(tmp_path / "mismatch.toml", port=port, db=db,
                            tls={"cert": server.cert, "key": other.key})
    err = start_fails(mismatch)
    assert "does not match" in err and "other.key" in err, err

    no_ca = write_config(tmp_path / "noca.toml", port=port, db=db,
                         tls={"cert": server.cert, "key": server.key, "client_ca": tmp_path / "ca-missing.pem"})
    assert "ca-missing.pem" in start_fails(no_ca)

    unknown = tmp_path / "unknown.toml"
    unknown.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\nlisten_port = 5\n')
    assert "listen_port" in start_fails(unknown)

    unknown_table = tmp_path / "unknown-table.toml"
    unknown_table.write_text("[telemetry]\nx = 1\n")
    assert "telemetry" in start_fails(unknown_table)

    assert "cannot read" in start_fails(tmp_path / "absent.toml")
