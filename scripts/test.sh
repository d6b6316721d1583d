#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (idempotently: Redis and
# PostgreSQL, which the tests start themselves on free ports), checks format and lints, then runs
# every test (benches run once each in test mode), a short load smoke test with loadgen against a
# release broker, and the concurrency test again in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
# PostgreSQL's server binaries live in /usr/lib/postgresql/<version>/bin, not on PATH.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# The client library's tests need Node >= 20 (its WebSocket, behind --experimental-websocket).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
# promtool (Debian's prometheus package) checks the alert rules in deploy/prometheus/, and a
# real Prometheus evaluates them and the dashboard (tests/it/prometheus.rs).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# nginx fronts scripts/cluster.sh's cluster (the rolling restart test); curl is the script's.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# Playwright drives Debian's chromium; its own browser download is not needed (nor reachable).
python3 -c "import playwright" 2>/dev/null || python3 -m pip install -q playwright
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

export CARGO_TERM_COLOR=never
# Each step that runs tests has a deadline (`timeout`): a hang fails the run with the step's name
# instead of holding CI up until its own limit.
echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Imports between files run one way (ARCHITECTURE.md); the checker lives beside the repository.
if [ -x ../shared/tools/import-cycles ]; then
  cycles=$(../shared/tools/import-cycles src)
  case "$(printf '%s\n' "$cycles" | tail -n 1)" in
    "0 cycles"*) ;;
    *) printf 'import cycles between files:\n%s\n' "$cycles" >&2; exit 1 ;;
  esac
fi
echo "== the alert rules: promtool check and its unit tests; the systemd unit"
(cd deploy/prometheus && promtool check rules alerts.yml && promtool test rules alerts.test.yml)
# systemd-analyze checks the unit as it is, but for the binary's path (not installed here).
if command -v systemd-analyze >/dev/null 2>&1; then
  unit_dir=$(mktemp -d)
  sed "s|/usr/local/bin/wsbroker|$(command -v true)|" deploy/systemd/wsbroker.service >"$unit_dir/wsbroker.service"
  systemd-analyze verify "$unit_dir/wsbroker.service"
  rm -rf "$unit_dir"
fi
echo "== unit and integration tests (debug)"
timeout 45m cargo test --workspace --all-targets
echo "== load smoke test (release): loadgen's smoke scenario (and 5 global messages) against a real broker, nothing may be lost"
cargo build --release --workspace
. scripts/lib.sh
trap stop_broker EXIT
start_broker
target/release/loadgen --url "$broker_url" --scenario smoke --globals 5 --assert-clean
echo "== reconnect storm smoke test (release): 2,000 connections drop at once, all back, every room's presence whole"
target/release/loadgen --url "$broker_url" --scenario reconnect-storm --conns 2000 --rooms 100 --assert-clean
stop_broker
echo "== the bare reference server (loadgen reference-server) under the smoke scenario, nothing lost"
start_reference
target/release/loadgen --url "$broker_url" --scenario smoke --assert-clean
stop_broker
echo "== the JavaScript client library in Node, against real brokers (debug build)"
cargo build --bin wsbroker
# A test that hangs fails after 2 minutes instead of holding the run (and CI) up.
timeout 10m node --experimental-websocket --test --test-timeout=120000 tests/js/
echo "== the web page in a real browser (Chromium driven by Playwright)"
timeout 20m python3 tests/browser/test_chat.py
echo "== concurrency test (release)"
timeout 20m cargo test --release --test it concurrency
