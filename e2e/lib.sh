# Helpers of e2e/run.sh: logging, bounded waits, the scenario runner's objects, and the
# failure dump.
# shellcheck shell=bash

log() { printf '%s e2e: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

# wait_for DESCRIPTION TIMEOUT_S CHECK...: runs CHECK every 2 s until it succeeds, for at
# most TIMEOUT_S seconds. CHECK prints what it currently sees; that is shown every 20 s
# and on timeout.
wait_for() {
    local what="$1" timeout="$2"
    shift 2
    local start now seen="" last_report=0
    start="$(date +%s)"
    log "waiting up to ${timeout}s for $what"
    while true; do
        if seen="$("$@" 2>&1)"; then
            log "ok: $what (after $(($(date +%s) - start))s)"
            return 0
        fi
        now="$(date +%s)"
        if [ $((now - start)) -ge "$timeout" ]; then
            die "timed out after ${timeout}s waiting for $what; last seen: ${seen:-nothing}"
        fi
        if [ $((now - last_report)) -ge 20 ] && [ $((now - start)) -ge 20 ]; then
            log "  still waiting for $what ($((now - start))s); now: ${seen:-nothing}"
            last_report="$now"
        fi
        sleep 2
    done
}

# runner_manifest: the scenario runner's ServiceAccount (cluster-admin), and the Job that
# runs the shared scenarios (e2e/scenarios) with the kind backend (e2e/harness/kind.py).
# Reads NS, RUNNER, RUNNER_IMAGE, BROKER_IMAGE, OPERATOR_NS, RELEASE, TIMEOUT and
# E2E_PYTEST_ARGS (extra pytest arguments, passed as PYTEST_ADDOPTS).
# shellcheck disable=SC2153 # TIMEOUT and the rest are run.sh's
runner_manifest() {
    local addopts="${E2E_PYTEST_ARGS:-}"
    addopts="${addopts//\'/\'\'}" # a single-quoted YAML scalar doubles its quotes
    cat <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: $RUNNER
  namespace: $NS
---
# The scenarios create namespaces, quotas, StatefulSets, evictions and tokens, and scale
# the operator's Deployment: a throwaway cluster's admin.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: $RUNNER
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
  - {kind: ServiceAccount, name: $RUNNER, namespace: $NS}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: $RUNNER
  namespace: $NS
  labels: {app.kubernetes.io/part-of: runnel-e2e}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: $TIMEOUT
  template:
    metadata:
      labels: {app.kubernetes.io/part-of: runnel-e2e}
    spec:
      serviceAccountName: $RUNNER
      restartPolicy: Never
      # Root in the node's pid namespace: the scenarios SIGKILL an operator container's
      # process, which the API cannot do (deleting a pod sends SIGTERM first).
      hostPID: true
      containers:
        - name: scenarios
          image: '$RUNNER_IMAGE'
          imagePullPolicy: IfNotPresent
          env:
            - {name: RUNNEL_E2E_BACKEND, value: kind}
            - {name: RUNNEL_E2E_BROKER_IMAGE, value: '$BROKER_IMAGE'}
            - {name: RUNNEL_E2E_OPERATOR_NAMESPACE, value: '$OPERATOR_NS'}
            - {name: RUNNEL_E2E_OPERATOR_DEPLOYMENT, value: '$RELEASE'}
            - {name: PYTEST_ADDOPTS, value: '$addopts'}
YAML
}

# runner_started: succeeds once the runner's pod runs (or already ended); prints its
# state otherwise.
runner_started() {
    local phase
    phase="$(kubectl -n "$NS" get pods -l "job-name=$RUNNER" -o jsonpath='{.items[*].status.phase}' 2>&1)" || {
        echo "$phase"
        return 1
    }
    case "$phase" in Running | Succeeded | Failed) return 0 ;; esac
    kubectl -n "$NS" get pods -l "job-name=$RUNNER" --no-headers 2>&1 | awk '{print $1, $3}'
    return 1
}

# job_finished NAME: succeeds once the Job is Complete or Failed; prints its pod's state.
job_finished() {
    local conditions
    conditions="$(kubectl -n "$NS" get job "$1" -o jsonpath='{.status.conditions[?(@.status=="True")].type}' 2>&1)" || true
    case " $conditions " in *" Complete "* | *" Failed "*) return 0 ;; esac
    kubectl -n "$NS" get pods -l "job-name=$1" --no-headers 2>&1 | awk '{print $1, $3}'
    return 1
}

# dump: what is needed to see why a run failed beyond the scenarios' own reports (each
# failed scenario prints its namespace's objects, events and logs): the operator's and
# the runner's namespaces, and the Runnel objects left anywhere.
dump() {
    log "---- diagnostics (cluster $CLUSTER) ----"
    local ns
    for ns in "$OPERATOR_NS" "$NS"; do
        echo "==== namespace $ns: objects"
        kubectl -n "$ns" get all,configmaps,pvc,pdb,leases -o wide 2>&1
        echo "==== namespace $ns: events"
        kubectl -n "$ns" get events --sort-by=.lastTimestamp 2>&1 | tail -n 60
        echo "==== namespace $ns: pods"
        kubectl -n "$ns" describe pods 2>&1 | tail -n 120
    done
    echo "==== namespaces and Runnel custom resources"
    kubectl get namespaces 2>&1
    kubectl get kafkaclusters,topics,consumergroups -A -o wide 2>&1
    echo "==== operator logs"
    kubectl -n "$OPERATOR_NS" logs "deployment/$RELEASE" --all-containers --tail=300 2>&1
    kubectl -n "$OPERATOR_NS" logs "deployment/$RELEASE" --all-containers --previous --tail=100 2>/dev/null
    log "---- end of diagnostics ----"
}
