"""Offline proof of the ping chart: the real helm binary lints and renders every
ci/*-values.yaml scenario, every rendered object validates against the
Kubernetes schemas of the oldest and newest supported versions, and policy
checks hold over what was rendered."""

import base64
import copy
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

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
PROMETHEUS_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# spin-operator's and KEDA's kinds: validated against the pinned CRDs in
# helm/tests/crds/ (test_crds.py).
PINNED_CRD_KINDS = {"SpinApp", "ScaledObject", "HTTPScaledObject"}
CRD_KINDS = PROMETHEUS_KINDS | PINNED_CRD_KINDS
SCHEMA_TOOLS = ROOT / ".tools" / "schemas"
MONITORING = ROOT / "monitoring"


def scenario_values(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / f"{name}.yaml").read_text()) or {}


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
    assert set(unchecked) <= CRD_KINDS, unchecked


def validate_crds(objects: list[dict]) -> subprocess.CompletedProcess:
    script = SCHEMA_TOOLS / "validate-crds.mjs"
    if not (SCHEMA_TOOLS / "node_modules").exists():
        pytest.fail("the CRD schema check is not installed: run scripts/install-monitoring-tools.sh (make test does)")
    # Node resolves imports next to the script, so it runs from the install.
    script.write_bytes((MONITORING / "tests" / "schema" / "validate-crds.mjs").read_bytes())
    return subprocess.run(["node", str(script)], input=json.dumps(objects), capture_output=True, text=True, check=False)


def test_crd_objects_validate(scenario):
    name, objects = scenario
    crds = [o for o in objects if o["kind"] in PROMETHEUS_KINDS]
    monitoring = scenario_values(name).get("metrics", {})
    if not monitoring.get("serviceMonitor", {}).get("enabled") and not monitoring.get("prometheusRule", {}).get("enabled"):
        assert crds == [], "prometheus-operator objects only when asked for"
        return
    if name == "monitoring-values":
        assert sorted(o["kind"] for o in crds) == ["PrometheusRule", "ServiceMonitor", "ServiceMonitor", "ServiceMonitor"]
    out = validate_crds(crds)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": valid") == len(crds)


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
    # Spin exports OTLP metrics and traces to the Collector's Service.
    app = one(objects, "Deployment", "app")["spec"]["template"]
    env = {e["name"]: e.get("value") for e in app["spec"]["containers"][0]["env"]}
    collector = services["ping-otel-collector"]
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == f"http://ping-otel-collector.{NAMESPACE}.svc.cluster.local:4318/v1/metrics"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == f"http://ping-otel-collector.{NAMESPACE}.svc.cluster.local:4318/v1/traces"
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
    assert not any(e["name"].startswith("OTEL_") for e in app["spec"]["containers"][0]["env"])
    assert "annotations" not in app["metadata"]


def pod_security_level(spec: dict) -> str:
    """The strictest Pod Security Standard level a pod spec meets: "restricted",
    "baseline" or "privileged" (the checks of
    https://kubernetes.io/docs/concepts/security/pod-security-standards/ that a
    chart can get wrong)."""
    pod_sc = spec.get("securityContext", {})
    baseline_caps = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC") or any("hostPath" in v for v in spec.get("volumes", [])):
        return "privileged"
    level = "restricted"
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if sc.get("privileged") or any(p.get("hostPort") for p in c.get("ports", [])) or seccomp == "Unconfined":
            return "privileged"
        if not set(sc.get("capabilities", {}).get("add", [])) <= baseline_caps:
            return "privileged"
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True and sc.get("runAsUser", pod_sc.get("runAsUser")) != 0
        if not (non_root and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
                and set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"} and seccomp in ("RuntimeDefault", "Localhost")):
            level = "baseline"
    return level


def test_every_pod_has_resources_probes_and_a_hardened_security_context(scenario):
    """Every pod drops every capability, forbids privilege escalation and uses
    RuntimeDefault seccomp. Every pod but the app's is Pod Security
    "restricted"; the app's is "baseline", because the shim needs uid 0
    (test_the_app_pod_runs_as_root_without_capabilities), except in
    runtime=container mode, where it is "restricted" too."""
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
            assert "add" not in sc["capabilities"], label
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", label
        app = where == "Deployment/ping"
        expected = "restricted" if not app or name in ("restricted-values", "container-values") else "baseline"
        assert pod_security_level(spec) == expected, f"{name}: {where}"


def test_the_app_runs_on_the_spin_shim(scenario):
    name, objects = scenario
    if name == "spinapp-values":
        return  # spin-operator renders the pods: test_spinapp_mode
    if scenario_values(name).get("runtime") == "container":
        return  # the container image, no shim: test_container_mode_needs_no_shim
    deployment = one(objects, "Deployment", "app")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "wasmtime-spin-v2"
    container = spec["containers"][0]
    assert container["command"] == ["/"], "containerd-shim-spin needs `/` as the command"
    env = {e["name"]: e for e in container["env"]}
    assert env["SPIN_HTTP_LISTEN_ADDR"]["value"] == "0.0.0.0:8080"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["livenessProbe"]["httpGet"]["path"] == "/.well-known/spin/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/.well-known/spin/health"
    assert container["securityContext"]["readOnlyRootFilesystem"] is False, "Spin writes /.spin, /.cache and /spin.json into the root"
    assert deployment["spec"]["minReadySeconds"] == 3
    for var in ("SPIN_VARIABLE_REDIS_HOST", "SPIN_VARIABLE_REDIS_PORT", "SPIN_VARIABLE_REDIS_DB", "SPIN_VARIABLE_COUNTER_KEY"):
        assert env[var]["value"], f"{name}: {var}"


def test_the_hpa_targets_the_app_deployment(scenario):
    name, objects = scenario
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    autoscalers = of_kind(objects, "ScaledObject") + of_kind(objects, "HTTPScaledObject")
    if name in ("keda-values", "keda-http-values"):
        assert hpas == [], "KEDA creates the HPA itself"
        assert len(autoscalers) == 1
        return
    assert autoscalers == []
    if name == "spinapp-values":
        # spin-operator's Deployment has the SpinApp's name.
        workload = one(objects, "SpinApp")
        assert workload["spec"]["enableAutoscaling"] is True and "replicas" not in workload["spec"]
    else:
        workload = one(objects, "Deployment", "app")
    if name == "fixed-replicas-values":
        assert hpas == [], "autoscaling off: no HPA"
        assert workload["spec"]["replicas"] == 5
        return
    (hpa,) = hpas
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload["metadata"]["name"]}
    assert "replicas" not in workload["spec"], "the HPA owns the replica count"
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
    values = scenario_values(name)
    user_secrets = {values.get("redis", {}).get("auth", {}).get("existingSecret"), values.get("externalRedis", {}).get("existingSecret")} - {None}
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if "PASSWORD" in e["name"] or e["name"] == "REDISCLI_AUTH":
                    assert "value" not in e, f"{where}: {e['name']} must come from a Secret"
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert ref["name"] in secrets | user_secrets, f"{where}: {ref}"
            assert "requirepass" not in " ".join(c.get("command", []) + [a for a in c.get("args", []) if "printf" not in a])
    for cm in of_kind(objects, "ConfigMap"):
        for text in cm["data"].values():
            assert "requirepass " not in text.replace("include", ""), f"{cm['metadata']['name']} holds a password"
    for app in of_kind(objects, "SpinApp"):
        for var in app["spec"]["variables"]:
            if "password" in var["name"]:
                assert "value" not in var and var["valueFrom"]["secretKeyRef"]["name"] in secrets, var
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
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}, "kept on uninstall, like the PVC"
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
    for app in of_kind(objects, "SpinApp"):
        # spin-operator's pods carry spec.podLabels (plus its own).
        pods["app"] = app["spec"]["podLabels"]

    def selects(selector: dict, component: str) -> bool:
        return all(pods[component].get(k) == v for k, v in selector.items())

    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            assert selects(o["spec"]["selector"]["matchLabels"], component)
        if o["kind"] == "Service" and o["spec"].get("type") != "ExternalName":
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            # The exporter's Service selects the Redis pod, where the sidecar runs.
            component = {"redis-metrics": "redis"}.get(component, component)
            assert selects(o["spec"]["selector"], component), o["metadata"]["name"]
        if o["kind"] in ("PodDisruptionBudget", "PodMonitor"):
            assert selects(o["spec"]["selector"]["matchLabels"], "app")
        if o["kind"] == "NetworkPolicy":
            component = o["metadata"]["labels"]["app.kubernetes.io/component"]
            assert component in ("redis", "otel-collector", "app"), component
            assert selects(o["spec"]["podSelector"]["matchLabels"], component)
            if component == "app":
                continue  # test_the_app_network_policy
            service, *scrapes = o["spec"]["ingress"]
            assert [selects(f["podSelector"]["matchLabels"], "app") for f in service["from"]] == [True], f"only app pods reach {component}"
            assert not selects(service["from"][0]["podSelector"]["matchLabels"], component)
            # Any further rule admits scrapers to the metrics port, and to nothing else.
            for rule in scrapes:
                assert [p["port"] for p in rule["ports"]] == [{"redis": 9121, "otel-collector": 8889}[component]]
    policies = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in of_kind(objects, "NetworkPolicy")}
    values = scenario_values(name)
    expected = set() if name == "external-redis-values" else {"redis"}
    if values.get("metrics", {}).get("enabled"):
        expected.add("otel-collector")
    if values.get("networkPolicy", {}).get("app", {}).get("enabled"):
        expected.add("app")
    assert policies == expected


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping holding a key twice, as strict
    parsers (go-yaml v3, kustomize) do."""


def _unique_mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_rendered_yaml_has_no_duplicate_keys(values):
    out = helm("template", "ping", str(CHART), "--namespace", NAMESPACE, "-f", str(values))
    assert out.returncode == 0, out.stderr
    assert list(yaml.load_all(out.stdout, Loader=UniqueKeyLoader))


def test_no_latest_tags(scenario):
    name, objects = scenario
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            image = c["image"]
            assert "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")), f"{name}: {where} uses {image}"
    for app in of_kind(objects, "SpinApp"):
        assert "@sha256:" in app["spec"]["image"] or not app["spec"]["image"].endswith(":latest")
    if name == "ingress-tls-values":
        assert one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@sha256:0d48a0d307dd8b072e0ad64c26b883dabdc74f98e07482c5c690cd58ab3b1bf0")


def test_ingress_with_tls(scenario):
    name, objects = scenario
    ingresses = of_kind(objects, "Ingress")
    if not scenario_values(name).get("ingress", {}).get("enabled"):
        assert ingresses == []
        return
    (ing,) = ingresses
    if name != "ingress-tls-values":
        return
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["ping.example.com"], "secretName": "ping-example-com-tls"}]
    service = one(objects, "Service", "app")
    for path in ing["spec"]["rules"][0]["http"]["paths"]:
        assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"number": service["spec"]["ports"][0]["port"]}}


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
        (["--set", "runtime=wasm"], "runtime"),
        (["--set", "runtime=container", "--set", "container.image.tag=latest"], "tag"),
        (["--set", "runtime=container", "--set", "workload=SpinApp"], "runtime=container"),
    ],
)
def test_invalid_values_are_rejected_with_a_clear_message(args, mentions):
    out = helm("template", "ping", str(CHART), *args)
    assert out.returncode != 0, f"{args} was accepted"
    assert mentions in out.stderr, out.stderr


# --- Review of 2026-11-30 (issue 12): one test per finding ------------------

def app_pod(objects: list[dict]) -> dict:
    return one(objects, "Deployment", "app")["spec"]["template"]


def test_the_app_pod_runs_as_root_without_capabilities():
    """containerd-shim-spin runs the Wasm app as the pod's user, and Spin
    creates /.spin (and /.cache, /spin.json) in the root-owned container root:
    as uid 65532 it exits with "Permission denied" (verified on the shim
    v0.24.0). So uid 0, with nothing else granted: Pod Security "baseline"."""
    spec = app_pod(render())["spec"]
    pod_sc = spec["securityContext"]
    (c,) = spec["containers"]
    assert pod_sc["runAsUser"] == 0 and pod_sc["runAsNonRoot"] is False
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False, "capabilities": {"drop": ["ALL"]}}
    assert pod_security_level(spec) == "baseline"
    # The stricter opt-in stays available, for a shim that can run as non-root.
    restricted = app_pod(render("-f", str(CHART / "ci" / "restricted-values.yaml")))["spec"]
    assert pod_security_level(restricted) == "restricted"


def test_the_docs_name_the_paths_the_shim_really_writes():
    """The shim writes /.spin, /.cache and /spin.json, not /spin.lock."""
    for path in [CHART / "values.yaml", CHART / "README.md", ROOT / "SECURITY.md", ROOT / "README.md", ROOT / "runtime-class" / "README.md", *sorted((CHART / "templates").glob("*"))]:
        if path.is_file():
            assert "/spin.lock" not in path.read_text(), path
    security = (ROOT / "SECURITY.md").read_text()
    assert "baseline" in security and "pod-security.kubernetes.io/enforce" in security


def test_rollouts_drop_no_requests():
    """A new pod is ready before an old one goes; a terminating pod keeps
    serving (the kubelet's preStop sleep) while endpoints and ingress
    controllers forget it; the grace period covers the sleep."""
    deployment = one(render(), "Deployment", "app")
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    spec = deployment["spec"]["template"]["spec"]
    sleep = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 5 and "exec" not in spec["containers"][0]["lifecycle"]["preStop"], "a Wasm image has no sleep binary"
    assert spec["terminationGracePeriodSeconds"] > sleep
    out = helm("template", "ping", str(CHART), "--set", "terminationGracePeriodSeconds=5", "--set", "preStopSleepSeconds=5")
    assert out.returncode != 0 and "terminationGracePeriodSeconds" in out.stderr
    off = one(render("--set", "preStopSleepSeconds=0"), "Deployment", "app")["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in off


def test_the_cluster_journey_upgrades_with_several_replicas():
    script = (ROOT / "tests" / "cluster" / "run.sh").read_text()
    assert "autoscaling.minReplicas=2" in script, "the upgrade step needs >= 2 replicas to be zero-downtime"
    assert '[ "$failures" -eq 0 ]' in script


def test_readiness_does_not_depend_on_the_shared_redis():
    """One Redis restart must not empty every endpoint, nor let the PDB block a
    node drain: readiness asks only the runtime; Redis health stays in /test,
    ping_redis_up and PingRedisDown."""
    objects = render()
    container = app_pod(objects)["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/.well-known/spin/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/.well-known/spin/health"
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    rules = yaml.safe_load((MONITORING / "rules" / "ping.rules.yml").read_text())
    assert "PingRedisDown" in {r.get("alert") for g in rules["groups"] for r in g["rules"]}


def test_service_links_cannot_override_spin_variables(scenario):
    """The shim copies env vars named like app variables (REDIS_PORT, ...) over
    SPIN_VARIABLE_*; a Service named redis would inject REDIS_PORT=tcp://..."""
    name, objects = scenario
    for where, spec in pod_specs(objects):
        assert spec.get("enableServiceLinks") is False, f"{name}: {where}"


def test_extra_env_cannot_shadow_a_spin_variable():
    out = helm("template", "ping", str(CHART), "--set", "app.extraEnv[0].name=REDIS_PORT", "--set-string", "app.extraEnv[0].value=1")
    assert out.returncode != 0 and "redis_port" in out.stderr
    assert helm("template", "ping", str(CHART), "--set", "app.extraEnv[0].name=SPIN_MAX_INSTANCE_MEMORY", "--set-string", "app.extraEnv[0].value=1").returncode == 0


# The oldest image each pin may be: Redis 7.4.6 fixes CVE-2025-49844 (Lua RCE,
# CVSS 10), -46817/-46818/-46819, 7.4.5 CVE-2025-32023, 7.4.3 CVE-2025-21605.
IMAGE_FLOORS = {
    "docker.io/library/redis": (7, 4, 6),
    "docker.io/oliver006/redis_exporter": (1, 78, 0),
    "docker.io/otel/opentelemetry-collector-contrib": (0, 139, 0),
    "docker.io/curlimages/curl": (8, 11, 1),
}


def version_of(tag: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.match(r"v?(\d+(?:\.\d+)*)", tag).group(1).split("."))


def test_images_are_at_least_their_patched_floors():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    images = [values["redis"]["image"], values["metrics"]["redisExporter"]["image"], values["metrics"]["otelCollector"]["image"], values["tests"]["image"]]
    assert {i["repository"] for i in images} == set(IMAGE_FLOORS)
    for image in images:
        assert version_of(image["tag"]) >= IMAGE_FLOORS[image["repository"]], f'{image["repository"]}:{image["tag"]} is older than its floor'
    assert version_of("7.4.2-alpine") < IMAGE_FLOORS["docker.io/library/redis"], "the floor check compares versions"


def test_redis_runs_without_lua(tmp_path):
    """The rendered redis.conf, on a real redis-server: the commands ping uses
    work, Lua (EVAL, FUNCTION, ...) is gone."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: run scripts/install-deps.sh")
    conf = one(render(), "ConfigMap", "redis")["data"]["redis.conf"]
    for command in ("EVAL", "EVALSHA", "FUNCTION", "SCRIPT", "FCALL"):
        assert f'rename-command {command} ""' in conf
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "auth.conf").write_text('requirepass "pw"\n')
    conf = conf.replace("bind * -::*", "bind 127.0.0.1").replace("port 6379", f"port {port}").replace("dir /data", f"dir {tmp_path}").replace("/run/redis/auth.conf", str(tmp_path / "auth.conf"))
    (tmp_path / "redis.conf").write_text(conf)
    proc = subprocess.Popen([server, str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cli = ["redis-cli", "-p", str(port), "--no-auth-warning", "-a", "pw"]
        for _ in range(50):
            if subprocess.run(cli + ["ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.1)
        assert subprocess.run(cli + ["incr", "ping"], capture_output=True, text=True).stdout.strip() == "1"
        for command in (["eval", "return 1", "0"], ["function", "list"], ["script", "flush"]):
            out = subprocess.run(cli + command, capture_output=True, text=True).stdout
            assert "unknown command" in out, f"{command}: {out}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_chart_works_as_a_subchart(tmp_path):
    """Helm always passes `global` to a subchart: the schema must accept it."""
    umbrella = tmp_path / "umbrella"
    (umbrella / "charts").mkdir(parents=True)
    (umbrella / "templates").mkdir()
    shutil.copytree(CHART, umbrella / "charts" / "ping")
    (umbrella / "Chart.yaml").write_text("apiVersion: v2\nname: umbrella\nversion: 1.0.0\ndependencies:\n  - name: ping\n    version: 0.1.0\n")
    (umbrella / "values.yaml").write_text("global:\n  imageRegistry: example.com\nping:\n  replicaCount: 2\n")
    out = helm("template", "u", str(umbrella), "--namespace", NAMESPACE)
    assert out.returncode == 0, out.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.stdout) if d]
    assert "Deployment" in kinds and "StatefulSet" in kinds
    lint = helm("lint", "--strict", str(umbrella))
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_user_managed_redis_password_restarts_redis_and_the_app_together():
    """GitOps: with redis.auth.existingSecret no render generates a password;
    both pod templates carry checksum/secret, so `helm upgrade` after a
    password change restarts Redis and the app together."""
    objects = render("-f", str(CHART / "ci" / "existing-secret-values.yaml"))
    assert of_kind(objects, "Secret") == []
    app = app_pod(objects)["metadata"]["annotations"]["checksum/secret"]
    redis = one(objects, "StatefulSet", "redis")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    assert app == redis and re.fullmatch(r"[0-9a-f]{64}", app)
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in helpers.split('define "ping.redis.secretChecksum"')[1].split("end }}")[0]
    external = render("-f", str(CHART / "ci" / "external-redis-values.yaml"))
    assert "checksum/secret" in app_pod(external)["metadata"]["annotations"]
    readme = (CHART / "README.md").read_text()
    assert "existingSecret" in readme and "helm template" in readme and "--dry-run=server" in readme


def redis_probe(objects: list[dict], probe: str) -> str:
    redis = one(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    (container,) = [c for c in redis["containers"] if c["name"] == "redis"]
    return container[probe]["exec"]["command"][2]


@pytest.mark.parametrize(
    "answer, alive, ready",
    [("PONG", True, True), ("LOADING Redis is loading the dataset in memory", True, False), ("", False, False), ("NOAUTH Authentication required.", False, False)],
    ids=["pong", "loading", "down", "noauth"],
)
def test_redis_stays_alive_while_it_loads_its_aof(answer, alive, ready, tmp_path):
    """Runs the probes with a stand-in redis-cli: a long AOF load (LOADING) is
    not killed by the liveness probe; only readiness needs PONG."""
    objects = render()
    (tmp_path / "redis-cli").write_text(f"#!/bin/sh\nprintf '%s\\n' '{answer}'\n")
    (tmp_path / "redis-cli").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    for probe, expected in (("livenessProbe", alive), ("readinessProbe", ready)):
        out = subprocess.run(["sh", "-c", redis_probe(objects, probe)], env=env, capture_output=True)
        assert (out.returncode == 0) == expected, f"{probe} on {answer!r}"


def test_the_default_ingress_publishes_only_safe_routes():
    """GET /del_ping resets the counter (RFC 9110: GET must be safe), and
    /metrics and /test are internal: the default Ingress routes only /, /ping
    and /count, exactly."""
    objects = render("--set", "ingress.enabled=true")
    paths = [(p["path"], p["pathType"]) for r in one(objects, "Ingress")["spec"]["rules"] for p in r["http"]["paths"]]
    assert sorted(paths) == [("/", "Exact"), ("/count", "Exact"), ("/ping", "Exact")]


def test_the_collector_turns_spin_spans_into_request_metrics():
    """Cluster error and latency signals without an ingress controller: the
    Collector's spanmetrics connector turns Spin's server spans into
    traces_span_metrics_* by route and status code. Spin exports every 10 s,
    and only what is used (no logs, no discarded traces)."""
    objects = render("-f", str(CHART / "ci" / "monitoring-values.yaml"))
    config = yaml.safe_load(one(objects, "ConfigMap", "otel-collector")["data"]["config.yaml"])
    spanmetrics = config["connectors"]["spanmetrics"]
    assert spanmetrics["histogram"]["unit"] == "s", "…_duration_seconds_bucket, as the rules read it"
    assert {d["name"] for d in spanmetrics["dimensions"]} == {"http.route", "http.response.status_code"}
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["spanmetrics"]
    assert "spanmetrics" in pipelines["metrics"]["receivers"]
    assert set(pipelines) == {"traces", "metrics"}, "nothing is received only to be dropped"
    assert "nop" not in config["exporters"]
    env = {e["name"]: e.get("value") for e in app_pod(objects)["spec"]["containers"][0]["env"]}
    assert env["OTEL_METRIC_EXPORT_INTERVAL"] == "10000"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env, "the generic endpoint turns on Spin's log export too"
    rules = (MONITORING / "rules" / "ping.rules.yml").read_text()
    assert "traces_span_metrics_calls_total" in rules and "traces_span_metrics_duration_seconds_bucket" in rules


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_runtime_class_fits_the_chart_and_the_containerd_snippets(version):
    """runtime-class/: the RuntimeClass is valid, has the chart's default name,
    and its handler is the runtime the containerd snippets define."""
    import tomllib

    rc = yaml.safe_load((ROOT / "runtime-class" / "runtimeclass.yaml").read_text())
    kubernetes_validate.validate(rc, version, strict=True)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert rc["metadata"]["name"] == values["runtimeClassName"]
    for snippet, plugin in (("containerd-config-v1.toml", "io.containerd.grpc.v1.cri"), ("containerd-config-v2.toml", "io.containerd.cri.v1.runtime")):
        runtime = tomllib.loads((ROOT / "runtime-class" / snippet).read_text())["plugins"][plugin]["containerd"]["runtimes"][rc["handler"]]
        assert runtime["runtime_type"] == "io.containerd.spin.v2"
        assert "SystemdCgroup" in runtime["options"]
    docs = (ROOT / "runtime-class" / "README.md").read_text()
    for fact in ("Do not apply `runtimeclass.yaml`", "spin=true", "containerdConfigPatches", "cgroupDriver", "one-node cluster", "k3d cluster create", "kind create cluster", "metrics-server"):
        assert fact in docs, fact


def documented_values() -> list[str]:
    return re.findall(r"^\s*# ([a-zA-Z][\w.]*) -- ", (CHART / "values.yaml").read_text(), flags=re.M)


def test_every_value_is_documented_in_values_yaml_the_schema_and_the_chart_readme():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    documented = set(documented_values())
    readme = (CHART / "README.md").read_text()

    def leaves(tree: dict, prefix: str = ""):
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value and f"{name}" not in documented:
                yield from leaves(value, f"{name}.")
            else:
                yield name

    for name in leaves(values):
        assert name in documented, f"{name} has no `# {name} -- ...` comment in values.yaml"
        assert f"| `{name}` |" in readme, f"{name} is missing from helm/ping/README.md's values table"
        node = schema
        for part in name.split("."):
            assert part in node.get("properties", {}), f"{name} is not in values.schema.json"
            node = node["properties"][part]


@pytest.mark.parametrize("release", ["ping", "ping-prod", "prod", "prod-ping"])
def test_the_alerts_match_the_objects_the_chart_names(release):
    """PingHPAMaxedOut and PingRedisVolumeFillingUp find the HPA and the Redis
    PVC by name, whatever the release is called."""
    rules = (MONITORING / "rules" / "ping.rules.yml").read_text()
    hpa_re = re.search(r'horizontalpodautoscaler=~"([^"]+)"', rules).group(1)
    pvc_re = re.search(r'persistentvolumeclaim=~"([^"]+)"', rules).group(1)
    out = helm("template", release, str(CHART), "--namespace", NAMESPACE)
    assert out.returncode == 0, out.stderr
    objects = [d for d in yaml.safe_load_all(out.stdout) if d]
    hpa = one(objects, "HorizontalPodAutoscaler")["metadata"]["name"]
    sts = one(objects, "StatefulSet", "redis")
    pvc = f'{sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]}-{sts["metadata"]["name"]}-0'
    assert re.fullmatch(hpa_re, hpa), hpa
    assert re.fullmatch(pvc_re, pvc), pvc
    assert not re.fullmatch(hpa_re, "pingpong") and not re.fullmatch(pvc_re, "data-postgres-0")


def test_service_monitors_take_relabelings_and_honor_labels():
    objects = render("-f", str(CHART / "ci" / "monitoring-values.yaml"), "--set", "metrics.serviceMonitor.honorLabels=true")
    monitors = of_kind(objects, "ServiceMonitor")
    assert len(monitors) == 3
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["honorLabels"] is True
        assert endpoint["metricRelabelings"] == [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}]


# --- runtime=container (issue 13): the container image on clusters without the shim ---

def test_container_mode_needs_no_shim():
    """runtime=container runs the plain image (ping-host and the component) on
    any node: no RuntimeClass, the image's own entrypoint, a non-root uid and a
    read-only root file system, so Pod Security "restricted"; the app is
    configured exactly as under the shim."""
    values = str(CHART / "ci" / "container-values.yaml")
    shim = render("-f", values, "--set", "runtime=shim")
    objects = render("-f", values)
    deployment = one(objects, "Deployment", "app")
    spec = deployment["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert "runtimeClassName" not in spec
    assert "command" not in c and "args" not in c, "the image's entrypoint serves the app"
    assert c["image"].startswith("ghcr.io/you/ping-container@sha256:")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 65532
    assert pod_security_level(spec) == "restricted"
    # Same Spin variables, probes, resources and rollout as the shim mode.
    (shim_c,) = app_pod(shim)["spec"]["containers"]
    shim_env = {e["name"] for e in shim_c["env"] if not e["name"].startswith("OTEL_")}
    env = {e["name"] for e in c["env"]}
    assert env - shim_env == {"PING_HOST_METRICS_LISTEN"} and shim_env <= env, env ^ shim_env
    for key in ("livenessProbe", "readinessProbe", "resources", "lifecycle"):
        assert c[key] == shim_c[key], key
    assert c["ports"][0] == shim_c["ports"][0]
    # Spin's OTLP export has no reader in ping-host, which serves its own
    # metrics instead: a `metrics` port, in the Service and the ServiceMonitor,
    # open to the scrapers only.
    assert not any(e.startswith("OTEL_") for e in env)
    listen = next(e["value"] for e in c["env"] if e["name"] == "PING_HOST_METRICS_LISTEN")
    assert c["ports"][1] == {"name": "metrics", "containerPort": int(listen.rsplit(":", 1)[1]), "protocol": "TCP"}
    assert "metrics" in [p["name"] for p in one(objects, "Service", "app")["spec"]["ports"]]
    assert [e["port"] for e in one(objects, "ServiceMonitor", "app")["spec"]["endpoints"]] == ["http", "metrics"]
    rules = one(objects, "NetworkPolicy", "app")["spec"]["ingress"]
    scrape = [r for r in rules if r["ports"] == [{"port": c["ports"][1]["containerPort"], "protocol": "TCP"}]]
    assert len(scrape) == 1 and {"podSelector": {}} not in scrape[0]["from"]
    # Everything around the app is there as in the shim mode.
    kinds = {o["kind"] for o in objects}
    assert {"Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "NetworkPolicy", "StatefulSet", "Secret", "ServiceMonitor"} <= kinds, kinds
    assert kinds == {o["kind"] for o in shim}
    # The default stays the shim.
    assert app_pod(render())["spec"]["runtimeClassName"] == "wasmtime-spin-v2"
    assert "metrics" not in [p["name"] for p in one(shim, "Service", "app")["spec"]["ports"]]


def test_container_mode_default_image_is_the_container_image_not_the_artifact():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["runtime"] == "shim"
    assert values["container"]["image"]["repository"] != values["image"]["repository"]
    (c,) = app_pod(render("--set", "runtime=container"))["spec"]["containers"]
    assert c["image"] == f'{values["container"]["image"]["repository"]}:{values["container"]["image"]["tag"]}'


def test_notes_name_the_mode_and_its_pod_security_level():
    shim = helm("install", "ping", str(CHART), "--dry-run=client", "-n", NAMESPACE)
    container = helm("install", "ping", str(CHART), "--dry-run=client", "-n", NAMESPACE, "--set", "runtime=container")
    assert shim.returncode == 0 and container.returncode == 0, shim.stderr + container.stderr
    assert "baseline" in shim.stdout and "containerd-shim-spin" in shim.stdout
    notes = container.stdout.split("NOTES:", 1)[1]
    assert "restricted" in notes and "container image" in notes and "baseline" not in notes
