"""PostgreSQL as the store, whatever SUNDIAL_TEST_BACKEND says: a database that cannot be
reached at start fails the start naming it; one lost while the server runs turns health to
NOT_SERVING and requests to Unavailable, and once it is back everything acknowledged is there
and the server serves again. The database is the machine's PostgreSQL, reached through a TCP
relay of this test that can cut every connection and refuse new ones."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

with workflow.unsafe.imports_passed_through():
    from conftest import POSTGRES_BASE, SundialProcess, free_port, postgres_url
    from tlskit import Pki


class Relay:
    """Forwards TCP connections from a local port to PostgreSQL; ``cut`` drops them all and
    refuses new ones until ``restore``."""

    def __init__(self, target_port: int = 5432) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def restore(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


@activity.defn
async def double(x: int) -> int:
    return 2 * x


@workflow.defn(sandboxed=False)
class Doubling:
    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(
            double, x, start_to_close_timeout=timedelta(seconds=30)
        )


def relayed_url(relay: Relay, db_path) -> str:
    direct = postgres_url(db_path)
    return direct.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}", 1)


async def test_an_unreachable_database_fails_the_start_naming_it(tmp_path):
    port = free_port()
    result = subprocess.run(
        [
            SundialProcess(tmp_path / "x.db").binary, "server", "start-dev", "--headless",
            "--port", str(free_port()),
            "--db-url", f"postgres://postgres@127.0.0.1:{port}/nothing",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"127.0.0.1:{port}/nothing" in output, output
    assert "cannot connect to PostgreSQL" in output, output


async def test_a_database_lost_while_running_makes_the_server_unavailable_until_it_is_back(
    tmp_path,
):
    if "127.0.0.1:5432" not in POSTGRES_BASE:
        pytest.fail(f"this test relays to 127.0.0.1:5432; SUNDIAL_TEST_POSTGRES is {POSTGRES_BASE}")
    relay = Relay()
    await relay.restore()

    class Relayed(SundialProcess):
        def command(self) -> list[str]:
            return [
                self.binary, "server", "start-dev", "--headless", "--ip", self.host,
                "--port", str(self.port), "--db-url", relayed_url(relay, self.db_path),
                "--log-level", "info",
            ]

    server = Relayed(tmp_path / "lost.db")
    await server.start()
    try:
        client = await Client.connect(server.address)
        queue = f"pg-lost-{uuid.uuid4()}"
        async with Worker(
            client, task_queue=queue, workflows=[Doubling], activities=[double],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            before = [
                await client.start_workflow(Doubling.run, i, id=f"before-{queue}-{i}", task_queue=queue)
                for i in range(5)
            ]
            assert [await h.result() for h in before] == [0, 2, 4, 6, 8]

            await relay.cut()
            # Health turns NOT_SERVING once the writer notices (it probes every second).
            deadline = asyncio.get_running_loop().time() + 15
            healthy = True
            while asyncio.get_running_loop().time() < deadline:
                try:
                    healthy = await client.service_client.check_health(timeout=timedelta(seconds=2))
                except RPCError:
                    healthy = False
                if not healthy:
                    break
                await asyncio.sleep(0.2)
            assert not healthy, "health still SERVING with the database gone"
            # A request that must write is refused as Unavailable (the SDKs retry those).
            start = StartWorkflowExecutionRequest(
                namespace="default", workflow_id=f"during-{queue}", request_id=str(uuid.uuid4()),
                workflow_type=WorkflowType(name="Doubling"), task_queue=TaskQueue(name=queue),
            )
            with pytest.raises(RPCError) as refused:
                await client.workflow_service.start_workflow_execution(
                    start, retry=False, timeout=timedelta(seconds=20)
                )
            assert refused.value.status == RPCStatusCode.UNAVAILABLE, refused.value

            await relay.restore()
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                try:
                    if await client.service_client.check_health(timeout=timedelta(seconds=2)):
                        break
                except RPCError:
                    pass
                await asyncio.sleep(0.2)
            else:
                pytest.fail("health did not return to SERVING")
            after = await client.start_workflow(Doubling.run, 21, id=f"after-{queue}", task_queue=queue)
            assert await after.result() == 42
            # Everything acknowledged before the loss is there.
            for i, handle in enumerate(before):
                assert await handle.result() == 2 * i
            # The refused start did not happen.
            with pytest.raises(RPCError) as missing:
                await client.workflow_service.describe_workflow_execution(
                    DescribeWorkflowExecutionRequest(
                        namespace="default", execution=WorkflowExecution(workflow_id=f"during-{queue}")
                    )
                )
            assert missing.value.status == RPCStatusCode.NOT_FOUND
    finally:
        server.stop()
        await relay.cut()


def _server_certificate() -> str | None:
    """The certificate file the machine's PostgreSQL serves TLS with, if TLS is on."""
    result = subprocess.run(
        ["psql", "-X", "-At", "-d", POSTGRES_BASE, "-c", "SHOW ssl", "-c", "SHOW ssl_cert_file"],
        capture_output=True, text=True, timeout=30,
    )
    lines = result.stdout.split()
    if result.returncode != 0 or not lines or lines[0] != "on":
        return None
    return lines[1] if len(lines) > 1 else None


async def test_tls_to_the_database_is_verified_against_the_given_ca(tmp_path):
    cert = _server_certificate()
    if cert is None:
        pytest.skip(f"the PostgreSQL at {POSTGRES_BASE} does not serve TLS (ssl = off)")
    direct = postgres_url(tmp_path / "tls.db")
    # By name, so that the certificate (issued to localhost) matches.
    url = direct.replace("127.0.0.1", "localhost", 1)
    port = free_port()

    def config(extra: str) -> object:
        path = tmp_path / "sundial.toml"
        path.write_text(
            f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nurl = "{url}"\n{extra}\n'
            '[log]\nlevel = "info"\n'
        )
        return path

    class Configured(SundialProcess):
        def command(self) -> list[str]:
            return [self.binary, "server", "start", "--config", str(tmp_path / "sundial.toml")]

    # A CA that did not sign the server's certificate: refused, naming the certificate.
    other = Pki(tmp_path / "other-ca")
    config(f'ca_file = "{other.ca_path}"')
    refused = subprocess.run(
        Configured(tmp_path / "tls.db").command(), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "certificate" in (refused.stdout + refused.stderr).lower(), refused.stdout + refused.stderr

    # With the CA that signed it, the connection is TLS and the server works.
    config(f'ca_file = "{cert}"')
    server = Configured(tmp_path / "tls.db", port=port)
    await server.start()
    try:
        client = await Client.connect(server.address)
        queue = f"pg-tls-{uuid.uuid4()}"
        async with Worker(
            client, task_queue=queue, workflows=[Doubling], activities=[double],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            assert await client.execute_workflow(Doubling.run, 4, id=queue, task_queue=queue) == 8
        database = url.rsplit("/", 1)[1]
        check = subprocess.run(
            ["psql", "-X", "-At", "-d", POSTGRES_BASE, "-c",
             "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
             f"WHERE a.datname = '{database}' AND a.application_name = 'sundial'"],
            capture_output=True, text=True, timeout=30,
        )
        assert check.stdout.strip() == "t", check
    finally:
        server.stop()


async def test_a_nul_character_is_invalid_argument_and_harms_nothing(tmp_path):
    """PostgreSQL text cannot hold U+0000, which the reference (on SQLite) accepts in ids and
    names: Sundial on PostgreSQL answers InvalidArgument naming the reason for a value it would
    store as text (not Unavailable, which clients would retry forever), stays healthy, and
    serves the next request."""
    url = postgres_url(tmp_path / "nul.db")

    class OnPostgres(SundialProcess):
        def command(self) -> list[str]:
            return [
                self.binary, "server", "start-dev", "--headless", "--ip", self.host,
                "--port", str(self.port), "--db-url", url, "--log-level", "warn",
            ]

    server = OnPostgres(tmp_path / "nul.db")
    await server.start()
    try:
        client = await Client.connect(server.address)
        for workflow_id, queue in (("with\x00nul", "q"), ("nul-queue", "q\x00x")):
            with pytest.raises(RPCError) as refused:
                await client.start_workflow("T", id=workflow_id, task_queue=queue)
            assert refused.value.status == RPCStatusCode.INVALID_ARGUMENT
            assert "NUL character" in refused.value.message, refused.value.message
        with pytest.raises(RPCError) as described:
            await client.get_workflow_handle("with\x00nul").describe()
        assert described.value.status == RPCStatusCode.INVALID_ARGUMENT
        # The server goes on; names kept only inside encoded events (a signal's) may hold NUL,
        # as on the reference.
        handle = await client.start_workflow("T", id=f"clean-{uuid.uuid4()}", task_queue="q")
        await handle.signal("with\x00nul", "x")
        events = [e async for e in handle.fetch_history_events()]
        assert [e.workflow_execution_signaled_event_attributes.signal_name for e in events
                if e.HasField("workflow_execution_signaled_event_attributes")] == ["with\x00nul"]
        await handle.terminate()
    finally:
        server.stop()
