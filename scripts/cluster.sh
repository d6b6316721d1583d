#!/usr/bin/env bash
# A real deployment on loopback, in a scratch directory: PostgreSQL, Redis, three wsbroker
# instances and nginx in front of them (deploy/nginx/wsbroker.conf, least connections, no sticky
# sessions). Clients and the REST API use nginx's port.
#
#   scripts/cluster.sh up          # starts everything; prints the URL
#   scripts/cluster.sh status      # each part, and each instance's /readyz
#   scripts/cluster.sh restart N   # instance N (1-3): SIGTERM, its exit, started again, ready
#   scripts/cluster.sh stop PART   # postgres, redis or instanceN (SIGTERM), to see what breaks
#   scripts/cluster.sh start PART  # starts it again on its port
#   scripts/cluster.sh down        # stops everything and removes the directory
#
# SENTINEL=1 puts Redis under Sentinel: a master, a replica and three sentinels, the instances on
# redis+sentinel://; `scripts/cluster.sh stop redis` then kills the master and Sentinel fails over.
#
# CLUSTER_DIR (default /tmp/wsbroker-cluster), PORT (nginx's; default 8080; 0: a free one) and
# WSBROKER_BIN (default target/release/wsbroker, built when missing) change where and what;
# WSBROKER_ARGS adds flags to every instance (e.g. "--rate-limit 0" for load tests).
# CLUSTER_OWNER=PID at `up`: the cluster takes itself down once that process is gone (the tests
# set it, so a test run that is killed leaves nothing running).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
dir=${CLUSTER_DIR:-/tmp/wsbroker-cluster}
bin=${WSBROKER_BIN:-$repo/target/release/wsbroker}
instances=3

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, 30 s at most.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "cluster: $what did not come up (logs in $dir)" >&2
  exit 1
}

ready() { curl -fsS "http://127.0.0.1:$1/readyz"; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

# The --redis-url of the instances: the one Redis, or its sentinels.
redis_url() {
  if [ -e "$dir/sentinel1.port" ]; then
    echo "redis+sentinel://$(for n in 1 2 3; do printf '127.0.0.1:%s,' "$(cat "$dir/sentinel$n.port")"; done | sed 's/,$//')/mymaster"
  else
    echo "redis://127.0.0.1:$(cat "$dir/redis.port")"
  fi
}

start_instance() {
  local n=$1 port
  port=$(cat "$dir/instance$n.port")
  "$bin" --listen "127.0.0.1:$port" --instance-id "i$n" \
    --database-url "postgres://postgres@127.0.0.1:$(cat "$dir/postgres.port")/chat" \
    --redis-url "$(redis_url)" \
    --trusted-proxies 127.0.0.1 --log-format text ${WSBROKER_ARGS:-} >>"$dir/instance$n.log" 2>&1 &
  echo $! >"$dir/instance$n.pid"
  wait_for "instance $n" ready "$port"
}

start_postgres() {
  local port
  port=$(cat "$dir/postgres.port")
  su postgres -s /bin/sh -c "'$(pg_bin)/pg_ctl' start -w -D '$dir/pg' -l '$dir/postgres.log' -o '-p $port -k $dir -c listen_addresses=127.0.0.1'" >/dev/null
  head -n 1 "$dir/pg/postmaster.pid" >"$dir/postgres.pid"
}

start_redis() {
  redis-server --port "$(cat "$dir/redis.port")" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >>"$dir/redis.log" 2>&1 &
  echo $! >"$dir/redis.pid"
  wait_for Redis redis-cli -p "$(cat "$dir/redis.port")" ping
}

# A replica of the master and three sentinels watching it (quorum 2, a master silent for 1 s is
# down); waits until the replica is in sync and each sentinel knows it and the two others.
start_sentinels() {
  local master n port
  master=$(cat "$dir/redis.port")
  free_port >"$dir/replica.port"
  redis-server --port "$(cat "$dir/replica.port")" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --replicaof 127.0.0.1 "$master" >"$dir/replica.log" 2>&1 &
  echo $! >"$dir/replica.pid"
  for n in 1 2 3; do
    port=$(free_port)
    echo "$port" >"$dir/sentinel$n.port"
    printf 'port %s\nbind 127.0.0.1\ndaemonize no\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n' \
      "$port" "$master" >"$dir/sentinel$n.conf"
    redis-sentinel "$dir/sentinel$n.conf" >"$dir/sentinel$n.log" 2>&1 &
    echo $! >"$dir/sentinel$n.pid"
  done
  # In sync, not only listed: a listed replica may still wait for the master's snapshot.
  wait_for "the replica in sync" sh -c "redis-cli -p $master info replication | grep -q state=online"
  for n in 1 2 3; do
    port=$(cat "$dir/sentinel$n.port")
    wait_for "sentinel $n" sh -c "redis-cli -p $port sentinel replicas mymaster | grep -q . && [ \$(redis-cli -p $port sentinel sentinels mymaster | grep -c '^name$') -eq 2 ]"
  done
}

# start PART: starts a stopped part again on its port.
start_part() {
  case $1 in
    postgres) start_postgres ;;
    redis) start_redis ;;
    instance[1-9]) start_instance "${1#instance}" ;;
    *) echo "cluster: no part $1 (postgres, redis, instanceN)" >&2; exit 2 ;;
  esac
  echo "$1 started"
}

# stop_part PART: postgres (fast shutdown), redis (the master, killed), instanceN (SIGTERM).
stop_part() {
  case $1 in
    postgres) su postgres -s /bin/sh -c "'$(pg_bin)/pg_ctl' stop -w -m fast -D '$dir/pg'" >/dev/null; rm -f "$dir/postgres.pid" ;;
    redis) stop redis KILL ;;
    instance[1-9]) stop "$1" TERM ;;
    *) echo "cluster: no part $1 (postgres, redis, instanceN)" >&2; exit 2 ;;
  esac
  echo "$1 stopped"
}

up() {
  [ -e "$dir/up" ] && { echo "cluster: already up in $dir (scripts/cluster.sh down first)" >&2; exit 1; }
  [ -x "$bin" ] || cargo build --release --bin wsbroker
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  # PostgreSQL, as the postgres user (it refuses root), trusting loopback.
  local pg port
  pg=$(pg_bin)
  su postgres -s /bin/sh -c "'$pg/initdb' -D '$dir/pg' -A trust -U postgres --no-sync -E UTF8" >"$dir/initdb.log"
  free_port >"$dir/postgres.port"
  port=$(cat "$dir/postgres.port")
  start_postgres
  su postgres -s /bin/sh -c "'$pg/psql' -h 127.0.0.1 -p $port -U postgres -qc 'CREATE DATABASE chat'"
  free_port >"$dir/redis.port"
  start_redis
  if [ "${SENTINEL:-0}" = 1 ]; then
    start_sentinels
  fi
  for n in $(seq $instances); do
    free_port >"$dir/instance$n.port"
    start_instance "$n"
  done
  # nginx with the deployment's site, its ports put in place.
  port=${PORT:-8080}
  [ "$port" = 0 ] && port=$(free_port)
  echo "$port" >"$dir/nginx.port"
  sed -e "s/listen 8080;/listen 127.0.0.1:$port;/" \
      -e "s/127.0.0.1:8081/127.0.0.1:$(cat "$dir/instance1.port")/" \
      -e "s/127.0.0.1:8082/127.0.0.1:$(cat "$dir/instance2.port")/" \
      -e "s/127.0.0.1:8083/127.0.0.1:$(cat "$dir/instance3.port")/" \
      deploy/nginx/wsbroker.conf >"$dir/site.conf"
  mkdir -p "$dir/nginx"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
daemon off;
events { worker_connections 16384; }
worker_rlimit_nofile 20000;
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    include $dir/site.conf;
}
CONF
  nginx -t -q -c "$dir/nginx.conf" -p "$dir/nginx"
  nginx -c "$dir/nginx.conf" -p "$dir/nginx" >"$dir/nginx.log" 2>&1 &
  wait_for nginx ready "$port"
  touch "$dir/up"
  if [ -n "${CLUSTER_OWNER:-}" ]; then
    # A watchdog in a session of its own (a signal to the owner's group does not reach it).
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -e "$2/up" ]; do sleep 1; done
      if [ -e "$2/up" ]; then CLUSTER_DIR="$2" "$3" down; fi' _ "$CLUSTER_OWNER" "$dir" \
      "$repo/scripts/cluster.sh" </dev/null >/dev/null 2>&1 &
  fi
  echo "cluster up: ws://127.0.0.1:$port/ws and http://127.0.0.1:$port/ (PostgreSQL :$(cat "$dir/postgres.port"), Redis :$(cat "$dir/redis.port"), instances :$(cat "$dir"/instance?.port | paste -sd, -))"
}

status() {
  [ -e "$dir/up" ] || { echo "cluster: not up ($dir)"; exit 1; }
  local part pid
  for part in postgres redis replica sentinel1 sentinel2 sentinel3 instance1 instance2 instance3 nginx; do
    [ -e "$dir/$part.port" ] || continue
    pid=$(cat "$dir/$part.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      printf '%-10s running (pid %s, port %s)' "$part" "$pid" "$(cat "$dir/$part.port")"
      case $part in
        instance*|nginx) printf '  readyz: %s' "$(ready "$(cat "$dir/$part.port")" 2>&1 || echo down)" ;;
      esac
      echo
    else
      echo "$part stopped"
    fi
  done
}

# stop PART SIGNAL: signals it and waits for it to exit.
stop() {
  local pid
  pid=$(cat "$dir/$1.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill "-$2" "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/$1.pid"
}

restart() {
  local n=${1:?which instance: 1-$instances}
  [ -e "$dir/instance$n.port" ] || { echo "cluster: no instance $n" >&2; exit 1; }
  stop "instance$n" TERM
  start_instance "$n"
  echo "instance $n restarted"
}

down() {
  stop nginx QUIT
  for n in $(seq $instances); do stop "instance$n" TERM; done
  for part in sentinel1 sentinel2 sentinel3 replica redis; do stop "$part" TERM; done
  [ -e "$dir/postgres.pid" ] && su postgres -s /bin/sh -c "'$(pg_bin)/pg_ctl' stop -w -m fast -D '$dir/pg'" >/dev/null
  rm -rf "$dir"
  echo "cluster down"
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  restart) restart "${2:-}" ;;
  stop) stop_part "${2:?which part}" ;;
  start) start_part "${2:?which part}" ;;
  down) down ;;
  *) echo "usage: scripts/cluster.sh up|status|restart N|stop PART|start PART|down" >&2; exit 2 ;;
esac
