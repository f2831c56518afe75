#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the JSON lines bench/run.sh collected for the servers.

    report.py --sundial S.jsonl --temporal T.jsonl [--sundial-pg P.jsonl --postgres-desc "..."] \
              --out docs/benchmarks.md --command "bench/run.sh ..." [--temporal-bin PATH] [--sizes "..."]

S: Sundial on SQLite, P: the same binary on PostgreSQL, T: Temporal's dev server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def load(path: str) -> dict[str, dict]:
    """Scenario name -> its JSON line. A scenario run several times (the Rust driver's) is
    represented by its median run by throughput, except that its throughput is the one over all
    runs (workflows completed ÷ wall seconds, summed over the runs); ``repeat_throughputs``
    lists every run's own."""
    runs: dict[str, list[dict]] = {}
    if not path or not os.path.exists(path):
        return {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        name = d.get("scenario")
        if name:
            if d.get("driver") == "rust":
                name = "rust:" + name
            runs.setdefault(name, []).append(d)
    out: dict[str, dict] = {}
    for name, ds in runs.items():
        if len(ds) == 1 or not all(d.get("ok") and d.get("throughput_per_s") for d in ds):
            out[name] = ds[-1]
            continue
        ds = sorted(ds, key=lambda d: d["throughput_per_s"])
        median = dict(ds[(len(ds) - 1) // 2])
        median["repeat_throughputs"] = [d["throughput_per_s"] for d in ds]
        if all(d.get("wall_s") for d in ds):
            completed = sum(d.get("completed", d.get("n", 0)) for d in ds)
            median["throughput_per_s"] = round(completed / sum(d["wall_s"] for d in ds), 3)
        out[name] = median
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cmd_out(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" + unit
    if isinstance(v, float):
        a = abs(v)
        if a >= 100:
            s = f"{v:,.0f}"
        elif a >= 10:
            s = f"{v:.1f}"
        else:
            s = f"{v:.2f}"
        return s + unit
    return str(v)


def ratio(s: Any, t: Any, higher_better: bool) -> str:
    """How many times better Sundial is (>1: Sundial better)."""
    if not isinstance(s, (int, float)) or not isinstance(t, (int, float)) or isinstance(s, bool):
        return "—"
    if s <= 0 or t <= 0:
        return "—"
    r = s / t if higher_better else t / s
    return f"{r:,.1f}×" if r >= 10 else f"{r:.2f}×"


def pct(s: Any, t: Any) -> str:
    if not isinstance(s, (int, float)) or not isinstance(t, (int, float)) or t <= 0:
        return "—"
    return f"{100.0 * s / t:.0f} %"


# Figures of Sundial on PostgreSQL read from another place than the SQLite server's: the syncs
# that make a lone workflow durable are PostgreSQL's WAL syncs (pg_stat_wal, not under strace),
# not the Sundial process's fsyncs (it makes none); the time of one sync is not measured there.
PG_OVERRIDE: dict[tuple[str, str], tuple[str, str] | None] = {
    ("fsync", "syncs_per_workflow"): ("latency_1_activity", "pg_wal_syncs_per_workflow"),
    ("fsync", "sync_us_per_call"): None,
}


def get_pg(results: dict, scenario: str, key: str) -> Any:
    if (scenario, key) in PG_OVERRIDE:
        o = PG_OVERRIDE[(scenario, key)]
        return get(results, *o) if o else None
    return get(results, scenario, key)


def get(results: dict, scenario: str, key: str) -> Any:
    d = results.get(scenario)
    if not d:
        return None
    if not d.get("ok", False) and key not in ("error",):
        # A failed scenario's figures are not comparable; show them as missing.
        return None
    return d.get(key)


# (label, scenario) of the throughput figures the PostgreSQL targets of issue 18 are checked on.
PG_TARGET_THROUGHPUT = [
    ("Rust SDK, 1 activity", "rust:rust_throughput_1_activity"),
    ("Rust SDK, 5 activities", "rust:rust_throughput_5_activities"),
    ("Python SDK, 1 activity", "throughput_1_activity"),
    ("Python SDK, 5 activities", "throughput_5_activities"),
]

PG_SCENARIO_UNIT = {"signals": "signal", "updates": "update", "fanout_100": "workflow (100 activities)"}


def pg_section(S: dict, P: dict, T: dict) -> list[str]:
    """Sundial on PostgreSQL: the targets of issue 18 and what PostgreSQL did per workflow."""
    L: list[str] = []
    L.append("## Sundial on PostgreSQL")
    L.append("")
    L.append(
        f"One run of each server on this {os.cpu_count()}-core machine; PostgreSQL ran on the same machine "
        "(its processes share the cores with Sundial and the driver) with the settings in the machine table; "
        "Sundial's database was created fresh for the run and dropped after it."
    )
    L.append("")
    L.append("**Targets (issue 18)**, from this run's figures:")
    L.append("")
    for label, sc in PG_TARGET_THROUGHPUT:
        s, pg, t = get(S, sc, "throughput_per_s"), get(P, sc, "throughput_per_s"), get(T, sc, "throughput_per_s")
        if s is None and pg is None:
            if sc.startswith("rust:") and sc not in S and sc not in P:
                if sc == PG_TARGET_THROUGHPUT[0][1]:
                    L.append("- Throughput, Rust SDK: **not measured** in this run (the Rust driver runs with `bench/run.sh --rust`).")
                continue
            L.append(f"- Throughput, {label}: **not measured** (the scenario failed or did not run on a Sundial server).")
            continue
        if isinstance(pg, (int, float)) and isinstance(s, (int, float)) and s > 0:
            v = "met" if pg >= 0.6 * s else "not met"
            L.append(
                f"- Throughput, {label}: PostgreSQL at least 60 % of SQLite: **{v}** "
                f"({fmt(pg)} against {fmt(s)} workflows/s, {pct(pg, s)})."
            )
        else:
            L.append(f"- Throughput, {label}: PostgreSQL at least 60 % of SQLite: **not measured** (PostgreSQL {fmt(pg)}, SQLite {fmt(s)}).")
        if isinstance(pg, (int, float)) and isinstance(t, (int, float)) and t > 0:
            v = "met" if pg >= 20 * t else "not met"
            L.append(
                f"- Throughput, {label}: PostgreSQL at least 20× the reference: **{v}** "
                f"({fmt(pg)} against {fmt(t)} workflows/s, {ratio(pg, t, True)})."
            )
        else:
            L.append(f"- Throughput, {label}: PostgreSQL at least 20× the reference: **not measured** (PostgreSQL {fmt(pg)}, reference {fmt(t)}).")
    s50, pg50 = get(S, "latency_1_activity", "p50_ms"), get(P, "latency_1_activity", "p50_ms")
    s99, pg99 = get(S, "latency_1_activity", "p99_ms"), get(P, "latency_1_activity", "p99_ms")
    if isinstance(s50, (int, float)) and isinstance(pg50, (int, float)):
        v = "met" if pg50 - s50 <= 2.0 else "not met"
        L.append(
            f"- One workflow alone (Python SDK, 1 activity): PostgreSQL p50 within 2 ms of SQLite's: **{v}** "
            f"({fmt(pg50)} ms against {fmt(s50)} ms, {pg50 - s50:+.2f} ms; p99 {fmt(pg99)} against {fmt(s99)} ms)."
        )
    else:
        L.append(f"- One workflow alone: PostgreSQL p50 within 2 ms of SQLite's: **not measured** (PostgreSQL {fmt(pg50)}, SQLite {fmt(s50)}).")
    L.append("")
    L.append(
        "What PostgreSQL did, per workflow (per signal or update in those scenarios). **Transactions**: "
        "`pg_stat_database.xact_commit` of Sundial's database (reads included); **write xacts**: transaction ids "
        "assigned (cluster-wide); **WAL syncs** (`wal_sync`), **WAL writes** and **WAL bytes** (`wal_bytes`): "
        "`pg_stat_wal`, which is cluster-wide: nothing else used this PostgreSQL during the run; **PG CPU**: "
        "utime+stime of the backends serving Sundial's database (and any autovacuum worker on it) plus the WAL "
        "writer, checkpointer and background writer (the latter three alone in *of which background*); "
        "**Sundial CPU**: the Sundial process, for comparison; **SQLite syncs**: fsync+fdatasync calls of Sundial on "
        "SQLite (strace, lone workflows: the *fsync* scenario). Rust-driver rows include its 20 warm-up workflows in "
        "both the counts and the divisor."
    )
    L.append("")
    L.append("| scenario | per | transactions | write xacts | WAL syncs | WAL writes | WAL bytes | PG CPU ms | of which background | Sundial CPU ms | statistics published |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for sc, d in P.items():
        if "pg_per" not in d:
            continue
        n = d.get("pg_per")
        per = lambda key, scale=1.0: (d[key] * scale / n) if isinstance(d.get(key), (int, float)) and n else None  # noqa: E731
        unit = PG_SCENARIO_UNIT.get(sc, "workflow")
        settled = "yes" if d.get("pg_settled") else f"no (after {fmt(d.get('pg_settle_wait_s'))} s): counts may be short"
        status = "" if d.get("ok") else " (FAILED)"
        L.append(
            f"| {sc.replace('rust:', 'Rust SDK: ')}{status} | {fmt(n)} × {unit} | {fmt(d.get('pg_xacts_per_workflow'))} | "
            f"{fmt(d.get('pg_xids_per_workflow'))} | {fmt(d.get('pg_wal_syncs_per_workflow'))} | {fmt(per('pg_wal_writes'))} | "
            f"{fmt(d.get('pg_wal_bytes_per_workflow'))} | {fmt(d.get('pg_cpu_ms_per_workflow'))} | "
            f"{fmt(per('pg_background_cpu_s', 1000.0))} | {fmt(per('server_cpu_s', 1000.0))} | {settled} |"
        )
    ssync = get(S, "fsync", "syncs_per_workflow")
    psync = get(P, "latency_1_activity", "pg_wal_syncs_per_workflow")
    if ssync is not None or psync is not None:
        L.append("")
        L.append(
            f"Syncs per lone one-activity workflow: SQLite {fmt(ssync)} (strace of Sundial), PostgreSQL {fmt(psync)} "
            "(`pg_stat_wal.wal_sync` over *latency_1_activity*, no strace)."
        )
    L.append("")
    return L


def sleepers_section(Z: dict, S: dict) -> list[str]:
    """Scenario sleepers (issue 17): W asleep on a one-day timer, a restart with them, then
    W' on a short timer all fired. Z: the scenario's JSON lines by name; S: Sundial's
    side-by-side results (for today's fire delay of the timers scenario)."""
    arm, db = Z.get("rust:sleepers_arm"), Z.get("sleepers_db")
    restart, fire = Z.get("sleepers_restart"), Z.get("rust:sleepers_fire")
    if not (arm or fire):
        return []

    def status(d: dict | None) -> str:
        if not d:
            return "not run"
        return "ok" if d.get("ok") else "FAILED: " + str(d.get("error") or d.get("first_error"))

    n = (arm or {}).get("n")
    L = [f"### Sundial alone: scenario `sleepers`, {fmt(n)} workflows asleep" if n else "### Sundial alone: scenario `sleepers`", ""]
    L.append(
        "Sundial on SQLite, Rust SDK driver (bench/rust-driver `--scenario sleepers`). Each workflow sleeps on one timer, "
        "then completes. (a) W workflows on a one-day timer on a fresh server and database file: the server's RSS 2 s "
        "after the last is armed, the database (file + `-wal`) per sleeping workflow; (b) that server stopped (SIGTERM) "
        "and started on the same file, every sleeper still running; (c) a fresh server and file, W' workflows on a timer "
        "short enough to fire within the run (1.5 times the arming time estimated from a probe batch, plus 10 s), all "
        "of them completed; the server fire delay is TimerFired time - TimerStarted time - D from an evenly spread "
        "sample of histories. Targets from issue 17."
    )
    L.append("")
    L.append("| | Sundial | target |")
    L.append("|---|---:|---|")

    def row(label: str, v: str, target: str = "") -> None:
        L.append(f"| {label} | {v} | {target} |")

    if arm:
        rss = arm.get("server_rss_all_sleeping_mb")
        row("workflows asleep (W)", fmt(arm.get("n")))
        row("start calls per second", fmt(arm.get("start_rate_per_s"), " wf/s"))
        row("all armed after", f"{fmt(arm.get('armed_all_s'), ' s')} ({fmt(arm.get('armed_rate_per_s'), ' wf/s')})")
        row("server RSS while asleep", fmt(rss, " MB"), "≤ 300 MB")
        row("  per sleeping workflow", fmt((rss or 0) * 1024 / max(1, arm.get("n") or 1), " KB") if rss else "—")
        row("server peak RSS while arming", fmt(arm.get("server_peak_rss_mb"), " MB"))
    if db:
        row("database bytes per sleeping workflow (file + -wal)", fmt(db.get("bytes_per_sleeper"), " B"), "reported")
        row("  database file, -wal file", f"{fmt((db.get('db_bytes') or 0) / 1e6, ' MB')}, {fmt((db.get('wal_bytes') or 0) / 1e6, ' MB')}")
        if db.get("checkpointed_bytes_per_sleeper"):
            row("  pages in use per sleeping workflow, -wal checkpointed after the restart", fmt(db.get("checkpointed_bytes_per_sleeper"), " B"))
    if restart:
        row("restart: start to ready", fmt(restart.get("ready_ms"), " ms") if restart.get("ok") else status(restart), "≤ 1 s")
        row(f"restart: RSS {fmt(restart.get('idle_wait_s'))} s after ready", fmt(restart.get("idle_rss_mb"), " MB"), "≤ 300 MB")
    if arm:
        row("status (a)", status(arm))
    if fire:
        today = (S.get("timers") or {}).get("server_fire_delay_p99_ms")
        row("fired (c): workflows W'", fmt(fire.get("n")))
        row("  timer D", fmt(fire.get("timer_s"), " s") + (" (from a probe)" if fire.get("timer_from") == "probe" else ""))
        row("  all armed before the first fired", fmt(fire.get("all_armed_before_first_fire")))
        row("  server RSS with all asleep", fmt(fire.get("server_rss_all_sleeping_mb"), " MB"))
        row("  completed / W'", f"{fmt(fire.get('completed'))} / {fmt(fire.get('n'))}", "all")
        row("  fire phase (first timer due to last completed)", f"{fmt(fire.get('fire_phase_s'), ' s')} ({fmt(fire.get('fire_rate_per_s'), ' wf/s')})")
        row("  server fire delay p50", fmt(fire.get("server_fire_delay_p50_ms"), " ms"))
        row("  server fire delay p99", fmt(fire.get("server_fire_delay_p99_ms"), " ms"),
            f"as today's ({fmt(today, ' ms')}, timers scenario above)" if today is not None else "as today's")
        row("  server fire delay max", fmt(fire.get("server_fire_delay_max_ms"), " ms"))
        row("  histories sampled", fmt(fire.get("server_delay_sample")))
        row("status (c)", status(fire))
    L.append("")
    return L


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sundial", required=True)
    p.add_argument("--temporal", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--temporal-bin", default="temporal")
    p.add_argument("--sizes", default="")
    p.add_argument("--sundial-desc", default="")
    p.add_argument("--sundial-pg", default="", help="JSON lines of Sundial on PostgreSQL")
    p.add_argument("--postgres-desc", default="", help="PostgreSQL version and settings")
    p.add_argument("--sleepers", default="", help="JSON lines of scenario sleepers (Sundial alone)")
    a = p.parse_args()

    S, T = load(a.sundial), load(a.temporal)
    P = load(a.sundial_pg) if a.sundial_pg else {}
    Z = load(a.sleepers) if a.sleepers else {}
    has_pg = bool(a.sundial_pg)

    # (label, scenario, key, higher_is_better, unit)
    rows: list[tuple[str, str, str, bool, str]] = [
        ("Start to ready (process start → first GetSystemInfo)", "startup", "ready_ms", False, " ms"),
        ("Resident memory, idle after start", "startup", "idle_rss_mb", False, " MB"),
    ]
    if "rust:rust_throughput_1_activity" in S or "rust:rust_throughput_1_activity" in T:
        rows += [
            ("**Rust SDK** throughput, 1 activity/workflow", "rust:rust_throughput_1_activity", "throughput_per_s", True, " wf/s"),
            ("  p50 latency under that load", "rust:rust_throughput_1_activity", "p50_ms", False, " ms"),
            ("  p99 latency under that load", "rust:rust_throughput_1_activity", "p99_ms", False, " ms"),
            ("  server peak RSS during it", "rust:rust_throughput_1_activity", "server_peak_rss_mb", False, " MB"),
            ("  server CPU seconds", "rust:rust_throughput_1_activity", "server_cpu_s", False, " s"),
            ("  PostgreSQL CPU seconds (incl. 20 warm-up workflows)", "rust:rust_throughput_1_activity", "pg_cpu_s", False, " s"),
            ("  driver (Rust SDK) CPU seconds", "rust:rust_throughput_1_activity", "driver_cpu_s", False, " s"),
            ("**Rust SDK** throughput, 5 sequential activities", "rust:rust_throughput_5_activities", "throughput_per_s", True, " wf/s"),
        ]
    rows += [
        ("**Python SDK** throughput, 1 activity/workflow", "throughput_1_activity", "throughput_per_s", True, " wf/s"),
        ("  p50 latency under that load", "throughput_1_activity", "p50_ms", False, " ms"),
        ("  p99 latency under that load", "throughput_1_activity", "p99_ms", False, " ms"),
        ("  server peak RSS", "throughput_1_activity", "server_peak_rss_mb", False, " MB"),
        ("  server CPU seconds", "throughput_1_activity", "server_cpu_s", False, " s"),
        ("  PostgreSQL CPU seconds", "throughput_1_activity", "pg_cpu_s", False, " s"),
        ("  driver (Python SDK) CPU seconds", "throughput_1_activity", "driver_cpu_s", False, " s"),
        ("**Python SDK** throughput, 1 activity/workflow, eager start", "throughput_1_activity_eager", "throughput_per_s", True, " wf/s"),
        ("**Python SDK** throughput, 5 sequential activities", "throughput_5_activities", "throughput_per_s", True, " wf/s"),
        ("  p50 latency under that load", "throughput_5_activities", "p50_ms", False, " ms"),
        ("One workflow alone, 1 activity: p50", "latency_1_activity", "p50_ms", False, " ms"),
        ("  p95", "latency_1_activity", "p95_ms", False, " ms"),
        ("  p99", "latency_1_activity", "p99_ms", False, " ms"),
        ("One workflow alone, 1 activity, eager start: p50", "latency_1_activity_eager", "p50_ms", False, " ms"),
        ("  p99", "latency_1_activity_eager", "p99_ms", False, " ms"),
        ("One workflow alone, 10 sequential activities: p50", "latency_10_activities", "p50_ms", False, " ms"),
        ("  p99", "latency_10_activities", "p99_ms", False, " ms"),
        ("Fan-out, 100 parallel activities in one workflow: p50", "fanout_100", "p50_ms", False, " ms"),
        ("  activities/s", "fanout_100", "throughput_per_s", True, ""),
        ("Signals to one workflow", "signals", "throughput_per_s", True, " /s"),
        ("  signal p50", "signals", "p50_ms", False, " ms"),
        ("  signal p99", "signals", "p99_ms", False, " ms"),
        ("Updates to one workflow", "updates", "throughput_per_s", True, " /s"),
        ("  update p50 (completed)", "updates", "p50_ms", False, " ms"),
        ("  update p99", "updates", "p99_ms", False, " ms"),
        ("Timers: workflows asleep at once", "timers", "n", True, ""),
        ("  server RSS with all of them asleep", "timers", "server_rss_all_sleeping_mb", False, " MB"),
        ("  server peak RSS during the scenario", "timers", "server_peak_rss_mb", False, " MB"),
        ("  fire delay, server (history) mean", "timers", "server_fire_delay_mean_ms", False, " ms"),
        ("  fire delay, server (history) p99", "timers", "server_fire_delay_p99_ms", False, " ms"),
        ("  fire delay seen by the workflow, mean", "timers", "wf_fire_delay_mean_ms", False, " ms"),
        ("  fire delay seen by the workflow, p99", "timers", "wf_fire_delay_p99_ms", False, " ms"),
        ("fsync + fdatasync calls per lone workflow (strace; PostgreSQL: its WAL syncs, pg_stat_wal)", "fsync", "syncs_per_workflow", False, ""),
        ("  time in one sync call (under strace)", "fsync", "sync_us_per_call", False, " µs"),
        ("Peak resident memory over the side-by-side scenarios", "peak", "server_peak_rss_mb", False, " MB"),
    ]
    for R in (S, T, P):
        peaks = [d.get("server_peak_rss_mb") for k, d in R.items() if not k.startswith("large_") and d.get("server_peak_rss_mb")]
        if peaks:
            R["peak"] = {"ok": True, "server_peak_rss_mb": max(peaks)}

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    desc = a.sundial_desc or "commit `" + (cmd_out("git", "rev-parse", "--short", "HEAD") or "unknown") + "`"
    tver = cmd_out(a.temporal_bin, "--version") or "unknown"
    try:
        from importlib.metadata import version

        pysdk = version("temporalio")
    except Exception:  # noqa: BLE001
        pysdk = "unknown"

    L: list[str] = []
    L.append("# Benchmarks: Sundial (on SQLite and on PostgreSQL) and Temporal's dev server, side by side"
             if has_pg else "# Benchmarks: Sundial and Temporal's dev server, side by side")
    L.append("")
    L.append(f"Generated by `bench/run.sh` on {now}; Sundial: {desc}, release build.")
    L.append("")
    L.append("| machine | |")
    L.append("|---|---|")
    L.append(f"| CPUs (`nproc`) | {os.cpu_count()} |")
    L.append(f"| CPU model | {cpu_model()} |")
    L.append(f"| kernel | {platform.release()} |")
    L.append(f"| memory | {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1)} GiB |")
    L.append(f"| reference | `{tver}` (`temporal server start-dev`, SQLite file) |")
    if has_pg:
        L.append(f"| PostgreSQL (Sundial's second store) | {a.postgres_desc or 'unknown'}; on this machine, 127.0.0.1 |")
    L.append(f"| Python SDK | temporalio {pysdk} (unsandboxed workflow runner, in-process worker) |")
    L.append(f"| sizes | {a.sizes} |")
    L.append("")
    L.append("Rerun (from the repository root; builds Sundial in release, installs the `temporal` CLI into `.venv` if missing):")
    L.append("")
    L.append("```sh")
    L.append(a.command.strip())
    L.append("```")
    L.append("")
    if has_pg:
        L.append(
            "The servers ran one after the other on the same machine, each fresh: Sundial on a durable SQLite "
            "file (`--db-filename`), the same Sundial binary on a fresh PostgreSQL database (`--db-url`; "
            "PostgreSQL runs on the same machine and shares its cores with Sundial and the driver), and the "
            "reference on a durable SQLite file; all with `--log-level warn`. The driver (client and worker in one "
            "process) is the same for all three. A ratio is how many times better the first figure is than the "
            "second (throughput: first ÷ second; time, memory, syncs: second ÷ first); below 1× the first is behind. "
            "*Server* figures are the Sundial (or reference) process's only; PostgreSQL's own CPU is in its rows "
            "and in the PostgreSQL section below."
        )
        L.append("")
        L.append("| | Sundial (SQLite) | Sundial (PostgreSQL) | Temporal dev server | SQLite vs reference | PostgreSQL vs SQLite | PostgreSQL vs reference |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for label, sc, key, hb, unit in rows:
            s, pg, t = get(S, sc, key), get_pg(P, sc, key), get(T, sc, key)
            if s is None and t is None and pg is None:
                continue
            L.append(
                f"| {label} | {fmt(s, unit)} | {fmt(pg, unit)} | {fmt(t, unit)} | {ratio(s, t, hb)} | "
                f"{ratio(pg, s, hb)} | {ratio(pg, t, hb)} |"
            )
    else:
        L.append(
            "Both servers ran one after the other on the same machine, each fresh, each on a durable SQLite "
            "file (`--db-filename`), with `--log-level warn`. The driver (client and worker in one process) "
            "is the same for both. **Advantage** is how many times better Sundial's figure is "
            "(throughput: Sundial ÷ Temporal; time, memory, fsyncs: Temporal ÷ Sundial); below 1× Sundial is behind."
        )
        L.append("")
        L.append("| | Sundial | Temporal dev server | Advantage |")
        L.append("|---|---:|---:|---:|")
        for label, sc, key, hb, unit in rows:
            s, t = get(S, sc, key), get(T, sc, key)
            if s is None and t is None:
                continue
            L.append(f"| {label} | {fmt(s, unit)} | {fmt(t, unit)} | {ratio(s, t, hb)} |")
    L.append("")
    if has_pg:
        L.extend(pg_section(S, P, T))

    large = S.get("large_timers")
    if large:
        L.append(f"### Sundial alone: {large.get('n'):,} workflows asleep at once")
        L.append("")
        L.append("Too slow to run on the reference server here (it arms some 20-70 timers a second on this machine), so Sundial only"
                 + (", on SQLite only (not run on PostgreSQL)." if has_pg else "."))
        L.append("")
        L.append("| | Sundial |")
        L.append("|---|---:|")
        for label, key, unit in (
            ("timer length D", "timer_s", " s"),
            ("start calls per second", "start_rate_per_s", " wf/s"),
            ("all armed after (first workflow task of the last one done)", "armed_all_s", " s"),
            ("all armed before the first fired", "all_armed_before_first_fire", ""),
            ("server RSS with all of them asleep", "server_rss_all_sleeping_mb", " MB"),
            ("server peak RSS during the scenario", "server_peak_rss_mb", " MB"),
            ("server CPU seconds", "server_cpu_s", " s"),
            ("driver CPU seconds", "driver_cpu_s", " s"),
            ("fire delay, server (history) mean", "server_fire_delay_mean_ms", " ms"),
            ("fire delay, server (history) p99", "server_fire_delay_p99_ms", " ms"),
            ("fire delay seen by the workflow, mean", "wf_fire_delay_mean_ms", " ms"),
            ("fire delay seen by the workflow, p99", "wf_fire_delay_p99_ms", " ms"),
            ("completed / failed", None, ""),
        ):
            if key is None:
                v = f"{large.get('completed')} / {large.get('failed')}" + ("" if large.get("ok") else f" ({large.get('error') or large.get('first_error')})")
            else:
                v = fmt(large.get(key), unit)
            L.append(f"| {label} | {v} |")
        L.append("")

    L.extend(sleepers_section(Z, S))

    # Per-scenario details.
    L.append("## Per scenario")
    L.append("")
    L.append(
        "Throughput; latency p50/p95/p99 in ms; server CPU seconds and peak RSS over the scenario; CPU seconds of the "
        "driver process (Python or Rust SDK, client and worker); **other load**: cores busy with neither of them during "
        "the scenario (anything else running on the machine; Python driver only; PostgreSQL's processes of the "
        "*PG CPU s* column are not counted there)"
        + ("; **PG CPU s**: PostgreSQL's processes serving Sundial's database plus its WAL writer, checkpointer and "
           "background writer." if has_pg else ".")
    )
    L.append("")
    L.append("| scenario | server | size | throughput | p50 | p95 | p99 | server CPU s | PG CPU s | server peak RSS MB | driver CPU s | other load | status |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    order = []
    for R in (S, P, T):
        order += [k for k in R if k not in order and k not in ("startup", "lifetime", "peak")]
    names = (("Sundial", S), ("Sundial (PostgreSQL)", P), ("Temporal", T)) if has_pg else (("Sundial", S), ("Temporal", T))
    for sc in order:
        for name, R in names:
            d = R.get(sc)
            if not d:
                continue
            size = d.get("n")
            if d.get("concurrency") and d.get("concurrency") != 1:
                size = f"{size} × c{d['concurrency']}"
            if d.get("fanout"):
                size = f"{d['n']} × {d['fanout']}"
            status = "ok" if d.get("ok") else f"FAILED: {d.get('error') or d.get('first_error')}"
            if d.get("repeat_throughputs"):
                runs = ", ".join(fmt(t) for t in d["repeat_throughputs"])
                status = (
                    f"ok; {len(d['repeat_throughputs'])} runs ({runs}): throughput over all of them, "
                    "other figures from the median run"
                )
            if d.get("skipped"):
                status = f"skipped: {d.get('reason')}"
            tp = d.get("throughput_per_s")
            unit = d.get("unit") or ("workflows/s" if d.get("driver") == "rust" else "")
            L.append(
                f"| {sc.replace('rust:', 'Rust SDK: ')} | {name} | {fmt(size)} | {fmt(tp)} {unit if tp is not None else ''} | "
                f"{fmt(d.get('p50_ms'))} | {fmt(d.get('p95_ms'))} | {fmt(d.get('p99_ms'))} | "
                f"{fmt(d.get('server_cpu_s'))} | {fmt(d.get('pg_cpu_s'))} | {fmt(d.get('server_peak_rss_mb'))} | {fmt(d.get('driver_cpu_s'))} | "
                f"{fmt(d.get('other_cpu_cores'))} | {status} |"
            )
    L.append("")

    notes_path = REPO / "bench" / "NOTES.md"
    if notes_path.exists():
        L.append("## Notes")
        L.append("")
        L.append(notes_path.read_text().strip())
        L.append("")

    L.append("## How each figure is measured")
    L.append("")
    L.append(
        "- **Start to ready**: `bench/py_driver.py startup` starts the server and calls `GetSystemInfo` "
        "(fresh gRPC channel per attempt, 2 ms apart) until one succeeds. **Idle memory**: VmRSS 2 s later.\n"
        "- **Throughput**: N workflows, C in flight; each is started with the SDK's default options (no eager workflow start; "
        "the rows marked eager start request it) and its result awaited; latency is start call to result. Activities return their input.\n"
        "- **Latency**: the same, one workflow at a time.\n"
        "- **Fan-out**: one workflow starts 100 activities at once and waits for all; repeated.\n"
        "- **Signals / updates**: to one running workflow, 20 in flight; a signal's latency is its RPC, an "
        "update's is `execute_update` (accepted, run by the worker, completed). The workflow's own count is checked "
        "against the acknowledged ones.\n"
        "- **Timers**: W workflows each sleep D seconds, D longer than it takes to start all W (so all are asleep "
        "at once; D comes from a probe batch). Server fire delay: `TimerFired` event time − `TimerStarted` event time − D, "
        "from the histories of up to 200 of them. Workflow fire delay: `workflow.now()` after the sleep − before it − D, "
        "which also counts the workflow task that brings the fire to the worker.\n"
        "- **Server CPU seconds / peak RSS**: `/proc/PID/stat` utime+stime, and VmRSS polled every 10 ms "
        "(and VmHWM after resetting it through `/proc/PID/clear_refs`), over the scenario.\n"
        "- **fsyncs**: `strace -f -c -e trace=fsync,fdatasync -p PID` attached while 20 lone one-activity "
        "workflows run one after the other; background syncs of the server in that window count too.\n"
        "- **PostgreSQL figures** (Sundial on PostgreSQL): `bench/py_driver.py --postgres-url` reads, with one "
        "`psql -X -At -c` before and one after each scenario, `pg_stat_database.xact_commit` of Sundial's database, "
        "`pg_stat_wal` (`wal_sync`, `wal_write`, `wal_bytes`), the transaction id counter, and `/proc/PID/stat` of the "
        "processes `pg_stat_activity` lists for the database and of the WAL writer, checkpointer and background writer "
        "(a process that exits between the readings is missed). A backend publishes its counters up to 10 s late "
        "(PostgreSQL's `PGSTAT_IDLE_INTERVAL`), so the readings are taken once every backend of the database has been "
        "idle that long or has finished a command more than 1 s after the scenario ended (at most `--pg-settle` s of "
        "waiting; *statistics published* says whether that was reached). The Rust driver's runs are wrapped the same "
        "way (`py_driver.py pgwrap`)."
    )
    L.append("")
    L.append("## Raw results")
    L.append("")
    raws = [("Sundial" + (" (SQLite)" if has_pg else ""), a.sundial)]
    if has_pg:
        raws.append(("Sundial (PostgreSQL)", a.sundial_pg))
    raws.append(("Temporal dev server", a.temporal))
    for name, path in raws:
        L.append(f"<details><summary>{name}</summary>")
        L.append("")
        L.append("```json")
        if os.path.exists(path):
            L.extend(l for l in Path(path).read_text().splitlines() if l.strip().startswith("{"))
        L.append("```")
        L.append("")
        L.append("</details>")
        L.append("")

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(L))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
