#!/usr/bin/env bash
# The whole test suite: Rust build + unit tests, then the Python conformance suite
# against the freshly built server binary.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build
cargo test --workspace

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r conformance/requirements.txt

SUNDIAL_BIN="${SUNDIAL_BIN:-$PWD/target/debug/sundial}" .venv/bin/python -m pytest conformance -q
