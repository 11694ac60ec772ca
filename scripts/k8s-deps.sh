#!/usr/bin/env bash
# Installs what the local Kubernetes suite (e2e/scenarios on the local backend, `make test-k8s`) needs, on a fresh
# machine:
#   - etcd from Debian's `etcd-server` package (the suite starts its own, on loopback),
#     and iproute2's `ip` when missing;
#   - helm and kubectl into .tools/ (scripts/tools.sh);
#   - e2e/local/requirements.txt (kafka-python, grpcio health checking, cryptography,
#     PyYAML, pytest) into the project's venv <repo>/.venv.
# kube-apiserver and kube-controller-manager are not installed: the suite takes them from
# the directory named by RUNNEL_K8S_ASSETS (plain or .xz; unpacked into target/k8s-assets).
#
# Idempotent: each step is skipped when its result is already in place. Quiet on success;
# on failure the output of the failing step is printed.
#
# Usage: scripts/k8s-deps.sh        then: RUNNEL_K8S_ASSETS=dir .venv/bin/pytest e2e/scenarios
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
req="$repo/e2e/local/requirements.txt"
python="${PYTHON:-python3}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

script=k8s-deps
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

# --- etcd --------------------------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
    run "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run "apt-get install etcd-server" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends etcd-server
    # The package enables a system etcd where systemd runs; the suite starts its own.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
        as_root systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
    command -v etcd >/dev/null 2>&1 || fail "etcd-server is installed but 'etcd' is not on PATH"
fi

# --- ip (iproute2): the suite makes the pods' address range local to its loopback ------
if ! command -v ip >/dev/null 2>&1; then
    run "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run "apt-get install iproute2" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends iproute2
fi

# --- helm, kubectl -----------------------------------------------------------------------
"$repo/scripts/tools.sh"

# --- Python venv -------------------------------------------------------------------------
stamp="$venv/.k8s-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        run "creating the venv" "$python" -m venv "$venv"
    fi
    run "installing $req" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi
