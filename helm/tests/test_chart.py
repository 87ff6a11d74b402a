"""Offline proof of the ping chart: the real helm binary lints and renders every
ci/*-values.yaml scenario, every rendered object validates against the
Kubernetes schemas of the oldest and newest supported versions, and policy
checks hold over what was rendered."""

import base64
import copy
import json
import os
import pathlib
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ping"
HELM = os.environ.get("HELM", str(ROOT / ".tools" / "bin" / "helm"))
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES_VERSIONS = ["1.30.0", "1.35.0"]
NAMESPACE = "ping-ns"
# Kinds served by prometheus-operator's CRDs: kubernetes-validate does not know
# them, so they are validated against the CRD schemas published in
# @kubernetes-models/prometheus-operator (test_crd_objects_validate).
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
SCHEMA_TOOLS = ROOT / ".tools" / "schemas"
MONITORING = ROOT / "monitoring"


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=False)


def render(*args: str) -> list[dict]:
    out = helm("template", "ping", str(CHART), "--namespace", NAMESPACE, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda p: p.stem)
def scenario(request) -> tuple[str, list[dict]]:
    return request.param.stem, render("-f", str(request.param))


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, component: str | None = None) -> dict:
    found = [o for o in of_kind(objects, kind) if component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
    return found[0]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            specs.append((f'{o["kind"]}/{o["metadata"]["name"]}', o["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((f'Pod/{o["metadata"]["name"]}', o["spec"]))
    return specs


def test_there_are_scenarios():
    names = {p.stem for p in SCENARIOS}
    assert {"default-values", "ingress-tls-values", "external-redis-values", "fixed-replicas-values"} <= names


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_helm_lint_strict(values):
    out = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_validate_against_kubernetes_schemas(scenario, version):
    name, objects = scenario
    unchecked = []
    for o in objects:
        if o["kind"] in CRD_KINDS:
            unchecked.append(o["kind"])
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f'{name}: {o["kind"]}/{o["metadata"]["name"]} is invalid for Kubernetes {version}: {e.message} at {list(e.path)}')
    if unchecked:
        assert name == "monitoring-values", f"{name} renders CRD objects: {unchecked}"


def validate_crds(objects: list[dict]) -> subprocess.CompletedProcess:
    script = SCHEMA_TOOLS / "validate-crds.mjs"
    if not (SCHEMA_TOOLS / "node_modules").exists():
        pytest.fail("the CRD schema check is not installed: run scripts/install-monitoring-tools.sh (make test does)")
    # Node resolves imports next to the script, so it runs from the install.
    script.write_bytes((MONITORING / "tests" / "schema" / "validate-crds.mjs").read_bytes())
    return subprocess.run(["node", str(script)], input=json.dumps(objects), capture_output=True, text=True, check=False)


def test_crd_objects_validate(scenario):
    name, objects = scenario
    crds = [o for o in objects if o["kind"] in CRD_KINDS]
    if name != "monitoring-values":
        assert crds == [], "CRD objects only when monitoring is on"
        return
    assert sorted(o["kind"] for o in crds) == ["PrometheusRule", "ServiceMonitor", "ServiceMonitor", "ServiceMonitor"]
    out = validate_crds(crds)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": valid") == 4


def test_the_crd_check_rejects_a_broken_object():
    objects = render("-f", str(CHART / "ci" / "monitoring-values.yaml"))
    monitor = copy.deepcopy(one(objects, "ServiceMonitor", "app"))
    monitor["spec"]["endpoints"][0]["interval"] = 30
    rule = copy.deepcopy(one(objects, "PrometheusRule"))
    del rule["spec"]["groups"][1]["rules"][0]["expr"]
    for broken in (monitor, rule):
        out = validate_crds([broken])
        assert out.returncode == 1, out.stdout


def test_monitoring_on_a_kube_prometheus_stack():
    objects = render("-f", str(CHART / "ci" / "monitoring-values.yaml"))
    services = {o["metadata"]["name"]: o for o in of_kind(objects, "Service")}
    # Each ServiceMonitor selects exactly one Service, by labels, and scrapes a port it has.
    for monitor in of_kind(objects, "ServiceMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "kps", "kube-prometheus-stack selects by release"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if all(s["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        assert len(matched) == 1, f'{monitor["metadata"]["name"]} selects {[m["metadata"]["name"] for m in matched]}'
        ports = {p["name"] for p in matched[0]["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["port"] in ports
    # The PrometheusRule carries monitoring/rules verbatim.
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load((MONITORING / "rules" / "ping.rules.yml").read_text())
    # Dashboards reach Grafana's sidecar, unchanged.
    (dashboards,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboards")]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["metadata"]["annotations"] == {"grafana_folder": "ping"}
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        assert json.loads(dashboards["data"][path.name]) == json.loads(path.read_text())
    # Spin exports OTLP to the Collector's Service.
    app = one(objects, "Deployment", "app")["spec"]["template"]
    env = {e["name"]: e.get("value") for e in app["spec"]["containers"][0]["env"]}
    collector = services["ping-otel-collector"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://ping-otel-collector.{NAMESPACE}.svc.cluster.local:4318"
    assert {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http", "protocol": "TCP"} in collector["spec"]["ports"]
    # Plain Prometheus: each pod's scrape annotation names a port its containers open.
    for where, o in [("app", one(objects, "Deployment", "app")), ("otel-collector", one(objects, "Deployment", "otel-collector")), ("redis", one(objects, "StatefulSet", "redis"))]:
        template = o["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", where
        opened = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert int(annotations["prometheus.io/port"]) in opened, where
    # The exporter reads the password from the Secret, like Redis itself.
    redis = one(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    (exporter,) = [c for c in redis["containers"] if c["name"] == "redis-exporter"]
    password = {e["name"]: e for e in exporter["env"]}["REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "ping-redis"


def test_monitoring_is_opt_in():
    objects = render()
    names = [o["metadata"]["name"] for o in objects]
    assert not any("otel-collector" in n or n.endswith("-dashboards") or n.endswith("-metrics") for n in names), names
    app = one(objects, "Deployment", "app")["spec"]["template"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in {e["name"] for e in app["spec"]["containers"][0]["env"]}
    assert "annotations" not in app["metadata"]


def test_every_pod_has_resources_probes_and_a_restricted_security_context(scenario):
    name, objects = scenario
    for where, spec in pod_specs(objects):
        pod_sc = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, where
        for c in spec["containers"]:
            label = f"{name}: {where}/{c['name']}"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], label
            assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"], label
            if not where.startswith("Pod/"):  # the helm test Pod runs once; probes make no sense there
                assert "livenessProbe" in c and "readinessProbe" in c, label
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, label
            assert sc["capabilities"]["drop"] == ["ALL"], label
            assert pod_sc.get("runAsNonRoot", sc.get("runAsNonRoot")) is True, label
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", label


def test_the_app_runs_on_the_spin_shim(scenario):
    name, objects = scenario
    deployment = one(objects, "Deployment", "app")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "wasmtime-spin-v2"
    container = spec["containers"][0]
    assert container["command"] == ["/"], "containerd-shim-spin needs `/` as the command"
    env = {e["name"]: e for e in container["env"]}
    assert env["SPIN_HTTP_LISTEN_ADDR"]["value"] == "0.0.0.0:8080"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["livenessProbe"]["httpGet"]["path"] == "/.well-known/spin/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/test", "readiness checks Redis"
    assert container["securityContext"]["readOnlyRootFilesystem"] is False, "the shim writes /spin.lock"
    assert deployment["spec"]["minReadySeconds"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}
    for var in ("SPIN_VARIABLE_REDIS_HOST", "SPIN_VARIABLE_REDIS_PORT", "SPIN_VARIABLE_REDIS_DB", "SPIN_VARIABLE_COUNTER_KEY"):
        assert env[var]["value"], f"{name}: {var}"


def test_the_hpa_targets_the_app_deployment(scenario):
    name, objects = scenario
    deployment = one(objects, "Deployment", "app")
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    if name == "fixed-replicas-values":
        assert hpas == [], "autoscaling off: no HPA"
        assert deployment["spec"]["replicas"] == 5
        return
    (hpa,) = hpas
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    metrics = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert "cpu" in metrics
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert {"scaleUp", "scaleDown"} <= set(hpa["spec"]["behavior"])


def test_redis_is_a_statefulset_on_a_retained_pvc(scenario):
    name, objects = scenario
    if name == "external-redis-values":
        assert of_kind(objects, "StatefulSet") == [], "external Redis: none in the release"
        return
    sts = one(objects, "StatefulSet", "redis")
    assert sts["spec"]["replicas"] == 1
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    retention = sts["spec"]["persistentVolumeClaimRetentionPolicy"]
    expected = "Delete" if name == "fixed-replicas-values" else "Retain"
    assert retention == {"whenDeleted": expected, "whenScaled": expected}
    assert sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 999
    conf = one(objects, "ConfigMap", "redis")["data"]["redis.conf"]
    assert "appendonly yes" in conf
    headless = [s for s in of_kind(objects, "Service") if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [sts["spec"]["serviceName"]]


def test_the_password_only_ever_comes_from_a_secret(scenario):
    name, objects = scenario
    secrets = {s["metadata"]["name"] for s in of_kind(objects, "Secret")}
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if "PASSWORD" in e["name"] or e["name"] == "REDISCLI_AUTH":
                    assert "value" not in e, f"{where}: {e['name']} must come from a Secret"
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert ref["name"] in secrets or name == "external-redis-values", f"{where}: {ref}"
            assert "requirepass" not in " ".join(c.get("command", []) + [a for a in c.get("args", []) if "printf" not in a])
    for cm in of_kind(objects, "ConfigMap"):
        for text in cm["data"].values():
            assert "requirepass " not in text.replace("include", ""), f"{cm['metadata']['name']} holds a password"
    if name == "external-redis-values":
        env = {e["name"]: e for e in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["SPIN_VARIABLE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "shared-redis", "key": "password"}
        assert secrets == set(), "no Secret is generated for an external Redis"


def redis_start_script(objects: list[dict]) -> str:
    redis = one(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    (container,) = [c for c in redis["containers"] if c["name"] == "redis"]
    return container["args"][0]


@pytest.mark.parametrize(
    "password, starts",
    [
        ("a-generated-32-character-passwd!", True),
        ("", False),
        ('with"quote', False),
        ("with\\backslash", False),
        ("two\nlines", False),
    ],
    ids=["good", "empty", "quote", "backslash", "newline"],
)
def test_redis_never_runs_without_a_usable_password(password, starts, tmp_path):
    """Runs the Redis container's start script with a stand-in redis-server:
    an empty password, or one that could rewrite redis.conf, stops it."""
    script = redis_start_script(render()).replace("/run/redis/auth.conf", str(tmp_path / "auth.conf"))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "redis-server").write_text("#!/bin/sh\nexit 0\n")
    (fake / "redis-server").chmod(0o755)
    out = subprocess.run(["sh", "-c", script], env={"PATH": f"{fake}:/usr/bin:/bin", "REDIS_PASSWORD": password}, capture_output=True, text=True)
    assert (out.returncode == 0) == starts, out.stderr
    if starts:
        assert (tmp_path / "auth.conf").read_text() == f'requirepass "{password}"\n'
    else:
        assert "redis:" in out.stderr and not (tmp_path / "auth.conf").exists()


def test_the_generated_redis_password_is_strong():
    (secret,) = of_kind(render(), "Secret")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32 and password.isalnum()
    out = helm("template", "ping", str(CHART), "--set", "redis.auth.enabled=false")
    assert out.returncode != 0, "authentication cannot be switched off"


def test_labels_and_selectors_match(scenario):
    name, objects = scenario
    for o in objects:
        labels = o["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, f"{o['kind']}/{o['metadata']['name']} lacks {key}"
    pods = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")}

    def selects(selector: dict, component: str) -> bool:
        return all(pods[component].get(k) == v for k, v in selector.items())

    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            assert selects(o["spec"]["selector"]["matchLabels"], component)
        if o["kind"] == "Service":
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            # The exporter's Service selects the Redis pod, where the sidecar runs.
            component = {"redis-metrics": "redis"}.get(component, component)
            assert selects(o["spec"]["selector"], component), o["metadata"]["name"]
        if o["kind"] == "PodDisruptionBudget":
            assert selects(o["spec"]["selector"]["matchLabels"], "app")
        if o["kind"] == "NetworkPolicy":
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            assert component in ("redis", "otel-collector"), component
            assert selects(o["spec"]["podSelector"]["matchLabels"], component)
            service, *scrapes = o["spec"]["ingress"]
            assert [selects(f["podSelector"]["matchLabels"], "app") for f in service["from"]] == [True], f"only app pods reach {component}"
            assert not selects(service["from"][0]["podSelector"]["matchLabels"], component)
            # Any further rule admits scrapers to the metrics port, and to nothing else.
            for rule in scrapes:
                assert [p["port"] for p in rule["ports"]] == [{"redis": 9121, "otel-collector": 8889}[component]]
    policies = len(of_kind(objects, "NetworkPolicy"))
    if name == "monitoring-values":
        assert policies == 2, "Redis and the Collector each get a NetworkPolicy"
    elif name != "external-redis-values":
        assert policies == 1, "the NetworkPolicy is on by default"


def test_no_latest_tags(scenario):
    name, objects = scenario
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            image = c["image"]
            assert "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")), f"{name}: {where} uses {image}"
    if name == "ingress-tls-values":
        assert one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@sha256:0d48a0d307dd8b072e0ad64c26b883dabdc74f98e07482c5c690cd58ab3b1bf0")


def test_ingress_with_tls(scenario):
    name, objects = scenario
    ingresses = of_kind(objects, "Ingress")
    if name != "ingress-tls-values":
        assert ingresses == []
        return
    (ing,) = ingresses
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["ping.example.com"], "secretName": "ping-example-com-tls"}]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == one(objects, "Service", "app")["metadata"]["name"]


def test_helm_test_pod_pings_twice():
    objects = render("--show-only", "templates/tests/test-ping.yaml")
    (pod,) = objects
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert script.count("curl") == 2 and '[ "$second" -gt "$first" ]' in script


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--set", "replicaCount=-1"], "replicaCount"),
        (["--set", "surprise=1"], "surprise"),
        (["--set", "image.tag=latest"], "tag"),
        (["--set", "image.digest=sha256:short"], "digest"),
        (["--set", "redis.appendfsync=sometimes"], "appendfsync"),
        (["--set", "autoscaling.targetCPUUtilizationPercentage=150"], "targetCPUUtilizationPercentage"),
        (["--set", "redis.enabled=false"], "externalRedis"),
        (["--set", "resources.requests=null"], "requests"),
    ],
)
def test_invalid_values_are_rejected_with_a_clear_message(args, mentions):
    out = helm("template", "ping", str(CHART), *args)
    assert out.returncode != 0, f"{args} was accepted"
    assert mentions in out.stderr, out.stderr
