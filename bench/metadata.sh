#!/usr/bin/env bash
# Metadata requests/s and latency of every broker of a cluster holding TOPICS x PARTITIONS
# partitions: answering Metadata must stay in memory and cheap. Meant to run inside
# scripts/cluster.sh, which starts the cluster and passes its addresses:
#
#   make bench-metadata      # a fresh 3-broker cluster on 127.0.0.1:29092.. runs this script
#   scripts/cluster.sh --fresh -- bench/metadata.sh
#   CLUSTER_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 bench/metadata.sh
#
# 1. runnel-bench creates the topics meta-0 .. meta-(TOPICS-1), PARTITIONS partitions each,
#    through the first broker, and waits until every partition has a leader;
# 2. RUNS rounds; in each, every broker in turn (the first one rotates from round to round)
#    gets two runs of CONNECTIONS connections, one request in flight each, DURATION
#    seconds after WARMUP seconds: `--metadata all` (every topic, as admin tools and
#    `kcat -L` ask) and `--metadata named --topic meta-0` (one topic, as a producer asks);
# 3. prints, per broker and request, the medians over the rounds of requests/s, of the
#    latency p50 and p99, and of the broker's CPU time per request (utime+stime from
#    /proc over the run, warmup included, when CLUSTER_PIDS gives the brokers' process
#    ids as scripts/cluster.sh does). A run with errors, or whose answers do not list every
#    broker and the expected partitions, counts as an error.
#
# runnel-bench runs on the same machine as the brokers and decodes every answer: on a small
# machine it takes its share of the CPU, so requests/s is what one client process gets;
# the broker's CPU per request says what an answer costs the broker.
#
# Environment: RUNS (3), TOPICS (10), PARTITIONS (100), CONNECTIONS (4), DURATION (10),
# WARMUP (2), RUNNEL_BENCH_BIN (else a release build of this checkout), OUT (where the
# JSON reports and results.tsv go; target/bench-metadata/results).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
RUNS=${RUNS:-3}
TOPICS=${TOPICS:-10}
PARTITIONS=${PARTITIONS:-100}
CONNECTIONS=${CONNECTIONS:-4}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
OUT=${OUT:-$TARGET/bench-metadata/results}

die() { echo "metadata.sh: $*" >&2; exit 1; }

[[ -n ${CLUSTER_BOOTSTRAP:-} ]] || die "CLUSTER_BOOTSTRAP is not set: run me under scripts/cluster.sh (see the top of this file)"
IFS=, read -r -a brokers <<<"$CLUSTER_BOOTSTRAP"
((${#brokers[@]})) || die "CLUSTER_BOOTSTRAP lists no broker"
pids=()
if [[ -n ${CLUSTER_PIDS:-} ]]; then
    IFS=, read -r -a pids <<<"$CLUSTER_PIDS"
    ((${#pids[@]} == ${#brokers[@]})) || die "CLUSTER_PIDS and CLUSTER_BOOTSTRAP list different counts"
fi
TICKS=$(getconf CLK_TCK)

# cpu_seconds PID: the process's utime+stime (fields 14 and 15, counted after "comm").
cpu_seconds() {
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    awk -v t="$TICKS" '{ printf "%.2f", ($12 + $13) / t }' <<<"$rest"
}

if [[ -n ${RUNNEL_BENCH_BIN:-} ]]; then
    BENCH=$RUNNEL_BENCH_BIN
else
    (cd "$ROOT" && cargo build --release -p runnel-bench)
    BENCH=$TARGET/release/runnel-bench
fi
[[ -x $BENCH ]] || die "$BENCH is not an executable"

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv

echo "== creating $TOPICS topics x $PARTITIONS partitions through ${brokers[0]}"
"$BENCH" --bootstrap "${brokers[0]}" --metadata named --topic meta --topic-count "$TOPICS" \
    --partitions "$PARTITIONS" --create-topic --connections 1 --duration 0.2 --json \
    >"$OUT/create.json" || die "creating the topics failed"

if ((TOPICS == 1)); then one=meta; else one=meta-0; fi
printf 'broker\trequest\trun\trequests_per_sec\tp50_ms\tp99_ms\tbrokers\tpartitions\tbroker_cpu_us_per_request\terrors\n' >"$RESULTS"

bench_once() { # index request run
    local broker=${brokers[$1]} pid=${pids[$1]:-} request=$2 run=$3 json before="" after=""
    json="$OUT/${broker//[:.]/_}-$request-r$run.json"
    local args=(--metadata all)
    local expect=$((TOPICS * PARTITIONS))
    if [[ $request == named ]]; then
        args=(--metadata named --topic "$one")
        expect=$PARTITIONS
    fi
    [[ -z $pid ]] || before=$(cpu_seconds "$pid")
    "$BENCH" --bootstrap "$broker" "${args[@]}" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --json >"$json" \
        || die "runnel-bench --metadata $request against $broker failed (run $run)"
    [[ -z $pid ]] || after=$(cpu_seconds "$pid")
    python3 - "$json" "$broker" "$request" "$run" "${#brokers[@]}" "$expect" "$before" "$after" >>"$RESULTS" <<'PY'
import json, sys
path, broker, request, run, brokers, expect, before, after = sys.argv[1:]
report = json.load(open(path))
shape = report["response"] or {}
latency = report["latency_ms"] or {}
errors = report["error_total"] + (1 if report["timed_out"] else 0)
# The answers must describe the whole cluster: every broker, every partition with a leader.
if shape.get("brokers") != int(brokers) or shape.get("partitions", 0) < int(expect) \
        or shape.get("leaderless_partitions", 1) != 0:
    errors += 1
# The broker's CPU over the whole run (warmup included) per request answered in it.
cpu = ""
if before and after and report["answered"]:
    cpu = round(1e6 * (float(after) - float(before)) / report["answered"], 1)
row = [broker, request, run, round(report["requests"]["per_sec"], 1), latency.get("p50", ""),
       latency.get("p99", ""), shape.get("brokers", ""), shape.get("partitions", ""), cpu, errors]
print("\t".join(str(x) for x in row))
PY
    tail -n1 "$RESULTS" | awk -F'\t' '{ printf "   %-16s %-5s run %s: %8.0f requests/s  p50 %s ms  p99 %s ms  broker cpu %s us/request  (%s brokers, %s partitions, errors %s)\n", $1, $2, $3, $4, $5, $6, $9, $7, $8, $10 }'
}

count=${#brokers[@]}
for run in $(seq 1 "$RUNS"); do
    echo "== round $run of $RUNS: $CONNECTIONS connections, ${DURATION} s after ${WARMUP} s warmup"
    for ((k = 0; k < count; k++)); do
        index=$(((k + run - 1) % count))
        bench_once "$index" all "$run"
        bench_once "$index" named "$run"
    done
done

echo "== medians of $RUNS rounds (all = $TOPICS topics, $((TOPICS * PARTITIONS)) partitions; named = $one, $PARTITIONS partitions)"
python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(rs, key):
    vals = [float(r[key]) for r in rs if r[key] != ""]
    return statistics.median(vals) if vals else float("nan")
groups = {}
for r in rows:
    groups.setdefault((r["broker"], r["request"]), []).append(r)
print(f"{'broker':<18} {'request':<7} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
      f"{'broker CPU us/request':>21} {'errors':>6}")
for (broker, request), rs in sorted(groups.items()):
    errors = sum(int(r["errors"]) for r in rs)
    print(f"{broker:<18} {request:<7} {med(rs, 'requests_per_sec'):>11.0f} {med(rs, 'p50_ms'):>8.3f} "
          f"{med(rs, 'p99_ms'):>8.3f} {med(rs, 'broker_cpu_us_per_request'):>21.1f} {errors:>6}")
PY
echo "== raw results: $RESULTS"
