#!/usr/bin/env bash
# The chaos test for longer: 50 clients in 5 rooms of a two-instance cluster publish, drop and
# resume at random; one instance is killed; the second run restarts Redis too. Prints a summary
# line per run ("N not recovered" must be 0 in the run without a Redis restart).
#   scripts/chaos.sh [seconds per run, default 120]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
CHAOS_SECONDS="$seconds" cargo test --release --test it chaos:: -- --nocapture --test-threads 1 2>&1 \
  | grep -E '^chaos|^test |test result'
