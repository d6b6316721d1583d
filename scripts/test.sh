#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (idempotently), then runs every
# test, the concurrency test again in release mode, and builds the benches and the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }

export CARGO_TERM_COLOR=never
echo "== unit and integration tests (debug)"
cargo test --workspace --all-targets
echo "== concurrency test (release)"
cargo test --release --test it concurrency
