#!/usr/bin/env bash
# The soak for MINUTES (tests/it/chaos/soak.rs, release build): a mixed load (chats, drops and
# resumes, joins and leaves, history reads, HTTP publishes) on scripts/cluster.sh's cluster behind
# nginx, sampled every minute. It fails if anything acked is lost or stored twice, or (runs over 7
# minutes) if an instance's RSS or open files grow by more than 5 % after the first 5 minutes.
# Writes target/soak/soak.csv, target/soak/rss.svg and the instances' warnings counted, with their
# messages refused `unavailable` by cause (target/soak/warnings.txt), and copies the plot to
# docs/soak-rss.svg.
#   scripts/soak.sh 30
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: scripts/soak.sh MINUTES}
SOAK_MINUTES=$minutes cargo test --release --test it chaos::soak -- --nocapture
cp target/soak/rss.svg docs/soak-rss.svg
echo "soak: target/soak/soak.csv, plot in docs/soak-rss.svg"
