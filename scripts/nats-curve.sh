#!/usr/bin/env bash
# The gateway's records acked per core-second with the JetStream sink, beside the JSONL
# sink's curve (scripts/gateway-curve.sh): `scripts/load.sh` with NATS set, the gateway
# pinned to core 0, four sims and a nats-server (target/nats, from scripts/setup.sh; file
# storage in a temporary directory) on core 1, once per batch size. Writes
# benches/results/gateway-nats.csv. Takes about two minutes.
#
#   scripts/nats-curve.sh [BATCHES...]        default: 1 10
set -euo pipefail
cd "$(dirname "$0")/.."
batches=("$@")
[ ${#batches[@]} -gt 0 ] || batches=(1 10)
server=${TRACKGATE_NATS_SERVER:-target/nats/bin/nats-server}
[ -x "$server" ] || { echo "no nats-server at $server: run scripts/setup.sh" >&2; exit 1; }
store=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
monitor=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c 1 "$server" -js -a 127.0.0.1 -p "$port" -m "$monitor" -sd "$store" 2>"$store/nats.log" &
nats_pid=$!
trap 'kill $nats_pid 2>/dev/null || true; wait $nats_pid 2>/dev/null || true; rm -rf "$store"' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$monitor/healthz')" 2>/dev/null && break
  sleep 0.1
done
mkdir -p benches/results
out=benches/results/gateway-nats.csv
echo "frames_per_write,records_per_cpu_s,records_in_sinks,gateway_cpu_s,every_ack_ok" > "$out.tmp"
for batch in "${batches[@]}"; do
  interval=1s
  [ "$batch" -lt 5 ] && interval=250ms
  line=$(NATS="127.0.0.1:$port" NATS_MONITOR="http://127.0.0.1:$monitor" GATEWAY_CPUS=0 SIM_CPUS=1 \
    scripts/load.sh gt06 4750 4 20s "$interval" "$batch" | tail -n 1)
  python3 -c '
import json, sys
r = json.loads(sys.argv[2])
print(",".join(str(v) for v in (sys.argv[1], r["records_per_cpu_s"], r["records_in_sinks"], r["gateway_cpu_s"], r["every_ack_ok"])))
' "$batch" "$line" >> "$out.tmp"
  tail -n 1 "$out.tmp"
done
mv "$out.tmp" "$out"
