#!/usr/bin/env bash
# Where an idle connection's memory goes: the broker's live heap per connection, by allocation site.
#
#   scripts/heapprofile.sh [CONNS]      # default 2,000 idle connections, in rooms of 20
#   REDIS_URL=redis://127.0.0.1:6379 scripts/heapprofile.sh   # the same in cluster mode (one instance)
#
# Builds the broker with the system allocator (`--features system-allocator`: valgrind's massif sees
# malloc only, not mimalloc) into target/heap, runs it under massif, opens CONNS idle connections
# with loadgen and prints the heap snapshot taken while all of them are open, grouped by the first
# frame that names a crate (scripts/heap_sites.py). Heap bytes, not RSS: the allocator's own
# overhead and the kernel's socket buffers are not in it. Installs valgrind when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-2000}

command -v valgrind >/dev/null 2>&1 ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
CARGO_TARGET_DIR=target/heap cargo build --release --features system-allocator --bin wsbroker
cargo build --release -p loadgen
. scripts/lib.sh
out=$(mktemp)
started_ms=$(date +%s%3N)
broker_bin="valgrind --tool=massif --time-unit=ms --detailed-freq=1 --max-snapshots=400 --depth=40 \
  --threshold=0.3 --massif-out-file=$out target/heap/release/wsbroker"
log=$(mktemp)
cluster=()
[ -n "${REDIS_URL:-}" ] && cluster=(--redis-url "$REDIS_URL" --instance-id heap)
$broker_bin --listen 127.0.0.1:0 --log-level info --rate-limit 0 --database-url none "${cluster[@]}" >"$log" 2>&1 &
broker_pid=$!
trap stop_broker EXIT
for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 0.1; done
wait_listening "$log" broker
target/release/loadgen --url "$broker_url" --scenario idle-19k --conns "$conns" --rooms $((conns / 20)) \
  --workers 1 --duration 30 >/dev/null &
loadgen_pid=$!
for _ in $(seq 1200); do
  [ "$(open_connections 2>/dev/null || echo 0)" -ge "$conns" ] && break
  sleep 0.1
done
sleep 5 # settled: every connection open and idle
sampled_ms=$(($(date +%s%3N) - started_ms))
wait "$loadgen_pid"
stop_broker
python3 scripts/heap_sites.py "$out" "$conns" "$sampled_ms"
rm -f "$out" "$log"
