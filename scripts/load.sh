#!/usr/bin/env bash
# A load run: one or more gateway processes, several `trackgate sim` processes (one process
# holds at most ~20,000 sockets here), every device logging in and reporting. Prints each
# sim's JSON report, then one JSON line summing the run: the gateways' peak RSS, CPU time and
# records, and the sims' acks, logins and latencies.
#
#   scripts/load.sh [PROTOCOL] [DEVICES_PER_SIM] [SIMS] [DURATION] [INTERVAL] [BATCH]
#   scripts/load.sh gt06 2500 4 30s 1s 1
#
# Environment:
#   TRANSPORT=udp       UDP devices (not gt06)
#   FSYNC=never         flush without fsync (default: fsync on every commit)
#   GATEWAYS=N          N gateway processes sharing one port through SO_REUSEPORT (default 1);
#                       the kernel spreads connections over them, so N processes hold N times
#                       one process's descriptor limit
#   RAMP=5s             device starts spread over this time (0s: all at once)
#   HOLD=10s            devices stay connected and silent after their login until this long
#                       after the start, then report for DURATION and hang up; the summary
#                       gains the gateways' CPU for the logins alone (`login_cpu_s`), read
#                       in that quiet, and for what came after
#   SHARDS=N            shards per gateway (default: one per core)
#   GATEWAY_CPUS=0      pin the gateways (taskset list), so their CPU time is not shared
#   SIM_CPUS=1          pin the sims
#   TRACKGATE_BIN=path  use this binary instead of building the release one (CI's smoke run)
#   SIM_BIN=path        run the sims from this binary (default: the gateway's), e.g. to
#                       compare an older gateway build with sims that know `--hold`
#   SYSCALLS=1          count the gateways' system calls with `perf stat` (needs perf and
#                       tracepoint access); the summary gains `gateway_syscalls`
#   NATS=HOST:PORT      records go to a JetStream stream of this run's own on that server
#   NATS_MONITOR=URL    instead of a JSONL file, counted through the server's monitoring
#                       endpoint (nats-server -m PORT: http://127.0.0.1:PORT); see
#                       scripts/nats-curve.sh
#
# Each sim connects from its own loopback address (127.0.0.2, 127.0.0.3, ...): connections
# from one address to one port run out of ephemeral ports near 28,000.
#
# Exits 1 if an ack was wrong or missing or the sinks do not hold exactly the records the
# sims expect. Uses the release binary (built if missing). Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

protocol=${1:-gt06}
per_sim=${2:-2500}
sims=${3:-4}
duration=${4:-30s}
interval=${5:-1s}
batch=${6:-1}
transport=${TRANSPORT:-tcp}
gateways=${GATEWAYS:-1}
ramp=${RAMP:-5s}

# HOLD in seconds (the sim's duration syntax: 250ms, 10s, 1m), for the snapshots and the summary.
hold_s=
if [[ -n ${HOLD:-} ]]; then
  hold_s=$(python3 -c '
import sys
text = sys.argv[1]
for unit, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
    if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
        print(float(text[: -len(unit)]) * scale)
        break
else:
    sys.exit(f"HOLD={text}: not a duration")' "$HOLD")
fi

# Prefixes, not a shell function: `$!` must be the gateway's own pid for the TERM at the end.
gw_pin=()
[[ -n ${GATEWAY_CPUS:-} ]] && gw_pin=(taskset -c "$GATEWAY_CPUS")
sim_pin=()
[[ -n ${SIM_CPUS:-} ]] && sim_pin=(taskset -c "$SIM_CPUS")

if [[ -n ${TRACKGATE_BIN:-} ]]; then
  bin=$TRACKGATE_BIN
else
  cargo build --release -q
  bin=target/release/trackgate
fi
sim_bin=${SIM_BIN:-$bin}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Every simulated device comes from loopback: lift the per-address cap.
printf '[limits]\nmax_connections_per_ip = 0\n' >"$work/trackgate.toml"

stream="LOAD$$"
sink_of() { # gateway index
  if [[ -n ${NATS:-} ]]; then
    echo "nats://$NATS/load$$.{protocol}.{device_id}?stream=$stream"
  else
    echo "jsonl:$work/records-$1.jsonl"
  fi
}
start_gateway() { # index, listen address
  "${gw_pin[@]}" "$bin" serve --config "$work/trackgate.toml" --listen "$protocol=$2" \
    --sink "$(sink_of "$1")" --fsync "${FSYNC:-every-commit}" ${SHARDS:+--shards "$SHARDS"} --metrics 127.0.0.1:0 \
    2>"$work/serve-$1.log" &
  gws+=($!)
  for _ in $(seq 100); do
    grep -q "listening $protocol $transport" "$work/serve-$1.log" 2>/dev/null && return
    sleep 0.1
  done
  echo "gateway $1 did not start:" >&2
  cat "$work/serve-$1.log" >&2
  exit 1
}

gws=()
start_gateway 0 127.0.0.1:0
addr=$(grep "listening $protocol $transport" "$work/serve-0.log" | awk '{print $NF}')
for g in $(seq 1 $((gateways - 1))); do start_gateway "$g" "$addr"; done

cpu_ticks() { # summed over the gateways
  local t=0 g
  for g in "${gws[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$g/stat"))); done
  echo "$t"
}
rss_kb() {
  local t=0 g
  for g in "${gws[@]}"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$g/status"))); done
  echo "$t"
}
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
used_kb() { awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {print t - a}' /proc/meminfo; }
perf_pid=
if [[ -n ${SYSCALLS:-} ]]; then
  pid_list=$(IFS=,; echo "${gws[*]}")
  perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid_list" -o "$work/syscalls.csv" 2>/dev/null &
  perf_pid=$!
  sleep 0.5 # attached before the first device connects
fi
slab_before=$(slab_kb)
used_before=$(used_kb)
start_ticks=$(cpu_ticks)
start=$(date +%s.%N)

pids=()
for i in $(seq 0 $((sims - 1))); do
  "${sim_pin[@]}" "$sim_bin" sim --protocol "$protocol" --transport "$transport" --target "$addr" \
    --devices "$per_sim" --interval "$interval" --duration "$duration" --ramp "$ramp" --hold "${HOLD:-0s}" --batch "$batch" \
    --first-id $((i * per_sim)) --seed $((i + 1)) --source "127.0.0.$((2 + i % 250))" >"$work/sim-$i.json" &
  pids+=($!)
done

peak_kb=0
peak_slab=0
peak_used=0
stream_messages() { # what the run's stream holds, from the server's monitoring endpoint
  python3 -c '
import json, sys, urllib.request
jsz = json.load(urllib.request.urlopen(sys.argv[1] + "/jsz?streams=true"))
print(sum(s["state"]["messages"] for a in jsz.get("account_details", []) for s in a.get("stream_detail", [])
          if s["name"] == sys.argv[2]))' "$NATS_MONITOR" "$stream"
}
records_now() {
  if [[ -n ${NATS:-} ]]; then stream_messages; else cat "$work"/records-*.jsonl 2>/dev/null | wc -l; fi
}
snapshot_until=0 # whole seconds since the epoch; snapshots stop a second after the hold
if [[ -n $hold_s ]]; then snapshot_until=$(awk -v s="$start" -v h="$hold_s" 'BEGIN {print int(s + h) + 1}'); fi
while kill -0 "${pids[@]}" 2>/dev/null; do
  if (($(date +%s) <= snapshot_until)); then
    # (time, gateway CPU ticks, records in the sinks), ten times a second until the hold is
    # over: the logins are done when the sinks hold their records.
    echo "$(date +%s.%N) $(cpu_ticks) $(records_now)" >>"$work/snapshots"
  fi
  kb=$(rss_kb)
  ((kb > peak_kb)) && peak_kb=$kb
  slab=$(slab_kb)
  ((slab > peak_slab)) && peak_slab=$slab
  used=$(used_kb)
  ((used > peak_used)) && peak_used=$used
  if (($(date +%s) <= snapshot_until)); then sleep 0.1; else sleep 0.5; fi
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
end=$(date +%s.%N)
end_ticks=$(cpu_ticks)
if [[ -n $perf_pid ]]; then
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
fi
kill -TERM "${gws[@]}"
for g in "${gws[@]}"; do wait "$g"; done

for i in $(seq 0 $((sims - 1))); do cat "$work/sim-$i.json"; done
records=()
if [[ -n ${NATS:-} ]]; then
  records=("$(stream_messages)") # one stream for every gateway
else
  for g in $(seq 0 $((gateways - 1))); do records+=("$(wc -l <"$work/records-$g.jsonl")"); done
fi
hz=$(getconf CLK_TCK)
python3 - "$work" "$protocol" "$transport" "$peak_kb" "$start" "$end" "$start_ticks" "$end_ticks" "$hz" \
  "$failed" "$slab_before" "$peak_slab" "$sims" "${records[*]}" "$used_before" "$peak_used" "$hold_s" <<'EOF'
import json, sys
work, p, t, peak_kb, start, end, t0, t1, hz, failed, slab0, slab1, sims, records, used0, used1, hold_s = sys.argv[1:]
wall = float(end) - float(start)

def login_cpu(login_records):
    """Gateway CPU seconds at the last snapshot inside the hold, if every login record was in
    the sinks by then and nothing else: the logins' own cost (accept, login, commit, ack)."""
    if not hold_s:
        return None
    inside = []
    try:
        lines = open(f"{work}/snapshots").read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        at, ticks, n = line.split()
        # The sims started after `start`, so their holds end after start + hold.
        if float(at) - float(start) < float(hold_s):
            inside.append((int(ticks), int(n)))
    if not inside or inside[-1][1] != login_records:
        return None  # the logins outlasted the hold, or something else was recorded
    return (inside[-1][0] - int(t0)) / int(hz)

def syscalls():
    counts = {}
    try:
        lines = open(f"{work}/syscalls.csv").read().splitlines()
    except FileNotFoundError:
        return counts
    for line in lines:
        f = line.split(",")
        if len(f) > 2 and f[0].isdigit() and int(f[0]) > 0 and "sys_enter_" in f[2]:
            counts[f[2].split("sys_enter_")[1]] = int(f[0])
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

cpu = (int(t1) - int(t0)) / int(hz)
reports = [json.load(open(f"{work}/sim-{i}.json")) for i in range(int(sims))]
per_gateway = [int(r) for r in records.split()]
total = sum(per_gateway)
expected = sum(r["records_expected"] for r in reports)
logged_in = sum(r["logged_in"] for r in reports)
login_phase = max(r["login_phase_s"] for r in reports)
login_cpu_s = login_cpu(sum(r["login_records"] for r in reports))
print(json.dumps({
    "protocol": p, "transport": t, "devices": sum(r["devices"] for r in reports),
    "gateways": len(per_gateway),
    "gateway_peak_rss_mib": round(int(peak_kb) / 1024, 1),
    # Kernel slab growth over the run, both ends of every loopback connection included.
    "kernel_slab_growth_mib": round((int(slab1) - int(slab0)) / 1024, 1),
    # The whole machine's memory in use (total less available) at its peak, over the start:
    # gateways, sims and kernel together.
    "machine_memory_growth_mib": round((int(used1) - int(used0)) / 1024, 1),
    "gateway_cpu_s": round(cpu, 2), "wall_s": round(wall, 1),
    "records_in_sinks": total, "records_per_gateway": per_gateway,
    "records_expected": expected,
    "records_per_cpu_s": round(total / cpu) if cpu > 0 else None,
    "acks_ok": sum(r["acks_ok"] for r in reports),
    "logged_in": logged_in, "login_phase_s": round(login_phase, 2),
    "logins_per_s": round(logged_in / login_phase) if login_phase > 0 else None,
    # HOLD only; null when the logins did not finish inside the hold.
    "login_cpu_s": login_cpu_s,
    "logins_per_login_cpu_s": round(logged_in / login_cpu_s) if login_cpu_s else None,
    "after_login_cpu_s": round(cpu - login_cpu_s, 2) if login_cpu_s is not None else None,
    # The worst sim's percentile, not a merged one.
    "ack_p99_ms_worst_sim": max(r["ack_latency_ms"]["p99"] for r in reports),
    "every_ack_ok": failed == "0",
    # Non-zero system call counts over the run (SYSCALLS=1), e.g. "recvfrom": 41161.
    "gateway_syscalls": syscalls() or None,
}))
# A run that lost or invented a record, or missed an ack, is a failed run.
sys.exit(0 if failed == "0" and total == expected else 1)
EOF
