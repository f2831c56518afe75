"""Shared fixtures for the Sundial conformance suite.

Server selection:
  * ``SUNDIAL_ADDRESS=host:port`` -> use an already running server (Sundial or
    the reference Temporal dev server) and never start or stop anything.
  * otherwise start ``$SUNDIAL_BIN`` (default ``<repo>/target/debug/sundial``)
    once per session on a free port with a throw-away SQLite file.

``SundialProcess`` (exposed through the ``sundial_factory`` fixture) manages one
server process on a given db file and port; the durability test uses it to
SIGKILL and restart a server.

Storage backend: ``SUNDIAL_TEST_BACKEND=postgres`` runs every server on PostgreSQL
(``SUNDIAL_TEST_POSTGRES``, default ``postgres://postgres@127.0.0.1:5432/test``): each db
path gets a database of its own, created on first use and dropped when the session ends, so
a restart on the same path finds its data. An unreachable PostgreSQL fails the session.
Tests marked ``sqlite_only`` test the SQLite file itself and run in the SQLite pass only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "sundial"
START_TIMEOUT_S = 15.0


BACKEND = os.environ.get("SUNDIAL_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "postgres"):
    raise RuntimeError(f"SUNDIAL_TEST_BACKEND must be sqlite or postgres, not {BACKEND!r}")
POSTGRES_BASE = os.environ.get("SUNDIAL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
# Databases created by this session (dropped at its end).
_CREATED_DATABASES: set[str] = set()


def _psql(sql: str) -> None:
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", POSTGRES_BASE, "-c", sql],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"PostgreSQL at {POSTGRES_BASE} refused {sql!r}: {result.stderr.strip()}")


def postgres_url(db_path: Path) -> str:
    """The URL of the database that stands for ``db_path`` (created on first use)."""
    digest = hashlib.sha1(str(Path(db_path).resolve()).encode()).hexdigest()[:24]
    name = f"sundial_t_{digest}"
    if name not in _CREATED_DATABASES:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"CREATE DATABASE {name}")
        _CREATED_DATABASES.add(name)
    return POSTGRES_BASE.rsplit("/", 1)[0] + "/" + name


def storage_args(db_path: Path) -> list[str]:
    """The start-dev flags that keep a server's state at ``db_path`` on the chosen backend."""
    if BACKEND == "postgres":
        return ["--db-url", postgres_url(db_path)]
    return ["--db-filename", str(db_path)]


def storage_toml(db_path: Path) -> str:
    """The configuration file's ``[storage]`` entry for ``db_path`` on the chosen backend."""
    if BACKEND == "postgres":
        return f'url = "{postgres_url(db_path)}"'
    return "path = " + json.dumps(str(db_path))


def pytest_sessionstart(session) -> None:
    if BACKEND == "postgres":
        try:
            _psql("SELECT 1")
        except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as e:
            raise pytest.UsageError(
                f"SUNDIAL_TEST_BACKEND=postgres but PostgreSQL is not usable at {POSTGRES_BASE}: {e}"
            ) from e


def pytest_sessionfinish(session, exitstatus) -> None:
    for name in sorted(_CREATED_DATABASES):
        try:
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass


def pytest_collection_modifyitems(config, items) -> None:
    if BACKEND != "postgres":
        return
    skip = pytest.mark.skip(reason="tests SQLite's own file; runs in the SQLite pass")
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            item.add_marker(skip)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no log file>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


class SundialProcess:
    """One Sundial server process bound to a fixed db file and port.

    ``start``/``restart`` are async because readiness is checked with
    ``Client.connect``.  The same instance can be started again after
    ``stop``/``kill`` and keeps its port, db file and (appended) log file.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        binary: str | os.PathLike | None = None,
        host: str = "127.0.0.1",
        log_level: str = "warn",
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.binary = str(binary or os.environ.get("SUNDIAL_BIN") or DEFAULT_BIN)
        self.db_path = Path(db_path)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = Path(log_path) if log_path else self.db_path.with_suffix(".log")
        self.log_level = log_level
        self.extra_args = list(extra_args or [])
        # Variables added to this process's environment for the server (None: inherit as is).
        self.env = dict(env) if env else None
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary, "server", "start-dev", "--headless",
            "--ip", self.host,
            "--port", str(self.port),
            *storage_args(self.db_path),
            "--log-level", self.log_level,
            # SUNDIAL_SERVER_ARGS: more flags for every server of the run (e.g. a tiny run
            # cache, `--dynamic-config-value history.hostLevelCacheMaxSize=1`).
            *shlex.split(os.environ.get("SUNDIAL_SERVER_ARGS", "")),
            *self.extra_args,
        ]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self.is_running():
            raise RuntimeError(f"server already running (pid {self.proc.pid})")
        if not Path(self.binary).exists():
            raise RuntimeError(
                f"Sundial binary not found at {self.binary}; build it with `cargo build` "
                "or set SUNDIAL_BIN / SUNDIAL_ADDRESS"
            )
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start: {' '.join(self.command())}\n".encode())
            log.flush()
            # own session so that stop/kill reach any child of the binary too
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last_err: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with code {self.proc.returncode} during startup; "
                    f"log tail ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                await asyncio.wait_for(
                    Client.connect(self.address, namespace="default"), timeout=3
                )
                return
            except Exception as err:  # noqa: BLE001 - any failure means "not yet"
                last_err = err
            await asyncio.sleep(0.2)
        self.kill()
        raise RuntimeError(
            f"server at {self.address} not ready after {timeout}s (last error: {last_err!r}); "
            f"log tail ({self.log_path}):\n{self.log_tail()}"
        )

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``grace`` seconds."""
        if not self.is_running():
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        self.proc.wait(10)

    async def restart(self, *, hard: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        if hard:
            self.kill()
        else:
            self.stop()
        await self.start(timeout)


# Processes started during the session, for failure reports.
_MANAGED: list[SundialProcess] = []


@pytest.fixture(scope="session")
def external_address() -> str | None:
    return os.environ.get("SUNDIAL_ADDRESS") or None


@pytest.fixture(scope="session")
async def server_address(external_address, tmp_path_factory) -> str:
    if external_address:
        yield external_address
        return
    workdir = tmp_path_factory.mktemp("sundial")
    server = SundialProcess(workdir / "sundial.db", log_path=workdir / "sundial.log")
    _MANAGED.append(server)
    await server.start()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def client(server_address) -> Client:
    return await Client.connect(server_address, namespace="default")


@pytest.fixture
def sundial_factory(tmp_path) -> Iterator[Callable[..., SundialProcess]]:
    """Create extra managed Sundial processes; all are killed at test end."""
    created: list[SundialProcess] = []

    def make(db_path: Path | None = None, **kwargs) -> SundialProcess:
        db = Path(db_path) if db_path else tmp_path / f"sundial-{len(created)}.db"
        proc = SundialProcess(db, **kwargs)
        created.append(proc)
        _MANAGED.append(proc)
        return proc

    yield make
    for proc in created:
        proc.kill()
        _MANAGED.remove(proc)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4()}"


@pytest.fixture
def new_id() -> Callable[[str], str]:
    """``new_id("wf")`` -> ``"wf-<uuid4>"``; use for workflow ids and task queues."""
    return unique


@pytest.fixture
def task_queue(request) -> str:
    return unique(f"tq-{request.node.name[:40]}")


def event_type_names(history) -> list[str]:
    """Event types of a fetched history without the ``EVENT_TYPE_`` prefix."""
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


@pytest.fixture
def history_types() -> Callable[[WorkflowHandle], "asyncio.Future[list[str]]"]:
    """``await history_types(handle)`` -> e.g. ``["WORKFLOW_EXECUTION_STARTED", ...]``."""

    async def get(handle: WorkflowHandle) -> list[str]:
        return event_type_names(await handle.fetch_history())

    return get


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _MANAGED:
        for proc in _MANAGED:
            report.sections.append(
                (f"sundial log tail {proc.address} ({proc.log_path})", proc.log_tail())
            )
