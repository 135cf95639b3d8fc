#!/usr/bin/env bash
# A short run of every fuzz target (FUZZ_RUNS inputs each, default 300000) from the checked-in
# seeds: enough to catch a regression that panics on the first inputs, not a campaign (see
# scripts/fuzz.sh and FUZZING.md). Part of scripts/test.sh.
#
# The run is a fixed number of inputs from a fixed seed, not a time budget, so the gate is
# reproducible: the same commit explores the same inputs on every machine. (A time-bounded
# smoke once found a new input in CI that no local run had reached, which is a campaign's job.)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-300000}
seed=${FUZZ_SEED:-1}

status=0
scripts/fuzz-setup.sh || status=$?
if [ "$status" -eq 3 ]; then
  echo "fuzz smoke SKIPPED: no nightly toolchain" >&2
  exit 0
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

cd fuzz
cargo +nightly fuzz build -O
for target in $(cargo +nightly fuzz list); do
  seeds="seeds/${target%%_*}"
  target_runs=$runs
  # The session target builds records for whole device sessions per input: about a tenth of
  # the codec targets' speed, so a tenth of the inputs keeps its smoke near theirs in time.
  [ "$target" = session ] && target_runs=$((runs / 10))
  work=$(mktemp -d)
  log=$(mktemp)
  echo "fuzz smoke: $target, $target_runs inputs from seed $seed"
  # The input count ends the run; a crash, hang or out-of-memory exits non-zero.
  rc=0
  cargo +nightly fuzz run -O "$target" "$work" "$seeds" -- \
    -runs="$target_runs" -seed="$seed" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed 's/^/  /' || true
  rm -rf "$work"
  if [ "$rc" -ne 0 ]; then
    tail -40 "$log" >&2
    rm -f "$log"
    echo "fuzz smoke: $target FAILED (exit $rc); reproduce with scripts/fuzz.sh $target 1" >&2
    exit "$rc"
  fi
  rm -f "$log"
done
