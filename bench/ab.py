#!/usr/bin/env python3
"""A/B two ping-host binaries on the same machine, interleaved.

`bench/ab.py BEFORE AFTER` serves spin.toml with each binary in turn (fresh
process, shared Redis), drives `/ping` and `/` at each concurrency with oha for
BENCH_DURATION seconds (default 8), and repeats BENCH_ROUNDS times (default 3),
alternating the order, so drift in machine load falls on both sides. It prints
a Markdown table of the median req/s and p99 per point and the after/before
ratio, and ping-host's CPU per 1,000 requests (less sensitive than req/s to
other load on the machine). `BENCH_AB_ARGS_BEFORE` / `BENCH_AB_ARGS_AFTER`
add `ping-host up` flags to one side (e.g. `--instance-reuse 128`), so one
binary can be A/B'd against itself. Use it for changes that should not move
performance (a refactor) or to measure one that should; `make bench` remains
the full run against the peers.

`BENCH_AB_TOGETHER=QPS` runs both sides at the same time instead, each under
its own oha at QPS req/s on 32 connections on `/ping`, for BENCH_ROUNDS rounds
(default 3) of BENCH_DURATION seconds, and compares them round by round. On a
machine whose speed drifts by ±15 % from one minute to the next, taking turns
cannot show a change of a few percent; loaded together, both sides see the same
drift, and a 4-µs difference in CPU per request (about 4 %) showed in six
rounds of six.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from run import CONCURRENCY, HOST, ROOT, Server, free_port, oha, wait_ok

DURATION = int(os.environ.get("BENCH_DURATION", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TOGETHER_QPS = float(os.environ.get("BENCH_AB_TOGETHER") or 0)
PATHS = ["/ping", "/"]


def extra_args(name: str) -> list[str]:
    """`BENCH_AB_ARGS_BEFORE` / `BENCH_AB_ARGS_AFTER`, split."""
    return os.environ.get(f"BENCH_AB_ARGS_{name.upper()}", "").split()


def serve(binary: str, redis_port: int, cache: str, extra: list[str]) -> tuple[Server, int]:
    port = free_port()
    server = Server([binary, "up", "--manifest", ROOT / "spin.toml", "--listen", f"127.0.0.1:{port}",
                     "--variable", f"redis_port={redis_port}", "--cache-dir", cache, *extra])
    wait_ok(f"http://127.0.0.1:{port}/ping", limit=120)
    return server, port


def main() -> None:
    before, after = (sys.argv[1:3] + [str(HOST)] * 2)[:2]
    redis_port = free_port()
    redis = Server(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"])
    wait_redis = lambda: subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True).returncode == 0
    while not wait_redis():
        pass
    samples: dict = {}
    try:
        with tempfile.TemporaryDirectory() as cache:
            if TOGETHER_QPS > 0:
                return together({"before": before, "after": after}, redis_port, cache, TOGETHER_QPS)
            for r in range(ROUNDS):
                for name, binary in ([("before", before), ("after", after)] if r % 2 == 0 else [("after", after), ("before", before)]):
                    server, port = serve(binary, redis_port, cache, extra_args(name))
                    try:
                        for c in CONCURRENCY:
                            for path in PATHS:
                                cpu = server.cpu_seconds()
                                point = oha(f"http://127.0.0.1:{port}{path}", c, seconds=DURATION)
                                point["cpu_ms_per_1k"] = (server.cpu_seconds() - cpu) / max(point["ok"], 1) * 1e6
                                samples.setdefault((path, c), {}).setdefault(name, []).append(point)
                    finally:
                        server.stop()
    finally:
        redis.stop()
    print(f"{ROUNDS} rounds x {DURATION} s per point, interleaved; medians.\n")
    print("| path | c | before req/s | after req/s | after/before | before p99 ms | after p99 ms | before CPU ms/1k | after CPU ms/1k |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (path, c), by in sorted(samples.items()):
        med = lambda side, key: statistics.median(p[key] for p in by[side])
        b, a = med("before", "rps"), med("after", "rps")
        print(f"| `{path}` | {c} | {b:,.0f} | {a:,.0f} | {a / b:.3f} | {med('before', 'p99_ms')} | {med('after', 'p99_ms')} | {med('before', 'cpu_ms_per_1k'):.0f} | {med('after', 'cpu_ms_per_1k'):.0f} |")


def together(binaries: dict, redis_port: int, cache: str, qps: float) -> None:
    """Both sides served and loaded at once (see the module doc); prints medians
    and in how many rounds "after" was lower, per measure."""
    sides: dict = {}
    rounds = []
    try:
        for name, binary in binaries.items():
            sides[name] = serve(binary, redis_port, cache, extra_args(name))
        with ThreadPoolExecutor(len(sides)) as pool:
            list(pool.map(lambda side: oha(f"http://127.0.0.1:{side[1]}/ping", 32, seconds=2), sides.values()))  # warm-up
            for _ in range(ROUNDS):
                cpu = {name: server.cpu_seconds() for name, (server, _) in sides.items()}
                runs = {name: pool.submit(oha, f"http://127.0.0.1:{port}/ping", 32, seconds=DURATION, qps=qps) for name, (_, port) in sides.items()}
                point = {name: run.result() for name, run in runs.items()}
                for name, (server, _) in sides.items():
                    point[name]["cpu_us"] = (server.cpu_seconds() - cpu[name]) / max(point[name]["ok"], 1) * 1e6
                rounds.append(point)
    finally:
        for server, _ in sides.values():
            server.stop()
    print(f"Both sides at once, {qps:,.0f} req/s each on 32 connections, {ROUNDS} rounds x {DURATION} s on `/ping`; medians.\n")
    print("| measure | before | after | after lower in |")
    print("|---|---|---|---|")
    for key, label in (("cpu_us", "CPU µs/request"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
        med = lambda side: statistics.median(r[side][key] for r in rounds)
        lower = sum(r["after"][key] < r["before"][key] for r in rounds)
        print(f"| {label} | {med('before'):.2f} | {med('after'):.2f} | {lower} of {len(rounds)} rounds |")


if __name__ == "__main__":
    main()
