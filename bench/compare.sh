#!/usr/bin/env bash
# Side-by-side: runnel-broker (release build, on disk) against Tansu (memory storage),
# driven by identical runnel-bench settings, runs alternating between the two brokers.
#
# For each setting (1 KiB records, 16 KiB batches; acks=1 and acks=all; 1 and 8
# partitions) and each of $RUNS runs, each broker gets, on a fresh topic:
#
#   1. a produce call: runnel-bench --records $RECORDS --consumers 0 (no consumer runs
#      while producing), which gives produce throughput and latency;
#   2. a catch-up consume call: runnel-bench --consume-only --records <acknowledged>,
#      whose consumers read that topic from the earliest offset until they hold every
#      record of call 1, which gives consume throughput from the first Fetch to the last
#      record: how fast the broker serves records already in its log.
#
# Why two calls rather than one --read-back call (which does the same two phases in one
# process): the broker's CPU-seconds (utime+stime from /proc/<pid>/stat) are read before
# and after each call, so each phase gets its own CPU figure, cut exactly where one bench
# process ends and the next begins, with no pause or signal between phases. The second
# call is the same catch-up read as --read-back's second phase (same code path); the only
# extra broker work is its ApiVersions and Metadata requests.
#
# Prints medians per broker: produce and catch-up consume records/s and MB/s, produce
# p50/p99 latency, CPU-seconds per GB produced and per GB consumed, and the runnel/tansu
# ratios. A call whose consume count or bytes differ from what was produced counts as an
# error in the summary.
#
# Not part of any test target: it builds in release, installs Tansu from crates.io
# (cargo install, into target/tansu) and takes minutes.
#
# Environment: RUNS (3), RECORDS per run (200000), PRODUCERS (1), CONSUMERS (1),
# RUNNEL_PORT and TANSU_PORT (free ones), TANSU_VERSION (0.6.0), OUT (target/bench-compare).
# Only 127.0.0.1 is contacted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
RUNS=${RUNS:-3}
RECORDS=${RECORDS:-200000}
PRODUCERS=${PRODUCERS:-1}
CONSUMERS=${CONSUMERS:-1}
# shellcheck source=bench/brokers.sh
. "$ROOT/bench/brokers.sh" # free_port, port_open, cpu_seconds
RUNNEL_PORT=${RUNNEL_PORT:-$(free_port)}
TANSU_PORT=${TANSU_PORT:-$(free_port)}
TANSU_VERSION=${TANSU_VERSION:-0.6.0}
OUT=${OUT:-$TARGET/bench-compare}
TANSU_ROOT=$TARGET/tansu
TANSU=$TANSU_ROOT/bin/tansu
BENCH=$TARGET/release/runnel-bench
RUNNEL=$TARGET/release/runnel-broker

die() { echo "compare.sh: $*" >&2; exit 1; }

echo "== building runnel-broker and runnel-bench (release)"
(cd "$ROOT" && cargo build --release -p runnel-broker -p runnel-bench)

# Tansu's memory:// storage engine is behind its `dynostore` cargo feature (a default
# build answers "FeatureNotEnabled { feature: dynostore }" at start-up). cargo install
# does nothing when the same version and features are installed already.
echo "== installing tansu $TANSU_VERSION (features dynostore) into $TANSU_ROOT (a long release build the first time)"
cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "$TANSU_ROOT" \
    || die "cargo install tansu failed; see the output above"
# Check the flags this script relies on before starting anything.
tansu_help=$("$TANSU" broker --help) || die "$TANSU broker --help failed"
for flag in --listener-url --advertised-listener-url --storage-engine; do
    grep -q -- "$flag" <<<"$tansu_help" || die "tansu broker has no $flag flag"
done

[[ $RUNNEL_PORT != "$TANSU_PORT" ]] || die "RUNNEL_PORT and TANSU_PORT must differ"
for port in "$RUNNEL_PORT" "$TANSU_PORT"; do
    # Never measure somebody else's broker that happens to listen there.
    ! port_open "$port" || die "127.0.0.1:$port is already in use by another process"
done
rm -rf "$OUT"
mkdir -p "$OUT/runnel-data"
RESULTS=$OUT/results.tsv

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_port() { # port name pid
    local deadline=$((SECONDS + 60))
    until port_open "$1"; do
        kill -0 "$3" 2>/dev/null || die "$2 exited; see $OUT/$2.log"
        ((SECONDS < deadline)) || die "$2 did not listen on 127.0.0.1:$1 within 60 s"
        sleep 0.2
    done
    kill -0 "$3" 2>/dev/null || die "$2 exited; see $OUT/$2.log"
}

echo "== starting runnel-broker on 127.0.0.1:$RUNNEL_PORT and tansu on 127.0.0.1:$TANSU_PORT"
RUNNEL_LOG=warn "$RUNNEL" --listen "127.0.0.1:$RUNNEL_PORT" --data-dir "$OUT/runnel-data" \
    >"$OUT/runnel.log" 2>&1 &
RUNNEL_PID=$!
pids+=("$RUNNEL_PID")
RUST_LOG=warn "$TANSU" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" --storage-engine "memory://tansu/" \
    >"$OUT/tansu.log" 2>&1 &
TANSU_PID=$!
pids+=("$TANSU_PID")
wait_port "$RUNNEL_PORT" runnel "$RUNNEL_PID"
wait_port "$TANSU_PORT" tansu "$TANSU_PID"

printf 'broker\tacks\tpartitions\trun\tproduce_rps\tproduce_mbps\tproduce_p50_ms\tproduce_p99_ms\tproduced_records\tproduced_bytes\tproduce_cpu_s\tconsume_rps\tconsume_mbps\tconsumed_records\tconsumed_bytes\tconsume_cpu_s\terrors\n' >"$RESULTS"

bench_once() { # broker port pid acks partitions run
    local broker=$1 port=$2 pid=$3 acks=$4 parts=$5 run=$6
    local name="$broker-acks$acks-p$parts-r$run"
    local topic="cmp-$name" produce_json="$OUT/$name-produce.json" consume_json="$OUT/$name-consume.json"
    local before middle after acked
    before=$(cpu_seconds "$pid")
    "$BENCH" --bootstrap "127.0.0.1:$port" --topic "$topic" --create-topic --partitions "$parts" \
        --records "$RECORDS" --record-size 1024 --batch-size 16384 --acks "$acks" \
        --producers "$PRODUCERS" --consumers 0 --timeout 600 --json >"$produce_json" \
        || die "runnel-bench (produce) against $broker failed (acks=$acks partitions=$parts run $run)"
    middle=$(cpu_seconds "$pid")
    acked=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["produce"]["records_acked"])' "$produce_json")
    ((acked > 0)) || die "$broker acknowledged no record (acks=$acks partitions=$parts run $run); see $produce_json"
    "$BENCH" --bootstrap "127.0.0.1:$port" --topic "$topic" --consume-only --records "$acked" \
        --consumers "$CONSUMERS" --drain-timeout 600 --timeout 660 --json >"$consume_json" \
        || die "runnel-bench (catch-up consume) against $broker failed (acks=$acks partitions=$parts run $run)"
    after=$(cpu_seconds "$pid")
    python3 - "$produce_json" "$consume_json" "$broker" "$acks" "$parts" "$run" "$before" "$middle" "$after" >>"$RESULTS" <<'PY'
import json, sys
produce_path, consume_path, broker, acks, parts, run, before, middle, after = sys.argv[1:]
pr, cr = json.load(open(produce_path)), json.load(open(consume_path))
p, c = pr["produce"], cr["consume"]
pl = p["latency_ms"] or {}
errors = pr["error_total"] + cr["error_total"]
# The catch-up read must hold exactly what was produced, byte for byte.
if c["records"] != p["records_acked"] or c["throughput"]["bytes"] != p["throughput"]["bytes"]:
    errors += 1
row = [broker, acks, parts, run,
       p["throughput"]["records_per_sec"], p["throughput"]["mb_per_sec"],
       pl.get("p50", ""), pl.get("p99", ""), p["records_acked"], p["throughput"]["bytes"],
       round(float(middle) - float(before), 2),
       c["throughput"]["records_per_sec"], c["throughput"]["mb_per_sec"],
       c["records"], c["throughput"]["bytes"],
       round(float(after) - float(middle), 2), errors]
print("\t".join(str(x) for x in row))
PY
    tail -n1 "$RESULTS" | awk -F'\t' '{ printf "   %-6s acks=%-3s p=%-2s run %s: produce %.0f rec/s %.1f MB/s p99 %s ms cpu %.2f s; catch-up consume %.0f rec/s %.1f MB/s cpu %.2f s; errors %s\n", $1, $2, $3, $4, $5, $6, $8, $11, $12, $13, $16, $17 }'
}

for acks in 1 all; do
    for parts in 1 8; do
        echo "== acks=$acks partitions=$parts records=$RECORDS runs=$RUNS"
        for run in $(seq 1 "$RUNS"); do
            # Alternate which broker goes first, so neither always gets the warmer machine.
            if ((run % 2)); then
                bench_once runnel "$RUNNEL_PORT" "$RUNNEL_PID" "$acks" "$parts" "$run"
                bench_once tansu "$TANSU_PORT" "$TANSU_PID" "$acks" "$parts" "$run"
            else
                bench_once tansu "$TANSU_PORT" "$TANSU_PID" "$acks" "$parts" "$run"
                bench_once runnel "$RUNNEL_PORT" "$RUNNEL_PID" "$acks" "$parts" "$run"
            fi
        done
    done
done

echo "== medians (runnel on disk, tansu in memory; consume = catch-up read of the records produced; MB = 2^20 bytes; GB = 10^9 bytes)"
python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(vals):
    return statistics.median(vals) if vals else float("nan")
def col(rs, key):
    return med([float(r[key]) for r in rs if r[key] != ""])
def per_gb(rs, cpu, size):
    return med([float(r[cpu]) / (float(r[size]) / 1e9) for r in rs if float(r[size]) > 0])
groups = {}
for r in rows:
    groups.setdefault((r["acks"], r["partitions"]), {}).setdefault(r["broker"], []).append(r)
cols = ["produce_rps", "produce_mbps", "consume_rps", "consume_mbps", "produce_p50_ms", "produce_p99_ms"]
print(f"{'acks':>4} {'parts':>5} {'broker':>7} {'prod rec/s':>11} {'prod MB/s':>9} {'cons rec/s':>11} {'cons MB/s':>9} "
      f"{'p50 ms':>8} {'p99 ms':>8} {'cpu-s/GB prod':>13} {'cpu-s/GB cons':>13} {'errors':>6}")
for (acks, parts), by in sorted(groups.items()):
    summary = {}
    for broker in ("runnel", "tansu"):
        rs = by.get(broker, [])
        if not rs:
            continue
        s = {k: col(rs, k) for k in cols}
        s["gb_p"] = per_gb(rs, "produce_cpu_s", "produced_bytes")
        s["gb_c"] = per_gb(rs, "consume_cpu_s", "consumed_bytes")
        s["errors"] = sum(int(r["errors"]) for r in rs)
        summary[broker] = s
        print(f"{acks:>4} {parts:>5} {broker:>7} {s['produce_rps']:>11.0f} {s['produce_mbps']:>9.1f} "
              f"{s['consume_rps']:>11.0f} {s['consume_mbps']:>9.1f} {s['produce_p50_ms']:>8.2f} "
              f"{s['produce_p99_ms']:>8.2f} {s['gb_p']:>13.2f} {s['gb_c']:>13.2f} {s['errors']:>6}")
    if len(summary) == 2:
        a, b = summary["runnel"], summary["tansu"]
        ratio = lambda k: a[k] / b[k] if b[k] else float("nan")
        print(f"{'':>4} {'':>5} {'ratio':>7} {ratio('produce_rps'):>11.2f} {ratio('produce_mbps'):>9.2f} "
              f"{ratio('consume_rps'):>11.2f} {ratio('consume_mbps'):>9.2f} {ratio('produce_p50_ms'):>8.2f} "
              f"{ratio('produce_p99_ms'):>8.2f} {ratio('gb_p'):>13.2f} {ratio('gb_c'):>13.2f}   (runnel / tansu)")
PY
echo "== raw results: $RESULTS"
