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
"""

from __future__ import annotations

import statistics
import sys
import tempfile

from run import CONCURRENCY, HOST, ROOT, Server, free_port, oha, wait_ok

DURATION = int(__import__("os").environ.get("BENCH_DURATION", "8"))
ROUNDS = int(__import__("os").environ.get("BENCH_ROUNDS", "3"))
PATHS = ["/ping", "/"]


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
    wait_redis = lambda: __import__("subprocess").run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True).returncode == 0
    while not wait_redis():
        pass
    samples: dict = {}
    try:
        with tempfile.TemporaryDirectory() as cache:
            for r in range(ROUNDS):
                for name, binary in ([("before", before), ("after", after)] if r % 2 == 0 else [("after", after), ("before", before)]):
                    extra = __import__("os").environ.get(f"BENCH_AB_ARGS_{name.upper()}", "").split()
                    server, port = serve(binary, redis_port, cache, extra)
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


if __name__ == "__main__":
    main()
