#!/usr/bin/env bash
# Installs what building and testing ping needs, and nothing that is already there.
# Safe to run any number of times.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The component's compilation target.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  log "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# Debian packages: Redis (`make up` runs it, the tests start their own), an
# OCI registry (the OCI tests push to and pull from a real one) and Prometheus.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
# Monitoring: the tests start a real Prometheus and Redis exporter; promtool
# checks the rules and the metrics.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "missing: ${missing[*]}; install them and retry" >&2; exit 1; }
  apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
fi
