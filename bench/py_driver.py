#!/usr/bin/env python3
"""Benchmark driver for Temporal-compatible servers, using the official Python SDK.

It connects to ``--address``, runs its own worker in-process and measures the scenarios of
issue 10, printing one JSON line per scenario on stdout:

  throughput_1_activity   N workflows, one activity each, C in flight
  throughput_1_activity_eager  the same, with eager workflow start requested
  throughput_5_activities N workflows, five sequential activities each, C in flight
  latency_1_activity      one workflow at a time, one activity (N in sequence)
  latency_1_activity_eager  the same, with eager workflow start requested
  latency_10_activities   one workflow at a time, ten sequential activities
  fanout_100              one workflow running 100 activities in parallel (repeated)
  signals                 signals per second to one long-running workflow
  updates                 updates per second to one long-running workflow
  timers                  W workflows sleeping on a timer at once; how late the timers fire
  fsync                   fsync/fdatasync calls of the server (strace) over lone workflows

Every line has the throughput, p50/p95/p99 latency and, when ``--server-pid`` is given, the
server's CPU seconds and peak resident memory during the scenario, next to the driver's own
CPU seconds (where the Python SDK is the limit, this shows it).

Two helper commands are used by bench/run.sh:

  py_driver.py startup --address A --log F -- CMD...   start a server, time it to the first
                                                       successful GetSystemInfo, idle RSS
  py_driver.py pgwrap --postgres-url U -- CMD...       run another driver (the Rust one) between
                                                       two PostgreSQL readings (see --postgres-url)

With ``--postgres-url`` (the server's PostgreSQL database) every scenario's line also has that
database's committed transactions, the cluster's WAL syncs, writes and bytes (pg_stat_wal) and
the CPU seconds of the PostgreSQL processes serving the database (client backends, autovacuum
workers) and of the walwriter, checkpointer and background writer (pg_cpu_s is both together),
in total and per workflow (per signal or update in those scenarios). The statistics views are
read after the backends have published them (up to ``--pg-settle`` s of waiting per reading).

Exit status: 0 when every selected scenario succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable, Callable

# ---------------------------------------------------------------------------------------
# /proc sampling of the server process
# ---------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_tree(pid: int) -> list[int]:
    """The process and all its descendants (a dev server may run helpers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float | None:
    """utime + stime of the given processes, in seconds."""
    total, seen = 0.0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        seen = True
    return total if seen else None


def _status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib(pids: list[int]) -> float | None:
    vals = [_status_kib(p, "VmRSS") for p in pids]
    vals = [v for v in vals if v is not None]
    return sum(vals) / 1024.0 if vals else None


class ServerSampler:
    """Samples the server's RSS every 10 ms on a thread; CPU seconds at start and stop.

    The peak is the larger of the polled maximum and the kernel's VmHWM, which is reset at
    the start of the scenario (``/proc/PID/clear_refs`` = 5) when the kernel allows it.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.pids: list[int] = []
        self.peak = 0.0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cpu0: float | None = None
        self.busy0: float | None = None
        self.drv0 = 0.0
        self.t0 = 0.0

    def start(self) -> None:
        if not self.pid:
            return
        self.pids = _proc_tree(self.pid)
        self.hwm_reset = True
        for p in self.pids:
            try:
                with open(f"/proc/{p}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.hwm_reset = False
        self.cpu0 = cpu_seconds(self.pids)
        self.busy0 = machine_busy_seconds()
        self.drv0 = driver_cpu_seconds()
        self.t0 = time.monotonic()
        self.peak = rss_mib(self.pids) or 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            v = rss_mib(self.pids)
            if v is not None and v > self.peak:
                self.peak = v

    def now_rss(self) -> float | None:
        return rss_mib(self.pids) if self.pid else None

    def stop(self) -> dict[str, Any]:
        if not self.pid:
            return {}
        self._stop.set()
        if self._thread:
            self._thread.join()
        peak = self.peak
        if self.hwm_reset:
            hwm = [_status_kib(p, "VmHWM") for p in self.pids]
            hwm_total = sum(v for v in hwm if v is not None) / 1024.0
            peak = max(peak, hwm_total)
        cpu1 = cpu_seconds(self.pids)
        busy1, wall = machine_busy_seconds(), time.monotonic() - self.t0
        other = None
        if busy1 is not None and self.busy0 is not None and cpu1 is not None and self.cpu0 is not None:
            # CPU used by neither the server nor this driver: other load on the machine.
            other = (busy1 - self.busy0) - (cpu1 - self.cpu0) - (driver_cpu_seconds() - self.drv0)
        return {
            "other_cpu_s": _r(max(0.0, other), 2) if other is not None else None,
            "other_cpu_cores": _r(max(0.0, other) / wall, 2) if other is not None and wall > 0 else None,
            "server_cpu_s": _r(cpu1 - self.cpu0) if cpu1 is not None and self.cpu0 is not None else None,
            "server_peak_rss_mb": _r(peak),
            "server_rss_end_mb": _r(rss_mib(self.pids) or 0.0),
            "server_alive": os.path.exists(f"/proc/{self.pid}"),
        }


def machine_busy_seconds() -> float | None:
    """CPU seconds spent by every process on the machine (non-idle, non-iowait jiffies)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def driver_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------------------
# PostgreSQL counters (--postgres-url): transactions, WAL, CPU of the serving processes
# ---------------------------------------------------------------------------------------

# A backend keeps its statistics to itself for a while before it publishes them (PostgreSQL
# 15: at a transaction's end only if its last flush was at least 1 s earlier, otherwise 10 s
# after it went idle at the latest, PGSTAT_IDLE_INTERVAL). pg_stat_database and pg_stat_wal
# are therefore read once every backend of the database has been idle that long.
PG_STATS_IDLE_FLUSH_S = 10.5
PG_BACKGROUND = ("walwriter", "checkpointer", "background writer")


def pg_admin_url(url: str) -> str:
    """The same server, database `postgres`: the sampling sessions must not count as the
    bench database's transactions."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    return urlunsplit((u.scheme, u.netloc, "/postgres", u.query, u.fragment))


def pg_dbname(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path.lstrip("/"))


class PgSampler:
    """Before/after readings of one PostgreSQL database through `psql -X -At -c` (a handful of
    psql processes per scenario, nothing polled while it runs).

    * transactions: pg_stat_database.xact_commit of the bench database;
    * WAL: pg_stat_wal wal_sync, wal_write, wal_bytes (cluster-wide);
    * CPU: utime+stime from /proc/PID/stat of the processes pg_stat_activity lists for the
      database (its client backends, autovacuum workers) and, separately, of the walwriter,
      checkpointer and background writer; a process that exits between the two readings is
      missed, one that appears counts in full.
    Also two figures that need no waiting: xids assigned (write transactions, cluster-wide)
    and the WAL insert position's advance in bytes.
    """

    def __init__(self, url: str, settle_s: float) -> None:
        self.url = pg_admin_url(url)
        self.db = pg_dbname(url)
        self.settle_s = settle_s
        self.before: dict[str, Any] | None = None
        self.before_settled = False
        self.cpu0: dict[int, tuple[str, float]] = {}

    async def _psql(self, sql: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "psql", "-X", "-At", "-d", self.url, "-c", sql,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"psql: {err.decode(errors='replace').strip()}")
        return out.decode().strip()

    def _q(self) -> str:
        return "'" + self.db.replace("'", "''") + "'"

    async def _read(self) -> dict[str, Any]:
        """One reading in one psql process: the counters, the server's clock and every process
        of the database (and the background writers) with its state and CPU seconds."""
        q = self._q()
        bg = ",".join(f"'{t}'" for t in PG_BACKGROUND)
        out = await self._psql(
            "select 'c|' || extract(epoch from now()) || '|'"
            f" || coalesce((select xact_commit from pg_stat_database where datname = {q}), 0)"
            " || '|' || w.wal_sync || '|' || w.wal_write || '|' || w.wal_bytes"
            " || '|' || (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)"
            " || '|' || pg_snapshot_xmax(pg_current_snapshot())::text from pg_stat_wal w"
            " union all select 'p|' || pid || '|' || backend_type || '|' || coalesce(state, '')"
            " || '|' || coalesce(extract(epoch from state_change)::text, '0')"
            f" from pg_stat_activity where datname = {q} or backend_type in ({bg})"
        )
        r: dict[str, Any] = {"procs": []}
        for row in out.splitlines():
            f = row.split("|")
            if f[0] == "c":
                r.update(
                    now=float(f[1]), xacts=int(f[2]), wal_sync=int(f[3]), wal_write=int(f[4]),
                    wal_bytes=float(f[5]), lsn=float(f[6]), xid=int(f[7]),
                )
            elif f[0] == "p":
                r["procs"].append((int(f[1]), f[2], f[3], float(f[4])))
        r["cpu"] = {}
        for pid, kind, _, _ in r["procs"]:
            cpu = cpu_seconds([pid])
            if cpu is not None:
                r["cpu"][pid] = (kind, cpu)
        return r

    async def _settled(self, first: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        """Reads again (at most settle_s) until every client backend of the database has
        published what it had done by the first reading (time t): it has been idle for
        PG_STATS_IDLE_FLUSH_S, or it finished a command after t + 1 s (which publishes unless
        it published less than 1 s earlier, i.e. after t). Returns the last reading, the wait
        and whether every backend got there."""
        t0 = time.monotonic()
        t_ref, r = first["now"], first
        while True:
            waits = []
            for _, kind, state, changed in r["procs"]:
                if kind != "client backend":
                    continue
                idle = r["now"] - changed
                if state == "idle" and (idle >= PG_STATS_IDLE_FLUSH_S or changed >= t_ref + 1.2):
                    continue
                waits.append(PG_STATS_IDLE_FLUSH_S - idle if state == "idle" else 1.0)
            left = self.settle_s - (time.monotonic() - t0)
            if not waits:
                return r, time.monotonic() - t0, True
            if left <= 0:
                return r, time.monotonic() - t0, False
            # Read again at least every second: a busy backend publishes on its next command.
            await asyncio.sleep(max(0.05, min(max(waits), 1.0, left)))
            r = await self._read()

    async def begin(self) -> None:
        r, _, settled = await self._settled(await self._read())
        self.before, self.before_settled = r, settled
        self.cpu0 = r["cpu"]

    async def end(self, per: int | None) -> dict[str, Any]:
        if self.before is None:
            return {}
        first = await self._read()
        cpu1 = first["cpu"]
        after, waited, settled = await self._settled(first)
        b, self.before = self.before, None
        backend_cpu = bg_cpu = 0.0
        for pid, (kind, c1) in cpu1.items():
            c0 = self.cpu0.get(pid)
            d = c1 - c0[1] if c0 and c0[0] == kind else c1
            if kind in PG_BACKGROUND:
                bg_cpu += d
            else:
                backend_cpu += d
        xacts = after["xacts"] - b["xacts"]
        syncs = after["wal_sync"] - b["wal_sync"]
        wal_bytes = after["wal_bytes"] - b["wal_bytes"]
        cpu = backend_cpu + bg_cpu
        n = per if per else None
        return {
            "pg_xacts": xacts,
            "pg_xacts_per_workflow": _r(xacts / n, 2) if n else None,
            "pg_wal_syncs": syncs,
            "pg_wal_syncs_per_workflow": _r(syncs / n, 2) if n else None,
            "pg_wal_writes": after["wal_write"] - b["wal_write"],
            "pg_wal_bytes": int(wal_bytes),
            "pg_wal_bytes_per_workflow": _r(wal_bytes / n, 0) if n else None,
            "pg_wal_insert_bytes": int(after["lsn"] - b["lsn"]),
            "pg_xids": after["xid"] - b["xid"],
            "pg_xids_per_workflow": _r((after["xid"] - b["xid"]) / n, 2) if n else None,
            "pg_backend_cpu_s": _r(backend_cpu),
            "pg_background_cpu_s": _r(bg_cpu),
            "pg_cpu_s": _r(cpu),
            "pg_cpu_ms_per_workflow": _r(cpu * 1000.0 / n, 3) if n else None,
            "pg_per": n,
            "pg_settle_wait_s": _r(waited, 1),
            "pg_settled": settled and self.before_settled,
        }


def _r(x: float | None, nd: int = 3) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(x, nd)


def percentile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    rank = max(1, math.ceil(q * len(sorted_vals)))
    return sorted_vals[min(rank, len(sorted_vals)) - 1]


def latency_stats(ms: list[float], prefix: str = "") -> dict[str, Any]:
    s = sorted(ms)
    return {
        f"{prefix}mean_ms": _r(sum(s) / len(s)) if s else None,
        f"{prefix}p50_ms": _r(percentile(s, 0.50)),
        f"{prefix}p95_ms": _r(percentile(s, 0.95)),
        f"{prefix}p99_ms": _r(percentile(s, 0.99)),
        f"{prefix}max_ms": _r(s[-1]) if s else None,
    }


# ---------------------------------------------------------------------------------------
# startup: process start to the first successful GetSystemInfo
# ---------------------------------------------------------------------------------------


def cmd_startup(args: argparse.Namespace) -> int:
    import grpc
    from temporalio.api.workflowservice.v1 import request_response_pb2 as rr

    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        print("startup: no server command given", file=sys.stderr)
        return 2
    method = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo"
    log = open(args.log, "ab") if args.log else subprocess.DEVNULL
    t0 = time.monotonic()
    # Own session, so the caller can stop the server (and anything it spawns) by its pid.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    ready_ms = None
    last_err = ""
    deadline = t0 + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last_err = f"server exited with status {proc.returncode}"
            break
        # A fresh channel per attempt: a channel that failed to connect waits out a
        # reconnect backoff of its own, which would blur the measurement.
        ch = grpc.insecure_channel(args.address)
        try:
            call = ch.unary_unary(
                method,
                request_serializer=rr.GetSystemInfoRequest.SerializeToString,
                response_deserializer=rr.GetSystemInfoResponse.FromString,
            )
            call(rr.GetSystemInfoRequest(), timeout=2.0)
            ready_ms = (time.monotonic() - t0) * 1000.0
            break
        except grpc.RpcError as e:  # not listening yet, or not serving yet
            last_err = f"{e.code()}: {e.details()}"
            time.sleep(0.002)
        finally:
            ch.close()
    out: dict[str, Any] = {"scenario": args.label, "pid": proc.pid, "ok": ready_ms is not None}
    if ready_ms is None:
        out["error"] = last_err or "timed out"
        print(json.dumps(out), flush=True)
        return 1
    out["ready_ms"] = _r(ready_ms, 1)
    out["rss_at_ready_mb"] = _r(rss_mib(_proc_tree(proc.pid)))
    time.sleep(args.idle_wait)
    out["idle_rss_mb"] = _r(rss_mib(_proc_tree(proc.pid)))
    out["idle_wait_s"] = args.idle_wait
    print(json.dumps(out), flush=True)
    return 0


def cmd_pgwrap(args: argparse.Namespace) -> int:
    """Runs another driver (the Rust one) between two PostgreSQL readings and adds them to
    each JSON line it prints. Its warm-up workflows fall inside the window, so they are
    counted in the per-workflow divisor (``--warmup-workflows``)."""
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        print("pgwrap: no command given", file=sys.stderr)
        return 2
    pg = PgSampler(args.postgres_url, args.pg_settle)
    pg_error = None
    try:
        asyncio.run(pg.begin())
    except Exception as e:  # noqa: BLE001
        pg_error = f"PostgreSQL counters: {type(e).__name__}: {e}"
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.splitlines()
    parsed = []
    for line in lines:
        try:
            d = json.loads(line) if line.strip().startswith("{") else None
        except json.JSONDecodeError:
            d = None
        parsed.append(d)
    done = sum((d.get("completed") or 0) for d in parsed if isinstance(d, dict) and d.get("scenario"))
    stats: dict[str, Any] = {}
    if pg_error is None:
        try:
            stats = asyncio.run(pg.end(done + args.warmup_workflows if done else None))
        except Exception as e:  # noqa: BLE001
            pg_error = f"PostgreSQL counters: {type(e).__name__}: {e}"
    rc = proc.returncode
    for line, d in zip(lines, parsed):
        if isinstance(d, dict) and d.get("scenario"):
            d.update(stats)
            d["pg_warmup_workflows_counted"] = args.warmup_workflows
            if pg_error:
                d["ok"] = False
                d["error"] = (d.get("error") or "") + pg_error
                rc = rc or 1
            line = json.dumps(d)
        print(line, flush=True)
    return rc


# ---------------------------------------------------------------------------------------
# Workflows and activities
# ---------------------------------------------------------------------------------------


from temporalio import activity, workflow  # noqa: E402

_ACT_OPTS = dict(start_to_close_timeout=timedelta(seconds=60))


@activity.defn(name="bench_echo")
async def echo(x: int) -> int:
    """Returns its input: an activity's cost is the server round trip only."""
    return x


@workflow.defn(name="BenchSequential")
class Sequential:
    """Runs `count` activities one after the other; returns the sum of their results."""

    @workflow.run
    async def run(self, count: int) -> int:
        total = 0
        for i in range(count):
            total += await workflow.execute_activity(echo, i, **_ACT_OPTS)
        return total


@workflow.defn(name="BenchFanOut")
class FanOut:
    """Runs `count` activities at once."""

    @workflow.run
    async def run(self, count: int) -> int:
        results = await asyncio.gather(*(workflow.execute_activity(echo, i, **_ACT_OPTS) for i in range(count)))
        return sum(results)


@workflow.defn(name="BenchMailbox")
class Mailbox:
    """Long-running target for signals and updates; closes on the `finish` signal."""

    def __init__(self) -> None:
        self.signals = 0
        self.updates = 0
        self.done = False

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: self.done)
        return [self.signals, self.updates]

    @workflow.signal(name="bump")
    def bump(self, n: int) -> None:
        self.signals += 1

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.done = True

    @workflow.update(name="incr")
    def incr(self, n: int) -> int:
        self.updates += 1
        return self.updates


@workflow.defn(name="BenchSleeper")
class Sleeper:
    """Sleeps on one timer; returns workflow time before and after it."""

    @workflow.run
    async def run(self, seconds: float) -> list[float]:
        armed = workflow.now().timestamp()
        await workflow.sleep(seconds)
        return [armed, workflow.now().timestamp()]


WORKFLOWS = {"echo": echo, "Sequential": Sequential, "FanOut": FanOut, "Mailbox": Mailbox, "Sleeper": Sleeper}


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------


@dataclass
class Ctx:
    client: Any
    task_queue: str
    args: argparse.Namespace
    wf: dict
    sampler: ServerSampler
    pg: PgSampler | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    counter: int = 0

    def wid(self, prefix: str) -> str:
        self.counter += 1
        return f"bench-{prefix}-{self.run_id}-{self.counter}"


async def _start(ctx: Ctx, wf_run, arg, prefix: str, eager: bool | None = None):
    """Starts a workflow; `eager` overrides --eager-start (off by default, as in the SDKs)."""
    return await ctx.client.start_workflow(
        wf_run,
        arg,
        id=ctx.wid(prefix),
        task_queue=ctx.task_queue,
        request_eager_start=ctx.args.eager_start if eager is None else eager,
    )


async def _one(ctx: Ctx, wf_run, arg, prefix: str, expected=None, eager: bool | None = None) -> float:
    t0 = time.perf_counter()
    handle = await _start(ctx, wf_run, arg, prefix, eager)
    result = await handle.result()
    ms = (time.perf_counter() - t0) * 1000.0
    if expected is not None and result != expected:
        raise RuntimeError(f"workflow {handle.id} returned {result!r}, expected {expected!r}")
    return ms


async def _many(
    ctx: Ctx, n: int, concurrency: int, wf_run, arg, prefix: str, expected, eager: bool | None = None
) -> tuple[list[float], list[str]]:
    sem = asyncio.Semaphore(max(1, concurrency))
    lat: list[float] = []
    errors: list[str] = []

    async def task() -> None:
        async with sem:
            try:
                lat.append(await _one(ctx, wf_run, arg, prefix, expected, eager))
            except Exception as e:  # noqa: BLE001 - reported in the JSON line
                errors.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(task() for _ in range(n)))
    return lat, errors


async def start_sampling(ctx: Ctx) -> None:
    """The measured window of a scenario that sets something up first starts here."""
    if ctx.pg:
        await ctx.pg.begin()
    ctx.sampler.start()


def _seq_expected(k: int) -> int:
    return k * (k - 1) // 2


def _eager(ctx: Ctx, eager: bool | None) -> bool:
    return ctx.args.eager_start if eager is None else eager


async def sc_throughput(ctx: Ctx, activities: int, n: int, eager: bool | None = None) -> dict:
    c = ctx.args.concurrency
    t0 = time.perf_counter()
    lat, errors = await _many(
        ctx, n, c, ctx.wf["Sequential"].run, activities, f"tp{activities}", _seq_expected(activities), eager
    )
    wall = time.perf_counter() - t0
    return {
        "n": n,
        "eager_start": _eager(ctx, eager),
        "concurrency": c,
        "activities_per_workflow": activities,
        "completed": len(lat),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(wall),
        "throughput_per_s": _r(len(lat) / wall),
        "unit": "workflows/s",
        **latency_stats(lat),
        "ok": not errors,
    }


async def sc_latency(ctx: Ctx, activities: int, n: int, eager: bool | None = None) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            lat.append(
                await _one(
                    ctx, ctx.wf["Sequential"].run, activities, f"lat{activities}", _seq_expected(activities), eager
                )
            )
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
    wall = time.perf_counter() - t0
    return {
        "n": n,
        "eager_start": _eager(ctx, eager),
        "concurrency": 1,
        "activities_per_workflow": activities,
        "completed": len(lat),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(wall),
        "throughput_per_s": _r(len(lat) / wall),
        "unit": "workflows/s",
        **latency_stats(lat),
        "ok": not errors,
    }


async def sc_fanout(ctx: Ctx, width: int, repeats: int) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    for _ in range(repeats):
        try:
            lat.append(await _one(ctx, ctx.wf["FanOut"].run, width, "fan", _seq_expected(width)))
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
    wall = time.perf_counter() - t0
    return {
        "n": repeats,
        "fanout": width,
        "completed": len(lat),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(wall),
        "throughput_per_s": _r(len(lat) * width / wall),
        "unit": "activities/s",
        **latency_stats(lat),
        "ok": not errors,
    }


async def _timed_ops(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> tuple[list[float], list[str], float]:
    sem = asyncio.Semaphore(max(1, concurrency))
    lat: list[float] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            try:
                await op(i)
                lat.append((time.perf_counter() - t) * 1000.0)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return lat, errors, time.perf_counter() - t0


async def _mailbox(ctx: Ctx, prefix: str):
    handle = await ctx.client.start_workflow(
        ctx.wf["Mailbox"].run,
        id=ctx.wid(prefix),
        task_queue=ctx.task_queue,
        request_eager_start=ctx.args.eager_start,
    )
    return handle


async def sc_signals(ctx: Ctx, n: int, concurrency: int) -> dict:
    # Not measured: the workflow is started and has run its first task before the clock starts.
    handle = await _mailbox(ctx, "sig")
    await handle.execute_update("incr", 0)
    await start_sampling(ctx)
    cpu0 = driver_cpu_seconds()
    lat, errors, wall = await _timed_ops(n, concurrency, lambda i: handle.signal("bump", i))
    t_sent = time.perf_counter()
    await handle.signal("finish")
    result = await asyncio.wait_for(handle.result(), ctx.args.scenario_timeout)
    drained = time.perf_counter() - t_sent + wall
    out = {
        "n": n,
        "concurrency": concurrency,
        "completed": len(lat),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(wall),
        "throughput_per_s": _r(len(lat) / wall),
        "unit": "signals/s",
        "all_processed_s": _r(drained),
        "signals_seen_by_workflow": result[0],
        **latency_stats(lat),
        "driver_cpu_s": _r(driver_cpu_seconds() - cpu0),
    }
    out["ok"] = not errors and result[0] == n
    if result[0] != n:
        out["error"] = f"workflow saw {result[0]} signals, {n} were acknowledged"
    return out


async def sc_updates(ctx: Ctx, n: int, concurrency: int) -> dict:
    handle = await _mailbox(ctx, "upd")
    await handle.execute_update("incr", 0)
    await start_sampling(ctx)
    cpu0 = driver_cpu_seconds()
    lat, errors, wall = await _timed_ops(n, concurrency, lambda i: handle.execute_update("incr", i, result_type=int))
    await handle.signal("finish")
    result = await asyncio.wait_for(handle.result(), ctx.args.scenario_timeout)
    out = {
        "n": n,
        "concurrency": concurrency,
        "completed": len(lat),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(wall),
        "throughput_per_s": _r(len(lat) / wall),
        "unit": "updates/s",
        "updates_seen_by_workflow": result[1] - 1,
        **latency_stats(lat),
        "driver_cpu_s": _r(driver_cpu_seconds() - cpu0),
    }
    out["ok"] = not errors and result[1] - 1 == n
    if result[1] - 1 != n:
        out["error"] = f"workflow saw {result[1] - 1} updates, {n} completed"
    return out


async def sc_timers(ctx: Ctx, w: int) -> dict:
    """W workflows each sleep on one timer; all are asleep at once.

    Every workflow sleeps the same duration D, chosen longer than the time it takes to
    start all W (measured on a probe batch first unless --timer-sleep is given), so the
    last one is armed before the first fires and the fires come at the rate the starts
    came. Fire delay is measured two ways:
      * server: TimerFired event time - (TimerStarted event time + D), from the histories
        of a sample of the workflows;
      * workflow: workflow.now() after the sleep - (workflow.now() before it + D); this
        also counts the workflow task that carries the fire to the worker.
    """
    a = ctx.args
    sleeper = ctx.wf["Sleeper"].run
    start_sem = asyncio.Semaphore(a.start_concurrency)

    async def start_one(d: float, prefix: str):
        async with start_sem:
            return await _start(ctx, sleeper, d, prefix)

    d = a.timer_sleep
    probe_rate = None
    if d is None:
        # Probe: how fast do sleepers get started *and armed* (the worker's first task
        # completes)? Their full run (two workflow tasks around a 1 s timer) gives a
        # conservative rate; D is then set so the last of W is armed before the first fires.
        probe_n = min(max(20, w // 20), 500)
        t = time.perf_counter()
        probe = await asyncio.gather(*(start_one(1.0, "tprobe") for _ in range(probe_n)))
        await asyncio.gather(*(h.result() for h in probe))
        probe_rate = probe_n / max(0.05, time.perf_counter() - t - 1.0)
        d = max(a.timer_min_sleep, 1.5 * w / probe_rate + 2.0)
    await start_sampling(ctx)
    cpu0 = driver_cpu_seconds()
    t_first = time.perf_counter()
    handles = await asyncio.gather(*(start_one(d, "timer") for _ in range(w)), return_exceptions=True)
    t_last = time.perf_counter()
    start_errors = [f"{type(h).__name__}: {h}" for h in handles if isinstance(h, BaseException)]
    handles = [h for h in handles if not isinstance(h, BaseException)]
    # Wait until the last ones are armed (their first workflow task completed: TimerStarted
    # in history), then sample memory with every timer pending.
    await _wait_armed(handles[-20:], deadline=t_first + d + 60.0)
    t_armed = time.perf_counter()
    rss_all_sleeping = ctx.sampler.now_rss()
    all_armed_before_first_fire = t_armed < t_first + d

    res_sem = asyncio.Semaphore(a.result_concurrency)
    delays: list[float] = []
    errors: list[str] = list(start_errors)

    async def wait_one(h) -> None:
        async with res_sem:
            try:
                armed, fired = await h.result()
                delays.append((fired - armed - d) * 1000.0)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(wait_one(h) for h in handles))
    t_done = time.perf_counter()
    driver_cpu = driver_cpu_seconds() - cpu0

    # Server-side lateness from history timestamps on an evenly spread sample.
    from temporalio.api.enums.v1 import EventType

    sample = handles[:: max(1, len(handles) // a.history_sample)][: a.history_sample]
    server_delays: list[float] = []
    hist_sem = asyncio.Semaphore(20)

    async def hist(h) -> None:
        async with hist_sem:
            started = fired = None
            timeout = d
            async for ev in h.fetch_history_events():
                if ev.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                    started = ev.event_time.ToNanoseconds() / 1e9
                    timeout = ev.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
                elif ev.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
                    fired = ev.event_time.ToNanoseconds() / 1e9
            if started is not None and fired is not None:
                server_delays.append((fired - started - timeout) * 1000.0)

    try:
        await asyncio.gather(*(hist(h) for h in sample))
    except Exception as e:  # noqa: BLE001
        errors.append(f"history: {type(e).__name__}: {e}")

    out = {
        "n": w,
        "timer_s": _r(d, 2),
        "probe_start_rate_per_s": _r(probe_rate, 1),
        "start_phase_s": _r(t_last - t_first),
        "start_rate_per_s": _r(w / (t_last - t_first)),
        "armed_all_s": _r(t_armed - t_first),
        "all_armed_before_first_fire": all_armed_before_first_fire,
        "completed": len(delays),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(t_done - t_first),
        "throughput_per_s": _r(len(delays) / (t_done - t_first)),
        "unit": "timer workflows/s",
        **latency_stats(delays, "wf_fire_delay_"),
        **latency_stats(server_delays, "server_fire_delay_"),
        "server_delay_sample": len(server_delays),
        "server_rss_all_sleeping_mb": _r(rss_all_sleeping),
        "driver_cpu_s": _r(driver_cpu),
        "ok": not errors and len(delays) == w,
    }
    # The headline latency figures of this scenario are the workflow-observed fire delays.
    out["p50_ms"], out["p95_ms"], out["p99_ms"] = out["wf_fire_delay_p50_ms"], out["wf_fire_delay_p95_ms"], out["wf_fire_delay_p99_ms"]
    out["mean_ms"] = out["wf_fire_delay_mean_ms"]
    return out


async def _armed(h) -> bool:
    from temporalio.api.enums.v1 import EventType

    async for e in h.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            return True
    return False


async def _wait_armed(handles: list, deadline: float) -> int:
    """Polls until every handle's timer is armed or the deadline passes; returns how many are."""
    armed = 0
    while True:
        armed = sum(await asyncio.gather(*(_armed(h) for h in handles)))
        if armed == len(handles) or time.perf_counter() > deadline:
            return armed
        await asyncio.sleep(0.2)


async def sc_fsync(ctx: Ctx, n: int) -> dict:
    """fsync/fdatasync calls of the server while n lone one-activity workflows run."""
    pid = ctx.args.server_pid
    if not pid:
        return {"skipped": True, "reason": "no --server-pid", "ok": True}
    out_file = f"/tmp/bench-strace-{os.getpid()}-{ctx.run_id}.txt"
    try:
        proc = await asyncio.create_subprocess_exec(
            "strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out_file, "-p", str(pid),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        return {"skipped": True, "reason": f"strace not runnable: {e}", "ok": True}
    attached = False
    stderr_lines: list[str] = []

    async def read_until_attached() -> None:
        nonlocal attached
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            text = line.decode(errors="replace").strip()
            stderr_lines.append(text)
            if "attached" in text:
                attached = True
                return

    try:
        await asyncio.wait_for(read_until_attached(), 10)
    except asyncio.TimeoutError:
        pass
    if not attached:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        return {"skipped": True, "reason": "strace could not attach: " + " | ".join(stderr_lines[-3:]), "ok": True}
    drain = asyncio.ensure_future(proc.stderr.read())
    await asyncio.sleep(0.5)  # every thread attached
    lat, errors = [], []
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            lat.append(await _one(ctx, ctx.wf["Sequential"].run, 1, "fsync", 0))
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
    wall = time.perf_counter() - t0
    proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
    await drain
    calls = {"fsync": 0, "fdatasync": 0}
    secs = 0.0
    try:
        with open(out_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[-1] in calls:
                    calls[parts[-1]] = int(parts[3])
                    secs += float(parts[1])
        os.unlink(out_file)
    except (OSError, ValueError) as e:
        return {"skipped": True, "reason": f"no strace summary: {e}", "ok": True}
    total = calls["fsync"] + calls["fdatasync"]
    return {
        "n": n,
        "fsync_calls": calls["fsync"],
        "fdatasync_calls": calls["fdatasync"],
        "syncs_total": total,
        "syncs_per_workflow": _r(total / max(1, n), 2),
        "sync_seconds_in_syscall": _r(secs, 4),
        "sync_us_per_call": _r(secs * 1e6 / total, 0) if total else None,
        "completed": len(lat),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": _r(wall),
        "note": "server under strace: latencies here are not representative",
        **latency_stats(lat),
        "ok": not errors,
    }


SCENARIOS = [
    "throughput_1_activity",
    "throughput_1_activity_eager",
    "throughput_5_activities",
    "latency_1_activity",
    "latency_1_activity_eager",
    "latency_10_activities",
    "fanout_100",
    "signals",
    "updates",
    "timers",
    "fsync",
]


def scenario_coro(name: str, ctx: Ctx):
    a = ctx.args
    return {
        "throughput_1_activity": lambda: sc_throughput(ctx, 1, a.n),
        "throughput_1_activity_eager": lambda: sc_throughput(ctx, 1, a.n, eager=True),
        "throughput_5_activities": lambda: sc_throughput(ctx, 5, a.n5),
        "latency_1_activity": lambda: sc_latency(ctx, 1, a.lat_n),
        "latency_1_activity_eager": lambda: sc_latency(ctx, 1, a.lat_n, eager=True),
        "latency_10_activities": lambda: sc_latency(ctx, 10, a.lat10_n),
        "fanout_100": lambda: sc_fanout(ctx, a.fanout, a.fanout_repeats),
        "signals": lambda: sc_signals(ctx, a.signals, a.op_concurrency),
        "updates": lambda: sc_updates(ctx, a.updates, a.op_concurrency),
        "timers": lambda: sc_timers(ctx, a.timers),
        "fsync": lambda: sc_fsync(ctx, a.fsync_n),
    }[name]()


# Scenarios that start the sampler themselves (after an unmeasured set-up step).
SELF_SAMPLED = {"signals", "updates", "timers"}


async def run_scenarios(args: argparse.Namespace) -> int:
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    wf = WORKFLOWS
    client = await Client.connect(args.address, namespace=args.namespace, identity=f"sundial-bench-py-{os.getpid()}")
    task_queue = f"bench-py-{uuid.uuid4().hex[:12]}"
    worker_kwargs: dict[str, Any] = dict(
        task_queue=task_queue,
        workflows=[wf["Sequential"], wf["FanOut"], wf["Mailbox"], wf["Sleeper"]],
        activities=[wf["echo"]],
        max_cached_workflows=args.max_cached_workflows,
    )
    if not args.sandbox:
        worker_kwargs["workflow_runner"] = UnsandboxedWorkflowRunner()
    if args.max_concurrent_activities:
        worker_kwargs["max_concurrent_activities"] = args.max_concurrent_activities
    sampler = ServerSampler(args.server_pid)
    pg = PgSampler(args.postgres_url, args.pg_settle) if args.postgres_url else None
    ctx = Ctx(client=client, task_queue=task_queue, args=args, wf=wf, sampler=sampler, pg=pg)
    names = SCENARIOS if args.scenarios == "all" else [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {unknown}; known: {SCENARIOS}", file=sys.stderr)
        return 2
    failures = 0
    async with Worker(client, **worker_kwargs):
        if args.warmup:
            lat, errors = await _many(ctx, args.warmup, min(10, args.warmup), wf["Sequential"].run, 1, "warm", 0)
            if errors:
                print(json.dumps({"scenario": "warmup", "ok": False, "error": errors[0]}), flush=True)
                return 1
        for name in names:
            label = args.label_prefix + name
            pg_error = None
            if name not in SELF_SAMPLED:
                if ctx.pg:
                    try:
                        await ctx.pg.begin()
                    except Exception as e:  # noqa: BLE001
                        pg_error = f"PostgreSQL counters: {type(e).__name__}: {e}"
                if name != "fsync":
                    sampler.start()
            cpu0 = driver_cpu_seconds()
            t0 = time.perf_counter()
            try:
                res = await asyncio.wait_for(scenario_coro(name, ctx), args.scenario_timeout)
            except asyncio.TimeoutError:
                res = {"ok": False, "error": f"scenario timed out after {args.scenario_timeout} s"}
            except Exception as e:  # noqa: BLE001
                res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            elapsed = time.perf_counter() - t0
            server = sampler.stop() if name != "fsync" else {}
            pg: dict[str, Any] = {}
            if ctx.pg:
                try:
                    pg = await ctx.pg.end(res.get("completed", res.get("started")))
                except Exception as e:  # noqa: BLE001
                    pg_error = pg_error or f"PostgreSQL counters: {type(e).__name__}: {e}"
                    ctx.pg.before = None
            line = {"scenario": label, "driver": "python", **res}
            line.setdefault("driver_cpu_s", _r(driver_cpu_seconds() - cpu0))
            line["scenario_s"] = _r(elapsed)
            line.update(server)
            line.update(pg)
            other, pg_cpu = server.get("other_cpu_s"), pg.get("pg_cpu_s")
            if other is not None and pg_cpu is not None:
                # PostgreSQL's processes are measured on their own: not "other load".
                rest = max(0.0, other - pg_cpu)
                if server.get("other_cpu_cores") is not None and other > 0:
                    line["other_cpu_cores"] = _r(server["other_cpu_cores"] * rest / other, 2)
                line["other_cpu_s"] = _r(rest, 2)
            if pg_error:
                line["ok"] = False
                line["error"] = (line.get("error") or "") + pg_error
            if server and not server.get("server_alive", True):
                line["ok"] = False
                line["error"] = (line.get("error") or "") + " server process is gone"
            if not line.get("ok"):
                failures += 1
            print(json.dumps(line), flush=True)
            if server and not server.get("server_alive", True):
                break
    return 1 if failures else 0


def apply_smoke(args: argparse.Namespace) -> None:
    """Tiny sizes: every scenario runs, the whole run takes a few seconds."""
    args.n, args.n5, args.concurrency = 20, 10, 10
    args.lat_n, args.lat10_n = 5, 2
    args.fanout, args.fanout_repeats = 20, 1
    args.signals, args.updates, args.op_concurrency = 20, 10, 5
    args.timers = 20
    if args.timer_sleep is None:
        args.timer_sleep = 1.0
    args.history_sample = 10
    args.fsync_n = 3
    args.warmup = 2
    args.scenario_timeout = min(args.scenario_timeout, 30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")

    st = sub.add_parser("startup", help="start a server; time it to the first GetSystemInfo")
    st.add_argument("--address", required=True)
    st.add_argument("--log", default=None, help="file for the server's stdout/stderr")
    st.add_argument("--timeout", type=float, default=60.0)
    st.add_argument("--idle-wait", type=float, default=2.0, help="seconds idle before reading RSS")
    st.add_argument("--label", default="startup", help="scenario name in the JSON line")
    st.add_argument("cmd", nargs=argparse.REMAINDER)

    pw = sub.add_parser("pgwrap", help="run another driver between two PostgreSQL readings")
    pw.add_argument("--postgres-url", required=True)
    pw.add_argument("--pg-settle", type=float, default=12.0)
    pw.add_argument("--warmup-workflows", type=int, default=0, help="workflows the wrapped driver runs before its own window")
    pw.add_argument("cmd", nargs=argparse.REMAINDER)

    p.add_argument("--address", default="127.0.0.1:7233")
    p.add_argument("--namespace", default="default")
    p.add_argument("--scenarios", default="all", help=f"comma-separated, or 'all': {','.join(SCENARIOS)}")
    p.add_argument("--server-pid", type=int, default=None, help="server PID for CPU/RSS sampling and strace")
    p.add_argument("--label-prefix", default="")
    p.add_argument("-n", "--n", type=int, default=500, help="workflows for throughput_1_activity")
    p.add_argument("--n5", type=int, default=200, help="workflows for throughput_5_activities")
    p.add_argument("-c", "--concurrency", type=int, default=100, help="workflows in flight (throughput)")
    p.add_argument("--lat-n", type=int, default=100, help="sequential workflows for latency_1_activity")
    p.add_argument("--lat10-n", type=int, default=20, help="sequential workflows for latency_10_activities")
    p.add_argument("--fanout", type=int, default=100, help="parallel activities in the fan-out workflow")
    p.add_argument("--fanout-repeats", type=int, default=5)
    p.add_argument("--signals", type=int, default=1000)
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--op-concurrency", type=int, default=20, help="signals/updates in flight")
    p.add_argument("--timers", type=int, default=10000, help="workflows sleeping at once (up to 100000)")
    p.add_argument("--timer-sleep", type=float, default=None, help="timer duration in s (default: from a probe)")
    p.add_argument("--timer-min-sleep", type=float, default=5.0)
    p.add_argument("--start-concurrency", type=int, default=200, help="starts in flight (timers)")
    p.add_argument("--result-concurrency", type=int, default=200, help="result waits in flight (timers)")
    p.add_argument("--history-sample", type=int, default=200, help="histories read for server fire delay")
    p.add_argument("--fsync-n", type=int, default=20)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--scenario-timeout", type=float, default=900.0)
    p.add_argument("--max-cached-workflows", type=int, default=1000)
    p.add_argument("--max-concurrent-activities", type=int, default=0)
    # Off by default, as in the SDKs (request_eager_start / enable_eager_workflow_start);
    # the *_eager scenarios request it whatever this says.
    p.add_argument("--eager-start", dest="eager_start", action="store_true", default=False)
    p.add_argument("--no-eager-start", dest="eager_start", action="store_false")
    p.add_argument("--sandbox", action="store_true", help="use the SDK's workflow sandbox (slower driver)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for every scenario")
    p.add_argument("--postgres-url", default=None,
                   help="the server's PostgreSQL database: its transactions, WAL and CPU around each scenario")
    p.add_argument("--pg-settle", type=float, default=12.0,
                   help="seconds at most to wait for PostgreSQL's statistics to be published before a reading")
    args = p.parse_args()
    if args.command == "startup":
        return cmd_startup(args)
    if args.command == "pgwrap":
        return cmd_pgwrap(args)
    if args.smoke:
        apply_smoke(args)
    return asyncio.run(run_scenarios(args))


if __name__ == "__main__":
    rc = main()
    # Leave without interpreter finalization: the SDK's native threads can abort it
    # ("PyGILState_Release ... finalizing"), which would turn a good run into a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
