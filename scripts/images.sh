#!/usr/bin/env bash
# Builds the container images of runnel-broker and runnel-operator (docker/*.Dockerfile)
# with a version tag: <Cargo.toml version>-<git short sha>[-dirty], e.g. 0.1.0-1a2b3c4.
#
# Needs a reachable container engine (docker with BuildKit, or podman); where there is
# none it says so and exits 1.
#
# Environment:
#   IMAGE_REGISTRY  image name prefix          (default ghcr.io/runnel-dev)
#   IMAGE_TAG       tag instead of the computed one
#   ENGINE          docker or podman            (default: docker, else podman)
#   PUSH=1          push both images after building
#
# Usage: scripts/images.sh            prints the two image references on success
#        scripts/images.sh --tag      prints only the tag it would use
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
registry="${IMAGE_REGISTRY:-ghcr.io/runnel-dev}"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)"
[ -n "$version" ] || { echo "images: no version in $repo/Cargo.toml" >&2; exit 1; }
if sha="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"; then
    if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        sha="$sha-dirty"
    fi
    tag="${IMAGE_TAG:-$version-$sha}"
else
    tag="${IMAGE_TAG:-$version}"
fi

if [ "${1:-}" = "--tag" ]; then
    echo "$tag"
    exit 0
fi

engine="${ENGINE:-}"
if [ -z "$engine" ]; then
    if command -v docker >/dev/null 2>&1; then
        engine=docker
    elif command -v podman >/dev/null 2>&1; then
        engine=podman
    fi
fi
if [ -z "$engine" ] || ! command -v "$engine" >/dev/null 2>&1; then
    echo "images: no container engine found (docker or podman): cannot build images here." >&2
    echo "images: the static binaries they hold are checked by scripts/static-check.sh." >&2
    exit 1
fi
if ! "$engine" info >/dev/null 2>&1; then
    echo "images: '$engine' is installed but its engine is not reachable ('$engine info' fails):" >&2
    echo "images: cannot build images here. Start the engine (or set ENGINE=podman) and retry." >&2
    exit 1
fi

images=()
for component in broker operator; do
    image="$registry/runnel-$component:$tag"
    echo "images: building $image" >&2
    DOCKER_BUILDKIT=1 "$engine" build \
        --file "$repo/docker/$component.Dockerfile" \
        --tag "$image" \
        --label "org.opencontainers.image.version=$tag" \
        --label "org.opencontainers.image.revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)" \
        "$repo"
    images+=("$image")
    if [ "${PUSH:-0}" = 1 ]; then
        "$engine" push "$image"
    fi
done
printf '%s\n' "${images[@]}"
