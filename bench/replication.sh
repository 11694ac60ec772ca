#!/usr/bin/env bash
# What replication costs, and how close a durable produce comes to the disk, measured in
# one run so the machine's noise hits every side alike (`make bench-replication`):
#
#   rf3   RF=3 acks=all produce to a 3-broker cluster on loopback (all on this machine);
#   rf1   RF=1 acks=all produce, the same load, to ONE standalone broker;
#   rf1a1 RF=1 acks=1, the same load, to the same broker: answered after the append, with
#         no fsync waited for. No acks=all design can beat it on this machine, so it bounds
#         what the disk targets below can reach (no target of its own);
#   disk  runnel-disk-ceiling in the standalone broker's data directory: write + fdatasync
#         rounds of the broker's own average bytes per fsync, measured from its /metrics
#         over the rf1 run just before (runnel_topic_bytes_in_total of the topic divided by
#         runnel_log_flush_duration_seconds_count: every group-commit round and every
#         periodic flush is one sample, so this is a lower bound of the bytes per acks=all
#         round), all in one file: the issue's reference;
#   diskp the same rounds spread over PARTITIONS files, written and fdatasynced in
#         parallel: the shape of the broker's own rounds (a segment file per partition),
#         reported beside the reference, with no target of its own.
#
# ROUNDS rounds alternate the order (odd: rf1a1, rf1, diskp, disk, rf3; even: rf3, rf1, disk,
# diskp, rf1a1). Prints the medians and the medians of the per-round ratios against the
# targets of issue 16:
# rf3 records/s ≥ 40 % of rf1's; rf1 MB/s ≥ 70 % of the disk's; rf1 produce p99 ≤ 3 x the
# disk round's p99. MB/s of rf1/rf3 counts record values (as runnel-bench reports),
# the disk's every byte written: the broker's batch headers (~1 % here) count against it.
# After each rf1 and rf3 run, the bytes the data directory's block device wrote per
# record-batch byte produced (/sys/class/block/DEV/stat over the run, every writer on that
# device counted, so on a quiet machine: the broker's own write amplification, zeros
# written ahead of segments included; empty where the device is not found).
# After each rf3 run the mean ISR size of the topic's partitions (from the leaders'
# runnel_partition_isr_size) is recorded: 3 means acks=all waited for three replicas.
# Every run also records how busy the machine's CPUs were over it (/proc/stat: 1 - idle and
# iowait over all time; every process counted, the bench's own load generator included).
#
# Brokers run with segments of SEGMENT_BYTES and retention of RETENTION_BYTES per
# partition, checked every 10 s, so rounds do not fill the disk; every run reuses its topic.
#
# Environment: ROUNDS (5), DURATION (15 s), WARMUP (3 s), PARTITIONS (8), RECORD_SIZE (1024),
# BATCH_SIZE (16384), PRODUCERS (1), MAX_IN_FLIGHT (5), DISK_MODE (overwrite|append),
# SEGMENT_BYTES (64 MiB), RETENTION_BYTES (128 MiB), PORT (29492: cluster 29492-29494,
# quorum +100, metrics +200, standalone +3 and metrics +203), OUT (target/bench-replication),
# RUNNEL_BROKER_BIN / RUNNEL_BENCH_BIN / RUNNEL_DISK_CEILING_BIN (else a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
PARTITIONS=${PARTITIONS:-8}
RECORD_SIZE=${RECORD_SIZE:-1024}
BATCH_SIZE=${BATCH_SIZE:-16384}
PRODUCERS=${PRODUCERS:-1}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-5}
DISK_MODE=${DISK_MODE:-overwrite}
SEGMENT_BYTES=${SEGMENT_BYTES:-67108864}
RETENTION_BYTES=${RETENTION_BYTES:-134217728}
PORT=${PORT:-29492}
OUT=${OUT:-$TARGET/bench-replication}

die() { echo "replication.sh: $*" >&2; exit 1; }

if [[ -z ${RUNNEL_BROKER_BIN:-} || -z ${RUNNEL_BENCH_BIN:-} || -z ${RUNNEL_DISK_CEILING_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release -p runnel-broker -p runnel-bench)
fi
BROKER=${RUNNEL_BROKER_BIN:-$TARGET/release/runnel-broker}
BENCH=${RUNNEL_BENCH_BIN:-$TARGET/release/runnel-bench}
DISK=${RUNNEL_DISK_CEILING_BIN:-$TARGET/release/runnel-disk-ceiling}
for bin in "$BROKER" "$BENCH" "$DISK"; do [[ -x $bin ]] || die "$bin is not an executable"; done

# shellcheck source=bench/brokers.sh
source "$ROOT/bench/brokers.sh"
KAFKA_PORT=$PORT
CONTROLLER_PORT=$((PORT + 100))
METRICS_PORT=$((PORT + 200))
SINGLE_PORT=$((PORT + NODES))
SINGLE_METRICS=$((METRICS_PORT + NODES))
BROKERS_DIR=$OUT/brokers
BROKER_ARGS=(--log-segment-bytes "$SEGMENT_BYTES" --log-retention-bytes "$RETENTION_BYTES"
    --log-retention-check-interval-ms 10000)

brokers_prepare "$OUT" "$SINGLE_PORT" "$SINGLE_METRICS"
RESULTS=$OUT/results.tsv

echo "== starting a $NODES-broker cluster on 127.0.0.1:$KAFKA_PORT.. and a standalone broker on 127.0.0.1:$SINGLE_PORT (logs in $BROKERS_DIR)"
single_start "$SINGLE_PORT" "$SINGLE_METRICS"
cluster_start
broker_wait single
# runnel-bench takes one bootstrap address and finds the leaders from there.
CLUSTER=127.0.0.1:$KAFKA_PORT

load=(--partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --batch-size "$BATCH_SIZE"
    --producers "$PRODUCERS" --consumers 0 --max-in-flight "$MAX_IN_FLIGHT"
    --duration "$DURATION" --warmup "$WARMUP" --create-topic --json)
printf 'round\tkind\trecords_per_sec\tmb_per_sec\tp50_ms\tp99_ms\terrors\tbytes_per_fsync\tmean_isr\tdisk_bytes_per_byte\tcpu_busy\n' >"$RESULTS"
BYTES_PER_FSYNC=""

# The block device under the brokers' data directories, for its written-sectors count.
DEV_STAT=""
dev_name=$(basename "$(findmnt -no SOURCE -T "$BROKERS_DIR" 2>/dev/null || true)")
[[ -n $dev_name && -r /sys/class/block/$dev_name/stat ]] && DEV_STAT=/sys/class/block/$dev_name/stat
# dev_written: bytes written to that device so far (empty without one).
dev_written() { [[ -z $DEV_STAT ]] || awk '{ printf "%.0f\n", $7 * 512 }' "$DEV_STAT"; }
# per_byte DEV0 DEV1 BYTES: device bytes written per produced byte, or empty.
per_byte() { [[ -z $1 || $3 -le 0 ]] || awk -v d=$(($2 - $1)) -v b="$3" 'BEGIN { printf "%.2f", d / b }'; }

# cpu_times: all CPU time and its idle + iowait part so far, in ticks (/proc/stat).
cpu_times() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat; }
# busy_run CMD...: runs CMD; then BUSY is the machine's busy share over it (empty if no
# time passed).
busy_run() {
    local before
    before=$(cpu_times)
    "$@" || return
    BUSY=$(cpu_times | awk -v a="$before" '{ split(a, x, " ")
        if ($1 > x[1]) printf "%.2f", 1 - ($2 - x[2]) / ($1 - x[1]) }')
}

# row ROUND KIND JSON BYTES_PER_FSYNC MEAN_ISR DISK_BYTES_PER_BYTE CPU_BUSY (each may be
# empty): one results line from a report.
row() {
    python3 - "$@" >>"$RESULTS" <<'PY'
import json, sys
rnd, kind, path = sys.argv[1:4]
extra = sys.argv[4:] + ["", "", "", ""]
r = json.load(open(path))
if kind in ("disk", "diskp"):
    lat = r["latency_ms"] or {}
    vals = [r["rounds_per_sec"], r["mb_per_sec"], lat.get("p50", ""), lat.get("p99", ""), 0]
else:
    p = r["produce"]
    lat = p["latency_ms"] or {}
    errors = r["error_total"] + (1 if r["timed_out"] else 0)
    vals = [p["throughput"]["records_per_sec"], p["throughput"]["mb_per_sec"],
            lat.get("p50", ""), lat.get("p99", ""), errors]
vals = [round(v, 3) if isinstance(v, float) else v for v in vals]
print("\t".join(str(x) for x in [rnd, kind] + vals + extra[:4]))
PY
    tail -n1 "$RESULTS" | awk -F'\t' '{ printf "   round %s %-5s: %9.0f %s  %7.1f MB/s  p50 %s ms  p99 %s ms  errors %s  bytes/fsync %s  mean ISR %s  disk bytes/byte %s  cpu busy %s\n",
        $1, $2, $3, ($2 ~ /^disk/ ? "rounds/s " : "records/s"), $4, $5, $6, $7, $8, $9, $10, $11 }'
}

run_rf1() {
    local json=$OUT/rf1-r$1.json bytes0 flushes0 bytes1 flushes1 dev0 dev1
    bytes0=$(metric_sum "$SINGLE_METRICS" runnel_topic_bytes_in_total 'topic="repl1"')
    flushes0=$(metric_sum "$SINGLE_METRICS" runnel_log_flush_duration_seconds_count)
    dev0=$(dev_written)
    busy_run "$BENCH" --bootstrap "127.0.0.1:$SINGLE_PORT" --topic repl1 --replication-factor 1 \
        "${load[@]}" --acks all >"$json" || die "the RF=1 run of round $1 failed"
    dev1=$(dev_written)
    bytes1=$(metric_sum "$SINGLE_METRICS" runnel_topic_bytes_in_total 'topic="repl1"')
    flushes1=$(metric_sum "$SINGLE_METRICS" runnel_log_flush_duration_seconds_count)
    ((flushes1 > flushes0)) || die "the standalone broker counted no fsync in round $1"
    BYTES_PER_FSYNC=$(((bytes1 - bytes0) / (flushes1 - flushes0)))
    row "$1" rf1 "$json" "$BYTES_PER_FSYNC" "" "$(per_byte "$dev0" "$dev1" $((bytes1 - bytes0)))" "$BUSY"
}

# The same load at acks=1 on a topic of its own on the standalone broker: nothing waits
# for the disk, so this is the most the producer and the broker move on this machine.
run_rf1a1() {
    local json=$OUT/rf1a1-r$1.json
    busy_run "$BENCH" --bootstrap "127.0.0.1:$SINGLE_PORT" --topic repl1a1 --replication-factor 1 \
        "${load[@]}" --acks 1 >"$json" || die "the RF=1 acks=1 run of round $1 failed"
    row "$1" rf1a1 "$json" "" "" "" "$BUSY"
}

run_disk() {
    local json=$OUT/disk-r$1.json
    [[ -n $BYTES_PER_FSYNC ]] || die "no bytes per fsync measured before the disk loop"
    busy_run "$DISK" --dir "$BROKERS_DIR/single" --round-bytes "$BYTES_PER_FSYNC" --mode "$DISK_MODE" \
        --duration "$DURATION" --warmup 1 --json >"$json" || die "the disk loop of round $1 failed"
    row "$1" disk "$json" "$BYTES_PER_FSYNC" "" "" "$BUSY"
}

run_diskp() {
    local json=$OUT/diskp-r$1.json
    busy_run "$DISK" --dir "$BROKERS_DIR/single" --round-bytes "$BYTES_PER_FSYNC" --mode "$DISK_MODE" \
        --files "$PARTITIONS" --duration "$DURATION" --warmup 1 --json >"$json" \
        || die "the disk loop over $PARTITIONS files of round $1 failed"
    row "$1" diskp "$json" "$BYTES_PER_FSYNC" "" "" "$BUSY"
}

# cluster_bytes_in: runnel_topic_bytes_in_total of the RF=3 topic over the brokers (each
# counts what it appended as the leader).
cluster_bytes_in() {
    local i sum=0
    for ((i = 0; i < NODES; i++)); do
        sum=$((sum + $(metric_sum $((METRICS_PORT + i)) runnel_topic_bytes_in_total 'topic="repl3"')))
    done
    echo "$sum"
}

run_rf3() {
    local json=$OUT/rf3-r$1.json isr=0 i bytes0 dev0
    bytes0=$(cluster_bytes_in)
    dev0=$(dev_written)
    busy_run "$BENCH" --bootstrap "$CLUSTER" --topic repl3 --replication-factor 3 "${load[@]}" \
        --acks all >"$json" || die "the RF=3 run of round $1 failed"
    for ((i = 0; i < NODES; i++)); do
        isr=$((isr + $(metric_sum $((METRICS_PORT + i)) runnel_partition_isr_size 'topic="repl3"')))
    done
    row "$1" rf3 "$json" "" "$(awk -v s="$isr" -v p="$PARTITIONS" 'BEGIN { printf "%.2f", s / p }')" \
        "$(per_byte "$dev0" "$(dev_written)" $(($(cluster_bytes_in) - bytes0)))" "$BUSY"
}

for run in $(seq 1 "$ROUNDS"); do
    echo "== round $run of $ROUNDS: $PARTITIONS partitions, acks=all, ${DURATION} s after ${WARMUP} s warmup"
    if ((run % 2 == 1)); then
        run_rf1a1 "$run"; run_rf1 "$run"; run_diskp "$run"; run_disk "$run"; run_rf3 "$run"
    else
        run_rf3 "$run"; run_rf1 "$run"; run_disk "$run"; run_diskp "$run"; run_rf1a1 "$run"
    fi
done

echo "== medians of $ROUNDS rounds (ratios: medians of the per-round ratios)"
python3 - "$RESULTS" "$OUT/summary.json" <<'PY'
import csv, json, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def num(v):
    return float(v) if v not in ("", None) else float("nan")
by = {}
for r in rows:
    by.setdefault(r["kind"], {})[r["round"]] = r
def med(kind, key):
    vals = [num(r[key]) for r in by.get(kind, {}).values()]
    return statistics.median(vals) if vals else float("nan")
def ratio(a, ka, b, kb):
    vals = [num(by[a][n][ka]) / num(by[b][n][kb]) for n in by.get(a, {}) if n in by.get(b, {})
            and num(by[b][n][kb]) > 0]
    return statistics.median(vals) if vals else float("nan")
summary = {k: {key: med(k, key) for key in ("records_per_sec", "mb_per_sec", "p50_ms", "p99_ms",
               "bytes_per_fsync", "mean_isr", "disk_bytes_per_byte", "cpu_busy")} for k in by}
summary["errors"] = sum(int(r["errors"]) for r in rows)
checks = [
    ("rf3/rf1 records/s", ratio("rf3", "records_per_sec", "rf1", "records_per_sec"), ">=", 0.40),
    ("rf1/disk MB/s", ratio("rf1", "mb_per_sec", "disk", "mb_per_sec"), ">=", 0.70),
    ("rf1 p99 / disk p99", ratio("rf1", "p99_ms", "disk", "p99_ms"), "<=", 3.0),
    ("rf3 p99 / rf1 p99", ratio("rf3", "p99_ms", "rf1", "p99_ms"), "", None),
    ("rf1/diskp MB/s", ratio("rf1", "mb_per_sec", "diskp", "mb_per_sec"), "", None),
    ("rf1 p99 / diskp p99", ratio("rf1", "p99_ms", "diskp", "p99_ms"), "", None),
    ("rf1/rf1a1 records/s", ratio("rf1", "records_per_sec", "rf1a1", "records_per_sec"), "", None),
    ("rf1a1/disk MB/s", ratio("rf1a1", "mb_per_sec", "disk", "mb_per_sec"), "", None),
    ("rf1a1 p99 / disk p99", ratio("rf1a1", "p99_ms", "disk", "p99_ms"), "", None),
]
print(f"{'kind':<5} {'records/s':>10} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'bytes/fsync':>12} {'mean ISR':>9} {'disk B/B':>9} {'CPU busy':>9}")
for k in ("rf1", "rf1a1", "rf3", "disk", "diskp"):
    if k in summary:
        s = summary[k]
        label = "rounds/s" if k.startswith("disk") else ""
        print(f"{k:<5} {s['records_per_sec']:>10.0f} {s['mb_per_sec']:>8.1f} {s['p50_ms']:>8.3f} "
              f"{s['p99_ms']:>8.3f} {s['bytes_per_fsync']:>12.0f} {s['mean_isr']:>9.2f} "
              f"{s['disk_bytes_per_byte']:>9.2f} {s['cpu_busy']:>9.2f} {label}")
summary["ratios"] = {}
for name, value, op, target in checks:
    summary["ratios"][name] = value
    verdict = ""
    if target is not None:
        ok = value >= target if op == ">=" else value <= target
        verdict = f"(target {op} {target}: {'met' if ok else 'NOT met'})"
    print(f"{name:<20} {value:8.3f} {verdict}")
print(f"errors over all runs: {summary['errors']}")
json.dump(summary, open(sys.argv[2], "w"), indent=2)
PY
echo "== raw results: $RESULTS; summary: $OUT/summary.json; reports and broker logs under $OUT"
