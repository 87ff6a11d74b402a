"""The container image (`make image`), run with real Podman and runc against a
real Redis container: what it holds, how it runs, how it fails."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time

from container_harness import PING_IMAGE, VERSION, free_port, http, image_config, wait_for

APP_OPTIONS = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def start_redis(podman, redis_image, network, *args) -> str:
    return podman.container(redis_image, "redis-server", "--protected-mode", "no", "--save", "",
                            *args, options=("--network", network, "--network-alias", "redis"))


def start_app(podman, network, port, *env, args=(), options=()) -> str:
    opts = ["--network", network, "-p", f"127.0.0.1:{port}:8080", *APP_OPTIONS, *options]
    for e in ("SPIN_VARIABLE_REDIS_HOST=redis", *env):
        opts += ["-e", e]
    return podman.container(PING_IMAGE, *args, options=tuple(opts))


def healthy(port):
    return lambda: http("GET", f"http://127.0.0.1:{port}/.well-known/spin/health")[0] == 200


def test_image_is_labelled_versioned_and_small(podman_env):
    cfg = image_config(podman_env, PING_IMAGE)
    labels = cfg["Config"]["Labels"]
    for key in ("title", "description", "version", "revision", "created", "licenses", "authors"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"label org.opencontainers.image.{key}"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.created"] != "1970-01-01T00:00:00Z"
    assert not any(t.endswith(":latest") for t in cfg.get("RepoTags", [])), cfg["RepoTags"]
    assert PING_IMAGE.endswith(f":{VERSION}")
    assert cfg["Config"]["User"] == "65532:65532"
    assert "SPIN_HTTP_LISTEN_ADDR=0.0.0.0:8080" in cfg["Config"]["Env"]
    assert cfg["Size"] < 50 * 1024 * 1024, f"image is {cfg['Size']} bytes; the goal is under 50 MB"


def test_image_holds_only_the_app(podman):
    """FROM scratch: ping-host, spin.toml, the Wasm and its precompiled code."""
    name = f"ping-test-export-{time.monotonic_ns()}"
    podman.created.append(("container", name))
    podman.run("create", "--name", name, PING_IMAGE)
    tar = subprocess.run(["podman", "export", name], env=podman.env, capture_output=True,
                         check=True).stdout
    files = sorted(m.name.lstrip("./") for m in tarfile.open(fileobj=io.BytesIO(tar)) if m.isfile())
    precompiled = [f for f in files if f.startswith("app/precompiled/")]
    assert len(precompiled) == 1 and precompiled[0].endswith(".cwasm"), files
    assert [f for f in files if f not in precompiled] == [
        "app/ping-host", "app/spin.toml", "app/target/wasm32-wasip2/wasm/ping_component.wasm"], files


def test_serves_counts_as_non_root_with_read_only_root(podman, redis_image):
    net = podman.network()
    start_redis(podman, redis_image, net)
    port = free_port()
    app = start_app(podman, net, port)
    wait_for("the app's health endpoint", healthy(port))
    assert http("GET", f"http://127.0.0.1:{port}/ping") == (200, "1\n")
    assert http("GET", f"http://127.0.0.1:{port}/ping") == (200, "2\n")
    assert http("GET", f"http://127.0.0.1:{port}/ping", headers={"accept": "application/json"}) \
        == (200, '{"count":3}')
    assert http("GET", f"http://127.0.0.1:{port}/test") == (200, "Success")
    # The process itself: its uid/gid, and the root mount as the kernel sees it.
    pid = podman.inspect(app, "{{.State.Pid}}")
    status = open(f"/proc/{pid}/status").read()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
    assert uid_line.split()[1:] == ["65532"] * 4, uid_line
    assert gid_line.split()[1:] == ["65532"] * 4, gid_line
    cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(cap_eff.split()[1], 16) == 0, cap_eff
    root = next(line.split() for line in open(f"/proc/{pid}/mountinfo") if line.split()[4] == "/")
    assert "ro" in root[5].split(","), f"root mount options: {root[5]}"
    # Precompiled: no compiler run, no cache, nothing to warn about.
    logs = podman.logs(app)
    assert "WARN" not in logs and "ERROR" not in logs, logs
    assert "serving on http://0.0.0.0:8080" in logs
    assert "loaded precompiled code" in logs, logs


def test_runtime_metrics_endpoint_for_the_charts_container_mode(podman, redis_image):
    """The chart's runtime=container sets PING_HOST_METRICS_LISTEN and scrapes it."""
    net = podman.network()
    start_redis(podman, redis_image, net)
    port, metrics = free_port(), free_port()
    start_app(podman, net, port, "PING_HOST_METRICS_LISTEN=0.0.0.0:9464",
              options=("-p", f"127.0.0.1:{metrics}:9464"))
    wait_for("the app's health endpoint", healthy(port))
    assert http("GET", f"http://127.0.0.1:{port}/ping") == (200, "1\n")
    status, body = http("GET", f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200
    assert 'ping_host_http_requests_total{' in body and 'route="/ping"' in body, body[:2000]


def test_sigterm_drains_in_flight_requests_and_exits_0(podman, redis_image):
    net = podman.network()
    start_redis(podman, redis_image, net)
    port = free_port()
    app = start_app(podman, net, port)
    wait_for("the app's health endpoint", healthy(port))
    counts, failures = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            status, body = http("GET", f"http://127.0.0.1:{port}/ping", timeout=5)
            if status == 200:
                counts.append(int(body))
            elif status is not None:
                failures.append((status, body))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    wait_for("some load", lambda: len(counts) > 50, timeout=20)
    podman.run("stop", "--time", "15", app)
    stop.set()
    for w in workers:
        w.join()
    assert podman.inspect(app, "{{.State.ExitCode}}") == "0", podman.logs(app)
    assert "shutting down" in podman.logs(app)
    assert failures == [], failures[:5]
    assert len(counts) == len(set(counts)), "a count was acknowledged twice"


def test_starts_without_redis_answers_503_and_recovers(podman, redis_image):
    net = podman.network()
    port = free_port()
    start_app(podman, net, port)
    wait_for("the app's health endpoint without Redis", healthy(port))
    status, body = http("GET", f"http://127.0.0.1:{port}/ping", timeout=15)
    assert status == 503 and body.strip(), (status, body)
    status, body = http("GET", f"http://127.0.0.1:{port}/test", timeout=15)
    assert status == 503 and body.strip(), (status, body)
    start_redis(podman, redis_image, net)
    wait_for("/ping to recover once Redis is up",
             lambda: http("GET", f"http://127.0.0.1:{port}/ping", timeout=15) == (200, "1\n"),
             timeout=60, interval=0.5)


SECRET = "s3cret-Passw0rd-that-must-not-leak"


def exited(podman, name, timeout=30):
    wait_for(f"{name} to exit", lambda: podman.inspect(name, "{{.State.Status}}") == "exited",
             timeout=timeout)
    return int(podman.inspect(name, "{{.State.ExitCode}}")), podman.logs(name)


def test_invalid_variable_stops_it_naming_the_variable(podman):
    net = podman.network()
    app = start_app(podman, net, free_port(), "SPIN_VARIABLE_REDIS_PORT=not-a-port",
                    f"SPIN_VARIABLE_REDIS_PASSWORD={SECRET}")
    code, logs = exited(podman, app)
    assert code != 0, logs
    assert "SPIN_VARIABLE_REDIS_PORT" in logs and "redis_port" in logs, logs
    assert "not-a-port" in logs, logs
    assert SECRET not in logs


REQUIRED_MANIFEST = """\
spin_manifest_version = 2
[application]
name = "ping"
version = "0.1.0"
[variables]
redis_host = { default = "redis" }
redis_port = { default = "6379" }
redis_password = { required = true, secret = true }
redis_db = { default = "0" }
counter_key = { default = "ping" }
[[trigger.http]]
route = "/ping"
component = "ping"
[component.ping]
source = "target/wasm32-wasip2/wasm/ping_component.wasm"
allowed_outbound_hosts = ["redis://{{ redis_host }}:{{ redis_port }}"]
[component.ping.variables]
redis_host = "{{ redis_host }}"
redis_port = "{{ redis_port }}"
redis_password = "{{ redis_password }}"
redis_db = "{{ redis_db }}"
counter_key = "{{ counter_key }}"
"""


def test_missing_required_variable_stops_it_naming_the_variable(podman, tmp_path):
    manifest = tmp_path / "required.toml"
    manifest.write_text(REQUIRED_MANIFEST)
    manifest.chmod(0o644)
    net = podman.network()
    app = start_app(podman, net, free_port(),
                    options=("-v", f"{manifest}:/app/required.toml:ro,Z"),
                    args=("up", "--manifest", "/app/required.toml", "--precompiled",
                          "/app/precompiled", "--no-cache"))
    code, logs = exited(podman, app)
    assert code != 0, logs
    assert "redis_password" in logs and "SPIN_VARIABLE_REDIS_PASSWORD" in logs, logs


def test_wrong_precompiled_directory_stops_it_with_the_fix(podman):
    net = podman.network()
    app = start_app(podman, net, free_port(),
                    args=("up", "--manifest", "/app/spin.toml", "--precompiled", "/app", "--no-cache"))
    code, logs = exited(podman, app)
    assert code != 0, logs
    assert "--precompiled /app" in logs and "ping-host precompile" in logs, logs


def test_image_config_matches_the_chart_and_compose(podman_env):
    """The port and user the chart's container mode and compose.yaml assume."""
    cfg = image_config(podman_env, PING_IMAGE)
    assert "8080/tcp" in json.dumps(cfg["Config"].get("ExposedPorts", {}))
    assert cfg["Config"]["Entrypoint"] == ["/app/ping-host"]
    assert "--precompiled" in cfg["Config"]["Cmd"]
