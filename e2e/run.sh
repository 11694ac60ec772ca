#!/usr/bin/env bash
# The kind suite (`make e2e`): the shared scenarios (e2e/scenarios) on a real cluster.
# This script only sets the cluster up and runs them; the checks are the scenarios, the
# same files `make test-k8s` runs on its local backend.
#
#  1. creates a kind cluster (e2e/kind/kind-config.yaml); builds the broker and operator
#     images (scripts/images.sh) and the scenario runner (e2e/kind/runner.Dockerfile: the
#     scenarios, their harness, kafka-python, pytest, kubectl) and loads all three;
#  2. `helm install`s charts/runnel (CRDs the Helm way) and waits for the operator;
#  3. runs the scenarios in the cluster as a Job of the runner image (the kind backend,
#     e2e/harness/kind.py: in-cluster DNS, kubectl and the API with a cluster-admin
#     ServiceAccount), streams pytest's output here, and passes when pytest passes;
#  4. deletes the kind cluster (also on failure, after dumping objects, events and logs).
#
# Needs docker (or a docker-compatible engine) and kind; kubectl and helm come from
# scripts/tools.sh when not on PATH. Every wait is bounded and says what it waits for.
#
# Environment:
#   E2E_PYTEST_ARGS="-k install -x"   extra pytest arguments (PYTEST_ADDOPTS in the Job)
#   E2E_TIMEOUT=3600      seconds the scenarios may take, all together
#   E2E_CLUSTER=runnel-e2e   kind cluster name;  E2E_KIND_IMAGE  kindest/node image
#   E2E_KEEP=1            keep the kind cluster at the end (for debugging)
#   E2E_SKIP_BUILD=1      reuse images already built with the current tag
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=e2e/lib.sh
. "$repo/e2e/lib.sh"

CLUSTER="${E2E_CLUSTER:-runnel-e2e}"
TIMEOUT="${E2E_TIMEOUT:-3600}"
OPERATOR_NS=runnel-system
RELEASE=runnel
NS=runnel-e2e
RUNNER=scenarios

case "$TIMEOUT" in '' | *[!0-9]* | 0) die "E2E_TIMEOUT must be a positive number of seconds, got '$TIMEOUT'" ;; esac

# --- prerequisites -----------------------------------------------------------------------
missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker)
command -v kind >/dev/null 2>&1 || missing+=(kind)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "e2e: needs docker and kind (missing: ${missing[*]}); install them to run the kind suite." >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "e2e: needs docker and kind: docker is installed but its engine is not reachable ('docker info' fails)." >&2
    exit 1
fi
if ! command -v kubectl >/dev/null 2>&1 || ! command -v helm >/dev/null 2>&1; then
    "$repo/scripts/tools.sh"
    PATH="${RUNNEL_TOOLS_DIR:-$repo/.tools}/bin:$PATH"
fi

TAG="$(IMAGE_TAG="${IMAGE_TAG:-}" "$repo/scripts/images.sh" --tag)"
REGISTRY="${IMAGE_REGISTRY:-ghcr.io/runnel-dev}"
BROKER_IMAGE="$REGISTRY/runnel-broker:$TAG"
OPERATOR_IMAGE="$REGISTRY/runnel-operator:$TAG"
RUNNER_IMAGE="runnel-e2e-runner:$TAG"

finish() {
    local status=$?
    trap - EXIT
    if [ "$status" -ne 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        dump >&2 || true
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        log "keeping kind cluster $CLUSTER (E2E_KEEP=1); delete it with: kind delete cluster --name $CLUSTER"
    else
        log "tearing down: kind delete cluster --name $CLUSTER"
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
    if [ "$status" -eq 0 ]; then
        log "PASSED"
    else
        log "FAILED (exit $status)"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

# --- 1. cluster and images ---------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "deleting a leftover kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null
fi
log "creating kind cluster $CLUSTER"
kind_args=(--name "$CLUSTER" --config "$repo/e2e/kind/kind-config.yaml" --wait 180s)
[ -n "${E2E_KIND_IMAGE:-}" ] && kind_args+=(--image "$E2E_KIND_IMAGE")
kind create cluster "${kind_args[@]}"
kubectl config use-context "kind-$CLUSTER" >/dev/null

if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
    log "building images $BROKER_IMAGE and $OPERATOR_IMAGE"
    IMAGE_TAG="$TAG" IMAGE_REGISTRY="$REGISTRY" "$repo/scripts/images.sh" >/dev/null
    log "building the scenario runner $RUNNER_IMAGE"
    DOCKER_BUILDKIT=1 docker build --quiet --file "$repo/e2e/kind/runner.Dockerfile" \
        --tag "$RUNNER_IMAGE" "$repo" >/dev/null
fi
for image in "$BROKER_IMAGE" "$OPERATOR_IMAGE" "$RUNNER_IMAGE"; do
    log "loading $image into kind"
    kind load docker-image --name "$CLUSTER" "$image" >/dev/null
done

# --- 2. the chart ------------------------------------------------------------------------
log "installing charts/runnel into $OPERATOR_NS"
# `\,` keeps the comma inside the value: --set splits on bare commas.
helm install "$RELEASE" "$repo/charts/runnel" \
    --namespace "$OPERATOR_NS" --create-namespace \
    --set image.repository="$REGISTRY/runnel-operator" \
    --set image.tag="$TAG" \
    --set 'logLevel=info\,runnel_operator=debug' \
    --wait --timeout 180s >/dev/null
wait_for "the operator Deployment to be available" 180 \
    kubectl -n "$OPERATOR_NS" rollout status "deployment/$RELEASE" --timeout=5s
for crd in kafkaclusters topics consumergroups; do
    wait_for "CRD $crd.runnel.dev to be established" 60 \
        kubectl wait --for=condition=Established "crd/$crd.runnel.dev" --timeout=5s
done

# --- 3. the scenarios --------------------------------------------------------------------
log "running the scenarios (e2e/scenarios) as Job $NS/$RUNNER${E2E_PYTEST_ARGS:+ with: $E2E_PYTEST_ARGS}"
kubectl create namespace "$NS" >/dev/null
runner_manifest | kubectl apply -f - >/dev/null
wait_for "the scenario runner's pod to start" 300 runner_started
streamed=1
kubectl -n "$NS" logs --follow "job/$RUNNER" || streamed=0
wait_for "Job $RUNNER to finish" "$TIMEOUT" job_finished "$RUNNER"
if [ "$streamed" = 0 ]; then
    log "the log stream broke off; the runner's whole output:"
    kubectl -n "$NS" logs "job/$RUNNER" >&2 || true
fi
[ "$(kubectl -n "$NS" get job "$RUNNER" -o jsonpath='{.status.succeeded}')" = 1 ] ||
    die "the scenarios failed (pytest's report above)"
