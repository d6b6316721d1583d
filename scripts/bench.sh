#!/usr/bin/env bash
# Builds release, then for each scenario: starts a fresh broker, runs loadgen against it, stops it.
# Writes bench-results/<date>-<scenario>.json (and .hgrm) and prints a markdown table.
#
#   scripts/bench.sh                          # every scenario
#   scripts/bench.sh fanout-10k idle-19k      # some of them
#   DURATION=20 scripts/bench.sh fanout-10k   # shorter runs than the scenario's own
#   scripts/bench.sh today                    # the scenarios behind docs/benchmarks.md's first table
#                                             # (every target), then rewrites that table
#   scripts/bench.sh fanout-10k fanout-10k-typing  # chat latency without and with typing traffic
#   scripts/bench.sh rolling-10k              # 10,000 resuming clients through nginx while every
#                                             # instance of scripts/cluster.sh is restarted in turn
#   scripts/bench.sh reference                # fanout-10k and broadcast-5k against the broker, the
#                                             # broker with --fast-path false (X-queued) and the bare
#                                             # reference server, with the CPU ratios
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

# run NAME OUTPUT [loadgen flags...]; broker flags come from $broker_flags, and with
# server=reference the bare reference server stands in for the broker.
broker_flags=()
server=broker
run() {
  local name=$1 out=$2
  shift 2
  if [ "$server" = reference ]; then start_reference; else start_broker "${broker_flags[@]}"; fi
  local duration=()
  [ -n "${DURATION:-}" ] && duration=(--duration "$DURATION")
  echo "== $name: wsbroker ${broker_flags[*]}; loadgen $* ${duration[*]}" >&2
  "$loadgen_bin" --url "$broker_url" --server-pid "$broker_pid" --json --hgrm "${out%.json}.hgrm" \
    "${duration[@]}" "$@" >"$out"
  stop_broker
}

# $instances brokers (default 2) on one redis-server; loadgen alternates its connections between
# them (connection i goes to instance i mod $instances) and reports each with its own count.
instances=2
run_cluster() {
  local name=$1 out=$2 redis_port
  shift 2
  redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --maxclients 1000 >/dev/null &
  local redis_pid=$!
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
  local targets=() pids=() k
  for k in $(seq "$instances"); do
    start_broker --redis-url "redis://127.0.0.1:$redis_port" --instance-id "i$k"
    targets+=(--url "$broker_url" --server-pid "$broker_pid")
    pids+=("$broker_pid")
  done
  broker_pid=""
  echo "== $name: $instances wsbroker instances on redis :$redis_port; loadgen $*" >&2
  "$loadgen_bin" "${targets[@]}" --json --hgrm "${out%.json}.hgrm" "$@" >"$out"
  for k in "${pids[@]}"; do kill -TERM "$k" 2>/dev/null; done
  for k in "${pids[@]}"; do wait "$k" 2>/dev/null || true; done
  kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
}

# A rolling restart under load: scripts/cluster.sh (PostgreSQL, Redis, three instances, nginx),
# loadgen's clients (--resume) through nginx only; a quarter into the run each instance in turn gets
# SIGTERM and is started again, 5 s apart. Every acked chat must reach every member once.
run_rolling() {
  local name=$1 out=$2 conns=$3 home duration=${DURATION:-60}
  shift 3
  home=$(mktemp -d) && chmod 755 "$home"
  export CLUSTER_DIR=$home/cluster PORT=0 WSBROKER_BIN=target/release/wsbroker WSBROKER_ARGS="--rate-limit 0"
  scripts/cluster.sh up >&2
  local url="ws://127.0.0.1:$(cat "$CLUSTER_DIR/nginx.port")/ws" k
  (
    # Once every client is connected (the instances' open connections add up), a quarter in.
    until [ "$(for k in 1 2 3; do curl -s "127.0.0.1:$(cat "$CLUSTER_DIR/instance$k.port")/metrics" |
      awk '/^wsbroker_connections_open /{print $2}'; done | awk '{n += $1} END {print n + 0}')" -ge "$conns" ]; do
      sleep 0.5
    done
    sleep "$(( ${duration%.*} / 4 ))"
    for k in 1 2 3; do
      echo "== $name: restarting instance $k at $(date +%T.%3N)" >&2
      scripts/cluster.sh restart "$k" >&2
      sleep 5
    done
  ) &
  local restarts=$!
  echo "== $name: 3 instances behind nginx; loadgen --conns $conns $* --duration $duration" >&2
  "$loadgen_bin" --url "$url" --json --hgrm "${out%.json}.hgrm" --duration "$duration" --conns "$conns" "$@" >"$out" || true
  wait "$restarts" || true
  scripts/cluster.sh down >&2
  unset CLUSTER_DIR PORT WSBROKER_BIN WSBROKER_ARGS
  rm -rf "$home"
}

# `reference` stands for the four runs the CPU ratio is computed from, in this order; `today` for
# the runs behind every target (scripts/bench_table.py's TARGETS names their rows).
expanded=()
write_today=""
for scenario in "${scenarios[@]}"; do
  if [ "$scenario" = today ]; then
    write_today=1
    expanded+=(fanout-10k fanout-10k-reference broadcast-5k idle-19k saturation cluster-100k)
  elif [ "$scenario" = reference ]; then
    expanded+=(fanout-10k fanout-10k-queued fanout-10k-reference broadcast-5k broadcast-5k-queued broadcast-5k-reference)
  else
    expanded+=("$scenario")
  fi
done
scenarios=("${expanded[@]}")

for scenario in "${scenarios[@]}"; do
  out="$results/$day-$scenario.json"
  broker_flags=()
  server=broker
  case "$scenario" in
    # The bare reference server (loadgen reference-server) under the same load as the broker.
    fanout-10k-reference | broadcast-5k-reference)
      server=reference
      run "$scenario" "$out" --scenario "${scenario%-reference}"
      ;;
    # The same, with the shard queueing frames for each connection's session to write (the path
    # TLS connections take), against the fast path above.
    fanout-10k-queued)
      broker_flags=(--fast-path false)
      run "$scenario" "$out" --scenario fanout-10k
      ;;
    # fanout-10k with typing traffic: every member that does not publish (9,900) sends a typing
    # start or stop every 5 s (docs/benchmarks.md compares its chat latency with fanout-10k's).
    fanout-10k-typing)
      run "$scenario" "$out" --scenario fanout-10k --typing-every 5
      ;;
    broadcast-5k-queued)
      broker_flags=(--presence-events false --fast-path false)
      run "$scenario" "$out" --scenario broadcast-5k
      ;;
    # One room of 5,000: with join/leave events on, connecting sends 12.5M presence frames
    # (see docs/benchmarks.md); this scenario measures broadcast delivery, so they are off.
    broadcast-5k)
      broker_flags=(--presence-events false)
      run "$scenario" "$out" --scenario broadcast-5k
      ;;
    # The same room of 5,000 with the broker's defaults: presence events on, coalesced per room.
    broadcast-5k-defaults) run "$scenario" "$out" --scenario broadcast-5k ;;
    idle-19k) run "$scenario" "$out" --scenario idle-19k --workers 2 --bind-ips 127.0.0.2-127.0.0.40 ;;
    # The same connect storm without presence events: what the join frames cost the connect rate.
    idle-19k-presence-off)
      broker_flags=(--presence-events false)
      run "$scenario" "$out" --scenario idle-19k --workers 2 --bind-ips 127.0.0.2-127.0.0.40
      ;;
    saturation)
      for rate in "${saturation_rates[@]}"; do
        run "saturation @ $rate/s" "$results/$day-saturation-$rate.json" --scenario fanout-10k --rate "$rate" \
          --duration "${DURATION:-20}"
      done
      python3 scripts/bench_table.py --saturation "$results/$day"-saturation-*.json >"$out"
      ;;
    # The same scenarios with every chat stored in a fresh SQLite file (the default engine); compare
    # with the rows above, run without a store (--database-url none).
    fanout-10k-sqlite | idle-19k-sqlite)
      db_dir=$(mktemp -d)
      broker_flags=(--database-url "sqlite://$db_dir/bench.db")
      if [ "$scenario" = idle-19k-sqlite ]; then
        run "$scenario" "$out" --scenario idle-19k --workers 2 --bind-ips 127.0.0.2-127.0.0.40
      else
        run "$scenario" "$out" --scenario fanout-10k
      fi
      rm -rf "$db_dir"
      ;;
    # fanout-10k with its connections spread over two instances joined by a local redis-server.
    cluster-fanout-10k) run_cluster "$scenario" "$out" --scenario fanout-10k ;;
    # 19,000 connections in 1,000 rooms drop at once and reconnect; done when every room's presence
    # holds all its members again. Standalone, and over two instances (cluster-wide presence).
    reconnect-storm) run "$scenario" "$out" --scenario reconnect-storm --workers 2 --bind-ips 127.0.0.2-127.0.0.40 ;;
    cluster-reconnect-storm)
      run_cluster "$scenario" "$out" --scenario reconnect-storm --workers 2 --bind-ips 127.0.0.2-127.0.0.40
      ;;
    # 100,000 connections over six instances on one Redis: rooms and global messages spread over
    # all of them must reach every member exactly once.
    cluster-100k)
      instances=6
      run_cluster "$scenario" "$out" --conns 100000 --rooms 1000 --publishers 10 --rate 10 --globals 5 \
        --duration "${DURATION:-20}" --bind-ips 127.0.0.2-127.0.0.40
      instances=2
      ;;
    # 10,000 clients in 500 rooms of 20 (one publisher each, 1 chat/s) through nginx while every
    # instance is restarted in turn (run_rolling above).
    rolling-10k) run_rolling "$scenario" "$out" 10000 --resume --rooms 500 --publishers 500 --rate 500 ;;
    cluster-idle-19k) run_cluster "$scenario" "$out" --scenario idle-19k --workers 2 --bind-ips 127.0.0.2-127.0.0.40 ;;
    *) run "$scenario" "$out" --scenario "$scenario" ;;
  esac
done

python3 scripts/bench_table.py $(for s in "${scenarios[@]}"; do echo "$results/$day-$s.json"; done)
python3 scripts/bench_table.py --ratios $(for s in "${scenarios[@]}"; do echo "$results/$day-$s.json"; done)
if [ -n "$write_today" ]; then
  python3 scripts/bench_table.py --today docs/benchmarks.md "$(git rev-parse --short HEAD)" \
    $(for s in "${scenarios[@]}"; do echo "$results/$day-$s.json"; done)
  echo "docs/benchmarks.md: the table of today rewritten" >&2
fi
