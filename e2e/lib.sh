# Helpers of e2e/run.sh: logging, bounded waits, Jobs, and the failure dump.
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

# condition_true KIND NAME CONDITION: succeeds when the object's condition is True;
# prints the conditions otherwise.
condition_true() {
    local status
    status="$(kubectl -n "$NS" get "$1" "$2" -o jsonpath="{.status.conditions[?(@.type==\"$3\")].status}" 2>&1)" || {
        echo "$status"
        return 1
    }
    if [ "$status" = True ]; then
        return 0
    fi
    kubectl -n "$NS" get "$1" "$2" -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}: {.message}); {end}' 2>&1
    return 1
}

# jsonpath_is KIND NAME JSONPATH WANT: succeeds when the field equals WANT; prints it otherwise.
jsonpath_is() {
    local have
    have="$(kubectl -n "$NS" get "$1" "$2" -o jsonpath="$3" 2>&1)" || true
    [ "$have" = "$4" ] && return 0
    echo "$3 is '${have}', want '$4'"
    return 1
}

# run_client_job NAME TIMEOUT_S ARGS...: runs e2e/client/client.py ARGS as a Job in $NS
# and waits until it completes or fails. The Job's log is left in $WORK/NAME.log.
run_client_job() {
    local name="$1" timeout="$2"
    shift 2
    local args="" arg
    for arg in "$@"; do
        args+="            - \"$arg\""$'\n'
    done
    local acked_volume="" acked_mount=""
    if [ -n "${CLIENT_ACKED_CONFIGMAP:-}" ]; then
        acked_mount="          volumeMounts:
            - {name: acked, mountPath: /acked, readOnly: true}"
        acked_volume="      volumes:
        - name: acked
          configMap: {name: $CLIENT_ACKED_CONFIGMAP}"
    fi
    kubectl -n "$NS" delete job "$name" --ignore-not-found --wait=true >/dev/null
    kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: $name
  labels: {app.kubernetes.io/part-of: runnel-e2e}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: $timeout
  template:
    metadata:
      labels: {app.kubernetes.io/part-of: runnel-e2e}
    spec:
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: client
          image: $CLIENT_IMAGE
          imagePullPolicy: IfNotPresent
          env:
            - {name: BOOTSTRAP_SERVERS, value: "$BOOTSTRAP"}
            - {name: CLIENT_TIMEOUT_S, value: "$((timeout - 30))"}
          args:
$args          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
$acked_mount
$acked_volume
YAML
    wait_for "Job $name ($*) to finish" "$timeout" job_finished "$name"
    kubectl -n "$NS" logs "job/$name" >"$WORK/$name.log" 2>&1 || true
    if [ "$(kubectl -n "$NS" get job "$name" -o jsonpath='{.status.succeeded}')" != 1 ]; then
        sed 's/^/  | /' "$WORK/$name.log" >&2
        die "Job $name failed"
    fi
    grep -v '^ACK ' "$WORK/$name.log" | sed 's/^/  | /' >&2 || true
}

# job_finished NAME: succeeds once the Job succeeded or failed; prints its pod's state.
job_finished() {
    local succeeded failed
    succeeded="$(kubectl -n "$NS" get job "$1" -o jsonpath='{.status.succeeded}')"
    failed="$(kubectl -n "$NS" get job "$1" -o jsonpath='{.status.failed}')"
    if [ "${succeeded:-0}" -ge 1 ] || [ "${failed:-0}" -ge 1 ]; then
        return 0
    fi
    kubectl -n "$NS" get pods -l "job-name=$1" --no-headers 2>&1 | awk '{print $1, $3}'
    return 1
}

# dump: everything needed to see why a run failed — objects, events and logs.
dump() {
    log "---- diagnostics (cluster $CLUSTER) ----"
    local ns
    for ns in "$OPERATOR_NS" "$NS"; do
        echo "==== namespace $ns: objects"
        kubectl -n "$ns" get all,configmaps,pvc,pdb,leases -o wide 2>&1
        echo "==== namespace $ns: events"
        kubectl -n "$ns" get events --sort-by=.lastTimestamp 2>&1 | tail -n 60
    done
    echo "==== Runnel custom resources"
    kubectl -n "$NS" get kafkaclusters,topics,consumergroups -o yaml 2>&1
    echo "==== pods"
    kubectl -n "$NS" describe pods 2>&1 | tail -n 200
    kubectl -n "$OPERATOR_NS" describe pods 2>&1 | tail -n 80
    echo "==== operator logs"
    kubectl -n "$OPERATOR_NS" logs deployment/runnel --all-containers --tail=300 2>&1
    kubectl -n "$OPERATOR_NS" logs deployment/runnel --all-containers --previous --tail=100 2>/dev/null
    local pod
    for pod in $(kubectl -n "$NS" get pods -o name 2>/dev/null); do
        echo "==== logs of $pod"
        kubectl -n "$NS" logs "$pod" --all-containers --tail=200 2>&1
        kubectl -n "$NS" logs "$pod" --all-containers --previous --tail=100 2>/dev/null
    done
    log "---- end of diagnostics ----"
}
