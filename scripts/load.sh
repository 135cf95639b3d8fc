#!/usr/bin/env bash
# A load run: one gateway, several `trackgate sim` processes (one process holds at most
# ~20,000 sockets here), every device logging in and reporting. Prints each sim's JSON
# report and the gateway's peak RSS, CPU time and record count as one JSON line.
#
#   scripts/load.sh [PROTOCOL] [DEVICES_PER_SIM] [SIMS] [DURATION] [INTERVAL] [BATCH]
#   scripts/load.sh gt06 2500 4 30s 1s 1
#
# TRANSPORT=udp for UDP devices; FSYNC=never to flush without fsync.
#
# Uses the release binary (built if missing). Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

protocol=${1:-gt06}
per_sim=${2:-2500}
sims=${3:-4}
duration=${4:-30s}
interval=${5:-1s}
batch=${6:-1}
transport=${TRANSPORT:-tcp}

cargo build --release -q
bin=target/release/trackgate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Every simulated device comes from 127.0.0.1: lift the per-address cap.
printf '[limits]\nmax_connections_per_ip = 0\n' >"$work/trackgate.toml"
"$bin" serve --config "$work/trackgate.toml" --listen "$protocol=127.0.0.1:0" --sink "jsonl:$work/records.jsonl" \
  --fsync "${FSYNC:-every-commit}" --metrics 127.0.0.1:0 2>"$work/serve.log" &
gw=$!
for _ in $(seq 100); do
  grep -q "listening $protocol $transport" "$work/serve.log" 2>/dev/null && break
  sleep 0.1
done
addr=$(grep "listening $protocol $transport" "$work/serve.log" | awk '{print $NF}')
cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
slab_before=$(slab_kb)
start_ticks=$(cpu_ticks)
start=$(date +%s.%N)

pids=()
for i in $(seq 0 $((sims - 1))); do
  "$bin" sim --protocol "$protocol" --transport "$transport" --target "$addr" --devices "$per_sim" \
    --interval "$interval" --duration "$duration" --ramp 5s --batch "$batch" \
    --first-id $((i * per_sim)) --seed $((i + 1)) >"$work/sim-$i.json" &
  pids+=($!)
done

peak_kb=0
peak_slab=0
while kill -0 "${pids[@]}" 2>/dev/null; do
  kb=$(awk '/VmRSS/ {print $2}' "/proc/$gw/status")
  ((kb > peak_kb)) && peak_kb=$kb
  slab=$(slab_kb)
  ((slab > peak_slab)) && peak_slab=$slab
  sleep 0.5
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
end=$(date +%s.%N)
end_ticks=$(cpu_ticks)
kill -TERM "$gw"
wait "$gw"

for i in $(seq 0 $((sims - 1))); do cat "$work/sim-$i.json"; done
records=$(wc -l <"$work/records.jsonl")
hz=$(getconf CLK_TCK)
python3 - "$protocol" "$transport" "$((per_sim * sims))" "$peak_kb" "$start" "$end" "$start_ticks" "$end_ticks" "$hz" "$records" "$failed" "$slab_before" "$peak_slab" <<'EOF'
import json, sys
p, t, devices, peak_kb, start, end, t0, t1, hz, records, failed, slab0, slab1 = sys.argv[1:]
wall = float(end) - float(start)
cpu = (int(t1) - int(t0)) / int(hz)
print(json.dumps({
    "protocol": p, "transport": t, "devices": int(devices),
    "gateway_peak_rss_mib": round(int(peak_kb) / 1024, 1),
    # Kernel slab growth over the run, both ends of every loopback connection included.
    "kernel_slab_growth_mib": round((int(slab1) - int(slab0)) / 1024, 1),
    "gateway_cpu_s": round(cpu, 2), "wall_s": round(wall, 1),
    "records_in_sink": int(records),
    "records_per_cpu_s": round(int(records) / cpu) if cpu > 0 else None,
    "every_ack_ok": failed == "0",
}))
EOF
