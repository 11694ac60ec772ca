#!/usr/bin/env bash
# Builds runnel-broker and runnel-operator as static musl binaries — what the images in
# docker/ ship — and checks each one runs (`--version`) and is statically linked. This is
# the part of the image build that can be checked without a container engine.
#
# Installs what it needs when missing: the rustup target x86_64-unknown-linux-musl and
# Debian's musl-tools (musl-gcc, for the crates with C code: ring, zstd-sys, lz4-sys),
# the latter as root through apt-get.
#
# Quiet on success; on failure it prints what failed and the captured output.
#
# Usage: scripts/static-check.sh            (debug profile, the default: faster)
#        PROFILE=release scripts/static-check.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=x86_64-unknown-linux-musl
profile="${PROFILE:-debug}"
cargo="${CARGO:-cargo}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

script=static-check
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

# --- toolchain ---------------------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    run "adding the rust target $target" rustup target add "$target"
fi
packages=()
command -v musl-gcc >/dev/null 2>&1 || packages+=(musl-tools)
command -v file >/dev/null 2>&1 || packages+=(file)
if [ "${#packages[@]}" -gt 0 ]; then
    run "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run "apt-get install ${packages[*]}" \
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
fi

# --- build -------------------------------------------------------------------------------
profile_flag=()
[ "$profile" = release ] && profile_flag=(--release)
(
    cd "$repo"
    run "building the static binaries ($target, $profile)" \
        env CC_x86_64_unknown_linux_musl=musl-gcc \
        "$cargo" build "${profile_flag[@]}" --target "$target" \
        -p runnel-broker --bin runnel-broker \
        -p runnel-operator --bin runnel-operator
)

# --- checks ------------------------------------------------------------------------------
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)"
[ -n "$version" ] || fail "no [workspace.package] version in Cargo.toml"

for bin in runnel-broker runnel-operator; do
    path="$target_dir/$target/$profile/$bin"
    [ -x "$path" ] || fail "$path was not built"

    description="$(file -b "$path")"
    case "$description" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) fail "$bin is not statically linked: $description" ;;
    esac
    # ldd exits non-zero and says "not a dynamic executable" (or "statically linked").
    if ldd_out="$(ldd "$path" 2>&1)"; then
        case "$ldd_out" in
        *"statically linked"*) ;;
        *) fail "ldd lists shared libraries for $bin: $ldd_out" ;;
        esac
    fi

    # No Kubernetes or network is around: `--version` must answer without either.
    if ! out="$(env -i PATH=/usr/bin:/bin KUBECONFIG=/nonexistent timeout 10 "$path" --version 2>&1)"; then
        fail "'$bin --version' failed: $out"
    fi
    case "$out" in
    *"$version"*) ;;
    *) fail "'$bin --version' printed '$out', without the version $version" ;;
    esac
done
