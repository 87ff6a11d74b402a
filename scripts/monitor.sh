#!/usr/bin/env bash
# `make monitor`: Prometheus (with ping's rules) and a Redis exporter, next to
# a running `make up`. Open http://127.0.0.1:9090 (try the query
# `namespace:ping_pings:rate5m`, or Alerts). Ctrl-C stops both.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
redis_port=${REDIS_PORT:-6379}
prometheus_listen=${PROMETHEUS_LISTEN:-127.0.0.1:9090}
data="$root/.data/prometheus"
mkdir -p "$data"

for tool in prometheus prometheus-redis-exporter; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing: run make deps" >&2; exit 1; }
done

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> redis exporter on 127.0.0.1:9121 (Redis 127.0.0.1:$redis_port)" >&2
prometheus-redis-exporter -redis.addr "redis://127.0.0.1:$redis_port" \
  -web.listen-address 127.0.0.1:9121 >"$data/redis-exporter.log" 2>&1 &
pids+=($!)

echo "==> prometheus on http://$prometheus_listen (data in .data/prometheus)" >&2
curl -fsS -o /dev/null "http://127.0.0.1:3000/.well-known/spin/health" 2>/dev/null \
  || echo "    note: nothing answers on 127.0.0.1:3000 yet; start it with make up" >&2
prometheus --config.file "$root/monitoring/prometheus/prometheus.yml" \
  --storage.tsdb.path "$data" --storage.tsdb.retention.time 2d \
  --web.listen-address "$prometheus_listen" --log.level warn &
pids+=($!)
wait "${pids[-1]}"
