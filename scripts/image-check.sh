#!/usr/bin/env bash
# Builds the broker and operator images with podman from docker/*.local.Dockerfile (FROM
# scratch + the static musl binaries of scripts/static-check.sh: nothing is pulled) and
# inspects them without running a container (these machines refuse to run one):
# scripts/image-check.py compares the config with the release Dockerfiles (numeric
# non-root user, entrypoint, ports, labels, ENV), unpacks the layers, checks the entrypoint
# binary is there, static (no ELF interpreter) and answers --version, and bounds the size
# (of the binaries with their debug info stripped).
#
# Installs Debian's podman (apt-get, as root) when missing. podman's storage is private,
# under target/image-check/ (overlay, else vfs). When podman cannot be installed or cannot
# build even a trivial scratch image here, it prints one line saying why and exits 0
# (IMAGE_CHECK_REQUIRED=1 makes that a failure, for CI). A broken image always fails.
#
# Usage: scripts/image-check.sh      after scripts/static-check.sh (same PROFILE)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=x86_64-unknown-linux-musl
profile="${PROFILE:-debug}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
state="$target_dir/image-check"
python="${PYTHON:-python3}"

# Size bounds in MB (decimal, as podman reports them). The staged binaries have their
# debug info stripped (strip --strip-debug: code, symbols and unwind tables stay), so the
# bound measures what the code weighs in either profile. Measured 2025-12, debug profile:
# broker 29.5 MB, operator 63.4 MB.
max_broker="${IMAGE_MAX_MB_BROKER:-60}"
max_operator="${IMAGE_MAX_MB_OPERATOR:-100}"

mkdir -p "$state/tmp"
work="$(mktemp -d "$state/tmp/run.XXXXXX")"
log="$work/log"
trap 'rm -rf "$work"' EXIT

script=image-check
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

skip() {
    if [ "${IMAGE_CHECK_REQUIRED:-0}" = 1 ]; then
        fail "$* (IMAGE_CHECK_REQUIRED=1)"
    fi
    echo "$script: skipped: $*" >&2
    exit 0
}

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)"
[ -n "$version" ] || fail "no [workspace.package] version in Cargo.toml"
for bin in runnel-broker runnel-operator; do
    [ -x "$target_dir/$target/$profile/$bin" ] ||
        fail "$target_dir/$target/$profile/$bin is missing: run 'make static-check' (PROFILE=$profile) first"
done

# --- podman (and strip, from binutils) ----------------------------------------------------
packages=()
command -v podman >/dev/null 2>&1 || packages+=(podman)
command -v strip >/dev/null 2>&1 || packages+=(binutils)
if [ "${#packages[@]}" -gt 0 ]; then
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
        ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >>"$log" 2>&1; then
        skip "${packages[*]} missing and 'apt-get install ${packages[*]}' failed: $(tail -n1 "$log")"
    fi
fi

# podman with a private store under target/; no RUN steps, so the isolation is never used,
# but chroot needs nothing from the machine if one is ever added.
export TMPDIR="$state/tmp" BUILDAH_ISOLATION=chroot
driver=""
pm() {
    podman --root "$state/storage-$driver" --runroot "$state/run-$driver" \
        --storage-driver "$driver" "$@"
}

# Can podman build here at all? A one-file scratch image tells, before our images do.
mkdir -p "$work/probe"
echo probe >"$work/probe/probe"
printf 'FROM scratch\nCOPY probe /probe\n' >"$work/probe/Dockerfile"
why=""
for driver in ${IMAGE_CHECK_STORAGE_DRIVERS:-overlay vfs}; do
    if pm build --pull=never --isolation chroot -q -t localhost/runnel-image-probe:check \
        "$work/probe" >"$log" 2>&1; then
        why=""
        break
    fi
    why="$why${why:+; }$driver: $(grep -v '^\s*$' "$log" | tail -n1)"
done
[ -z "$why" ] || skip "podman cannot build a scratch image here ($why)"

# --- build and inspect -------------------------------------------------------------------
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
status=0
for component in broker operator; do
    bin="runnel-$component"
    max_var="max_$component"
    max_bound="${!max_var}"
    image="localhost/$bin:check"
    ctx="$work/$component"
    mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
        >"$ctx/rootfs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
    run "strip --strip-debug $bin" strip --strip-debug -o "$ctx/$bin" "$target_dir/$target/$profile/$bin"
    chmod 0755 "$ctx/$bin"
    if [ "$component" = broker ]; then
        install -d -m 0750 "$ctx/var-lib-runnel/data"
    fi

    run "podman build of $image (docker/$component.local.Dockerfile)" \
        pm build --pull=never --isolation chroot --layers=false -q \
        --file "$repo/docker/$component.local.Dockerfile" --tag "$image" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.revision=$revision" \
        "$ctx"
    if ! pm image inspect "$image" >"$work/$component.json" 2>"$log"; then
        echo "$script: podman image inspect $image failed:" >&2
        cat "$log" >&2
        exit 1
    fi
    run "podman save $image" pm save --format docker-archive -o "$work/$component.tar" "$image"
    if ! "$python" "$repo/scripts/image-check.py" --name "$bin" \
        --inspect "$work/$component.json" --archive "$work/$component.tar" \
        --release-dockerfile "$repo/docker/$component.Dockerfile" --version "$version" \
        --max-mb "${max_bound}"; then
        status=1
    fi
    rm -f "$work/$component.tar"
    rm -rf "$ctx"
done
# Keep the private store small: the images are rebuilt on every run.
pm rmi --all --force >/dev/null 2>&1 || true
exit "$status"
