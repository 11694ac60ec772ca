#!/usr/bin/env bash
# Three runnel-brokers on loopback that form one cluster (node ids 0, 1, 2, all three voters
# of the metadata quorum), until Ctrl-C. Used by `make cluster`.
#
#   scripts/cluster.sh                        # Kafka on 127.0.0.1:19092, :19093, :19094
#   scripts/cluster.sh --fresh                # the same, on empty data directories
#   scripts/cluster.sh -- CMD [ARGS...]       # runs CMD once the cluster serves, then stops it
#   scripts/cluster.sh stop                   # stops brokers left over from a killed run
#
# Options:
#   --data-dir DIR         where node-<i>/ (data), node-<i>.log and node-<i>.pid go (./data/cluster)
#   --port PORT            Kafka listener of node 0; node i listens on PORT+i (19092)
#   --controller-port PORT metadata quorum (gRPC) of node 0; node i on PORT+i (19192)
#   --cluster-id ID        the cluster id the brokers agree on (runnel-local)
#   --fresh                removes the nodes' data directories and logs first
#
# Each broker logs to DIR/node-<i>.log (appended to; the terminal only says what
# happens). The cluster is ready once every broker logs "runnel-broker is serving", which
# it does after registering with the quorum: so the script keeps the broker's server
# module at info whatever RUNNEL_LOG says. Ctrl-C (or SIGTERM) sends SIGTERM to every
# broker, waits for each (SIGKILL after 60 s) and prints the exit statuses; the script
# exits 0 only if all were 0. A broker that exits on its own is reported and the others go
# on. With CMD, the cluster stops when CMD ends and the script exits with CMD's status;
# CMD gets CLUSTER_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 and the
# brokers' process ids in the same order in CLUSTER_PIDS.
#
# A broker of an earlier run that is still alive (its pid file names a live runnel-broker)
# or anything listening on one of the six ports makes the script refuse to start, so it
# never talks to a process it did not start; `stop` ends such leftovers.
#
# Environment: RUNNEL_BROKER_BIN (a broker binary; otherwise a release build of this
# checkout), RUNNEL_LOG (the brokers' log filter, default info).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
NODES=3
STOP_WAIT=60
READY_WAIT=120

DATA=./data/cluster
PORT=19092
CONTROLLER_PORT=19192
CLUSTER_ID=runnel-local
FRESH=0
ACTION=run
COMMAND=()

say() { echo "cluster: $*"; }
die() { echo "cluster: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_port() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 + NODES - 1 <= 65535)); }

while (($#)); do
    case $1 in
        stop) ACTION=stop; shift ;;
        --data-dir) DATA=${2:?--data-dir needs a directory}; shift 2 ;;
        --port) PORT=${2:?--port needs a port}; shift 2 ;;
        --controller-port) CONTROLLER_PORT=${2:?--controller-port needs a port}; shift 2 ;;
        --cluster-id) CLUSTER_ID=${2:?--cluster-id needs an id}; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --) shift; COMMAND=("$@"); break ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
is_port "$PORT" || die "--port $PORT is not a port (node $((NODES - 1)) listens on PORT+$((NODES - 1)))"
is_port "$CONTROLLER_PORT" || die "--controller-port $CONTROLLER_PORT is not a port"
if ((CONTROLLER_PORT + NODES > PORT && PORT + NODES > CONTROLLER_PORT)); then
    die "the Kafka ports $PORT.. and the controller ports $CONTROLLER_PORT.. overlap"
fi
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)

pid_file() { echo "$DATA/node-$1.pid"; }
log_file() { echo "$DATA/node-$1.log"; }

# leftover NODE: prints the pid of that node's runnel-broker from an earlier run, if one
# is alive: its pid file names a process whose command line is runnel-broker with this
# node's data directory.
leftover() {
    local file pid cmdline
    file=$(pid_file "$1")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ $cmdline == *runnel-broker*"--data-dir $DATA/node-$1 "* ]] || return 1
    echo "$pid"
}

if [[ $ACTION == stop ]]; then
    left=()
    for ((i = 0; i < NODES; i++)); do
        pid=$(leftover "$i") || continue
        say "stopping node $i left over from an earlier run (pid $pid): SIGTERM"
        kill -TERM "$pid" 2>/dev/null || true
        left+=("$pid")
    done
    deadline=$((SECONDS + STOP_WAIT))
    for pid in "${left[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not exit within ${STOP_WAIT} s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < NODES; i++)); do
        leftover "$i" >/dev/null || rm -f "$(pid_file "$i")"
    done
    say "stopped ${#left[@]} leftover broker(s) under $DATA"
    exit 0
fi

for ((i = 0; i < NODES; i++)); do
    if pid=$(leftover "$i"); then
        die "node $i of an earlier run is still running (pid $pid, data $DATA/node-$i): stop it with Ctrl-C in its terminal or \`$0 stop${DATA:+ --data-dir $DATA}\`"
    fi
done
for ((i = 0; i < NODES; i++)); do
    for port in $((PORT + i)) $((CONTROLLER_PORT + i)); do
        ! port_open "$port" || die "127.0.0.1:$port is already in use by another process (see --port, --controller-port)"
    done
done

if [[ -n ${RUNNEL_BROKER_BIN:-} ]]; then
    BIN=$RUNNEL_BROKER_BIN
else
    say "building runnel-broker (release)"
    (cd "$ROOT" && cargo build --release -p runnel-broker)
    BIN=$TARGET/release/runnel-broker
fi
[[ -x $BIN ]] || die "$BIN is not an executable runnel-broker"
say "broker binary $BIN"

if ((FRESH)); then
    for ((i = 0; i < NODES; i++)); do
        rm -rf "${DATA:?}/node-$i" "$(log_file "$i")" "$(pid_file "$i")"
    done
fi

voters=""
bootstrap=""
for ((i = 0; i < NODES; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$((CONTROLLER_PORT + i))"
    bootstrap+="${bootstrap:+,}127.0.0.1:$((PORT + i))"
done
# The readiness check below reads the server module's info line.
log_filter="${RUNNEL_LOG:-info},runnel_broker::server=info"

pids=()
log_starts=()
reported=()
statuses=()

# stop_all: SIGTERM to every broker still running, then waits for each and reports.
stop_all() {
    local i pid status deadline
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if [[ -z ${reported[i]} ]]; then kill -TERM "${pids[i]}" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + STOP_WAIT))
    for ((i = 0; i < ${#pids[@]}; i++)); do
        [[ -z ${reported[i]} ]] || continue
        pid=${pids[i]}
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "node $i (pid $pid) did not exit within ${STOP_WAIT} s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        status=0
        wait "$pid" || status=$?
        report "$i" "$status"
    done
}

# report NODE STATUS: says how a broker ended, once.
report() {
    reported[$1]=1
    statuses[$1]=$2
    rm -f "$(pid_file "$1")"
    if (($2 == 0)); then
        say "node $1 (pid ${pids[$1]}) exited with status 0"
    else
        say "node $1 (pid ${pids[$1]}) exited with status $2; see $(log_file "$1")"
    fi
}

# An error or a signal stops every broker not reported yet (stop_all skips the others).
cleanup() {
    trap - EXIT INT TERM
    if ((${#pids[@]})); then stop_all; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ((i = 0; i < NODES; i++)); do
    mkdir -p "$DATA/node-$i"
    log=$(log_file "$i")
    log_starts[i]=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
    args=(--node-id "$i" --cluster-id "$CLUSTER_ID"
        --listen "127.0.0.1:$((PORT + i))" --advertised-listener "127.0.0.1:$((PORT + i))"
        --controller-listen "127.0.0.1:$((CONTROLLER_PORT + i))" --controller-quorum-voters "$voters"
        --data-dir "$DATA/node-$i")
    echo "===== $(date -u +%FT%TZ) start: $BIN ${args[*]}" >>"$log"
    RUNNEL_LOG=$log_filter NO_COLOR=1 "$BIN" "${args[@]}" </dev/null >>"$log" 2>&1 &
    pids[i]=$!
    reported[i]=""
    echo "${pids[i]}" >"$(pid_file "$i")"
done

# Ready when every broker says it serves (after registering with the quorum).
deadline=$((SECONDS + READY_WAIT))
for ((i = 0; i < NODES; i++)); do
    until grep -q "runnel-broker is serving" <(tail -c "+${log_starts[i]}" "$(log_file "$i")"); do
        if ! kill -0 "${pids[i]}" 2>/dev/null; then
            tail -n 20 "$(log_file "$i")" >&2
            die "node $i exited during start-up; see $(log_file "$i")"
        fi
        ((SECONDS < deadline)) || die "node $i did not serve within ${READY_WAIT} s; see $(log_file "$i")"
        sleep 0.2
    done
done

for ((i = 0; i < NODES; i++)); do
    say "node $i  kafka 127.0.0.1:$((PORT + i))  controller 127.0.0.1:$((CONTROLLER_PORT + i))  pid ${pids[i]}  log $(log_file "$i")"
done
say "ready: cluster id $CLUSTER_ID, bootstrap $bootstrap, data under $DATA"

if ((${#COMMAND[@]})); then
    status=0
    CLUSTER_BOOTSTRAP=$bootstrap CLUSTER_PIDS=$(IFS=,; echo "${pids[*]}") "${COMMAND[@]}" || status=$?
    stop_all
    exit "$status"
fi

say "Ctrl-C stops the cluster"
stopping=0
trap 'stopping=1' INT TERM
while ((!stopping)); do
    running=0
    for ((i = 0; i < NODES; i++)); do
        [[ -z ${reported[i]} ]] || continue
        if kill -0 "${pids[i]}" 2>/dev/null; then
            running=$((running + 1))
        else
            status=0
            wait "${pids[i]}" || status=$?
            report "$i" "$status"
        fi
    done
    ((running)) || break
    # Returns when a broker exits or a signal arrives.
    alive=()
    for ((i = 0; i < NODES; i++)); do
        [[ -n ${reported[i]} ]] || alive+=("${pids[i]}")
    done
    wait -n "${alive[@]}" 2>/dev/null || true
done
((stopping)) && say "stopping: SIGTERM to every broker"
stop_all
# 0 only if every broker exited with 0.
for ((i = 0; i < NODES; i++)); do
    ((${statuses[i]:-1} == 0)) || exit 1
done
