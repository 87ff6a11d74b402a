#!/usr/bin/env python3
"""`make bench`: ping-host against the physical limits of this machine, in one run.

It starts one Redis and three servers on free loopback ports:
  * ping-host (release) serving the real component;
  * ping-baseline, a minimal native hyper server doing the same work (the ceiling);
  * the workshop's Flask app under gunicorn (2 workers, pooled INCR).
Then, at each concurrency, oha drives each server for a fixed time, and
redis-benchmark measures Redis's own INCR rate. It also measures cold start
(with and without the compilation cache), per-instance instantiation time,
p99 at half the maximum /ping rate, ping-host's CPU per 1,000 requests and its
peak RSS, and checks that the counter equals the successful requests.

Results go to bench/results/<date>.{json,md,png}; BENCHMARKS.md gets the
summary. Environment: BENCH_DURATION (seconds per point, default 10),
BENCH_CONCURRENCY (default 1,16,64,256).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
OHA = TOOLS / "bin" / "oha"
VENV = TOOLS / "bench-venv" / "bin"
HOST = ROOT / "target" / "release" / "ping-host"
BASELINE = ROOT / "target" / "release" / "ping-baseline"
INSTANTIATE = ROOT / "target" / "release" / "examples" / "instantiate"
RESULTS = ROOT / "bench" / "results"
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,16,64,256").split(",")]
TICKS = os.sysconf("SC_CLK_TCK")

# The targets of the performance issue, checked against this run's figures.
TARGETS = {
    "ping_vs_redis_at_64": 0.50,
    "hello_vs_hyper_at_64": 0.60,
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

    def __init__(self, args: list, env: dict | None = None, cwd: pathlib.Path | None = None):
        self.proc = subprocess.Popen(
            [str(a) for a in args], env={**os.environ, **(env or {})}, cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def cpu_seconds(self) -> float:
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def peak_rss_mb(self) -> float:
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
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
    host_port, base_port, flask_port = free_port(), free_port(), free_port()
    cache = work / "cache"
    host = start([HOST, "up", "--manifest", ROOT / "spin.toml", "--listen", f"127.0.0.1:{host_port}", "--variable", f"redis_port={redis_port}", "--cache-dir", cache])
    baseline = start([BASELINE, f"127.0.0.1:{base_port}", redis_port])
    flask = start([VENV / "gunicorn", "-w", "2", "-b", f"127.0.0.1:{flask_port}", "--log-level", "warning", "flask_app:app"], env={"REDIS_PORT": str(redis_port)}, cwd=ROOT / "bench")
    for url in (f"http://127.0.0.1:{host_port}/", f"http://127.0.0.1:{base_port}/", f"http://127.0.0.1:{flask_port}/"):
        wait_ok(url)
    targets = {
        "ping-host /ping": f"http://127.0.0.1:{host_port}/ping",
        "ping-host /": f"http://127.0.0.1:{host_port}/",
        "hyper /ping": f"http://127.0.0.1:{base_port}/ping",
        "hyper /": f"http://127.0.0.1:{base_port}/",
        "flask /ping": f"http://127.0.0.1:{flask_port}/ping",
    }
    for url in targets.values():  # warm-up: connections, caches, JIT-free but page-faulted
        oha(url, 16, requests=2000)
    for c in CONCURRENCY:
        point = {"redis-benchmark INCR": redis_benchmark(redis_port, c)}
        for name, url in targets.items():
            cpu_before = host.cpu_seconds()
            point[name] = oha(url, c, seconds=DURATION)
            if name.startswith("ping-host"):
                served = max(point[name]["ok"], 1)
                point[name]["cpu_s_per_1k"] = round((host.cpu_seconds() - cpu_before) / served * 1000, 4)
            print(f"c={c:<4} {name:<22} {point[name]['rps']:>10.1f} req/s  p99 {point[name]['p99_ms']} ms", flush=True)
        print(f"c={c:<4} {'redis-benchmark INCR':<22} {point['redis-benchmark INCR']['rps']:>10.1f} req/s", flush=True)
        results["points"][str(c)] = point
    results["peak_rss_mb"] = round(host.peak_rss_mb(), 1)

    ping_url = targets["ping-host /ping"]
    max_rps = max(results["points"][c]["ping-host /ping"]["rps"] for c in results["points"])
    results["half_max"] = {"qps": round(max_rps / 2), **oha(ping_url, 64, seconds=DURATION, qps=max_rps / 2)}

    redis_cmd(redis_port, "DEL", "ping")
    exact = oha(ping_url, 64, requests=20_000)
    counter = int(redis_cmd(redis_port, "GET", "ping") or 0)
    results["counter_check"] = {"successful": exact["ok"], "errors": exact["errors"], "counter": counter, "exact": counter == exact["ok"]}
    for server in (host, baseline, flask):
        server.stop()
        started.remove(server)

    results["cold_start_ms"] = {"warm_cache": cold_start(redis_port, cache), "no_cache": cold_start(redis_port, None)}
    results["instantiate"] = json.loads(subprocess.run([str(INSTANTIATE), "20000"], capture_output=True, text=True, check=True).stdout)

    at64 = results["points"].get("64")
    results["targets"] = {
        "ping_vs_redis_at_64": round(at64["ping-host /ping"]["rps"] / at64["redis-benchmark INCR"]["rps"], 3) if at64 else None,
        "hello_vs_hyper_at_64": round(at64["ping-host /"]["rps"] / at64["hyper /"]["rps"], 3) if at64 else None,
        "instantiate_us": results["instantiate"]["p50_us"],
        "p99_at_half_max_ms": results["half_max"]["p99_ms"],
        "cold_start_warm_ms": results["cold_start_ms"]["warm_cache"],
        "peak_rss_mb": results["peak_rss_mb"],
    }


def write(results: dict) -> None:
    stem = results["date"][:10]
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / f"{stem}.png")
    (RESULTS / f"{stem}.md").write_text(report(results, stem))
    (ROOT / "BENCHMARKS.md").write_text(summary(results, stem))
    print(f"\nwrote bench/results/{stem}.md, .json, .png and BENCHMARKS.md")
    if not results["counter_check"]["exact"]:
        raise SystemExit(f"counter check failed: {results['counter_check']}")


def chart(results: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = sorted(int(c) for c in results["points"])
    series = ["ping-host /ping", "ping-host /", "hyper /ping", "hyper /", "redis-benchmark INCR", "flask /ping"]
    fig, (tp, lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in series:
        tp.plot(cs, [results["points"][str(c)][name]["rps"] for c in cs], marker="o", label=name)
        lat.plot(cs, [results["points"][str(c)][name]["p99_ms"] for c in cs], marker="o", label=name)
    for ax, title, unit in ((tp, "Throughput", "requests/s"), (lat, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    lat.set_yscale("log")
    tp.legend(fontsize=8)
    fig.suptitle(f"ping on {results['machine']['cores']} cores, {results['date'][:10]} (client, Redis and server on one machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def verdicts(results: dict) -> list[str]:
    t = results["targets"]
    rows = [
        ("`/ping` ÷ `redis-benchmark` INCR at 64", t["ping_vs_redis_at_64"], f"≥ {TARGETS['ping_vs_redis_at_64']:.0%}", lambda v: v >= TARGETS["ping_vs_redis_at_64"], "{:.1%}"),
        ("`GET /` ÷ hyper `GET /` at 64", t["hello_vs_hyper_at_64"], f"≥ {TARGETS['hello_vs_hyper_at_64']:.0%}", lambda v: v >= TARGETS["hello_vs_hyper_at_64"], "{:.1%}"),
        ("instantiation, p50", t["instantiate_us"], f"≤ {TARGETS['instantiate_us']} µs", lambda v: v <= TARGETS["instantiate_us"], "{:.1f} µs"),
        ("p99 at half the max `/ping` rate", t["p99_at_half_max_ms"], f"≤ {TARGETS['p99_at_half_max_ms']} ms", lambda v: v <= TARGETS["p99_at_half_max_ms"], "{:.2f} ms"),
        ("cold start, warm cache", t["cold_start_warm_ms"], f"≤ {TARGETS['cold_start_warm_ms']:.0f} ms", lambda v: v <= TARGETS["cold_start_warm_ms"], "{:.1f} ms"),
        ("peak RSS (after 256 connections)", t["peak_rss_mb"], f"≤ {TARGETS['peak_rss_mb']:.0f} MB", lambda v: v <= TARGETS["peak_rss_mb"], "{:.1f} MB"),
    ]
    out = ["| target | measured | goal | met |", "|---|---|---|---|"]
    for label, value, goal, ok, fmt in rows:
        out.append(f"| {label} | {fmt.format(value) if value is not None else 'n/a'} | {goal} | {'yes' if value is not None and ok(value) else '**no**'} |")
    return out


def table(results: dict) -> list[str]:
    series = ["ping-host /ping", "ping-host /", "hyper /ping", "hyper /", "flask /ping", "redis-benchmark INCR"]
    out = ["| concurrency | server | req/s | p50 ms | p99 ms | p99.9 ms | errors | ping-host CPU s / 1k req |", "|---|---|---|---|---|---|---|---|"]
    for c in sorted(results["points"], key=int):
        for name in series:
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
        *table(results),
        "",
        "## Targets",
        "",
        *verdicts(results),
        "",
        f"- Cold start to the first 200 on `/ping`: {results['cold_start_ms']['warm_cache']} ms with the compilation cache, {results['cold_start_ms']['no_cache']} ms without (median of 5).",
        f"- Instantiation (store + instance, ping component): mean {results['instantiate']['mean_us']} µs, p50 {results['instantiate']['p50_us']} µs, p99 {results['instantiate']['p99_us']} µs over {results['instantiate']['instances']} instances.",
        f"- At half the maximum rate ({results['half_max']['qps']} req/s, 64 connections): p50 {results['half_max']['p50_ms']} ms, p99 {results['half_max']['p99_ms']} ms, p99.9 {results['half_max']['p999_ms']} ms.",
        f"- Counter check (20,000 `/ping` at 64 connections): {cc['successful']} successful, {cc['errors']} errors, counter {cc['counter']}: {'exact' if cc['exact'] else 'MISMATCH'}.",
        f"- ping-host peak RSS over the whole run: {results['peak_rss_mb']} MB.",
        "",
    ]
    return "\n".join(lines)


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
