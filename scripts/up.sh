#!/usr/bin/env bash
# `make up`: a local Redis with AOF persistence under .data/, and ping-host serving spin.toml.
# Ctrl-C stops both; the count survives in .data/redis.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
redis_port=${REDIS_PORT:-6379}
listen=${LISTEN:-127.0.0.1:3000}
metrics_listen=${METRICS_LISTEN:-127.0.0.1:9464}
data="$root/.data/redis"
mkdir -p "$data"

redis_pid=""
if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  echo "==> Redis already answers on 127.0.0.1:$redis_port; using it" >&2
else
  echo "==> starting redis-server on 127.0.0.1:$redis_port (AOF in .data/redis)" >&2
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$data" \
    --appendonly yes --appendfsync "${REDIS_APPENDFSYNC:-always}" --save "" \
    --logfile "$data/redis.log" --pidfile "$data/redis.pid" --daemonize yes
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis_pid=$(cat "$data/redis.pid")
fi

stop_redis() {
  if [ -n "$redis_pid" ]; then
    echo "==> stopping redis-server" >&2
    redis-cli -p "$redis_port" shutdown >/dev/null 2>&1 || kill "$redis_pid" 2>/dev/null || true
  fi
}
trap stop_redis EXIT

echo "==> serving on http://$listen  (try: curl $listen/ping)" >&2
echo "==> runtime metrics on http://$metrics_listen/metrics  (make monitor scrapes them)" >&2
"$root/target/release/ping-host" up --manifest "$root/spin.toml" --listen "$listen" \
  --metrics-listen "$metrics_listen" --variable "redis_port=$redis_port" "$@"
