"""Harness for the container tests: real Podman (with runc), the real image
built by `make image`, a real Redis in a container, free loopback ports.

Two facts about CI machines live here and only here (never in users' commands):
rootful Podman needs runc (crun refuses a hybrid cgroup layout), and explicit
ulimits no higher than the hard limits (no CAP_SYS_RESOURCE to raise them).
The harness detects both and writes them into a private containers.conf that
it hands to podman and podman-compose through CONTAINERS_CONF.

No image can be pulled on these machines, so Redis is a local image built
FROM scratch with this machine's redis-server, redis-cli and /bin/sh (dash)
plus their shared libraries. compose.yaml takes it through REDIS_IMAGE.

Everything a test creates (containers, networks, volumes, the Redis image)
carries a unique name and is removed afterwards.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from container_harness import PING_IMAGE, RUN_ID


class Podman:
    """podman with the harness's containers.conf; tracks what it creates."""

    def __init__(self, env: dict):
        self.env = env
        self.created: list[tuple[str, str]] = []

    def run(self, *args, check=True, timeout=120, input=None) -> subprocess.CompletedProcess:
        p = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p

    def inspect(self, name: str, fmt: str) -> str:
        return self.run("inspect", "--format", fmt, name).stdout.strip()

    def network(self) -> str:
        name = f"ping-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        self.run("network", "create", name)
        self.created.append(("network", name))
        return name

    def container(self, image: str, *args, name: str | None = None, detach=True,
                  options: tuple = ()) -> str:
        name = name or f"ping-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        self.created.append(("container", name))
        self.run("run", *(["-d"] if detach else []), "--name", name, *options, image, *args)
        return name

    def logs(self, name: str) -> str:
        p = self.run("logs", name, check=False)
        return p.stdout + p.stderr

    def cleanup(self):
        for kind, name in reversed(self.created):
            if kind == "container":
                self.run("rm", "-f", "-t", "0", name, check=False)
            elif kind == "network":
                self.run("network", "rm", "-f", name, check=False)
        self.created.clear()


def _detect_conf(tmp: Path) -> Path:
    """A containers.conf that works on this machine: runc on a cgroup v1 or
    hybrid host, and ulimits the kernel will let runc set."""
    if not shutil.which("podman"):
        pytest.fail("podman is missing: run scripts/install-container-tools.sh (make container-tools)")
    lines_containers, lines_engine, lines_network = [], [], []
    cgroup2_only = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    if not cgroup2_only and shutil.which("runc"):
        lines_engine.append('runtime = "runc"')
    if Path("/usr/lib/podman/netavark").exists():
        lines_network.append('network_backend = "netavark"')
    conf = tmp / "containers.conf"

    def write(ulimits: list[str]):
        text = "[containers]\n"
        if ulimits:
            text += "default_ulimits = [" + ", ".join(f'"{u}"' for u in ulimits) + "]\n"
        text += "[network]\n" + "\n".join(lines_network) + "\n"
        text += "[engine]\n" + "\n".join(lines_engine) + "\n"
        conf.write_text(text)

    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    last_error = ""

    # Probe with the app image itself (static, prints its version).
    def works() -> bool:
        nonlocal last_error
        p = subprocess.run(["podman", "run", "--rm", "--entrypoint", "/app/ping-host", PING_IMAGE,
                            "--version"], env=env, capture_output=True, text=True, timeout=120)
        last_error = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        return p.returncode == 0

    write([])
    if works():
        return conf
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    for nproc in [nproc_hard, 65536, 32768, 16384, 4096]:
        if nproc_hard != resource.RLIM_INFINITY and nproc > nproc_hard:
            continue
        write([f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"])
        if works():
            return conf
    pytest.fail(f"podman cannot start a container here with any ulimits tried (last error: "
                f"{last_error}); see {conf}, and run scripts/install-container-tools.sh "
                "(make container-tools) for what podman needs")


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory) -> dict:
    have = subprocess.run(["podman", "image", "exists", PING_IMAGE], capture_output=True)
    if have.returncode != 0:
        pytest.fail(f"image {PING_IMAGE} is missing: run `make image` first")
    conf = _detect_conf(tmp_path_factory.mktemp("podman"))
    return dict(os.environ, CONTAINERS_CONF=str(conf))


@pytest.fixture
def podman(podman_env):
    p = Podman(podman_env)
    yield p
    p.cleanup()


def _libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return re.findall(r"(/\S+)", out)


@pytest.fixture(scope="session")
def redis_image(podman_env, tmp_path_factory) -> str:
    """A Redis image built FROM scratch from this machine's redis-server (the
    stand-in for docker.io/library/redis, which cannot be pulled here)."""
    ctx = tmp_path_factory.mktemp("redis-image")
    rootfs = ctx / "rootfs"
    binaries = {"redis-server": "/usr/local/bin/redis-server",
                "redis-cli": "/usr/local/bin/redis-cli", "dash": "/bin/sh"}
    for name, dest in binaries.items():
        src = shutil.which(name)
        assert src, f"{name} is missing: run scripts/install-deps.sh"
        (rootfs / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, rootfs / dest.lstrip("/"))
        for lib in _libs(src):
            target = rootfs / lib.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.realpath(lib), target)
    (rootfs / "data").mkdir()
    (rootfs / "tmp").mkdir()
    # It runs as root: the official image's entrypoint starts as root too, to
    # chown a fresh named volume (owned by root) before it drops to uid 999;
    # this stand-in has no entrypoint script to do that.
    (ctx / "Containerfile").write_text(
        "FROM scratch\n"
        "COPY rootfs/ /\n"
        "WORKDIR /data\n"
        "EXPOSE 6379\n"
        'CMD ["redis-server"]\n')
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True
                             ).stdout.split("v=")[1].split()[0]
    tag = f"localhost/ping-test-redis:{version}-{RUN_ID}"
    subprocess.run(["podman", "build", "-q", "-t", tag, str(ctx)], env=podman_env, check=True,
                   capture_output=True)
    yield tag
    subprocess.run(["podman", "rmi", "-f", tag], env=podman_env, capture_output=True)


