#!/usr/bin/env bash
# A short run of every fuzz target (FUZZ_SECONDS each, default 20) from the checked-in seeds:
# enough to catch a regression that panics on the first inputs, not a campaign (see
# scripts/fuzz.sh and FUZZING.md). Part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}

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
  work=$(mktemp -d)
  log=$(mktemp)
  echo "fuzz smoke: $target for ${seconds}s"
  # The time bound ends the run; a crash, hang or out-of-memory exits non-zero.
  rc=0
  cargo +nightly fuzz run -O "$target" "$work" "$seeds" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
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
