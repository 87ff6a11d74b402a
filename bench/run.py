#!/usr/bin/env python3
"""`make bench`: ping-host against the physical limits of this machine, in one run.

It starts one Redis and these servers on free loopback ports:
  * ping-host (release) serving the real component;
  * ping-baseline, a minimal native hyper server doing the same work (the ceiling);
  * the workshop's Flask app under gunicorn (2 workers, pooled INCR);
  * the wasi-http hello component (bench/hello) on ping-host and on
    `wasmtime serve` (the wasmtime CLI, same wasmtime version), both with a
    fresh instance per request and both reusing an instance for up to
    REUSE requests (ping-host's --instance-reuse, when the binary has it; the
    /ping component is then also served in that mode).
Only the server under test runs: the others are paused (SIGSTOP), so their
timers (ping-host's 1 ms epoch ticker) take no CPU from it.
Then, at each concurrency, oha drives each server for a fixed time, and
redis-benchmark measures Redis's own INCR rate. It also measures cold start
(with and without the compilation cache), per-instance instantiation time,
p99 at half the maximum /ping rate (and at half their own maximum, hyper's
/ping and both hello servers'), each server's CPU per 1,000 requests,
ping-host's peak RSS, checks that the counter equals the successful requests
in every mode, and profiles ping-host at 64 connections into flame graphs.

Results go to bench/results/<date>.{json,md,png} and <date>-flame-*.svg;
BENCHMARKS.md gets the summary. Environment: BENCH_DURATION (seconds per
point, default 10), BENCH_CONCURRENCY (default 1,16,64,256), BENCH_PROFILE=0
skips the flame graphs.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
OHA = TOOLS / "bin" / "oha"
VENV = TOOLS / "bench-venv" / "bin"
HOST = ROOT / "target" / "release" / "ping-host"
BASELINE = ROOT / "target" / "release" / "ping-baseline"
INSTANTIATE = ROOT / "target" / "release" / "examples" / "instantiate"
WASMTIME = TOOLS / "bin" / "wasmtime"
P3_SERIES = "ping-host /ping WASIp3 (spin-sdk 7)"
HELLO_WASM = ROOT / "target" / "wasm32-wasip2" / "wasm" / "hello_component.wasm"
HELLO_MANIFEST = ROOT / "bench" / "hello" / "spin.toml"
# The WASIp3 row: tests/p3-ping (spin-sdk 7) does ping's INCR through spin:redis@3.0.0;
# ping-host serves it with Spin 4.1's reuse defaults (128 per instance, 16 at once).
P3_WASM = ROOT / "target" / "wasm32-wasip2" / "wasm" / "p3_ping_component.wasm"
P3_FIXTURE = ROOT / "tests" / "fixtures" / "p3-ping.toml"
RESULTS = ROOT / "bench" / "results"
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,16,64,256").split(",")]
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0"
TICKS = os.sysconf("SC_CLK_TCK")

# Requests one instance serves in turn in the reuse rows, on both runtimes.
REUSE = 128
# `wasmtime serve` with the pooling settings ping-host uses by default: the
# pooling allocator, 256 KiB of each memory and table kept resident between
# instances (ping-host's --instance-keep-resident-kib); -S cli gives the
# component the wasi:cli imports Rust's std links.
WASMTIME_FLAGS = ["-S", "cli", "-O", "pooling-allocator",
                  "-O", "pooling-memory-keep-resident=262144", "-O", "pooling-table-keep-resident=262144"]
WASMTIME_REUSE_FLAGS = ["--max-instance-reuse-count", str(REUSE)]
HOST_REUSE_FLAGS = ["--instance-reuse", str(REUSE)]
# The hello servers whose p99 at half their own maximum the run reports.
HELLO_HALF_MAX = ["hello: ping-host", "hello: wasmtime serve"]

# The rows of the table and chart, in order; a run has those it could measure.
PING_SERIES = ["ping-host /ping", f"ping-host /ping reuse {REUSE}", P3_SERIES, "ping-host /", "hyper /ping", "hyper /", "flask /ping", "redis-benchmark INCR"]
HELLO_SERIES = ["hello: ping-host", "hello: wasmtime serve", f"hello: ping-host reuse {REUSE}", f"hello: wasmtime serve reuse {REUSE}"]

# The targets of the performance issue, checked against this run's figures.
TARGETS = {
    "ping_vs_redis_at_64": 0.50,
    "hello_vs_hyper_at_64": 0.60,
    "ping_vs_hyper_best_at_64": 0.50,
    "ping_vs_hyper_per_request_at_64": 0.25,
    "hello_vs_wasmtime_at_64": 1.0,
    "hello_vs_wasmtime_reuse_at_64": 1.0,
    "instantiate_us": 20.0,
    "p99_at_half_max_ms": 2.0,
    "cold_start_warm_ms": 100.0,
    "peak_rss_mb": 150.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return r.status
    except Exception:
        return 0


def wait_ok(url: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if get(url) == 200:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer 200 within {limit}s")


class Server:
    """A child process that is stopped on exit."""

    def __init__(self, args: list, env: dict | None = None, cwd: pathlib.Path | None = None, log: pathlib.Path | None = None):
        # Standard error goes to `log` when given, for the message of a server that never answers.
        self.log = log
        self.proc = subprocess.Popen(
            [str(a) for a in args], env={**os.environ, **(env or {})}, cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=log.open("wb") if log else subprocess.DEVNULL,
        )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log and self.log.exists() else ""

    def cpu_seconds(self) -> float:
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def pause(self) -> None:
        """SIGSTOP: an idle server's timers must not take CPU from the one under test."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def peak_rss_mb(self) -> float:
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def oha(url: str, concurrency: int, seconds: int | None = None, requests: int | None = None, qps: float | None = None) -> dict:
    args = [str(OHA), "--no-tui", "--output-format", "json", "-c", str(concurrency)]
    if seconds:
        args += ["-z", f"{seconds}s"]
    if requests:
        args += ["-n", str(requests)]
    if qps:
        args += ["-q", str(qps)]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    statuses = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
    # A timed run (-z) cuts off the requests in flight at its end and reports
    # them as "aborted due to deadline": one per connection, not a failure.
    failures = report.get("errorDistribution", {})
    aborted = sum(v for k, v in failures.items() if "aborted due to deadline" in k)
    errors = sum(failures.values()) - aborted
    ok = statuses.get(200, 0)
    pct = report.get("latencyPercentiles", {})
    ms = lambda key: round((pct.get(key) or 0.0) * 1000, 3)
    return {
        "rps": round(report["summary"]["requestsPerSec"], 1),
        "ok": ok,
        "errors": errors + sum(v for k, v in statuses.items() if k != 200),
        "cut_at_deadline": aborted,
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
    }


def at_rate(url: str, qps: float, server: "Server | None" = None, runs: int = 3) -> dict:
    """`runs` timed runs at a fixed rate, 64 connections: the run with the
    median p99, plus every run's p99: on this shared 2-core machine one 6-s
    run of the same build at the same rate gave p99s from 2.2 to 6.8 ms.
    With `server`, each run also records the server's CPU seconds per 1,000
    successful requests (the median run's is kept): below its maximum a
    server's threads sleep and wake per request instead of finding the next
    one ready, so a request costs more CPU than at full rate and half the
    maximum rate is not half the machine (figures in BENCHMARKS.head.md,
    eighth sitting)."""
    measured = sorted((with_cpu(server, lambda: oha(url, 64, seconds=DURATION, qps=qps)) for _ in range(runs)),
                      key=lambda r: r["p99_ms"])
    return {**measured[len(measured) // 2], "p99_runs_ms": [r["p99_ms"] for r in measured]}


def with_cpu(server: "Server | None", run) -> dict:
    """`run()`'s oha figures, plus `server`'s CPU seconds per 1,000 successful
    requests while it ran (`cpu_s_per_1k`) when there is a server to read."""
    before = server.cpu_seconds() if server else 0.0
    point = run()
    if server:
        point["cpu_s_per_1k"] = round((server.cpu_seconds() - before) / max(point["ok"], 1) * 1000, 4)
    return point


def at_half_max(points: dict, series: str, url: str, server: "Server | None" = None) -> dict:
    """`at_rate` at half the best req/s `series` reached over `points`, with that rate."""
    qps = max(points[c][series]["rps"] for c in points) / 2
    return {"qps": round(qps), **at_rate(url, qps, server)}


def redis_benchmark(port: int, clients: int) -> dict:
    n = 50_000 if clients == 1 else 200_000
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "incr", "-c", str(clients), "-n", str(n), "--csv"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()
    header = [h.strip('"') for h in out[0].split(",")]
    row = dict(zip(header, [v.strip('"') for v in out[-1].split(",")]))
    return {"rps": float(row["rps"]), "p50_ms": float(row.get("p50_latency_ms", 0)), "p99_ms": float(row.get("p99_latency_ms", 0))}


def redis_cmd(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True).stdout.strip()


def cold_start(redis_port: int, cache: pathlib.Path | None, runs: int = 5) -> float:
    """Median milliseconds from process start to the first 200 on /ping."""
    times = []
    for _ in range(runs):
        port = free_port()
        args = [HOST, "up", "--manifest", ROOT / "spin.toml", "--listen", f"127.0.0.1:{port}", "--variable", f"redis_port={redis_port}"]
        args += ["--cache-dir", cache] if cache else ["--no-cache"]
        started = time.perf_counter()
        server = Server(args)
        wait_ok(f"http://127.0.0.1:{port}/ping", limit=60)
        times.append((time.perf_counter() - started) * 1000)
        server.stop()
    return round(statistics.median(times), 1)


def host_supports_reuse() -> bool:
    """Whether this ping-host binary has `up --instance-reuse` (the reuse rows need it)."""
    help_text = subprocess.run([str(HOST), "up", "--help"], capture_output=True, text=True).stdout
    return "--instance-reuse" in help_text


def flame_graph(server: Server, url: str, svg: pathlib.Path, title: str) -> str:
    """Profiles `server` for DURATION s under oha -c 64 and renders `svg`.

    perf samples cpu-clock (no hardware counters needed) with DWARF call
    graphs, since the release build has no frame pointers; inferno folds and
    draws them. JIT-compiled guest code has no symbols and shows as
    `[unknown]`. Returns a note: what was profiled, or why nothing was.
    """
    collapse, flamegraph = TOOLS / "bin" / "inferno-collapse-perf", TOOLS / "bin" / "inferno-flamegraph"
    if not shutil.which("perf"):
        return "not profiled: `perf` is not installed (scripts/install-bench-tools.sh installs linux-perf)"
    if not (collapse.exists() and flamegraph.exists()):
        return "not profiled: inferno is not installed in .tools/bin (make bench-tools)"
    data = svg.with_suffix(".perf.data")
    load = subprocess.Popen([str(OHA), "--no-tui", "-c", "64", "-z", f"{DURATION + 2}s", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        record = subprocess.run(
            ["perf", "record", "-e", "cpu-clock", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(server.proc.pid),
             "-o", str(data), "--", "sleep", str(DURATION)],
            capture_output=True, text=True,
        )
    finally:
        load.wait()
    if record.returncode != 0:
        data.unlink(missing_ok=True)
        return f"not profiled: perf record failed ({record.stderr.strip().splitlines()[-1] if record.stderr.strip() else record.returncode})"
    try:
        # No debuginfod look-ups and no inline expansion: both make perf script crawl.
        script = subprocess.run(["perf", "script", "--no-inline", "-i", str(data)], capture_output=True, text=True,
                                env={**os.environ, "DEBUGINFOD_URLS": ""}, check=True).stdout
        folded = subprocess.run([str(collapse)], input=script, capture_output=True, text=True, check=True).stdout
        # perf weighs cpu-clock samples by their period, in nanoseconds of CPU.
        drawn = subprocess.run([str(flamegraph), "--title", title, "--countname", "ns", "--width", "1600"],
                               input=folded, capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        return f"not profiled: {e.cmd[0]} failed ({(e.stderr or '').strip()[-200:]})"
    finally:
        data.unlink(missing_ok=True)
    svg.write_text(drawn)
    cpu_s = sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines() if line.strip()) / 1e9
    return f"{cpu_s:.1f} CPU-seconds sampled at 499 Hz over {DURATION} s of `oha -c 64` on `{urllib.parse.urlsplit(url).path}`"


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in pathlib.Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "unknown")
    mem = next(int(l.split()[1]) for l in pathlib.Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(), "redis": redis_version,
        "load_generator": subprocess.run([str(OHA), "--version"], capture_output=True, text=True).stdout.strip(),
    }


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "duration_s": DURATION, "machine": machine(), "points": {}}
    work = pathlib.Path(tempfile.mkdtemp(prefix="ping-bench-"))
    started: list[Server] = []
    try:
        run(results, work, started)
    finally:
        for server in reversed(started):
            server.stop()
    write(results)


def run(results: dict, work: pathlib.Path, started: list) -> None:
    """Every server it starts goes into `started`, which the caller stops."""
    def start(*args, **kwargs) -> Server:
        server = Server(*args, **kwargs)
        started.append(server)
        return server

    redis_port = free_port()
    redis = start(["redis-server", "--port", redis_port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work])
    time.sleep(0.5)
    cache = work / "cache"
    reuse = host_supports_reuse()
    results["peers"] = {
        "ping-host": "ping-host up",
        "ping-host reuse": f"ping-host up {' '.join(HOST_REUSE_FLAGS)}" if reuse else "not measured: this ping-host has no `up --instance-reuse`",
        "wasmtime serve": f"wasmtime serve {' '.join(WASMTIME_FLAGS)}",
        "wasmtime serve reuse": f"wasmtime serve {' '.join(WASMTIME_FLAGS + WASMTIME_REUSE_FLAGS)}",
        "wasmtime": subprocess.run([str(WASMTIME), "--version"], capture_output=True, text=True).stdout.strip(),
    }
    if not reuse:
        print(f"note: {results['peers']['ping-host reuse']}; the reuse rows are skipped", flush=True)

    def host_up(manifest: pathlib.Path, *extra) -> tuple[Server, int]:
        port = free_port()
        # The hello manifest declares no variables, and ping-host refuses unknown ones.
        variables = ["--variable", f"redis_port={redis_port}"] if manifest != HELLO_MANIFEST else []
        server = start([HOST, "up", "--manifest", manifest, "--listen", f"127.0.0.1:{port}", *variables, "--cache-dir", cache, *extra],
                       log=work / f"ping-host-{port}.log")
        return server, port

    def wasmtime_serve(*extra) -> tuple[Server, int]:
        port = free_port()
        return start([WASMTIME, "serve", *WASMTIME_FLAGS, *extra, "--addr", f"127.0.0.1:{port}", HELLO_WASM], log=work / f"wasmtime-{port}.log"), port

    host, host_port = host_up(ROOT / "spin.toml")
    base_port, flask_port = free_port(), free_port()
    baseline = start([BASELINE, f"127.0.0.1:{base_port}", redis_port])
    flask = start([VENV / "gunicorn", "-w", "2", "-b", f"127.0.0.1:{flask_port}", "--log-level", "warning", "flask_app:app"], env={"REDIS_PORT": str(redis_port)}, cwd=ROOT / "bench")
    hello_host, hello_host_port = host_up(HELLO_MANIFEST)
    hello_wt, hello_wt_port = wasmtime_serve()
    hello_wt_reuse, hello_wt_reuse_port = wasmtime_serve(*WASMTIME_REUSE_FLAGS)
    # name -> (server whose CPU is measured, or None for gunicorn's worker processes; URL)
    targets = {
        "ping-host /ping": (host, f"http://127.0.0.1:{host_port}/ping"),
        "ping-host /": (host, f"http://127.0.0.1:{host_port}/"),
        "hyper /ping": (baseline, f"http://127.0.0.1:{base_port}/ping"),
        "hyper /": (baseline, f"http://127.0.0.1:{base_port}/"),
        "flask /ping": (None, f"http://127.0.0.1:{flask_port}/ping"),
        "hello: ping-host": (hello_host, f"http://127.0.0.1:{hello_host_port}/"),
        "hello: wasmtime serve": (hello_wt, f"http://127.0.0.1:{hello_wt_port}/"),
        f"hello: wasmtime serve reuse {REUSE}": (hello_wt_reuse, f"http://127.0.0.1:{hello_wt_reuse_port}/"),
    }
    host_reuse = None
    if reuse:
        host_reuse, host_reuse_port = host_up(ROOT / "spin.toml", *HOST_REUSE_FLAGS)
        hello_host_reuse, hello_host_reuse_port = host_up(HELLO_MANIFEST, *HOST_REUSE_FLAGS)
        targets[f"ping-host /ping reuse {REUSE}"] = (host_reuse, f"http://127.0.0.1:{host_reuse_port}/ping")
        targets[f"hello: ping-host reuse {REUSE}"] = (hello_host_reuse, f"http://127.0.0.1:{hello_host_reuse_port}/")
    if P3_WASM.exists():
        p3_manifest = work / "p3-spin.toml"
        p3_manifest.write_text(P3_FIXTURE.read_text().replace("@P3_WASM@", str(P3_WASM)))
        p3_host, p3_port = host_up(p3_manifest)
        targets[P3_SERIES] = (p3_host, f"http://127.0.0.1:{p3_port}/ping")
    else:
        print(f"note: {P3_WASM} not built (make component); the WASIp3 row is skipped", flush=True)
    for name, (server, url) in targets.items():
        try:
            wait_ok(url)
        except RuntimeError as e:
            raise RuntimeError(f"{name}: {e}; its standard error ends:\n{server.log_tail() if server else ''}") from None
    # Only the server under test runs (see the module's doc); Redis and
    # gunicorn (whose workers are separate processes) are never paused.
    pausable = {server for server, _ in targets.values() if server is not None}
    for server in pausable:
        server.pause()

    def measure(name: str, c: int) -> dict:
        server, url = targets[name]
        if server:
            server.resume()
        try:
            return with_cpu(server, lambda: oha(url, c, seconds=DURATION))
        finally:
            if server:
                server.pause()

    for name, (server, url) in targets.items():  # warm-up: connections, caches, JIT-free but page-faulted
        if server:
            server.resume()
        oha(url, 16, requests=2000)
        if server:
            server.pause()
    order = [s for s in PING_SERIES + HELLO_SERIES if s in targets]
    for c in CONCURRENCY:
        point = {"redis-benchmark INCR": redis_benchmark(redis_port, c)}
        for name in order:
            point[name] = measure(name, c)
            print(f"c={c:<4} {name:<32} {point[name]['rps']:>10.1f} req/s  p99 {point[name]['p99_ms']} ms", flush=True)
        print(f"c={c:<4} {'redis-benchmark INCR':<32} {point['redis-benchmark INCR']['rps']:>10.1f} req/s", flush=True)
        results["points"][str(c)] = point
    results["peak_rss_mb"] = round(host.peak_rss_mb(), 1)

    # The rest runs one server at a time. Kept: the reuse-mode host (its
    # counter check), the hyper+INCR server and the hello servers (their
    # half-maximum runs; ping-host's also for its profile).
    keep = {host, host_reuse, baseline, *(targets[name][0] for name in HELLO_HALF_MAX)}
    for server in [s for s in started if s is not redis and s not in keep]:
        server.stop()
        started.remove(server)
    host.resume()
    ping_url = targets["ping-host /ping"][1]
    results["half_max"] = at_half_max(results["points"], "ping-host /ping", ping_url, host)
    # The floor of that figure on this machine: the native hyper+INCR server
    # at the same rate, with the same client.
    host.pause()
    baseline.resume()
    results["half_max_hyper"] = at_rate(targets["hyper /ping"][1], results["half_max"]["qps"], baseline)
    # And at half of *its own* maximum: the same goal applied to the native
    # server. oha releases rate-limited requests in 1-ms batches (tokio's
    # timer), so a server's p99 at half its own maximum is largely the batch
    # and the shared cores; this is that figure's floor on this machine.
    results["half_own_max_hyper"] = at_half_max(results["points"], "hyper /ping", targets["hyper /ping"][1], baseline)
    baseline.stop()
    started.remove(baseline)
    # The same goal applied to the Wasm peer: ping-host and `wasmtime serve`
    # on the hello component, each at half its own maximum, a fresh instance
    # per request on both.
    results["half_own_max_hello"] = {}
    for name in HELLO_HALF_MAX:
        server, url = targets[name]
        server.resume()
        results["half_own_max_hello"][name] = at_half_max(results["points"], name, url, server)
        server.pause()
    hello_wt.stop()
    started.remove(hello_wt)
    host.resume()

    def counter_check(url: str) -> dict:
        redis_cmd(redis_port, "DEL", "ping")
        exact = oha(url, 64, requests=20_000)
        counter = int(redis_cmd(redis_port, "GET", "ping") or 0)
        return {"successful": exact["ok"], "errors": exact["errors"], "counter": counter, "exact": counter == exact["ok"]}

    results["counter_check"] = counter_check(ping_url)
    if host_reuse:
        host.pause()
        host_reuse.resume()
        reuse_url = targets[f"ping-host /ping reuse {REUSE}"][1]
        results["half_max_reuse"] = at_half_max(results["points"], f"ping-host /ping reuse {REUSE}", reuse_url, host_reuse)
        results["counter_check_reuse"] = counter_check(reuse_url)
        host_reuse.stop()
        started.remove(host_reuse)
        host.resume()

    # Flame graphs of ping-host at 64 connections: the app's /ping, and the
    # hello component (the comparison with wasmtime serve).
    results["profiles"] = {}
    hello_host, hello_url = targets["hello: ping-host"]
    for label, server, url in (("ping", host, ping_url), ("hello", hello_host, hello_url)):
        if not PROFILE:
            results["profiles"][label] = {"svg": None, "note": "not profiled: BENCH_PROFILE=0"}
            continue
        (hello_host if server is host else host).pause()
        server.resume()
        svg = RESULTS / f"{stem_of(results)}-flame-{label}.svg"
        svg.unlink(missing_ok=True)
        note = flame_graph(server, url, svg, f"ping-host serving the {label} component, oha -c 64, {results['date']}")
        results["profiles"][label] = {"svg": svg.name if svg.exists() else None, "note": note}
        print(f"flame graph ({label}): {note}", flush=True)
    for server in (host, hello_host):
        server.stop()
        started.remove(server)

    results["cold_start_ms"] = {"warm_cache": cold_start(redis_port, cache), "no_cache": cold_start(redis_port, None)}
    results["instantiate"] = json.loads(subprocess.run([str(INSTANTIATE), "20000"], capture_output=True, text=True, check=True).stdout)

    results["targets"] = {
        **ratios(results["points"]),
        "instantiate_us": results["instantiate"]["p50_us"],
        "p99_at_half_max_ms": results["half_max"]["p99_ms"],
        "cold_start_warm_ms": results["cold_start_ms"]["warm_cache"],
        "peak_rss_mb": results["peak_rss_mb"],
    }


def rate_line(what: str, point: dict) -> str:
    """The report's line for a fixed-rate figure: `what`, its latencies, how it
    was taken and, when recorded, the server's CPU."""
    return f"- {what}: p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms, p99.9 {point['p999_ms']} ms{runs_note(point)}{cpu_note(point)}."


def cpu_note(point: dict) -> str:
    """The server's CPU in a fixed-rate figure's median run, per successful
    request and in cores (CPU per request × req/s; older results lack it)."""
    cpu = point.get("cpu_s_per_1k")
    if cpu is None:
        return ""
    return f"; the server's CPU {cpu * 1000:.0f} µs per request, {cpu * point['rps'] / 1000:.2f} cores"


def runs_note(point: dict) -> str:
    """How a fixed-rate figure was taken, for the report (older results lack it)."""
    runs = point.get("p99_runs_ms")
    return f" (the median run of {len(runs)} by p99; p99 of each: {', '.join(f'{v} ms' for v in runs)})" if runs else ""


def ratios(points: dict) -> dict:
    """The throughput targets at 64 connections; None where a run lacks a row."""
    at64 = points.get("64")
    ratio = lambda a, b: round(at64[a]["rps"] / at64[b]["rps"], 3) if at64 and a in at64 and b in at64 else None
    modes = {"fresh instance per request": ratio("ping-host /ping", "hyper /ping"), f"--instance-reuse {REUSE}": ratio(f"ping-host /ping reuse {REUSE}", "hyper /ping")}
    best = max((m for m in modes if modes[m] is not None), key=lambda m: modes[m], default=None)
    return {
        "ping_vs_redis_at_64": ratio("ping-host /ping", "redis-benchmark INCR"),
        "hello_vs_hyper_at_64": ratio("ping-host /", "hyper /"),
        "ping_vs_hyper_best_at_64": modes[best] if best else None,
        "ping_best_mode": best,
        "ping_vs_hyper_per_request_at_64": ratio("ping-host /ping", "hyper /ping"),
        "hello_vs_wasmtime_at_64": ratio("hello: ping-host", "hello: wasmtime serve"),
        "hello_vs_wasmtime_reuse_at_64": ratio(f"hello: ping-host reuse {REUSE}", f"hello: wasmtime serve reuse {REUSE}"),
    }


def stem_of(results: dict) -> str:
    """The run's file name stem in bench/results: its day, or `<day>-N` when an
    earlier run of that day already holds the name (so a second run never
    overwrites the first); a saved run re-rendered keeps its own."""
    day = results["date"][:10]
    for n in itertools.count(1):
        stem = day if n == 1 else f"{day}-{n}"
        saved = RESULTS / f"{stem}.json"
        if not saved.exists() or json.loads(saved.read_text())["date"] == results["date"]:
            return stem
    raise AssertionError("unreachable")


def write(results: dict) -> None:
    stem = stem_of(results)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / f"{stem}.png")
    (RESULTS / f"{stem}.md").write_text(report(results, stem))
    (ROOT / "BENCHMARKS.md").write_text(summary(results, stem))
    print(f"\nwrote bench/results/{stem}.md, .json, .png and BENCHMARKS.md")
    for key in ("counter_check", "counter_check_reuse"):
        if key in results and not results[key]["exact"]:
            raise SystemExit(f"{key.replace('_', ' ')} failed: {results[key]}")


def chart(results: dict, path: pathlib.Path) -> None:
    """Throughput and p99 per concurrency: the /ping peers on top, the runtimes on the hello component below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = sorted(int(c) for c in results["points"])
    first = results["points"][str(cs[0])]
    rows = [(title, [s for s in series if s in first]) for title, series in (("ping", PING_SERIES), ("hello component", HELLO_SERIES))]
    rows = [(title, series) for title, series in rows if series]
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 4.5 * len(rows)), squeeze=False)
    for (title, series), (tp, lat) in zip(rows, axes):
        for name in series:
            tp.plot(cs, [results["points"][str(c)][name]["rps"] for c in cs], marker="o", label=name)
            lat.plot(cs, [results["points"][str(c)][name]["p99_ms"] for c in cs], marker="o", label=name)
        for ax, what, unit in ((tp, "throughput", "requests/s"), (lat, "p99 latency", "ms")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(cs, [str(c) for c in cs])
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(unit)
            ax.set_title(f"{title}: {what}")
            ax.grid(True, alpha=0.3)
        lat.set_yscale("log")
        tp.legend(fontsize=8)
    fig.suptitle(f"ping on {results['machine']['cores']} cores, {results['date'][:10]} (client, Redis and server on one machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def verdicts(results: dict) -> list[str]:
    t = {**ratios(results["points"]), **results["targets"]}  # runs before a target was added get it from their points
    at_least = lambda key: (f"≥ {TARGETS[key]:.2f} ×", lambda v: v >= TARGETS[key])
    rows = [
        ("`/ping` ÷ `redis-benchmark` INCR at 64", t["ping_vs_redis_at_64"], f"≥ {TARGETS['ping_vs_redis_at_64']:.0%}", lambda v: v >= TARGETS["ping_vs_redis_at_64"], "{:.1%}"),
        ("`GET /` ÷ hyper `GET /` at 64", t["hello_vs_hyper_at_64"], f"≥ {TARGETS['hello_vs_hyper_at_64']:.0%}", lambda v: v >= TARGETS["hello_vs_hyper_at_64"], "{:.1%}"),
        (f"`/ping` ÷ hyper+INCR `/ping` at 64, best mode ({t.get('ping_best_mode') or 'none measured'})", t.get("ping_vs_hyper_best_at_64"), *at_least("ping_vs_hyper_best_at_64"), "{:.2f} ×"),
        ("`/ping` ÷ hyper+INCR `/ping` at 64, fresh instance per request", t.get("ping_vs_hyper_per_request_at_64"), *at_least("ping_vs_hyper_per_request_at_64"), "{:.2f} ×"),
        ("hello `GET /` ÷ `wasmtime serve` at 64, fresh instance per request", t.get("hello_vs_wasmtime_at_64"), *at_least("hello_vs_wasmtime_at_64"), "{:.2f} ×"),
        (f"hello `GET /` ÷ `wasmtime serve` at 64, reuse {REUSE}", t.get("hello_vs_wasmtime_reuse_at_64"), *at_least("hello_vs_wasmtime_reuse_at_64"), "{:.2f} ×"),
        ("instantiation, p50", t["instantiate_us"], f"≤ {TARGETS['instantiate_us']} µs", lambda v: v <= TARGETS["instantiate_us"], "{:.1f} µs"),
        ("p99 at half the max `/ping` rate", t["p99_at_half_max_ms"], f"≤ {TARGETS['p99_at_half_max_ms']} ms", lambda v: v <= TARGETS["p99_at_half_max_ms"], "{:.2f} ms"),
        ("cold start, warm cache", t["cold_start_warm_ms"], f"≤ {TARGETS['cold_start_warm_ms']:.0f} ms", lambda v: v <= TARGETS["cold_start_warm_ms"], "{:.1f} ms"),
        ("peak RSS (after 256 connections)", t["peak_rss_mb"], f"≤ {TARGETS['peak_rss_mb']:.0f} MB", lambda v: v <= TARGETS["peak_rss_mb"], "{:.1f} MB"),
    ]
    out = ["| target | measured | goal | met |", "|---|---|---|---|"]
    for label, value, goal, ok, fmt in rows:
        met = "n/a" if value is None else "yes" if ok(value) else "**no**"
        out.append(f"| {label} | {fmt.format(value) if value is not None else 'n/a'} | {goal} | {met} |")
    return out


def table(results: dict) -> list[str]:
    out = ["| concurrency | server | req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU s / 1k req |", "|---|---|---|---|---|---|---|---|"]
    for c in sorted(results["points"], key=int):
        for name in [s for s in PING_SERIES + HELLO_SERIES if s in results["points"][c]]:
            r = results["points"][c][name]
            out.append(f"| {c} | {name} | {r['rps']:.0f} | {r.get('p50_ms', '')} | {r.get('p99_ms', '')} | {r.get('p999_ms', '')} | {r.get('errors', '')} | {r.get('cpu_s_per_1k', '')} |")
    return out


def report(results: dict, stem: str) -> str:
    m = results["machine"]
    cc = results["counter_check"]
    lines = [
        f"# Benchmark run {results['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Redis {m['redis']}, {m['load_generator']}.",
        f"Each point: {results['duration_s']} s of `oha` on loopback; client, Redis and servers share the machine. "
        "Errors exclude the requests still in flight when a timed run ends (oha reports them as aborted at the deadline).",
        "",
        f"![throughput and p99]({stem}.png)",
        "",
        *peers(results),
        *table(results),
        "",
        "## Targets",
        "",
        *verdicts(results),
        "",
        f"- Cold start to the first 200 on `/ping`: {results['cold_start_ms']['warm_cache']} ms with the compilation cache, {results['cold_start_ms']['no_cache']} ms without (median of 5).",
        f"- Instantiation (store + instance, ping component): mean {results['instantiate']['mean_us']} µs, p50 {results['instantiate']['p50_us']} µs, p99 {results['instantiate']['p99_us']} µs over {results['instantiate']['instances']} instances.",
        rate_line(f"At half the maximum rate ({results['half_max']['qps']} req/s, 64 connections)", results["half_max"]),
        *([rate_line("The hyper+INCR server at that same rate (this machine's and the load generator's floor)", h)]
          if (h := results.get("half_max_hyper")) else []),
        *([rate_line(f"The hyper+INCR server at half *its own* maximum ({h['qps']} req/s; the same goal applied to the native server)", h)]
          if (h := results.get("half_own_max_hyper")) else []),
        *[rate_line(f"The hello component on {name.removeprefix('hello: ')} at half its own maximum ({h['qps']} req/s; a fresh instance per request)", h)
          for name, h in results.get("half_own_max_hello", {}).items()],
        *([rate_line(f"`{' '.join(HOST_REUSE_FLAGS)}` at half its maximum rate ({h['qps']} req/s)", h)]
          if (h := results.get("half_max_reuse")) else []),
        f"- Counter check (20,000 `/ping` at 64 connections): {cc['successful']} successful, {cc['errors']} errors, counter {cc['counter']}: {'exact' if cc['exact'] else 'MISMATCH'}.",
        *([f"- Counter check with `{' '.join(HOST_REUSE_FLAGS)}`: {cr['successful']} successful, {cr['errors']} errors, counter {cr['counter']}: {'exact' if cr['exact'] else 'MISMATCH'}."]
          if (cr := results.get("counter_check_reuse")) else []),
        f"- ping-host peak RSS over the whole run: {results['peak_rss_mb']} MB.",
        *profiles(results, stem),
        "",
    ]
    return "\n".join(lines)


def peers(results: dict) -> list[str]:
    """How each runtime was started (the flags), above the table; empty for runs before the peers."""
    if "peers" not in results:
        return []
    p = results["peers"]
    return [
        f"The hello component (`bench/hello`, plain `wasi:http/incoming-handler`) is served by ping-host through "
        f"`bench/hello/spin.toml` and by {p['wasmtime']}. Flags:",
        "",
        f"- hello: ping-host: `{p['ping-host']}` (its defaults: the pooling allocator, 256 KiB of each memory and table kept resident, a fresh instance per request)",
        f"- hello: wasmtime serve: `{p['wasmtime serve']}`",
        f"- reuse {REUSE}, ping-host: {p['ping-host reuse'] if p['ping-host reuse'].startswith('not') else '`' + p['ping-host reuse'] + '`'}",
        f"- reuse {REUSE}, wasmtime serve: `{p['wasmtime serve reuse']}`",
        "",
        "`wasmtime serve` has no request timeout here, so it runs without epoch interruption; ping-host always has it (its --request-timeout). "
        "Only the server under test runs during a point; the others are paused (SIGSTOP). "
        "The CPU column is the server process's user + system time per 1,000 successful requests (none for gunicorn, whose workers are separate processes).",
        "",
    ]


def profiles(results: dict, stem: str) -> list[str]:
    """Links to the run's flame graphs, or why there are none."""
    out = []
    for label, prof in results.get("profiles", {}).items():
        if prof.get("svg"):
            out.append(f"- Flame graph of ping-host serving the {label} component at 64 connections: [{prof['svg']}]({stem.rsplit('/', 1)[0] + '/' if '/' in stem else ''}{prof['svg']}) ({prof['note']}).")
        else:
            out.append(f"- Flame graph of ping-host serving the {label} component: {prof['note']}.")
    return out


def summary(results: dict, stem: str) -> str:
    head = (ROOT / "bench" / "BENCHMARKS.head.md").read_text()
    return head + "\n" + report(results, f"bench/results/{stem}").replace("# Benchmark run", "## Latest run", 1)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--report"]:
        # Re-render the report of a saved run (e.g. after editing BENCHMARKS.head.md).
        write(json.loads(pathlib.Path(sys.argv[2]).read_text()))
    else:
        main()
