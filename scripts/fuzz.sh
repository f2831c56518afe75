#!/usr/bin/env bash
# Builds the coverage-guided fuzz targets (fuzz/, cargo fuzz) and runs each briefly.
#
#   scripts/fuzz.sh [seconds-per-target]     (default 5)
#
# cargo fuzz needs nightly compiler flags; on the stable toolchain RUSTC_BOOTSTRAP=1 unlocks
# them. cargo-fuzz is installed on first use. Crashes are kept in fuzz/artifacts/<target>/ and
# fail the run; the corpus grows in fuzz/corpus/<target>/ (neither is committed).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-5}"
targets=(list_query gzip_frames task_token workflow_commands)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# The fuzz workspace pins the repository's dependency versions.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

build_start=$(date +%s)
(cd fuzz && cargo fuzz build)
echo "fuzz: targets built in $(( $(date +%s) - build_start )) s"

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/target/$target.log"
    # -rss_limit_mb: a target that allocates without bound fails instead of swapping.
    status=0
    (cd fuzz && cargo fuzz run "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1 \
        || status=$?
    runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
    echo "fuzz: $target: $runs executions in ${seconds} s"
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target failed (crash inputs in fuzz/artifacts/$target)" >&2
        exit 1
    fi
done
