#!/usr/bin/env bash
# Re-records tests/conformance/spin-<version>.json from a real Spin: starts a
# fresh, empty redis-server and `spin up` on this repository's spin.toml, and
# replays the battery of tests/tests/conformance.rs against it.
#
#   scripts/record-conformance.sh            # writes tests/conformance/spin-$(spin --version).json
#   SPIN=/path/to/spin OUT=/tmp/x.json scripts/record-conformance.sh
#
# Needs `spin`, `redis-server` and the component (`make component`).
set -euo pipefail
cd "$(dirname "$0")/.."
SPIN=${SPIN:-spin}
REDIS_PORT=${REDIS_PORT:-6391}
SPIN_PORT=${SPIN_PORT:-3091}
version=$("$SPIN" --version | awk '{print $2}')
OUT=${OUT:-tests/conformance/spin-$version.json}
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$data"' EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$data" --save '' >/dev/null &
"$SPIN" up --listen "127.0.0.1:$SPIN_PORT" --variable "redis_port=$REDIS_PORT" >"$data/spin.log" 2>&1 &
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$SPIN_PORT/.well-known/spin/health" >/dev/null 2>&1 && break
  sleep 0.1
done
PING_CONFORMANCE_RECORD="127.0.0.1:$SPIN_PORT" \
PING_CONFORMANCE_KEY="spin_${version//./_}" \
PING_CONFORMANCE_OUT="$OUT" \
  cargo test --release -p ping-e2e --test conformance -- --nocapture
echo "recorded $OUT; point PING_CONFORMANCE_REFERENCE at it (or replace tests/conformance/spin-3.6.3.json)"
