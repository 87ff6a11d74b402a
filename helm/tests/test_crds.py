"""The chart's SpinApp, ScaledObject and HTTPScaledObject, validated against
the CRDs of spin-operator, KEDA and the KEDA HTTP add-on, pinned in
helm/tests/crds/ (each file names its source repository, path and commit).

kubernetes-validate knows only built-in kinds, so each CRD's
openAPIV3Schema is applied here with jsonschema, the way the API server
applies it with strict field validation (what `kubectl apply` asks for):
unknown fields are errors unless the schema preserves them, and the CEL
rules (x-kubernetes-validations) the pinned CRDs carry are evaluated too.
Also here: how the SpinApp, KEDA and NetworkPolicy modes behave."""

from __future__ import annotations

import copy
import pathlib
import re

import jsonschema
import pytest
import yaml

from test_chart import CHART, NAMESPACE, helm, of_kind, one, render

CRDS = pathlib.Path(__file__).resolve().parent / "crds"


def strict(schema: dict) -> dict:
    """An OpenAPI v3 structural schema as strict JSON Schema: objects with
    properties accept no other field unless the schema preserves unknown
    fields."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = strict(schema["additionalProperties"])
    if "items" in schema:
        schema["items"] = strict(schema["items"])
    return schema


def load_crds() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the served version's schema."""
    crds = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition", path
        for version in crd["spec"]["versions"]:
            key = (f'{crd["spec"]["group"]}/{version["name"]}', crd["spec"]["names"]["kind"])
            crds[key] = version["schema"]["openAPIV3Schema"]
    return crds


CRD_SCHEMAS = load_crds()
HAS_XOR = re.compile(r"^has\(self\.(\w+)\) != has\(self\.(\w+)\)$")


def cel_errors(schema: dict, value, path: str = "") -> list[str]:
    """Evaluates the CEL rules of the pinned CRDs. Only the rule shapes they
    use are known; any other shape fails, so a re-pinned CRD with new rules
    cannot be skipped silently."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        m = HAS_XOR.match(rule["rule"])
        assert m, f"unknown CEL rule at {path or '/'}: {rule['rule']} (teach cel_errors)"
        if isinstance(value, dict) and ((m.group(1) in value) == (m.group(2) in value)):
            errors.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += cel_errors(sub, value[key], f"{path}/{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}/{i}")
    return errors


def validate(obj: dict) -> list[str]:
    schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f'{obj["apiVersion"]} {obj["kind"]}: no pinned CRD']
    validator = jsonschema.Draft7Validator(strict(schema))
    errors = [f'{"/".join(map(str, e.absolute_path))}: {e.message}' for e in validator.iter_errors(obj)]
    return errors + cel_errors(schema, obj)


PINNED_KINDS = {"SpinApp", "ScaledObject", "HTTPScaledObject"}
SCENARIOS = {
    "spinapp-values": ["SpinApp"],
    "keda-values": ["ScaledObject"],
    "keda-http-values": ["HTTPScaledObject"],
}


def test_every_pinned_crd_names_its_source():
    for path in CRDS.glob("*.yaml"):
        header = path.read_text().split("apiVersion:")[0]
        assert re.search(r"source:\s+github\.com/\S+", header) and re.search(r"commit:\s+[0-9a-f]{40}", header), path
    assert {k for _, k in CRD_SCHEMAS} == PINNED_KINDS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_crd_objects_validate_against_the_pinned_crds(name):
    objects = render("-f", str(CHART / "ci" / f"{name}.yaml"))
    found = [o for o in objects if o["kind"] in PINNED_KINDS]
    assert sorted(o["kind"] for o in found) == SCENARIOS[name]
    for obj in found:
        assert validate(obj) == [], obj["kind"]


def test_other_scenarios_render_none_of_these_kinds():
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        if path.stem not in SCENARIOS:
            assert [o["kind"] for o in render("-f", str(path)) if o["kind"] in PINNED_KINDS] == [], path.stem


def _broken():
    spinapp = one(render("-f", str(CHART / "ci" / "spinapp-values.yaml")), "SpinApp")
    scaled = one(render("-f", str(CHART / "ci" / "keda-values.yaml")), "ScaledObject")
    http = one(render("-f", str(CHART / "ci" / "keda-http-values.yaml")), "HTTPScaledObject")
    cases = []
    b = copy.deepcopy(spinapp); del b["spec"]["executor"]; cases.append(("SpinApp without executor", b))
    b = copy.deepcopy(spinapp); b["spec"]["replicas"] = "3"; cases.append(("SpinApp with string replicas", b))
    b = copy.deepcopy(spinapp); b["spec"]["securityContext"] = {}; cases.append(("SpinApp with an unknown field", b))
    b = copy.deepcopy(spinapp); b["spec"]["variables"][0] = {"value": "x"}; cases.append(("SpinApp variable without name", b))
    b = copy.deepcopy(scaled); del b["spec"]["triggers"][0]["metadata"]; cases.append(("trigger without metadata", b))
    b = copy.deepcopy(scaled); b["spec"]["triggers"][0]["metadata"]["threshold"] = 200; cases.append(("non-string trigger metadata", b))
    b = copy.deepcopy(http); del b["spec"]["scaleTargetRef"]["port"]; cases.append(("HTTPScaledObject without port or portName (CEL)", b))
    b = copy.deepcopy(http); b["spec"]["scaleTargetRef"]["portName"] = "http"; cases.append(("HTTPScaledObject with port and portName (CEL)", b))
    return cases


@pytest.mark.parametrize("case", _broken(), ids=lambda c: c[0])
def test_the_crd_check_rejects_a_broken_object(case):
    assert validate(case[1]) != [], f"{case[0]} passed"


# --- SpinApp mode ----------------------------------------------------------

def test_spinapp_mode():
    """spin-operator renders the Deployment and the Service: the chart renders
    a SpinApp with the same variables (the password through secretKeyRef),
    resources, probes and autoscaling, and points the HPA, Ingress, PDB,
    NetworkPolicies and PodMonitor at what the operator creates."""
    objects = render("-f", str(CHART / "ci" / "spinapp-values.yaml"))
    kinds = [o["kind"] for o in objects]
    assert "Deployment" not in [o["kind"] for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component") == "app"]
    assert not [o for o in of_kind(objects, "Service") if o["metadata"]["name"] == "ping"], "spin-operator creates the app's Service"
    app = one(objects, "SpinApp")
    spec = app["spec"]
    assert app["metadata"]["name"] == "ping" and spec["executor"] == "containerd-shim-spin"
    variables = {v["name"]: v for v in spec["variables"]}
    assert set(variables) == {"redis_host", "redis_port", "redis_db", "counter_key", "redis_password"}
    assert variables["redis_host"]["value"] == f"ping-redis.{NAMESPACE}.svc.cluster.local"
    assert variables["redis_password"]["valueFrom"] == {"secretKeyRef": {"name": "ping-redis", "key": "redis-password"}}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert spec["resources"] == defaults["resources"]
    for check in ("liveness", "readiness"):
        assert spec["checks"][check]["httpGet"] == {"path": "/.well-known/spin/health"}
    assert spec["checks"]["readiness"]["periodSeconds"] == defaults["readinessProbe"]["periodSeconds"]
    assert spec["enableAutoscaling"] is True and "replicas" not in spec
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "ping"
    backend = one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "ping", "port": {"number": 80}}
    monitor = one(objects, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http-app"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= spec["podLabels"].items()
    assert spec["podAnnotations"]["prometheus.io/port"] == "80"
    assert "ServiceMonitor" in kinds  # the Collector's and the exporter's stay
    assert "http://ping:80/ping" in one(objects, "Pod")["spec"]["containers"][0]["args"][0], "helm test through the operator's Service"


def test_spinapp_without_autoscaling_sets_replicas():
    spec = one(render("--set", "workload=SpinApp", "--set", "autoscaling.enabled=false", "--set", "replicaCount=4"), "SpinApp")["spec"]
    assert spec["replicas"] == 4 and "enableAutoscaling" not in spec


# --- KEDA ------------------------------------------------------------------

def test_keda_scaledobject_scales_on_spins_request_rate():
    objects = render("-f", str(CHART / "ci" / "keda-values.yaml"))
    assert of_kind(objects, "HorizontalPodAutoscaler") == [], "KEDA makes its own HPA; two would fight"
    so = one(objects, "ScaledObject")["spec"]
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ping"}
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (2, 12)
    (trigger,) = so["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {"serverAddress": "http://kps-prometheus.monitoring.svc:9090", "query": f'sum(rate(spin_request_count_total{{namespace="{NAMESPACE}"}}[1m]))', "threshold": "200"}
    assert set(so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]) == {"scaleUp", "scaleDown"}
    assert "replicas" not in one(objects, "Deployment", "app")["spec"]
    cpu = one(render("--set", "autoscaling.engine=keda"), "ScaledObject")["spec"]["triggers"]
    assert cpu == [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}]


def test_the_prometheus_trigger_needs_metrics():
    out = helm("template", "ping", str(CHART), "--set", "autoscaling.engine=keda", "--set", "autoscaling.keda.trigger=prometheus")
    assert out.returncode != 0 and "metrics.enabled" in out.stderr


def test_keda_http_scales_to_zero_through_the_interceptor():
    """The HTTP add-on scales ping from zero; the Ingress must send requests to
    its interceptor, which holds them while ping starts. Redis is untouched."""
    objects = render("-f", str(CHART / "ci" / "keda-http-values.yaml"))
    assert of_kind(objects, "HorizontalPodAutoscaler") == [] and of_kind(objects, "ScaledObject") == []
    http = one(objects, "HTTPScaledObject")["spec"]
    assert http["replicas"] == {"min": 0, "max": 8}
    assert http["hosts"] == ["ping.local"]
    assert http["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ping", "service": "ping", "port": 80}
    assert http["scalingMetric"] == {"concurrency": {"targetValue": 50}}
    interceptor = [s for s in of_kind(objects, "Service") if s["spec"].get("type") == "ExternalName"]
    assert [s["spec"]["externalName"] for s in interceptor] == ["keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local"]
    for path in one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"]:
        assert path["backend"]["service"] == {"name": "ping-interceptor", "port": {"number": 8080}}
    assert one(objects, "StatefulSet", "redis")["spec"]["replicas"] == 1
    readme = (CHART / "README.md").read_text()
    assert "Cold start" in readme


def test_keda_http_needs_hosts():
    out = helm("template", "ping", str(CHART), "--set", "autoscaling.engine=keda-http")
    assert out.returncode != 0 and "hosts" in out.stderr


# --- NetworkPolicy for default-deny namespaces ------------------------------

def peers_admit(peers: list[dict], namespace: dict, pod: dict, same_namespace: bool) -> bool:
    """Whether a NetworkPolicy peer list admits a pod with these labels, in a
    namespace with these labels (matchLabels and In expressions only)."""
    def matches(selector: dict, labels: dict) -> bool:
        if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
            return False
        for e in selector.get("matchExpressions", []):
            assert e["operator"] == "In", e
            if labels.get(e["key"]) not in e["values"]:
                return False
        return True

    for peer in peers:
        if "namespaceSelector" in peer:
            if matches(peer["namespaceSelector"], namespace) and matches(peer.get("podSelector", {}), pod):
                return True
        elif same_namespace and matches(peer.get("podSelector", {}), pod):
            return True
    return False


def test_the_app_network_policy():
    objects = render("-f", str(CHART / "ci" / "networkpolicy-app-values.yaml"))
    (policy,) = [p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["labels"]["app.kubernetes.io/component"] == "app"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [8080]
    ns = lambda name: {"kubernetes.io/metadata.name": name}
    assert peers_admit(ingress["from"], ns("ingress-nginx"), {"app.kubernetes.io/name": "ingress-nginx"}, False)
    assert peers_admit(ingress["from"], ns("monitoring"), {"app.kubernetes.io/name": "prometheus"}, False), "kube-prometheus-stack's Prometheus scrapes /metrics"
    assert peers_admit(ingress["from"], ns(NAMESPACE), {"app.kubernetes.io/component": "test"}, True), "helm test"
    assert not peers_admit(ingress["from"], ns("default"), {"app": "curl"}, False)
    egress = {(r["ports"][0]["port"], r["ports"][0]["protocol"]) for r in spec["egress"]}
    assert egress == {(53, "UDP"), (6379, "TCP"), (4318, "TCP")}
    dns = [r for r in spec["egress"] if r["ports"][0]["port"] == 53][0]
    assert {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    # An external Redis is reached on its port.
    external = render("-f", str(CHART / "ci" / "external-redis-values.yaml"), "--set", "networkPolicy.app.enabled=true")
    (policy,) = of_kind(external, "NetworkPolicy")
    assert {"ports": [{"port": 6380, "protocol": "TCP"}]} in policy["spec"]["egress"]
    # Off by default: the app pods stay open to the cluster unless asked.
    assert [p for p in of_kind(render(), "NetworkPolicy") if p["metadata"]["labels"]["app.kubernetes.io/component"] == "app"] == []


def test_scrapers_are_kube_prometheus_stacks_prometheus_by_default():
    objects = render("--set", "metrics.enabled=true")
    for policy in of_kind(objects, "NetworkPolicy"):
        scrapes = policy["spec"]["ingress"][1:]
        assert scrapes, policy["metadata"]["name"]
        for rule in scrapes:
            assert peers_admit(rule["from"], {"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus", "prometheus": "kps-prometheus"}, False)
            assert peers_admit(rule["from"], {"kubernetes.io/metadata.name": "observability"}, {"app.kubernetes.io/name": "prometheus"}, False)
            assert not peers_admit(rule["from"], {"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "grafana"}, False)
