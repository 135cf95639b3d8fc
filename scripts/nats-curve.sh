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
NATS="127.0.0.1:$port" NATS_MONITOR="http://127.0.0.1:$monitor" OUT=benches/results/gateway-nats.csv \
  scripts/gateway-curve.sh "${batches[@]}"
