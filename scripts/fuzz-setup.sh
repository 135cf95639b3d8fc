#!/usr/bin/env bash
# Makes sure cargo-fuzz and the nightly toolchain it needs are here. Exit 3 when nightly is
# missing (it cannot be installed from the package registries this project may reach).
set -euo pipefail
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain on this machine; cargo-fuzz needs one" >&2
  exit 3
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
