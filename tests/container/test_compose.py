"""compose.yaml, checked against the Compose Specification's JSON schema and
run with a real compose implementation (podman-compose, pinned in .tools/venv)
on real Podman: the app image from `make image`, Redis from REDIS_IMAGE (a
local stand-in for docker.io/library/redis, which cannot be pulled here)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

import jsonschema
import pytest
import yaml

from container_harness import PING_IMAGE, ROOT, free_port, http, podman_version, wait_for

COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / ".tools" / "compose-spec" / "compose.schema.json"
PODMAN_COMPOSE = ROOT / ".tools" / "venv" / "bin" / "podman-compose"
CHART_VALUES = ROOT / "helm" / "ping" / "values.yaml"


def compose_doc() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def schema_errors(doc: dict) -> list[str]:
    if not SCHEMA.exists():
        pytest.fail(f"{SCHEMA} is missing: run scripts/install-container-tools.sh (make container-tools)")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification():
    assert schema_errors(compose_doc()) == []


@pytest.mark.parametrize("path, value", [
    (("services", "redis", "restart"), 7),
    (("services", "ping", "depends_on", "redis", "condition"), "service_ready"),
    (("services", "ping", "surprise"), True),
])
def test_the_schema_check_rejects_a_broken_file(path, value):
    doc = compose_doc()
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(doc), f"{path}={value!r} was accepted"


def test_compose_file_pins_images_and_matches_the_chart():
    doc = compose_doc()
    chart_redis = yaml.safe_load(CHART_VALUES.read_text())["redis"]["image"]
    redis_image = doc["services"]["redis"]["image"]
    assert redis_image == f'${{REDIS_IMAGE:-{chart_redis["repository"]}:{chart_redis["tag"]}}}'
    for name, service in doc["services"].items():
        assert ":" in service["image"].split("/")[-1] and "latest" not in service["image"], name
    ping = doc["services"]["ping"]
    assert ping["depends_on"]["redis"]["condition"] == "service_healthy"
    assert ping["read_only"] is True and ping["cap_drop"] == ["ALL"]
    assert "redis-data:/data" in doc["services"]["redis"]["volumes"] and "redis-data" in doc["volumes"]
    command = doc["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    # The Wasm variant: Docker Desktop's Spin shim, behind a profile.
    wasm = doc["services"]["ping-wasm"]
    assert wasm["profiles"] == ["wasm"] and wasm["platform"] == "wasi/wasm"
    assert wasm["runtime"] == "io.containerd.spin.v2" and wasm["command"] == ["/"]


class Project:
    """One podman-compose project with its own name, port and volume."""

    def __init__(self, podman_env: dict, redis_image: str, password: str = ""):
        if not PODMAN_COMPOSE.exists():
            pytest.fail(f"{PODMAN_COMPOSE} is missing: run scripts/install-container-tools.sh")
        self.name = f"pingtest{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = dict(podman_env, PING_IMAGE=PING_IMAGE, REDIS_IMAGE=redis_image,
                        PING_PORT=str(self.port), REDIS_PASSWORD=password)
        self.output = ""

    def compose(self, *args, check=True, timeout=180, files=(COMPOSE,)):
        cmd = [str(PODMAN_COMPOSE), "-p", self.name]
        for f in files:
            cmd += ["-f", str(f)]
        p = subprocess.run([*cmd, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, cwd=ROOT)
        self.output += p.stdout + p.stderr
        if check and p.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
        return p

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def podman(self, *args, check=True):
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              check=check, timeout=120)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def up(self, files=(COMPOSE,)):
        self.compose("up", "-d", files=files)
        wait_for("the app on the compose port",
                 lambda: http("GET", self.url("/.well-known/spin/health"))[0] == 200, timeout=60)

    def ping(self) -> tuple:
        return http("GET", self.url("/ping"), timeout=10)

    def down(self, *args):
        self.compose("down", "-t", "5", *args)

    def cleanup(self):
        self.compose("down", "-t", "0", "-v", check=False)
        self.podman("volume", "rm", "-f", f"{self.name}_redis-data", check=False)


@pytest.fixture
def project(podman_env, redis_image):
    made = []

    def make(password: str = "") -> Project:
        p = Project(podman_env, redis_image, password)
        made.append(p)
        return p

    yield make
    for p in made:
        p.cleanup()


def wait_for_pong(project: Project):
    """Redis answers before ping's first request (podman-compose on Podman
    before 4.6 does not wait for health)."""
    wait_for("/ping to answer 200", lambda: project.ping()[0] == 200, timeout=60, interval=0.3)


def test_count_grows_survives_down_and_up_and_down_v_resets_it(project):
    secret = f"pw-{uuid.uuid4().hex}"
    p = project(secret)
    p.up()
    wait_for_pong(p)
    first = int(p.ping()[1])
    assert p.ping() == (200, f"{first + 1}\n")
    assert http("GET", p.url("/test")) == (200, "Success")
    # Redis really requires the password, and ping really sends it.
    noauth = p.podman("exec", "-e", "REDISCLI_AUTH=", p.container("redis"), "redis-cli", "incr", "ping")
    assert "NOAUTH" in noauth.stdout + noauth.stderr
    p.down()
    p.up()
    wait_for("the count to survive down/up", lambda: p.ping() == (200, f"{first + 2}\n"), timeout=60,
             interval=0.3)
    app_logs = p.podman("logs", p.container("ping")).stderr
    assert "serving on" in app_logs and secret not in app_logs
    p.down("-v")
    p.up()
    wait_for("the count to restart at 1 after down -v", lambda: p.ping() == (200, "1\n"), timeout=60,
             interval=0.3)


def test_redis_healthcheck_tells_healthy_from_unhealthy(project):
    """Podman runs healthchecks from systemd timers; without systemd they run
    when asked, which is what `podman healthcheck run` does."""
    p = project("hc-secret")
    p.up()
    redis = p.container("redis")
    wait_for("Redis healthy", lambda: p.podman("healthcheck", "run", redis, check=False).returncode == 0,
             timeout=30, interval=0.3)
    # Same container, the password changed under it: PING now answers NOAUTH.
    p.podman("exec", redis, "redis-cli", "--no-auth-warning", "config", "set", "requirepass", "other")
    assert p.podman("healthcheck", "run", redis, check=False).returncode != 0


def test_unhealthy_redis_keeps_the_app_from_starting(project, podman_env, tmp_path):
    if podman_version(podman_env) < (4, 6):
        pytest.skip("podman-compose enforces depends_on: condition: service_healthy only on Podman "
                    "4.6+ (`podman wait --condition=healthy`); this Podman is older, and "
                    "podman-compose starts the app regardless (it warns so)")
    override = tmp_path / "unhealthy.yaml"
    override.write_text('services:\n  redis:\n    healthcheck:\n      test: ["CMD-SHELL", "exit 1"]\n'
                        '      interval: 1s\n      retries: 1\n      start_period: 0s\n')
    p = project()
    with pytest.raises(subprocess.TimeoutExpired):
        p.compose("up", "-d", files=(COMPOSE, override), timeout=30)
    state = p.podman("inspect", "--format", "{{.State.Status}}", p.container("ping"), check=False)
    assert state.returncode != 0 or state.stdout.strip() != "running"


def test_killing_redis_under_load_loses_no_acknowledged_increment(project):
    p = project()
    p.up()
    wait_for_pong(p)
    acked, errors = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            status, body = p.ping()
            if status == 200:
                acked.append(int(body))
            else:
                errors.append(status)
                time.sleep(0.05)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for("load before the kill", lambda: len(acked) >= 200, timeout=60)
        at_kill = max(acked)
        p.podman("kill", "--signal", "KILL", p.container("redis"))
        time.sleep(1)
        p.podman("start", p.container("redis"))
        wait_for("increments after Redis restarted", lambda: len(acked) and max(acked) > at_kill + 200,
                 timeout=90, interval=0.3)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert errors, "killing Redis was not noticed: the test did not test anything"
    assert len(acked) == len(set(acked)), \
        f"{len(acked) - len(set(acked))} counts acknowledged twice: an acknowledged increment was lost"
    status, body = http("GET", p.url("/count"))
    assert status == 200 and int(body) >= max(acked)
