#!/usr/bin/env bash
# The whole test suite, on a fresh machine: Rust unit and SDK integration tests (which also
# build the server binary), then the Python conformance suite against that binary. Creates
# .venv and installs the Python packages it needs (including the `temporal` CLI) by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# One `cargo test` builds everything once: a separate `cargo build` would compile the SDK
# dependencies a second time with a different feature set.
cargo test --workspace

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r conformance/requirements.txt -r bench/requirements.txt

# The web UI's browser tests (conformance/test_ui_browser.py): Debian's chromium, driven by
# playwright-core from npm (which never downloads a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
(cd conformance/ui && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
# Temporal's TypeScript SDK (conformance/test_typescript_sdk.py runs conformance/ts against the
# server; its native worker core ships inside the npm package).
(cd conformance/ts && npm ci --no-audit --no-fund --silent)

export PATH="$PWD/.venv/bin:$PATH"
# A smoke run of every benchmark scenario with tiny sizes (no timing assertions).
SUNDIAL_BIN="${SUNDIAL_BIN:-$PWD/target/debug/sundial}" bash bench/run.sh --smoke
SUNDIAL_BIN="${SUNDIAL_BIN:-$PWD/target/debug/sundial}" .venv/bin/python -m pytest conformance -q

# The same suites with every server on PostgreSQL (the machine's, 127.0.0.1:5432, trust auth,
# database `test`, or SUNDIAL_TEST_POSTGRES): the store contract tests ran on it inside
# `cargo test` above; now the Rust SDK tests, the patterns and the conformance suite. Each
# server gets a database of its own; an unreachable PostgreSQL fails these runs.
SUNDIAL_TEST_BACKEND=postgres cargo test --workspace --test sdk_rust --test patterns
SUNDIAL_TEST_BACKEND=postgres SUNDIAL_BIN="${SUNDIAL_BIN:-$PWD/target/debug/sundial}" \
    .venv/bin/python -m pytest conformance -q

# The fuzz targets' properties ran inside `cargo test` above, on seeds and mutations of them
# (sundial-server/src/fuzzing.rs). Coverage-guided runs of the same targets: scripts/fuzz.sh,
# or here with FUZZ_SECONDS=N (it instruments and rebuilds every crate: some 20 minutes cold
# on this machine kind, too much for every CI run).
if [ -n "${FUZZ_SECONDS:-}" ]; then
    scripts/fuzz.sh "$FUZZ_SECONDS"
fi
