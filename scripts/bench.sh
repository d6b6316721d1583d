#!/usr/bin/env bash
# Builds release, then for each scenario: starts a fresh broker, runs loadgen against it, stops it.
# Writes bench-results/<date>-<scenario>.json (and .hgrm) and prints a markdown table.
#
#   scripts/bench.sh                          # every scenario
#   scripts/bench.sh fanout-10k idle-19k      # some of them
#   DURATION=20 scripts/bench.sh fanout-10k   # shorter runs than the scenario's own
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(fanout-10k broadcast-5k idle-19k saturation)
saturation_rates=(${SATURATION_RATES:-250 500 600 700 800 900 1000 1200 1500 2000})
results=bench-results
day=$(date +%Y-%m-%d)
mkdir -p "$results"

cargo build --release --workspace
loadgen_bin=target/release/loadgen
. scripts/lib.sh
trap stop_broker EXIT

# run NAME OUTPUT [loadgen flags...]; broker flags come from $broker_flags.
broker_flags=()
run() {
  local name=$1 out=$2
  shift 2
  start_broker "${broker_flags[@]}"
  local duration=()
  [ -n "${DURATION:-}" ] && duration=(--duration "$DURATION")
  echo "== $name: wsbroker ${broker_flags[*]}; loadgen $* ${duration[*]}" >&2
  "$loadgen_bin" --url "$broker_url" --server-pid "$broker_pid" --json --hgrm "${out%.json}.hgrm" \
    "${duration[@]}" "$@" >"$out"
  stop_broker
}

for scenario in "${scenarios[@]}"; do
  out="$results/$day-$scenario.json"
  broker_flags=()
  case "$scenario" in
    # One room of 5,000: with join/leave events on, connecting sends 12.5M presence frames
    # (see docs/benchmarks.md); this scenario measures broadcast delivery, so they are off.
    broadcast-5k)
      broker_flags=(--presence-events false)
      run "$scenario" "$out" --scenario broadcast-5k
      ;;
    idle-19k) run "$scenario" "$out" --scenario idle-19k --workers 2 --bind-ips 127.0.0.2-127.0.0.40 ;;
    saturation)
      for rate in "${saturation_rates[@]}"; do
        run "saturation @ $rate/s" "$results/$day-saturation-$rate.json" --scenario fanout-10k --rate "$rate" \
          --duration "${DURATION:-20}"
      done
      python3 scripts/bench_table.py --saturation "$results/$day"-saturation-*.json >"$out"
      ;;
    *) run "$scenario" "$out" --scenario "$scenario" ;;
  esac
done

python3 scripts/bench_table.py $(for s in "${scenarios[@]}"; do echo "$results/$day-$s.json"; done)
