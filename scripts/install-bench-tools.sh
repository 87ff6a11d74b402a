#!/usr/bin/env bash
# Installs the benchmark tools into .tools/, pinned; does nothing when they are there.
#   .tools/bin/oha      load generator (crates.io, built with --locked)
#   .tools/bench-venv   Flask + gunicorn + redis-py (the workshop's design) and matplotlib (charts)
#   redis-benchmark     from Debian's redis-tools (installed with redis-server)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
oha_version=1.16.0
py_pkgs=(Flask==3.1.2 gunicorn==23.0.0 redis==6.4.0 matplotlib==3.10.6)

if ! "$tools/bin/oha" --version 2>/dev/null | grep -q " $oha_version"; then
  echo "==> cargo install oha $oha_version" >&2
  cargo install --quiet --locked --version "$oha_version" --root "$tools" oha
fi
stamp="$tools/bench-venv/.pinned"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${py_pkgs[*]}" ]; then
  echo "==> bench venv with ${py_pkgs[*]}" >&2
  python3 -m venv "$tools/bench-venv"
  "$tools/bench-venv/bin/pip" install --quiet --disable-pip-version-check "${py_pkgs[@]}"
  echo "${py_pkgs[*]}" > "$stamp"
fi
command -v redis-benchmark >/dev/null || { echo "redis-benchmark missing: run scripts/install-deps.sh" >&2; exit 1; }
