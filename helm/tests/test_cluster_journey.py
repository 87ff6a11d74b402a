"""tests/cluster/run.sh without a cluster: a stand-in kubectl answers its
prechecks, so the ways it refuses to start are proven here. (The journeys
themselves need a cluster with containerd-shim-spin nodes: `make cluster-test`.)"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

FAKE_KUBECTL = r"""#!/bin/sh
# Answers what run.sh's prechecks ask, as told by FAKE_* variables.
case "$*" in
  version*) [ "$FAKE_REACHABLE" = 1 ] ;;
  "get runtimeclass wasmtime-spin-v2 -o go-template"*) printf 'spin.ping.dev/runtime=true,' ;;
  "get runtimeclass wasmtime-spin-v2") [ "$FAKE_RUNTIMECLASS" = 1 ] ;;
  "get nodes -l spin.ping.dev/runtime=true -o name") [ "$FAKE_NODES" = 1 ] && echo node/spin-1; true ;;
  "get apiservice v1beta1.metrics.k8s.io"*) [ "$FAKE_METRICS" = 1 ] && printf True; true ;;
  "get namespace"*) exit 1 ;;
  *) echo "fake kubectl: unexpected: $*" >&2; exit 2 ;;
esac
"""


def run_journey(tmp_path: pathlib.Path, **fake: str) -> subprocess.CompletedProcess:
    (tmp_path / "tests" / "cluster").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "cluster" / "run.sh", tmp_path / "tests" / "cluster" / "run.sh")
    bin_dir = tmp_path / ".tools" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    # A load generator, so the prechecks do not try to install one.
    (bin_dir / "oha").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "oha").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PING_REGISTRY": "localhost:5000", "PING_INGRESS_URL": "http://127.0.0.1:8081", "TMPDIR": str(tmp_path)}
    env.update({f"FAKE_{k.upper()}": v for k, v in fake.items()})
    return subprocess.run(["bash", str(tmp_path / "tests" / "cluster" / "run.sh")], env=env, capture_output=True, text=True, timeout=60)


def test_without_a_cluster_it_reports_nothing_as_passed(tmp_path):
    out = run_journey(tmp_path, reachable="0")
    assert out.returncode == 0 and "cluster tests NOT RUN" in out.stdout and "passed" not in out.stdout


@pytest.mark.parametrize(
    "fake, says",
    [
        ({"runtimeclass": "0"}, "RuntimeClass wasmtime-spin-v2 missing"),
        ({"runtimeclass": "1", "nodes": "0"}, "no node carries the RuntimeClass's label spin.ping.dev/runtime=true"),
        ({"runtimeclass": "1", "nodes": "1", "metrics": "0"}, "the metrics API (v1beta1.metrics.k8s.io) is not available"),
    ],
    ids=["no-runtimeclass", "no-spin-nodes", "no-metrics-api"],
)
def test_a_cluster_that_cannot_run_the_journeys_fails_loudly(tmp_path, fake, says):
    out = run_journey(tmp_path, reachable="1", **fake)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"FAILED: {says}" in out.stderr, out.stderr


def test_the_journey_script_keeps_its_promises():
    script = (ROOT / "tests" / "cluster" / "run.sh").read_text()
    assert "mktemp" in script and "/tmp/ping-" not in script, "no fixed temporary paths"
    assert "--wait=false" not in script, "the namespace is deleted before a re-run can start"
    assert "PING_INSECURE_REGISTRY" in script and "--insecure" in script
    assert "desiredReplicas" in script, "the scale test reads the HPA's own status"
    assert "describe pods" in script and "logs" in script, "failures dump the namespace first"
    makefile = (ROOT / "Makefile").read_text()
    assert "cluster-test: build chart-tools" in makefile and "install-bench-tools.sh --load-only" in makefile, \
        "make cluster-test installs the load generator (only oha, not the bench's wasmtime CLI)"
