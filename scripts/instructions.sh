#!/usr/bin/env bash
# Instructions a frame for each record row of the benches, on REF and on the working tree,
# counted by cachegrind: deterministic where timings on a shared machine are not, so a
# change's added (or saved) work shows even when it is smaller than the timing noise.
#
#   scripts/instructions.sh REF [ROUNDS]
#
# Each count is (run with ROUNDS passes - run with none) / (ROUNDS x 10,000 frames): the
# stream's generation and the process's start cancel out. Needs valgrind.
#
# For a change's own cost set CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 (both builds take it):
# with the default 16 units, how the crate is split decides some inlining, and a mere
# reorganisation moved GT06 by 3-4% (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: scripts/instructions.sh REF [ROUNDS]}
rounds=${2:-3}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

before=target/instructions/before
rm -rf "$before"
git clone -q . "$before"
git -C "$before" checkout -q "$ref"
streams="gt06_12 gt06_22 gt06_12_views gt06_22_views jt808 jt808_views teltonika_8 teltonika_8e teltonika_8_validate teltonika_8e_validate
  teltonika_8_views teltonika_8e_views nmea_rmc nmea_gga nmea_rmc_typed nmea_gga_typed"
example="$before/benches/examples/instructions.rs"
for stream in $streams; do
  if [ ! -e "$example" ] || ! grep -q "\"$stream\"" "$example"; then
    # An older REF, without the example or without one of its streams: the working tree's
    # example is used (its decoders may be built differently, in which case this fails to
    # build).
    echo "$ref's instructions example lacks $stream: using the working tree's" >&2
    cp benches/examples/instructions.rs "$example"
    break
  fi
done
(cd "$before" && CARGO_TARGET_DIR=target cargo build -q --release -p trackgate-benches --example instructions)
cargo build -q --release -p trackgate-benches --example instructions

count() { # binary stream rounds -> instructions
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$1" "$2" "$3" 2>&1 |
    awk '/I *refs:/ { gsub(",", "", $4); print $4 }'
}

# Both binaries run from paths of the same length: where the program's arguments put the
# stack moved one Teltonika stream's count by 2.6% (the same binary, run from two paths).
cp "$before/target/release/examples/instructions" target/instructions/ref.bin
cp target/release/examples/instructions target/instructions/new.bin
printf '%-22s %10s %10s %8s\n' stream "$ref" "working" change
for stream in $streams; do
  row=()
  for bin in target/instructions/ref.bin target/instructions/new.bin; do
    base=$(count "$bin" "$stream" 0)
    total=$(count "$bin" "$stream" "$rounds")
    row+=($(( (total - base) / (rounds * 10000) )))
  done
  printf '%-22s %10s %10s %7s%%\n' "$stream" "${row[0]}" "${row[1]}" \
    "$(awk -v a="${row[0]}" -v b="${row[1]}" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }')"
done
