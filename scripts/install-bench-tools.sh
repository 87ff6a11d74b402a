#!/usr/bin/env bash
# Installs the benchmark tools into .tools/, pinned; does nothing when they are there.
#   .tools/bin/oha      load generator (crates.io, built with --locked)
#   .tools/bin/wasmtime the wasmtime CLI, same version as ping-host's wasmtime: `wasmtime serve`
#                       is the peer runtime in `make bench` (only the features it needs)
#   .tools/bin/inferno-* fold `perf script` output and draw the flame graphs
#   .tools/bench-venv   Flask + gunicorn + redis-py (the workshop's design) and matplotlib (charts)
#   redis-benchmark     from Debian's redis-tools (installed with redis-server)
#   perf                from Debian's linux-perf, when apt-get can install it (else no flame graphs)
# `--load-only` installs just oha (what `make cluster-test` needs to load a cluster).
# CARGO (default cargo) runs cargo, e.g. CARGO="flock /tmp/lock cargo" on a shared machine.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
cargo=${CARGO:-cargo}
oha_version=1.16.0
wasmtime_version=48.0.8
wasmtime_features=run,serve,component-model-async,cranelift,pooling-allocator,cache,parallel-compilation,wat,addr2line,demangle,logging,clap/default
inferno_version=0.12.8
py_pkgs=(Flask==3.1.2 gunicorn==23.0.0 redis==6.4.0 matplotlib==3.10.6)

if ! "$tools/bin/oha" --version 2>/dev/null | grep -q " $oha_version"; then
  echo "==> cargo install oha $oha_version" >&2
  $cargo install --quiet --locked --version "$oha_version" --root "$tools" oha
fi
[ "${1:-}" = --load-only ] && exit 0
if ! "$tools/bin/wasmtime" --version 2>/dev/null | grep -q " $wasmtime_version"; then
  echo "==> cargo install wasmtime-cli $wasmtime_version (takes a while)" >&2
  $cargo install --quiet --locked --version "$wasmtime_version" --root "$tools" \
    --no-default-features --features "$wasmtime_features" wasmtime-cli
fi
# inferno's tools have no --version: cargo's install record says which is there.
if [ ! -x "$tools/bin/inferno-flamegraph" ] || ! grep -q "^\"inferno $inferno_version " "$tools/.crates.toml" 2>/dev/null; then
  echo "==> cargo install inferno $inferno_version" >&2
  $cargo install --quiet --locked --version "$inferno_version" --root "$tools" inferno
fi
stamp="$tools/bench-venv/.pinned"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${py_pkgs[*]}" ]; then
  echo "==> bench venv with ${py_pkgs[*]}" >&2
  python3 -m venv "$tools/bench-venv"
  "$tools/bench-venv/bin/pip" install --quiet --disable-pip-version-check "${py_pkgs[@]}"
  echo "${py_pkgs[*]}" > "$stamp"
fi
if ! command -v perf >/dev/null; then
  echo "==> apt-get install linux-perf (for the flame graphs)" >&2
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get install -y -qq linux-perf >/dev/null \
    || echo "warning: perf unavailable; make bench runs without flame graphs" >&2
fi
command -v redis-benchmark >/dev/null || { echo "redis-benchmark missing: run scripts/install-deps.sh" >&2; exit 1; }
