#!/usr/bin/env bash
# Installs what the test command needs beyond a Rust toolchain, so `scripts/test.sh` runs on a
# fresh Debian machine: rustfmt and clippy, prlimit (util-linux, for the descriptor-limit
# tests), Mosquitto and its clients (the MQTT sink's tests start a real broker), and
# cargo-fuzz (scripts/fuzz-setup.sh, for the fuzz smoke). Each is installed only when missing,
# so on a machine that has them this costs a few lookups. Called by scripts/test.sh.
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
