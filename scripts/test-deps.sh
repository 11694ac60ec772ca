#!/usr/bin/env bash
# Installs what the real-client compatibility suite (tests/compat) needs, on a fresh machine:
#   - a Python venv at <repo>/.venv with tests/compat/requirements.txt (kafka-python,
#     confluent-kafka, pytest, compression codecs);
#   - kafkajs via `npm ci` in tests/compat/js (from the committed package-lock.json);
#   - kcat from Debian's packages;
#   - as root, iproute2 (ip) and nftables (nft) when missing: tests/netns builds its
#     network with them (it is skipped without root).
# Idempotent: each step is skipped when its result is already in place. Quiet on success;
# on failure the output of the failing step is printed.
#
# Usage: scripts/test-deps.sh        then: .venv/bin/pytest tests/compat
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
req="$repo/tests/compat/requirements.txt"
js_dir="$repo/tests/compat/js"
python="${PYTHON:-python3}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

script=test-deps
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

# --- Python venv -------------------------------------------------------------------------
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        run "creating the venv" "$python" -m venv "$venv"
    fi
    run "upgrading pip" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    run "installing $req" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi

# --- kafkajs -----------------------------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
    echo "test-deps: npm is missing (Node 20 + npm are expected on the machine)" >&2
    exit 1
fi
js_stamp="$js_dir/node_modules/.lock.sha256"
js_want="$(sha256sum "$js_dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$js_stamp" 2>/dev/null)" != "$js_want" ]; then
    (cd "$js_dir" && run "npm ci in tests/compat/js" npm ci --no-audit --no-fund --loglevel=error)
    echo "$js_want" >"$js_stamp"
fi

# --- kcat --------------------------------------------------------------------------------
if ! command -v kcat >/dev/null 2>&1; then
    run "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run "apt-get install kcat" as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat
fi

# --- ip, nft (tests/netns, which needs root and skips itself otherwise) ------------------
if [ "$(id -u)" -eq 0 ]; then
    missing=()
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    if [ "${#missing[@]}" -gt 0 ]; then
        run "apt-get update" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        run "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi
