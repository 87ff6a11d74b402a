#!/usr/bin/env bash
# Installs what building the container image and testing it need, and nothing
# that is already there. Safe to run any number of times.
#   rustup target x86_64-unknown-linux-musl   the static ping-host in the image
#   musl-tools, binutils                        musl-gcc for the C parts of its dependencies; strip
#   podman, buildah, runc                       daemonless build and run (`make image`, the tests)
#   netavark, aardvark-dns                      container networks with name resolution (compose's
#                                               `redis` host name); Debian's podman falls back to CNI
#                                               without DNS when they are missing
#   iptables                                    netavark's firewall driver runs it for every
#                                               container network; without it every `podman run`
#                                               fails with "netavark: No such file or directory"
#   .tools/venv: podman-compose                 the compose implementation the tests drive (pinned)
#   .tools/compose-spec/compose.schema.json     the Compose Specification's JSON schema, from the
#                                               npm package dclint@3.1.0, checked against its sha256
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
log() { printf '==> %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  log "rustup target add x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi

missing=()
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
[ -x /usr/sbin/iptables ] || command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "missing: ${missing[*]}; install them and retry" >&2; exit 1; }
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman-compose from PyPI, pinned, into the chart tools' venv (make chart-tools creates it).
compose_pkg="podman-compose==1.6.0"
if [ -x "$tools/venv/bin/pip" ] && ! grep -qx "$compose_pkg" "$tools/venv/.compose-pinned" 2>/dev/null; then
  log "pip install $compose_pkg"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "$compose_pkg"
  echo "$compose_pkg" > "$tools/venv/.compose-pinned"
fi

# The Compose Specification's schema, as shipped in dclint (a compose linter).
schema="$tools/compose-spec/compose.schema.json"
npm_pkg="dclint@3.1.0"
npm_sha256="73fc6079a0408c80c7ccea9e9e5c21c40551afaf15e8c1ee25a5ad6af1ec0414"
if [ ! -f "$schema" ] || [ "$(cat "$tools/compose-spec/.pinned" 2>/dev/null)" != "$npm_pkg $npm_sha256" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 18+ (Debian: apt-get install nodejs npm)" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "npm pack $npm_pkg (compose-spec schema)"
  (cd "$work" && npm pack --silent "$npm_pkg" >/dev/null 2>&1)
  tgz=$(ls "$work"/*.tgz)
  echo "$npm_sha256  $tgz" | sha256sum --check --quiet -
  mkdir -p "$tools/compose-spec"
  tar -xzf "$tgz" -C "$work" package/schemas/compose.schema.json
  install -m 0644 "$work/package/schemas/compose.schema.json" "$schema"
  echo "$npm_pkg $npm_sha256" > "$tools/compose-spec/.pinned"
fi
