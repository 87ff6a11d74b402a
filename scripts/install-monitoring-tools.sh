#!/usr/bin/env bash
# Installs the schema checks (@grafana/schema with TypeScript for dashboards,
# @kubernetes-models/prometheus-operator for ServiceMonitors and
# PrometheusRules) at the versions and hashes locked in
# monitoring/tests/schema/package-lock.json, into .tools/schemas.
# Safe to run any number of times.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/monitoring/tests/schema"
dest="$root/.tools/schemas"

command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 18+ (Debian: apt-get install nodejs npm)" >&2; exit 1; }

if [ -f "$dest/package-lock.json" ] && cmp -s "$src/package-lock.json" "$dest/package-lock.json" \
   && [ -x "$dest/node_modules/.bin/tsc" ]; then
  exit 0
fi
echo "==> npm ci the schema checks into .tools/schemas" >&2
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# npm ci installs exactly the lock file (versions and integrity hashes); no install scripts run.
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
