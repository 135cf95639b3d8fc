#!/usr/bin/env bash
# The one gate (README: "run all the tests"): formatting, lints, the API docs, every test, the benches in
# test mode, a short run of every fuzz target and the decode corpus. CI runs exactly this
# through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "set-up (installs what is missing: scripts/setup.sh)"
scripts/setup.sh

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "the gateway's module graph (no cycles between its folders, no source file over 600 lines)"
scripts/module-graph.py --max-lines 600 >/dev/null

step "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs (rustdoc, warnings are errors: broken links in the API docs fail the gate)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "tests (unit, property, CLI, corpus)"
cargo test --workspace --locked

step "benches, built and run once each in test mode (no timing)"
cargo test --locked -p trackgate-benches --benches

step "the crc-fast comparison, its own workspace (format and lints: it builds; no timing)"
cargo fmt --manifest-path benches/crc-fast/Cargo.toml -- --check
cargo clippy --locked --manifest-path benches/crc-fast/Cargo.toml -- -D warnings

step "fuzz smoke (every target, \${FUZZ_RUNS:-300000} inputs from a fixed seed, nightly)"
scripts/fuzz-smoke.sh

step "load script smoke (two gateway processes on one port, two sims; no timing)"
# The debug binary the socket tests built: the smoke checks the script and the sums, not speed.
TRACKGATE_BIN=target/debug/trackgate GATEWAYS=2 RAMP=1s scripts/load.sh gt06 50 2 2s 500ms 2 | tail -n 1

step "decode corpus (trackgate corpus verify corpus)"
cargo run --locked --quiet -p trackgate -- corpus verify corpus
