#!/usr/bin/env bash
# The gateway's records acked per core-second by frames per write: `scripts/load.sh` with the
# gateway pinned to core 0 and four sims pinned to core 1, offering more than one core takes
# (19,000 GT06 devices, fsync on every commit), once per batch size. Writes
# benches/results/gateway.csv for scripts/bench-report.py. Takes about three minutes.
#
#   scripts/gateway-curve.sh [BATCHES...]        default: 1 2 5 10
#
# OUT=path writes the table elsewhere; the environment reaches scripts/load.sh (NATS=… for
# the JetStream sink: scripts/nats-curve.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
batches=("$@")
[ ${#batches[@]} -gt 0 ] || batches=(1 2 5 10)
mkdir -p benches/results
out=${OUT:-benches/results/gateway.csv}
echo "frames_per_write,records_per_cpu_s,records_in_sinks,gateway_cpu_s,every_ack_ok" > "$out.tmp"
for batch in "${batches[@]}"; do
  # One frame per write needs a shorter interval to offer more than a core takes.
  interval=1s
  [ "$batch" -lt 5 ] && interval=250ms
  line=$(GATEWAY_CPUS=0 SIM_CPUS=1 scripts/load.sh gt06 4750 4 20s "$interval" "$batch" | tail -n 1)
  python3 -c '
import json, sys
r = json.loads(sys.argv[2])
print(",".join(str(v) for v in (sys.argv[1], r["records_per_cpu_s"], r["records_in_sinks"], r["gateway_cpu_s"], r["every_ack_ok"])))
' "$batch" "$line" >> "$out.tmp"
  tail -n 1 "$out.tmp"
done
mv "$out.tmp" "$out"
