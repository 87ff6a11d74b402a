#!/usr/bin/env bash
# Cluster journeys for ping, against a real Kubernetes cluster whose nodes run
# containerd-shim-spin (e.g. the shim's k3d or kind node image):
#   build and push the artifact, helm install, /ping through the Ingress,
#   helm test, monitoring (Spin's OTLP through the Collector as
#   spin_request_count_total, the component's and Redis's metrics, the
#   prometheus-operator objects when the CRDs exist), HPA scale-up under load
#   and back down, PVC survival of the
#   count across a Redis pod deletion, helm upgrade with zero failed requests
#   under light load, and helm rollback.
#
# Needs: KUBECONFIG (or a current context), and
#   PING_REGISTRY      a registry the cluster pulls from, e.g. localhost:5000 (k3d registry)
#   PING_INGRESS_URL   where the Ingress controller answers from here, e.g. http://127.0.0.1:8081
# Optional: PING_INGRESS_CLASS (default: cluster default), PING_NAMESPACE (ping-e2e),
#   PING_LOAD_SECONDS (180). Load comes from `oha` (cargo install oha) or `wrk`.
# Without a cluster it says why, and exits 0 without reporting any test as passed.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$root/.tools/bin:$PATH"
ns=${PING_NAMESPACE:-ping-e2e}
release=ping
host=ping.e2e.local
load_seconds=${PING_LOAD_SECONDS:-180}

skip() { echo "cluster tests NOT RUN: $*"; exit 0; }
step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

command -v kubectl >/dev/null || skip "kubectl not found (run scripts/install-k8s-tools.sh)"
kubectl version --request-timeout=5s >/dev/null 2>&1 || skip "no reachable Kubernetes cluster (set KUBECONFIG)"
kubectl get runtimeclass wasmtime-spin-v2 >/dev/null 2>&1 \
  || skip "RuntimeClass wasmtime-spin-v2 missing: prepare Spin nodes and apply runtime-class/runtimeclass.yaml"
[ -n "${PING_REGISTRY:-}" ] || skip "PING_REGISTRY is not set (a registry the cluster can pull from)"
[ -n "${PING_INGRESS_URL:-}" ] || skip "PING_INGRESS_URL is not set (where the Ingress controller answers)"
if command -v oha >/dev/null; then loader=oha; elif command -v wrk >/dev/null; then loader=wrk; else skip "no load generator: install oha or wrk"; fi

ping_url() { curl -fsS --max-time 5 -H "Host: $host" "$PING_INGRESS_URL$1"; }

step "build and push two artifacts"
make -C "$root" build >/dev/null
tag="e2e-$(date +%s)"
first=$("$root/target/release/ping-host" push "$PING_REGISTRY/ping:$tag" --manifest "$root/spin.toml")
second=$("$root/target/release/ping-host" push "$PING_REGISTRY/ping:$tag-b" --manifest "$root/spin.toml" --annotation "dev.ping.e2e=second")
echo "first:  $first"; echo "second: $second"

install() { # $1 = pinned reference
  helm upgrade --install "$release" "$root/helm/ping" -n "$ns" --create-namespace --wait --timeout 5m \
    --set image.repository="${1%@*}" --set image.digest="${1#*@}" \
    --set ingress.enabled=true --set "ingress.hosts[0].host=$host" \
    --set "ingress.hosts[0].paths[0].path=/" --set "ingress.hosts[0].paths[0].pathType=Prefix" \
    ${PING_INGRESS_CLASS:+--set ingress.className=$PING_INGRESS_CLASS} \
    --set autoscaling.minReplicas=1 --set autoscaling.maxReplicas=6 \
    --set metrics.enabled=true $monitoring_crds
}
# ServiceMonitors and the PrometheusRule only where prometheus-operator's CRDs exist.
monitoring_crds=""
if kubectl get crd servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
  monitoring_crds="--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set metrics.dashboards.enabled=true"
fi
cleanup() { helm uninstall "$release" -n "$ns" >/dev/null 2>&1 || true; kubectl delete ns "$ns" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "helm install"
install "$first"

step "/ping through the Ingress"
for _ in $(seq 30); do ping_url /test >/dev/null 2>&1 && break; sleep 2; done
a=$(ping_url /ping); b=$(ping_url /ping)
[ "$b" -eq $((a + 1)) ] || fail "/ping went $a then $b"
echo "ok: /ping answered $a then $b"

step "helm test"
helm test "$release" -n "$ns" --timeout 2m

step "monitoring"
scrape() { # $1 = service, $2 = port, $3 = metric that must be present
  kubectl -n "$ns" port-forward "svc/$1" "1$2:$2" >/dev/null 2>&1 &
  local pf=$! out=""
  for _ in $(seq 20); do out=$(curl -fsS --max-time 5 "http://127.0.0.1:1$2/metrics" 2>/dev/null) && break; sleep 1; done
  kill "$pf" 2>/dev/null || true
  grep -q "^$3" <<<"$out" || fail "$1:$2/metrics has no $3"
  grep "^$3" <<<"$out" | head -3
}
# Spin pushes OTLP every few seconds; give the Collector time to have some.
for _ in $(seq 10); do ping_url /ping >/dev/null; done
sleep 20
scrape "$release-otel-collector" 8889 spin_request_count_total
scrape "$release-redis-metrics" 9121 redis_up
ping_url /metrics | grep -q '^ping_pings_total [0-9]' || fail "the app's /metrics has no ping_pings_total"
ping_url /metrics | grep -q '^ping_redis_up 1' || fail "the app's /metrics says Redis is down"
if [ -n "$monitoring_crds" ]; then
  n=$(kubectl -n "$ns" get servicemonitors,prometheusrules -o name | wc -l)
  [ "$n" -eq 4 ] || fail "expected 3 ServiceMonitors and 1 PrometheusRule, found $n"
fi
echo "ok: Spin's metrics reach Prometheus format through the Collector"

step "HPA scale test: ${load_seconds}s of load"
replicas() { kubectl -n "$ns" get deploy "$release" -o jsonpath='{.status.replicas}'; }
if [ "$loader" = oha ]; then
  oha -z "${load_seconds}s" -c 64 --no-tui -H "Host: $host" "$PING_INGRESS_URL/ping" >/tmp/ping-load.txt &
else
  wrk -t2 -c64 -d"${load_seconds}s" -H "Host: $host" "$PING_INGRESS_URL/ping" >/tmp/ping-load.txt &
fi
load=$!
peak=0
while kill -0 "$load" 2>/dev/null; do
  r=$(replicas); [ "${r:-0}" -gt "$peak" ] && peak=$r
  sleep 10
done
wait "$load" || true
echo "peak replicas under load: $peak"
[ "$peak" -ge 3 ] || fail "the HPA did not scale to 3 or more replicas (peak $peak); check metrics-server and SystemdCgroup"
echo "waiting for scale-down"
for _ in $(seq 60); do [ "$(replicas)" -le 1 ] && break; sleep 10; done
[ "$(replicas)" -le 1 ] || fail "no scale-down within 10 minutes (replicas $(replicas))"
echo "ok: scaled to $peak and back to $(replicas)"

step "PVC survival: delete the Redis pod"
before=$(ping_url /count)
kubectl -n "$ns" delete pod "$release-redis-0" --wait=true
kubectl -n "$ns" rollout status statefulset "$release-redis" --timeout 3m
for _ in $(seq 30); do ping_url /test >/dev/null 2>&1 && break; sleep 2; done
after=$(ping_url /ping)
[ "$after" -eq $((before + 1)) ] || fail "count was $before before the Redis pod died, /ping then answered $after"
echo "ok: the count continued ($before -> $after)"

step "helm upgrade under light load: zero failed requests"
failures=0; total=0
( while :; do
    if ping_url /ping >/dev/null 2>&1; then echo ok; else echo fail; fi
    sleep 0.1
  done ) >/tmp/ping-upgrade.txt &
prober=$!
install "$second"
kubectl -n "$ns" rollout status deploy "$release" --timeout 5m
sleep 5; kill "$prober"; wait "$prober" 2>/dev/null || true
total=$(wc -l </tmp/ping-upgrade.txt); failures=$(grep -c fail /tmp/ping-upgrade.txt || true)
echo "requests during upgrade: $total, failed: $failures"
[ "$total" -gt 0 ] && [ "$failures" -eq 0 ] || fail "$failures of $total requests failed during the upgrade"
image=$(kubectl -n "$ns" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].image}')
[ "$image" = "$second" ] || fail "after upgrade the image is $image, expected $second"

step "helm rollback"
helm rollback "$release" 1 -n "$ns" --wait --timeout 5m
image=$(kubectl -n "$ns" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].image}')
[ "$image" = "$first" ] || fail "after rollback the image is $image, expected $first"
ping_url /ping >/dev/null || fail "/ping after rollback"

echo
echo "cluster tests: 8 passed, 0 failed"
