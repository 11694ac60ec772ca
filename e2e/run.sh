#!/usr/bin/env bash
# The end-to-end suite in kind (`make e2e`): the operator installed by the Helm chart runs
# a real Runnel cluster, and a real Kafka client (kafka-python, as a Job) uses it.
#
#  1. creates a kind cluster; builds the broker, operator and client images and loads them;
#  2. `helm install`s charts/runnel; checks the example CRs against the real API server;
#  3. applies a KafkaCluster (E2E_BROKERS brokers) and two Topics; waits for Ready;
#  4. produces E2E_MESSAGES records (acks=all), consumes part of them with a consumer
#     group and checks the ConsumerGroup CR's lag, then the rest and lag 0;
#  5. changes a topic's config and partition count; checks the broker has both;
#  6. deletes broker pod 0, waits for it to return, and checks that every acknowledged
#     record is still at its offset;
#  7. tears everything down (also on failure, after dumping objects, events and logs).
#
# Needs docker (or a docker-compatible engine) and kind; kubectl and helm come from
# scripts/tools.sh when not on PATH. Every wait is bounded and says what it waits for.
#
# Environment:
#   E2E_BROKERS=1         brokers in the KafkaCluster (3 once replication lands)
#   E2E_RF=1              replication factor of the test topics
#   E2E_MESSAGES=300      records produced
#   E2E_CLUSTER=runnel-e2e   kind cluster name;  E2E_KIND_IMAGE  kindest/node image
#   E2E_KEEP=1            keep the kind cluster at the end (for debugging)
#   E2E_SKIP_BUILD=1      reuse images already built with the current tag
#   E2E_FORCE_DELETE=1    delete the broker pod with --grace-period=0 --force
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=e2e/lib.sh
. "$repo/e2e/lib.sh"

BROKERS="${E2E_BROKERS:-1}"
RF="${E2E_RF:-1}"
MESSAGES="${E2E_MESSAGES:-300}"
CLUSTER="${E2E_CLUSTER:-runnel-e2e}"
OPERATOR_NS=runnel-system
NS=runnel-e2e
KC=e2e
TOPIC=e2e-orders
GROUP=e2e-group
export NS OPERATOR_NS CLUSTER

case "$BROKERS" in '' | *[!0-9]* | 0) die "E2E_BROKERS must be a positive integer, got '$BROKERS'" ;; esac

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
CLIENT_IMAGE="runnel-e2e-client:$TAG"
BOOTSTRAP="$KC-bootstrap.$NS.svc:9092"
WORK="$(mktemp -d)"
export CLIENT_IMAGE BOOTSTRAP WORK

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
    rm -rf "$WORK"
    if [ "$status" -eq 0 ]; then
        log "PASSED ($BROKERS broker(s), $MESSAGES records)"
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
kind_args=(--name "$CLUSTER" --config "$repo/e2e/kind-config.yaml" --wait 180s)
[ -n "${E2E_KIND_IMAGE:-}" ] && kind_args+=(--image "$E2E_KIND_IMAGE")
kind create cluster "${kind_args[@]}"
kubectl config use-context "kind-$CLUSTER" >/dev/null

if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
    log "building images $BROKER_IMAGE and $OPERATOR_IMAGE"
    IMAGE_TAG="$TAG" IMAGE_REGISTRY="$REGISTRY" "$repo/scripts/images.sh" >/dev/null
    log "building the client image $CLIENT_IMAGE"
    DOCKER_BUILDKIT=1 docker build --quiet --tag "$CLIENT_IMAGE" "$repo/e2e/client" >/dev/null
fi
for image in "$BROKER_IMAGE" "$OPERATOR_IMAGE" "$CLIENT_IMAGE"; do
    log "loading $image into kind"
    kind load docker-image --name "$CLUSTER" "$image" >/dev/null
done

# --- 2. the chart ------------------------------------------------------------------------
log "installing charts/runnel into $OPERATOR_NS"
helm install runnel "$repo/charts/runnel" \
    --namespace "$OPERATOR_NS" --create-namespace \
    --set image.repository="$REGISTRY/runnel-operator" \
    --set image.tag="$TAG" \
    --set logLevel="info,runnel_operator=debug" \
    --wait --timeout 180s >/dev/null
wait_for "the operator Deployment to be available" 180 \
    kubectl -n "$OPERATOR_NS" rollout status deployment/runnel --timeout=5s
for crd in kafkaclusters topics consumergroups; do
    wait_for "CRD $crd.runnel.dev to be established" 60 \
        kubectl wait --for=condition=Established "crd/$crd.runnel.dev" --timeout=5s
done

kubectl create namespace "$NS" >/dev/null
log "checking charts/runnel/examples against the API server (server-side dry run, CEL included)"
kubectl -n "$NS" apply --dry-run=server --server-side -f "$repo/charts/runnel/examples/" >/dev/null

# --- 3. a cluster and topics -------------------------------------------------------------
log "applying KafkaCluster $KC ($BROKERS broker(s), image $BROKER_IMAGE) and its topics"
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: runnel.dev/v1alpha1
kind: KafkaCluster
metadata:
  name: $KC
spec:
  replicas: $BROKERS
  image: $BROKER_IMAGE
  imagePullPolicy: IfNotPresent
  storage:
    size: 1Gi
  config:
    auto.create.topics.enable: "false"
    default.replication.factor: "$RF"
  resources:
    requests: {cpu: 100m, memory: 256Mi}
---
apiVersion: runnel.dev/v1alpha1
kind: Topic
metadata:
  name: $TOPIC
spec:
  clusterRef: {name: $KC}
  partitions: 3
  replicationFactor: $RF
  config:
    retention.ms: "86400000"
---
apiVersion: runnel.dev/v1alpha1
kind: Topic
metadata:
  name: e2e-compacted
spec:
  clusterRef: {name: $KC}
  topicName: e2e.compacted.v1
  partitions: 1
  replicationFactor: $RF
  config:
    cleanup.policy: compact
---
apiVersion: runnel.dev/v1alpha1
kind: ConsumerGroup
metadata:
  name: $GROUP
spec:
  clusterRef: {name: $KC}
  groupId: $GROUP
YAML

wait_for "KafkaCluster $KC to be Ready" 420 condition_true kafkacluster "$KC" Ready
wait_for "KafkaCluster $KC to report $BROKERS ready broker(s)" 60 \
    jsonpath_is kafkacluster "$KC" '{.status.readyBrokers}' "$BROKERS"
for topic in "$TOPIC" e2e-compacted; do
    wait_for "Topic $topic to be Ready" 180 condition_true topic "$topic" Ready
done
wait_for "Topic $TOPIC to report 3 partitions" 60 jsonpath_is topic "$TOPIC" '{.status.partitions}' 3

# --- 4. produce, consume with a group, lag -----------------------------------------------
run_id="run$(date +%s)"
run_client_job e2e-produce 300 produce --topic "$TOPIC" --count "$MESSAGES" --run-id "$run_id"
acked="$(grep -c '^ACK ' "$WORK/e2e-produce.log" || true)"
[ "$acked" = "$MESSAGES" ] || die "the producer logged $acked acknowledgements, expected $MESSAGES"
grep '^ACK ' "$WORK/e2e-produce.log" >"$WORK/acked.jsonl"

first=$((MESSAGES / 3))
run_client_job e2e-consume-1 240 consume --topic "$TOPIC" --group "$GROUP" --max "$first"
wait_for "ConsumerGroup $GROUP to report lag $((MESSAGES - first))" 150 \
    jsonpath_is consumergroup "$GROUP" '{.status.totalLag}' "$((MESSAGES - first))"
wait_for "ConsumerGroup $GROUP to list lag for the 3 partitions" 60 \
    jsonpath_is consumergroup "$GROUP" '{.status.lag[*].partition}' "0 1 2"
run_client_job e2e-consume-2 240 consume --topic "$TOPIC" --group "$GROUP" --max "$((MESSAGES - first))"
wait_for "ConsumerGroup $GROUP to report lag 0" 150 \
    jsonpath_is consumergroup "$GROUP" '{.status.totalLag}' 0
wait_for "ConsumerGroup $GROUP to be Empty (consumers gone)" 150 \
    jsonpath_is consumergroup "$GROUP" '{.status.state}' Empty

# --- 5. topic changes reach the broker ---------------------------------------------------
log "changing Topic $TOPIC: 3 -> 5 partitions, retention.ms=3600000, max.message.bytes=524288"
kubectl -n "$NS" patch topic "$TOPIC" --type merge \
    -p '{"spec":{"partitions":5,"config":{"retention.ms":"3600000","max.message.bytes":"524288"}}}' >/dev/null
wait_for "Topic $TOPIC to report 5 partitions" 180 jsonpath_is topic "$TOPIC" '{.status.partitions}' 5
wait_for "Topic $TOPIC to report retention.ms=3600000" 120 \
    jsonpath_is topic "$TOPIC" '{.status.config.retention\.ms}' 3600000
run_client_job e2e-check-topic 180 check-topic --topic "$TOPIC" --partitions 5 \
    --config retention.ms=3600000 --config max.message.bytes=524288
if kubectl -n "$NS" patch topic "$TOPIC" --type merge -p '{"spec":{"partitions":2}}' >/dev/null 2>&1; then
    die "the API server accepted shrinking Topic $TOPIC to 2 partitions (CEL rule missing?)"
fi
log "ok: the API server refuses to shrink partitions"

# --- 6. a broker pod goes away; every acknowledged record survives -----------------------
pod="$KC-0"
old_uid="$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}')"
delete_args=(--wait=false)
[ "${E2E_FORCE_DELETE:-0}" = 1 ] && delete_args+=(--grace-period=0 --force)
log "deleting broker pod $pod ${delete_args[*]}"
kubectl -n "$NS" delete pod "$pod" "${delete_args[@]}" >/dev/null
pod_replaced() {
    local uid
    uid="$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null)" || true
    [ -n "$uid" ] && [ "$uid" != "$old_uid" ] && return 0
    echo "pod uid '${uid:-none}' (old $old_uid)"
    return 1
}
wait_for "pod $pod to be recreated" 180 pod_replaced
wait_for "pod $pod to be Ready again" 300 \
    kubectl -n "$NS" wait --for=condition=Ready "pod/$pod" --timeout=5s
wait_for "KafkaCluster $KC to be Ready again" 300 condition_true kafkacluster "$KC" Ready

kubectl -n "$NS" create configmap e2e-acked --from-file=acked.jsonl="$WORK/acked.jsonl" >/dev/null
CLIENT_ACKED_CONFIGMAP=e2e-acked run_client_job e2e-verify 240 verify --acked /acked/acked.jsonl
