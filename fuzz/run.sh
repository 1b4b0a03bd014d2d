#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after another, nice'd,
# one job and one worker each (the machine is shared).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      default 60
#   TARGETS="jsonl_load" fuzz/run.sh 600  a subset
#
# Each target reads the committed seeds in corpus/<target>/ and writes what
# it learns to work/<target>/ (ignored by git). A crash stops the script
# with the reproducer in artifacts/<target>/; turn it into a test under
# tests/ before fixing. Stable Rust works: --sanitizer none needs no -Z flag.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
targets=${TARGETS:-"router_requests wallet_verify token_validate jsonl_load"}
cargo fuzz build --sanitizer none

for t in $targets; do
    mkdir -p "work/$t" "corpus/$t" "artifacts/$t" logs
    max_len=4096
    [ "$t" = wallet_verify ] && max_len=8192
    echo "== $t: ${secs}s, started $(date -u +%FT%TZ)"
    start=$(date +%s)
    status=0
    nice -n 10 cargo fuzz run --sanitizer none "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -jobs=1 -workers=1 -max_len="$max_len" \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        >"logs/$t.out" 2>&1 || status=$?
    # With -jobs, libFuzzer writes the run's own log to fuzz-0.log.
    [ -f fuzz-0.log ] && mv fuzz-0.log "logs/$t.log"
    echo "== $t: exit $status after $(( $(date +%s) - start ))s"
    grep -hE "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|cov:" "logs/$t.log" 2>/dev/null | tail -2 || true
    if [ "$status" -ne 0 ] || ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "== $t: CRASH; reproducer(s):" && ls "artifacts/$t"
        exit 1
    fi
done
echo "== all targets done"
