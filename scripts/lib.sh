# Shared by the benchmark scripts: start and stop a release broker on a free loopback port.
# Load tests publish faster than any person (10-50 messages/s per synthetic user), so the per-user
# chat rate limit, an abuse protection, is off here (--rate-limit 0); everything else is the default.
# Every broker names its database: --database-url none unless the caller passes its own
# (start_broker --database-url sqlite://...), so no run writes ./wsbroker.db.
# After start_broker: $broker_pid, $broker_addr (127.0.0.1:PORT) and $broker_url (ws://.../ws).

broker_bin=${broker_bin:-target/release/wsbroker}
broker_pid=""
broker_addr=""
broker_url=""

start_broker() {
  local log
  log=$(mktemp)
  local database=(--database-url none)
  case " $* " in *" --database-url "*) database=() ;; esac
  "$broker_bin" --listen 127.0.0.1:0 --log-level info --rate-limit 0 "${database[@]}" "$@" >"$log" 2>&1 &
  broker_pid=$!
  wait_listening "$log" broker
}

# wait_listening LOG WHAT: waits (10 s at most) until LOG says "listening on ADDR", then sets
# $broker_addr and $broker_url.
wait_listening() {
  broker_addr=""
  for _ in $(seq 100); do
    broker_addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$1" | head -n1)
    [ -n "$broker_addr" ] && break
    sleep 0.1
  done
  [ -n "$broker_addr" ] || { echo "the $2 did not start:" >&2; cat "$1" >&2; exit 1; }
  broker_url="ws://$broker_addr/ws"
}

stop_broker() {
  [ -n "$broker_pid" ] || return 0
  kill -TERM "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
}

# The broker's open connections, from /metrics.
open_connections() {
  python3 - "$broker_addr" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next(l.split()[1] for l in text.splitlines() if l.startswith("wsbroker_connections_open ")))
PY
}

# The bare reference server (`loadgen reference-server`) on a free loopback port, in place of the
# broker: start_reference sets $broker_pid and $broker_url like start_broker; stop_broker stops it.
start_reference() {
  local log
  log=$(mktemp)
  "${loadgen_bin:-target/release/loadgen}" reference-server --listen 127.0.0.1:0 >"$log" 2>&1 &
  broker_pid=$!
  wait_listening "$log" "reference server"
}
