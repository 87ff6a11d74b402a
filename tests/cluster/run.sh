#!/usr/bin/env bash
# Cluster journeys for ping, against a real Kubernetes cluster whose nodes run
# containerd-shim-spin (e.g. the shim's k3d or kind node image; the exact
# cluster-creation commands are in helm/ping/README.md and the root README):
#   prechecks (RuntimeClass, labelled Spin nodes, the metrics API), build and
#   push two artifacts, helm install (the app pods Running, no start-up errors
#   in their logs), /ping through the Ingress, helm test, monitoring (Spin's
#   OTLP through the Collector as spin_request_count_total and span metrics,
#   the component's and Redis's metrics, the prometheus-operator objects when
#   the CRDs exist), HPA scale-up under load and back down (asserted on the
#   HPA's own status), PVC survival of the count across a Redis pod deletion,
#   helm upgrade at 2+ replicas with zero failed requests under light load,
#   and helm rollback.
#
# Needs: KUBECONFIG (or a current context), and
#   PING_REGISTRY      a registry the cluster pulls from, e.g. localhost:5000
#                      (k3d: --registry-create; kind: a registry container and
#                      certs.d/localhost:5000/hosts.toml on the nodes)
#   PING_INGRESS_URL   where the Ingress controller answers from here, e.g. http://127.0.0.1:8081
# Optional: PING_INGRESS_CLASS (default: cluster default), PING_NAMESPACE (ping-e2e),
#   PING_LOAD_SECONDS (180), PING_INSECURE_REGISTRY=1 (push over plain HTTP to a
#   registry other than localhost, e.g. k3d-registry.localhost:5000).
# Load comes from `oha` (installed by `make cluster-test`) or `wrk`.
# Without a cluster it says why, and exits 0 without reporting any test as passed.
# A cluster that cannot run the journeys (no Spin nodes, no metrics API) fails loudly.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$root/.tools/bin:$PATH"
ns=${PING_NAMESPACE:-ping-e2e}
release=ping
host=ping.e2e.local
load_seconds=${PING_LOAD_SECONDS:-180}
work=$(mktemp -d "${TMPDIR:-/tmp}/ping-cluster.XXXXXX")
passed=0

skip() { echo "cluster tests NOT RUN: $*"; exit 0; }
step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
ok() { echo "ok: $*"; passed=$((passed + 1)); }
# Retries "$@" every 2 s for up to $1 seconds; the message names what never happened.
wait_for() { # $1 = seconds, $2 = what, rest = command
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not happen within ${seconds}s"
    sleep 2
  done
}

command -v kubectl >/dev/null || skip "kubectl not found (run scripts/install-k8s-tools.sh)"
kubectl version --request-timeout=5s >/dev/null 2>&1 || skip "no reachable Kubernetes cluster (set KUBECONFIG)"
[ -n "${PING_REGISTRY:-}" ] || skip "PING_REGISTRY is not set (a registry the cluster can pull from)"
[ -n "${PING_INGRESS_URL:-}" ] || skip "PING_INGRESS_URL is not set (where the Ingress controller answers)"

step "prechecks"
kubectl get runtimeclass wasmtime-spin-v2 >/dev/null 2>&1 \
  || fail "RuntimeClass wasmtime-spin-v2 missing: prepare Spin nodes and apply runtime-class/runtimeclass.yaml (runtime-class/README.md)"
selector=$(kubectl get runtimeclass wasmtime-spin-v2 -o go-template='{{range $k, $v := .scheduling.nodeSelector}}{{$k}}={{$v}},{{end}}')
selector=${selector%,}
if [ -n "$selector" ]; then
  nodes=$(kubectl get nodes -l "$selector" -o name | wc -l)
  [ "$nodes" -gt 0 ] || fail "no node carries the RuntimeClass's label $selector: label the Spin nodes (kubectl label node <node> $selector)"
  echo "Spin nodes ($selector): $nodes"
fi
[ "$(kubectl get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" = True ] \
  || fail "the metrics API (v1beta1.metrics.k8s.io) is not available: install metrics-server (kind has none; k3d has it), or the HPA step cannot pass"
if command -v oha >/dev/null; then loader=oha; elif command -v wrk >/dev/null; then loader=wrk; else
  echo "no load generator: installing oha (scripts/install-bench-tools.sh)"
  "$root/scripts/install-bench-tools.sh" --load-only
  command -v oha >/dev/null || fail "oha did not install"
  loader=oha
fi
if kubectl get namespace "$ns" >/dev/null 2>&1; then
  echo "namespace $ns exists (an earlier run?): deleting it first"
  kubectl delete namespace "$ns" --wait=true --timeout=5m >/dev/null
fi
ok "prechecks"

ping_url() { curl -fsS --max-time 5 -H "Host: $host" "$PING_INGRESS_URL$1"; }

step "build and push two artifacts"
make -C "$root" build >/dev/null
tag="e2e-$(date +%s)"
insecure=()
[ -n "${PING_INSECURE_REGISTRY:-}" ] && insecure=(--insecure)
first=$("$root/target/release/ping-host" push "${insecure[@]}" "$PING_REGISTRY/ping:$tag" --manifest "$root/spin.toml")
second=$("$root/target/release/ping-host" push "${insecure[@]}" "$PING_REGISTRY/ping:$tag-b" --manifest "$root/spin.toml" --annotation "dev.ping.e2e=second")
echo "first:  $first"; echo "second: $second"

install() { # $1 = pinned reference
  # The journey reads /test and /metrics through the Ingress, so it publishes
  # everything (`/` Prefix), which the chart's default paths do not.
  helm upgrade --install "$release" "$root/helm/ping" -n "$ns" --create-namespace --wait --timeout 5m \
    --set image.repository="${1%@*}" --set image.digest="${1#*@}" \
    --set ingress.enabled=true --set "ingress.hosts[0].host=$host" \
    --set "ingress.hosts[0].paths[0].path=/" --set "ingress.hosts[0].paths[0].pathType=Prefix" \
    ${PING_INGRESS_CLASS:+--set ingress.className=$PING_INGRESS_CLASS} \
    --set autoscaling.minReplicas=2 --set autoscaling.maxReplicas=6 \
    --set metrics.enabled=true $monitoring_crds
}
# ServiceMonitors and the PrometheusRule only where prometheus-operator's CRDs exist.
monitoring_crds=""
if kubectl get crd servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
  monitoring_crds="--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set metrics.dashboards.enabled=true"
fi
dump() {
  echo "--- state of namespace $ns before cleaning up" >&2
  kubectl -n "$ns" get all,pvc,hpa,pdb,networkpolicy -o wide >&2 || true
  kubectl -n "$ns" describe pods >&2 || true
  kubectl -n "$ns" describe hpa >&2 || true
  kubectl -n "$ns" get events --sort-by=.lastTimestamp >&2 || true
  for pod in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
    echo "--- logs of $pod" >&2
    kubectl -n "$ns" logs "$pod" --all-containers --tail=100 >&2 || true
  done
}
cleanup() {
  local status=$?
  [ "$status" -ne 0 ] && dump
  helm uninstall "$release" -n "$ns" >/dev/null 2>&1 || true
  # Waits, so an immediate re-run does not find the namespace still terminating.
  kubectl delete namespace "$ns" --wait=true --timeout=5m >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "helm install: the app pods start under the shim"
install "$first"
app_selector="app.kubernetes.io/instance=$release,app.kubernetes.io/component=app"
for pod in $(kubectl -n "$ns" get pods -l "$app_selector" -o name); do
  phase=$(kubectl -n "$ns" get "$pod" -o jsonpath='{.status.phase}')
  restarts=$(kubectl -n "$ns" get "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')
  [ "$phase" = Running ] || fail "$pod is $phase, not Running"
  [ "$restarts" = 0 ] || fail "$pod restarted $restarts times"
  if kubectl -n "$ns" logs "$pod" | grep -Ei 'error|permission denied|panicked'; then
    fail "$pod logged start-up errors (above)"
  fi
done
ok "the app pods run, with no start-up errors"

step "/ping through the Ingress"
wait_for 60 "/test answering through the Ingress" ping_url /test
a=$(ping_url /ping); b=$(ping_url /ping)
[ "$b" -eq $((a + 1)) ] || fail "/ping went $a then $b"
ok "/ping answered $a then $b"

step "helm test"
helm test "$release" -n "$ns" --timeout 2m
ok "helm test"

step "monitoring"
scrape() { # $1 = service, $2 = port, $3 = metric that must be present; polls up to 90 s
  kubectl -n "$ns" port-forward "svc/$1" "1$2:$2" >/dev/null 2>&1 &
  local pf=$! out="" deadline=$((SECONDS + 90))
  while :; do
    out=$(curl -fsS --max-time 5 "http://127.0.0.1:1$2/metrics" 2>/dev/null || true)
    grep -q "^$3" <<<"$out" && break
    if [ "$SECONDS" -ge "$deadline" ]; then kill "$pf" 2>/dev/null || true; fail "$1:$2/metrics has no $3 after 90 s"; fi
    ping_url /ping >/dev/null 2>&1 || true
    sleep 3
  done
  kill "$pf" 2>/dev/null || true
  grep "^$3" <<<"$out" | head -3
}
for _ in $(seq 10); do ping_url /ping >/dev/null; done
# Spin exports every 10 s (metrics.exportIntervalMillis); spans become metrics every 15 s.
scrape "$release-otel-collector" 8889 spin_request_count_total
scrape "$release-otel-collector" 8889 traces_span_metrics_calls_total
scrape "$release-redis-metrics" 9121 redis_up
metrics=$(ping_url /metrics)
grep -q '^ping_pings_total [0-9]' <<<"$metrics" || fail "the app's /metrics has no ping_pings_total"
grep -q '^ping_redis_up 1' <<<"$metrics" || fail "the app's /metrics says Redis is down"
if [ -n "$monitoring_crds" ]; then
  n=$(kubectl -n "$ns" get servicemonitors,prometheusrules -o name | wc -l)
  [ "$n" -eq 4 ] || fail "expected 3 ServiceMonitors and 1 PrometheusRule, found $n"
fi
ok "Spin's metrics and request spans reach Prometheus format through the Collector"

step "HPA scale test: ${load_seconds}s of load"
hpa_field() { kubectl -n "$ns" get hpa "$release" -o jsonpath="{.status.$1}"; }
if [ "$loader" = oha ]; then
  oha -z "${load_seconds}s" -c 64 --no-tui -H "Host: $host" "$PING_INGRESS_URL/ping" >"$work/load.txt" &
else
  wrk -t2 -c64 -d"${load_seconds}s" -H "Host: $host" "$PING_INGRESS_URL/ping" >"$work/load.txt" &
fi
load=$!
peak=0 peak_mem=0
while kill -0 "$load" 2>/dev/null; do
  r=$(hpa_field desiredReplicas); [ "${r:-0}" -gt "$peak" ] && peak=$r
  # The app's memory under load (working set, from the metrics API), to size resources.limits.memory.
  m=$(kubectl -n "$ns" top pods -l "$app_selector" --no-headers 2>/dev/null | awk '{gsub("Mi", "", $3); if ($3 > max) max = $3} END {print max + 0}')
  [ "${m:-0}" -gt "$peak_mem" ] && peak_mem=$m
  sleep 10
done
wait "$load" || true
echo "the HPA's peak desiredReplicas under load: $peak; the busiest app pod's peak memory: ${peak_mem}Mi (limit $(kubectl -n "$ns" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].resources.limits.memory}'))"
if [ "$peak" -lt 3 ]; then
  kubectl -n "$ns" describe hpa "$release" >&2
  fail "the HPA did not ask for 3 or more replicas (peak $peak; its conditions and events are above); check metrics-server and SystemdCgroup"
fi
echo "waiting for scale-down"
deadline=$((SECONDS + 600))
until [ "$(hpa_field currentReplicas)" -le 2 ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then kubectl -n "$ns" describe hpa "$release" >&2; fail "no scale-down to 2 within 10 minutes"; fi
  sleep 10
done
ok "scaled to $peak and back to $(hpa_field currentReplicas)"

step "PVC survival: delete the Redis pod"
before=$(ping_url /count)
kubectl -n "$ns" delete pod "$release-redis-0" --wait=true
kubectl -n "$ns" rollout status statefulset "$release-redis" --timeout 3m
wait_for 60 "/test answering after the Redis restart" ping_url /test
after=$(ping_url /ping)
[ "$after" -eq $((before + 1)) ] || fail "count was $before before the Redis pod died, /ping then answered $after"
ok "the count continued ($before -> $after)"

step "helm upgrade at 2+ replicas under light load: zero failed requests"
replicas=$(kubectl -n "$ns" get deploy "$release" -o jsonpath='{.status.readyReplicas}')
[ "${replicas:-0}" -ge 2 ] || fail "the upgrade step needs 2 or more ready replicas, found ${replicas:-0}"
( while :; do
    if ping_url /ping >/dev/null 2>&1; then echo ok; else echo fail; fi
    sleep 0.1
  done ) >"$work/upgrade.txt" &
prober=$!
install "$second"
kubectl -n "$ns" rollout status deploy "$release" --timeout 5m
sleep 5; kill "$prober"; wait "$prober" 2>/dev/null || true
total=$(wc -l <"$work/upgrade.txt"); failures=$(grep -c fail "$work/upgrade.txt" || true)
echo "requests during upgrade: $total, failed: $failures"
[ "$total" -gt 0 ] && [ "$failures" -eq 0 ] || fail "$failures of $total requests failed during the upgrade"
image=$(kubectl -n "$ns" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].image}')
[ "$image" = "$second" ] || fail "after upgrade the image is $image, expected $second"
ok "upgrade with zero failed requests"

step "helm rollback"
helm rollback "$release" 1 -n "$ns" --wait --timeout 5m
image=$(kubectl -n "$ns" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].image}')
[ "$image" = "$first" ] || fail "after rollback the image is $image, expected $first"
ping_url /ping >/dev/null || fail "/ping after rollback"
ok "rollback"

echo
echo "cluster tests: $passed passed, 0 failed"
