#!/usr/bin/env bash
# Leader failover under acks=all (`make bench-failover`): a fresh 3-broker cluster on
# loopback, one topic of PARTITIONS partitions with 3 replicas, and runnel-failover
# producing to partition 0 without pause (idempotent, acks=all). KILLS times:
#
#   1. ask the bench to wait (at most WHOLE_WAIT s) until every partition's ISR is its whole
#      replica set (Metadata's isr_nodes) and the partition's leader acknowledges (it also
#      says which node Metadata names as the controller);
#   2. kill -9 that leader, and tell the bench straight after ("killed N");
#   3. the bench answers with the time from then to the first acknowledged produce sent
#      after it (or a timeout after RECOVERY_TIMEOUT s), and the time until Metadata named
#      a new leader;
#   4. restart the killed broker on its data directory and wait until it serves.
#
# Prints p50 / p90 / max over the kills (and split by whether the killed leader was also
# the controller) and writes kills.tsv, report.json and the brokers' logs under OUT. A cycle whose cluster was not whole before the kill is marked in
# kills.tsv (whole=timeout) and still counted.
#
# Broker settings are the defaults (heartbeat 0.5 s, session 9 s) unless SESSION_MS (the
# brokers' --broker-session-timeout-ms) is set; HEARTBEAT_MS (--broker-heartbeat-interval-ms)
# then defaults to a third of it. E.g. SESSION_MS=3000 HEARTBEAT_MS=500 bench/failover.sh.
#
# Environment: KILLS (20), PARTITIONS (3), SESSION_MS, HEARTBEAT_MS, WHOLE_WAIT (120),
# RECOVERY_TIMEOUT (60), RETRY_BACKOFF_MS (20), PORT (29692: Kafka 29692-29694, quorum +100,
# metrics +200), OUT (target/bench-failover/<default|session-MS>),
# RUNNEL_BROKER_BIN / RUNNEL_FAILOVER_BIN (else a release build of this checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
KILLS=${KILLS:-20}
PARTITIONS=${PARTITIONS:-3}
SESSION_MS=${SESSION_MS:-}
HEARTBEAT_MS=${HEARTBEAT_MS:-}
WHOLE_WAIT=${WHOLE_WAIT:-120}
RECOVERY_TIMEOUT=${RECOVERY_TIMEOUT:-60}
RETRY_BACKOFF_MS=${RETRY_BACKOFF_MS:-20}
PORT=${PORT:-29692}

die() { echo "failover.sh: $*" >&2; exit 1; }

if [[ -z ${RUNNEL_BROKER_BIN:-} || -z ${RUNNEL_FAILOVER_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release -p runnel-broker -p runnel-bench)
fi
BROKER=${RUNNEL_BROKER_BIN:-$TARGET/release/runnel-broker}
FAILOVER=${RUNNEL_FAILOVER_BIN:-$TARGET/release/runnel-failover}
for bin in "$BROKER" "$FAILOVER"; do [[ -x $bin ]] || die "$bin is not an executable"; done

# shellcheck source=bench/brokers.sh
source "$ROOT/bench/brokers.sh"
KAFKA_PORT=$PORT
CONTROLLER_PORT=$((PORT + 100))
METRICS_PORT=$((PORT + 200))
BROKER_ARGS=()
label=default
if [[ -n $SESSION_MS ]]; then
    HEARTBEAT_MS=${HEARTBEAT_MS:-$((SESSION_MS / 3))}
    BROKER_ARGS=(--broker-session-timeout-ms "$SESSION_MS" --broker-heartbeat-interval-ms "$HEARTBEAT_MS")
    label=session-$SESSION_MS
elif [[ -n $HEARTBEAT_MS ]]; then
    die "HEARTBEAT_MS needs SESSION_MS"
fi
OUT=${OUT:-$TARGET/bench-failover/$label}
BROKERS_DIR=$OUT/brokers

brokers_prepare "$OUT"
KILLS_TSV=$OUT/kills.tsv

echo "== starting a $NODES-broker cluster on 127.0.0.1:$KAFKA_PORT.. (${BROKER_ARGS[*]:-default sessions}; logs in $BROKERS_DIR)"
cluster_start

coproc BENCH_IO {
    exec "$FAILOVER" --bootstrap "$(cluster_bootstrap)" --topic failover --create-topic \
        --partitions "$PARTITIONS" --replication-factor 3 --partition 0 \
        --recovery-timeout "$RECOVERY_TIMEOUT" --retry-backoff-ms "$RETRY_BACKOFF_MS" --json \
        2>"$OUT/runnel-failover.log"
}
BENCH_PID=$BENCH_IO_PID
# Copies of the coproc's descriptors: bash closes its own as soon as the bench exits,
# which can be before its last line (the report) has been read.
exec {to_bench}>&"${BENCH_IO[1]}" {from_bench}<&"${BENCH_IO[0]}"

# answer SECS: the bench's next line, or dies after SECS.
answer() {
    local line
    IFS= read -r -t "$1" -u "$from_bench" line || die "runnel-failover did not answer within $1 s (see $OUT/runnel-failover.log)"
    echo "$line"
}
# field LINE KEY: the value of KEY=value in LINE.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

ready=$(answer 120)
[[ $ready == ready* ]] || die "runnel-failover did not start: $ready"
echo "== $ready"
printf 'kill\tkilled_at\tnode\tcontroller\twhole\twhole_waited_ms\trecovered_ms\telected_ms\tnew_leader\tfailed_attempts\n' >"$KILLS_TSV"

for kill in $(seq 1 "$KILLS"); do
    printf 'whole %s\n' "$WHOLE_WAIT" >&"$to_bench"
    whole=$(answer $((WHOLE_WAIT + 60)))
    leader=$(field "$whole" leader)
    if ! [[ $leader =~ ^[0-9]+$ ]] || ((leader >= NODES)); then
        die "no leader to kill before kill $kill: $whole"
    fi
    pid=${BROKER_PIDS[$leader]}
    # The bench's clock starts when it reads the line: write it right after the signal.
    kill -KILL "$pid"
    printf 'killed %s\n' "$leader" >&"$to_bench"
    killed_at=$(date -u +%FT%T.%3NZ)
    wait "$pid" 2>/dev/null || true
    unset "BROKER_PIDS[$leader]"
    result=$(answer $((RECOVERY_TIMEOUT + 60)))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kill" "$killed_at" "$leader" "$(field "$whole" controller)" \
        "$(awk '{ print $2 }' <<<"$whole")" \
        "$(field "$whole" waited_ms)" "$(field "$result" ms)" "$(field "$result" elected_ms)" \
        "$(field "$result" new_leader)" "$(field "$result" failed_attempts)" >>"$KILLS_TSV"
    echo "   kill $kill of $KILLS: node $leader, controller $(field "$whole" controller) (${whole%% leader=*} after $(field "$whole" waited_ms) ms): $result"
    node_start "$leader"
    broker_wait "$leader"
done

printf 'quit\n' >&"$to_bench"
report=$(answer 60)
wait "$BENCH_PID" || die "runnel-failover failed (see $OUT/runnel-failover.log)"
echo "$report" >"$OUT/report.json"

echo "== failover ($label): kill -9 of partition 0's leader → first acknowledged acks=all produce"
python3 - "$OUT/report.json" "$KILLS_TSV" <<'PY'
import csv, json, sys
r = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
not_whole = sum(1 for row in rows if row["whole"] != "ok")
def line(name, s):
    if not s:
        return f"{name:<32} none"
    return (f"{name:<32} p50 {s['p50'] / 1000:6.2f} s  p90 {s['p90'] / 1000:6.2f} s  "
            f"max {s['max'] / 1000:6.2f} s  min {s['min'] / 1000:6.2f} s  ({s['count']} kills)")
print(f"kills {r['kills']}, without recovery within the timeout {r['timeouts']}, "
      f"cluster not whole before the kill {not_whole}")
print(line("kill → first acks=all ack", r["recovered_ms"]))
# The same, split by whether the killed leader was also the metadata quorum's leader (the
# controller Metadata named before the kill): then a new controller must be elected first.
for name, pick in (("  leader only", False), ("  leader and controller", True)):
    ms = sorted(float(x["recovered_ms"]) for x in rows
                if x["recovered_ms"] not in ("", "-") and (x["node"] == x["controller"]) == pick)
    if ms:
        mid = len(ms) // 2
        p50 = ms[mid] if len(ms) % 2 else (ms[mid - 1] + ms[mid]) / 2
        print(f"{name:<32} p50 {p50 / 1000:6.2f} s  max {ms[-1] / 1000:6.2f} s  ({len(ms)} kills)")
print(line("kill → new leader in Metadata", r["elected_ms"]))
print(f"records acknowledged {r['records_acked']}; errors seen (retried): "
      + (", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"))
PY
echo "== per kill: $KILLS_TSV; report: $OUT/report.json; logs under $OUT"
