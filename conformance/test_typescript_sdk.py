"""Temporal's TypeScript SDK against Sundial: the node tests in ``ts/test/`` (``@temporalio/*``
1.18 from npm, installed by ``scripts/test.sh`` with ``npm ci``).

The node run happens once per module (the workflow bundle is built once and one worker serves
every case); each case is one pytest test here that reads its outcome from the TAP report and
fails with the node output. Every case also passes against the reference dev server
(``TEMPORAL_ADDRESS=127.0.0.1:7233 npm test`` in ``conformance/ts``).

Skipped when ``conformance/ts/node_modules`` is missing (run ``npm ci`` there).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TS_DIR = Path(__file__).resolve().parent / "ts"
NODE_TIMEOUT_S = 110

# Every case of ts/test/sdk.test.js, by its node:test name; a case reported by node that is
# not listed here fails the run, so none goes unnoticed.
CASES = {
    "basic_no_workflow_timeout": "activity/basic_no_workflow_timeout: activities with a single timeout reach the worker",
    "shutdown": "activity/shutdown: an activity ignoring shutdown times out schedule-to-close",
    "round_trip": "round trip: activity, signal, query, update, child workflow",
    "cron": "schedule/cron: a cron workflow with @every runs again and again",
}

# Cases skipped on Sundial for now, with the reason (node still lists them, as skipped).
SKIPPED: dict[str, str] = {}

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (TS_DIR / "node_modules" / "@temporalio" / "worker").exists(),
    reason="needs node and conformance/ts/node_modules (scripts/test.sh runs npm ci there)",
)

_TAP_LINE = re.compile(r"^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$")


@pytest.fixture(scope="module")
async def ts_report(server_address) -> dict:
    env = dict(os.environ, TEMPORAL_ADDRESS=server_address, NO_COLOR="1")
    skip = [CASES[name] for name in SKIPPED]
    if skip:
        env["TS_SKIP"] = "\n".join(skip)
    started = time.monotonic()
    try:
        proc = await asyncio.to_thread(
            subprocess.run,
            ["node", "--test", "--test-concurrency=1", "--test-reporter=tap", "test/"],
            cwd=TS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout if isinstance(err.stdout, str) else (err.stdout or b"").decode(errors="replace")
        pytest.fail(f"node tests did not finish within {NODE_TIMEOUT_S} s:\n{out}")
    elapsed = time.monotonic() - started
    output = f"{proc.stdout}\n{proc.stderr}"
    outcomes: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = _TAP_LINE.match(line)
        if m:
            outcomes[m.group(2)] = "skip" if m.group(3) else ("pass" if m.group(1) == "ok" else "fail")
    print(f"typescript tests took {elapsed:.1f} s (exit {proc.returncode})")
    return {"outcomes": outcomes, "output": output, "returncode": proc.returncode}


def test_every_typescript_case_is_listed(ts_report):
    reported = set(ts_report["outcomes"])
    assert reported == set(CASES.values()), (
        f"node reported {sorted(reported)}, expected {sorted(CASES.values())}:\n{ts_report['output']}"
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_typescript_case(ts_report, case):
    if case in SKIPPED:
        pytest.skip(SKIPPED[case])
    outcome = ts_report["outcomes"].get(CASES[case])
    assert outcome == "pass", f"{CASES[case]}: {outcome or 'not reported'}\n{ts_report['output']}"
