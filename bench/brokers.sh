# shellcheck shell=bash
# Functions that start, kill and restart runnel-brokers on loopback for the replication
# and failover benches; sourced by bench/replication.sh, bench/failover.sh and bench/ab.sh
# (bench/compare.sh takes only free_port, port_open and cpu_seconds). Unlike
# scripts/cluster.sh (a cluster to use by hand), these take extra broker flags (session
# timeouts, retention, a metrics port) and restart a single node in place.
#
# Before calling anything, set:
#   BROKER       the runnel-broker binary
#   BROKERS_DIR  where node-<i>/ (data), node-<i>.log and single/ go
#   BROKER_ARGS  (array) flags added to every broker's command line
#
# Cluster nodes i = 0..NODES-1 listen on KAFKA_PORT+i, serve the quorum on
# CONTROLLER_PORT+i and /metrics on METRICS_PORT+i; all are voters. A standalone broker
# (no quorum) is `single`. Every process started is in BROKER_PIDS (by name: 0, 1, 2,
# single), and brokers_stop_all, which the caller traps on EXIT, stops what is left and
# deletes the brokers' data directories (KEEP_DATA=1 keeps them).

NODES=${NODES:-3}
TICKS=$(getconf CLK_TCK)

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# cpu_seconds PID: the process's utime+stime in seconds (fields 14 and 15 of
# /proc/PID/stat, counted after the "comm" field, which may hold spaces).
cpu_seconds() {
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    awk -v t="$TICKS" '{ printf "%.2f", ($12 + $13) / t }' <<<"$rest"
}
READY_WAIT=${READY_WAIT:-120}
declare -A BROKER_PIDS=()
declare -A BROKER_LOG_START=()

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# brokers_check_ports PORT...: fails if any is in use (we never talk to a process we did
# not start).
brokers_check_ports() {
    local port
    for port in "$@"; do
        if port_open "$port"; then
            echo "127.0.0.1:$port is already in use by another process" >&2
            return 1
        fi
    done
}

# brokers_prepare OUT [PORT...]: checks that the cluster's ports (and the extra PORTs) are
# free, empties OUT, creates it and BROKERS_DIR, and stops every broker on EXIT.
brokers_prepare() {
    local out=$1 i
    shift
    local ports=("$@")
    for ((i = 0; i < NODES; i++)); do
        ports+=($((KAFKA_PORT + i)) $((CONTROLLER_PORT + i)) $((METRICS_PORT + i)))
    done
    brokers_check_ports "${ports[@]}" || exit 1
    rm -rf "$out"
    mkdir -p "$out" "$BROKERS_DIR"
    trap brokers_stop_all EXIT
}

# cluster_start: starts every node, then waits until each serves.
cluster_start() {
    local i
    for ((i = 0; i < NODES; i++)); do node_start "$i"; done
    for ((i = 0; i < NODES; i++)); do broker_wait "$i"; done
}

# cluster_bootstrap: 127.0.0.1:KAFKA_PORT,... for every node.
cluster_bootstrap() {
    local i out=""
    for ((i = 0; i < NODES; i++)); do out+="${out:+,}127.0.0.1:$((KAFKA_PORT + i))"; done
    echo "$out"
}

# broker_start NAME ARGS...: starts a broker logging to BROKERS_DIR/NAME.log (appended).
broker_start() {
    local name=$1 log="$BROKERS_DIR/$1.log"
    shift
    BROKER_LOG_START[$name]=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
    echo "===== $(date -u +%FT%TZ) start: $BROKER $*" >>"$log"
    RUNNEL_LOG=${RUNNEL_LOG:-warn},runnel_broker::server=info NO_COLOR=1 \
        "$BROKER" "$@" </dev/null >>"$log" 2>&1 &
    BROKER_PIDS[$name]=$!
}

# node_start I: starts cluster node I on its data directory (kept across restarts).
node_start() {
    local i=$1 voters="" k
    for ((k = 0; k < NODES; k++)); do voters+="${voters:+,}$k@127.0.0.1:$((CONTROLLER_PORT + k))"; done
    mkdir -p "$BROKERS_DIR/node-$i"
    broker_start "$i" --node-id "$i" --cluster-id runnel-bench \
        --listen "127.0.0.1:$((KAFKA_PORT + i))" --advertised-listener "127.0.0.1:$((KAFKA_PORT + i))" \
        --controller-listen "127.0.0.1:$((CONTROLLER_PORT + i))" --controller-quorum-voters "$voters" \
        --metrics-listen "127.0.0.1:$((METRICS_PORT + i))" \
        --data-dir "$BROKERS_DIR/node-$i" "${BROKER_ARGS[@]}"
}

# single_start PORT METRICS_PORT: a standalone broker with data in BROKERS_DIR/single.
single_start() {
    mkdir -p "$BROKERS_DIR/single"
    broker_start single --listen "127.0.0.1:$1" --metrics-listen "127.0.0.1:$2" \
        --data-dir "$BROKERS_DIR/single" "${BROKER_ARGS[@]}"
}

# broker_wait NAME: until the broker logs that it serves (after registering with the
# quorum), at most READY_WAIT seconds; fails if it exits.
broker_wait() {
    local name=$1 log="$BROKERS_DIR/$1.log" deadline=$((SECONDS + READY_WAIT))
    until tail -c "+${BROKER_LOG_START[$name]}" "$log" | grep -q "runnel-broker is serving"; do
        if ! kill -0 "${BROKER_PIDS[$name]}" 2>/dev/null; then
            tail -n 20 "$log" >&2
            echo "broker $name exited during start-up; see $log" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "broker $name did not serve within ${READY_WAIT} s; see $log" >&2
            return 1
        fi
        sleep 0.1
    done
}

# broker_kill9 NAME: SIGKILL, and reaps it.
broker_kill9() {
    local pid=${BROKER_PIDS[$1]}
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "BROKER_PIDS[$1]"
}

# brokers_stop_all: SIGTERM to every broker started here, SIGKILL after 60 s.
brokers_stop_all() {
    local name pid deadline=$((SECONDS + 60))
    for name in "${!BROKER_PIDS[@]}"; do kill -TERM "${BROKER_PIDS[$name]}" 2>/dev/null || true; done
    for name in "${!BROKER_PIDS[@]}"; do
        pid=${BROKER_PIDS[$name]}
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BROKER_PIDS=()
    # A run writes gigabytes; only the logs are kept unless KEEP_DATA=1.
    [[ ${KEEP_DATA:-} == 1 ]] || rm -rf "$BROKERS_DIR"/node-* "$BROKERS_DIR/single"
}

# metric_sum PORT NAME [LABEL_FILTER]: the sum of a metric's samples on a broker's
# /metrics (lines starting with NAME, optionally containing LABEL_FILTER); 0 if absent.
metric_sum() {
    curl -fsS "http://127.0.0.1:$1/metrics" | awk -v name="$2" -v filter="${3:-}" '
        index($0, name) == 1 && (filter == "" || index($0, filter) > 0) {
            rest = substr($0, length(name) + 1)
            if (rest ~ /^[ {]/) sum += $NF
        }
        END { printf "%.0f\n", sum }'
}
