"""Helpers shared by the container tests and their fixtures (conftest.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
PING_IMAGE = os.environ.get("PING_IMAGE", f"localhost/ping:{VERSION}")
RUN_ID = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, timeout: float = 5.0, headers: dict | None = None):
    """(status, body) of one request; (None, reason) when nothing answered."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        return None, str(e)


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.1):
    """Polls `check()` until it returns a truthy value; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def podman_version(env: dict) -> tuple[int, ...]:
    out = subprocess.run(["podman", "version", "--format", "{{.Client.Version}}"], env=env,
                         capture_output=True, text=True).stdout.strip()
    return tuple(int(x) for x in re.findall(r"\d+", out)[:3])


def image_config(env: dict, image: str) -> dict:
    out = subprocess.run(["podman", "image", "inspect", image], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]
