#!/usr/bin/env bash
# Long fuzz campaign for one target: scripts/fuzz.sh TARGET MINUTES [extra libFuzzer flags]
# The working corpus grows in fuzz/corpus/TARGET (not committed); the checked-in seeds in
# fuzz/seeds/<protocol>/ are read too. A crash lands in fuzz/artifacts/TARGET/ and the run
# exits non-zero: turn it into a named regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: scripts/fuzz.sh TARGET MINUTES [libFuzzer flags...]" >&2
  echo "targets: $(ls fuzz/fuzz_targets | sed 's/\.rs$//' | tr '\n' ' ')" >&2
  exit 2
fi
target=$1 minutes=$2
shift 2

scripts/fuzz-setup.sh
seeds="fuzz/seeds/${target%%_*}"
mkdir -p "fuzz/corpus/$target"
cd fuzz
exec cargo +nightly fuzz run -O "$target" "corpus/$target" "../$seeds" -- \
  -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -print_final_stats=1 "$@"
