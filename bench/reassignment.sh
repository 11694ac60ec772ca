#!/usr/bin/env bash
# What moving a partition costs (`make bench-reassignment`): a fresh 3-broker cluster on
# loopback, one RF=1 partition filled with FILL_MB MiB, moved with
# AlterPartitionReassignments (kafka-python's admin client, bench/reassignment.py) to a
# broker that lacks it, three times:
#
#   calibrate  no throttle, no other load: bytes/s a move reaches on this machine;
#   free       no throttle, while runnel-bench produces acks=all at LOAD_RATE records/s
#              to an RF=3 topic: the move's bytes/s and the producer's p99;
#   throttled  leader and follower throttles of THROTTLE bytes/s on every broker, the
#              same load: the move's bytes/s and the producer's p99.
#
# plus a baseline: the same load with no move, for BASELINE seconds. The producer runs as
# long as the move is expected to (the calibrated time for `free`, FILL_MB / THROTTLE for
# `throttled`), started together with it. Each move copies the whole partition (the old
# replica's data is deleted once the move completes), so a run writes about
# 4 x FILL_MB MiB plus the load; every broker's data is deleted on exit.
#
# Environment: FILL_MB (128), THROTTLE (10485760 bytes/s), LOAD_RATE (500 records/s of
# 1 KiB), BASELINE (10 s), PORT (29692: brokers 29692-29694, quorum +100, metrics +200),
# OUT (target/bench-reassignment), PYTHON (.venv/bin/python),
# RUNNEL_BROKER_BIN / RUNNEL_BENCH_BIN (else a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
FILL_MB=${FILL_MB:-128}
THROTTLE=${THROTTLE:-10485760}
LOAD_RATE=${LOAD_RATE:-500}
BASELINE=${BASELINE:-10}
PORT=${PORT:-29692}
OUT=${OUT:-$TARGET/bench-reassignment}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

die() { echo "reassignment.sh: $*" >&2; exit 1; }

((FILL_MB >= 1 && FILL_MB <= 256)) || die "FILL_MB must be from 1 to 256 (a run writes about 4 x FILL_MB MiB)"
[[ -x $PYTHON ]] || die "$PYTHON is missing: run make test-deps (kafka-python)"
if [[ -z ${RUNNEL_BROKER_BIN:-} || -z ${RUNNEL_BENCH_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release -p runnel-broker -p runnel-bench)
fi
BROKER=${RUNNEL_BROKER_BIN:-$TARGET/release/runnel-broker}
BENCH=${RUNNEL_BENCH_BIN:-$TARGET/release/runnel-bench}
for bin in "$BROKER" "$BENCH"; do [[ -x $bin ]] || die "$bin is not an executable"; done

# shellcheck source=bench/brokers.sh
source "$ROOT/bench/brokers.sh"
KAFKA_PORT=$PORT
CONTROLLER_PORT=$((PORT + 100))
METRICS_PORT=$((PORT + 200))
BROKERS_DIR=$OUT/brokers
BROKER_ARGS=()
brokers_prepare "$OUT"
RESULTS=$OUT/results.tsv

echo "== starting a $NODES-broker cluster on 127.0.0.1:$KAFKA_PORT.. (logs in $BROKERS_DIR)"
cluster_start
BOOTSTRAP=$(cluster_bootstrap)
admin() { "$PYTHON" "$ROOT/bench/reassignment.py" "$1" --bootstrap "$BOOTSTRAP" "${@:2}"; }

echo "== filling moved-0 with $FILL_MB MiB"
src=$(admin create --topic moved | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["replicas"][0])')
"$BENCH" --bootstrap "127.0.0.1:$((KAFKA_PORT + src))" --topic moved --partitions 1 \
    --record-size 65536 --batch-size 524288 --acks 1 --producers 1 --consumers 0 \
    --records $((FILL_MB * 16)) --json >"$OUT/fill.json" || die "filling the partition failed"
"$BENCH" --bootstrap "127.0.0.1:$KAFKA_PORT" --topic load --partitions 3 --replication-factor 3 \
    --create-topic --acks all --producers 1 --consumers 0 --records 10 --json >/dev/null \
    || die "creating the load topic failed"

load=(--bootstrap "127.0.0.1:$KAFKA_PORT" --topic load --partitions 3 --record-size 1024
    --acks all --producers 1 --consumers 0 --rate "$LOAD_RATE" --json)
printf 'run\tmove_seconds\tmove_bytes\tmove_mb_per_sec\tproduce_p50_ms\tproduce_p99_ms\tproduce_errors\n' >"$RESULTS"

# row RUN MOVE_JSON LOAD_JSON: one results line (either JSON may be "-").
row() {
    "$PYTHON" - "$@" >>"$RESULTS" <<'PY'
import json, sys
run, move, load = sys.argv[1:4]
m = json.load(open(move)) if move != "-" else {}
vals = [m.get("seconds", ""), m.get("bytes", ""),
        round(m["bytes_per_sec"] / 2**20, 1) if m else ""]
if load != "-":
    r = json.load(open(load))
    lat = r["produce"]["latency_ms"] or {}
    vals += [lat.get("p50", ""), lat.get("p99", ""), r["error_total"] + (1 if r["timed_out"] else 0)]
else:
    vals += ["", "", ""]
print("\t".join(str(x) for x in [run] + vals))
PY
    tail -n1 "$RESULTS" | awk -F'\t' '{ printf "   %-10s move %s s, %s bytes, %s MB/s; produce p50 %s ms, p99 %s ms, errors %s\n",
        $1, $2, $3, $4, $5, $6, $7 }'
}

# move_with_load RUN TO SECONDS: the move and the load together; the load lasts SECONDS.
move_with_load() {
    local run=$1 to=$2 seconds=$3 pid
    "$BENCH" "${load[@]}" --duration "$seconds" >"$OUT/$run-load.json" &
    pid=$!
    admin move --topic moved --to "$to" >"$OUT/$run-move.json" || die "the $run move failed"
    wait "$pid" || die "the load during the $run move failed"
    row "$run" "$OUT/$run-move.json" "$OUT/$run-load.json"
}

echo "== baseline: acks=all load at $LOAD_RATE records/s for $BASELINE s, no move"
"$BENCH" "${load[@]}" --duration "$BASELINE" >"$OUT/baseline-load.json" || die "the baseline load failed"
row baseline - "$OUT/baseline-load.json"

a=$(((src + 1) % NODES)); b=$(((src + 2) % NODES))
echo "== calibrate: move $src -> $a, no throttle, no load"
admin move --topic moved --to "$a" >"$OUT/calibrate-move.json" || die "the calibration move failed"
row calibrate "$OUT/calibrate-move.json" -
free_seconds=$("$PYTHON" -c 'import json, math, sys; print(max(3, math.ceil(json.load(open(sys.argv[1]))["seconds"])))' "$OUT/calibrate-move.json")

echo "== free: move $a -> $b, no throttle, with the load for $free_seconds s"
move_with_load free "$b" "$free_seconds"

echo "== throttled: $THROTTLE bytes/s on every broker; move $b -> $src with the load"
admin throttle --rate "$THROTTLE" >/dev/null
throttled_seconds=$("$PYTHON" -c 'import math, sys; print(max(3, math.ceil(int(sys.argv[1]) * 2**20 / int(sys.argv[2]))))' "$FILL_MB" "$THROTTLE")
move_with_load throttled "$src" "$throttled_seconds"
throttled_bytes=$(metric_sum $((METRICS_PORT + b)) runnel_replication_throttled_bytes_total 'direction="leader"')
admin throttle --rate none >/dev/null

echo "== results ($RESULTS); the throttled move's leader counted $throttled_bytes throttled bytes"
column -t -s $'\t' "$RESULTS"
echo "== reports and broker logs under $OUT; the brokers' data is deleted on exit"
