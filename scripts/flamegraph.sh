#!/usr/bin/env bash
# Records the broker under a loadgen scenario with perf and renders flamegraphs/<scenario>.svg.
#
#   scripts/flamegraph.sh fanout-10k [SECONDS]
#
# Scenarios that publish are recorded once every connection is open; idle-19k, which only connects,
# is recorded while it connects.
#
# Installs perf (Debian's linux-perf) and inferno (crates.io) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/flamegraph.sh SCENARIO [SECONDS]}
seconds=${2:-10}

if ! command -v perf >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf
fi
command -v inferno-flamegraph >/dev/null 2>&1 || cargo install inferno --locked

cargo build --release --workspace
. scripts/lib.sh
trap stop_broker EXIT
broker_flags=()
[ "$scenario" = broadcast-5k ] && broker_flags=(--presence-events false) # as in scripts/bench.sh
start_broker "${broker_flags[@]}"

extra=()
[ "$scenario" = idle-19k ] && extra=(--workers 2 --bind-ips 127.0.0.2-127.0.0.40)
target/release/loadgen --url "$broker_url" --scenario "$scenario" --duration $((seconds + 15)) "${extra[@]}" \
  >"flamegraphs/$scenario.loadgen.txt" &
loadgen_pid=$!

plan=$(target/release/loadgen --scenario "$scenario" --plan)
publishers=$(echo "$plan" | python3 -c 'import json, sys; print(json.load(sys.stdin)["publishers"])')
if [ "$publishers" -gt 0 ]; then
  want=$(echo "$plan" | python3 -c 'import json, sys; print(json.load(sys.stdin)["conns"])')
  for _ in $(seq 600); do
    [ "$(open_connections)" -ge "$want" ] && break
    sleep 0.1
  done
fi
perf record -F 499 -g --call-graph dwarf,16384 -p "$broker_pid" -o /tmp/wsbroker.perf.data -- sleep "$seconds"
wait "$loadgen_pid"
perf script -i /tmp/wsbroker.perf.data 2>/dev/null | inferno-collapse-perf | inferno-flamegraph \
  --title "wsbroker under $scenario" >"flamegraphs/$scenario.svg"
rm -f /tmp/wsbroker.perf.data
echo "wrote flamegraphs/$scenario.svg"
