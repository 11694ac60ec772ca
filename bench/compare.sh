#!/usr/bin/env bash
# Side-by-side: runnel-broker (release build, on disk) against Tansu (memory storage),
# driven by identical runnel-bench settings, runs alternating between the two brokers.
#
# For each setting (1 KiB records, 16 KiB batches; acks=1 and acks=all; 1 and 8
# partitions) and each of $RUNS runs, both brokers get the same bench; each broker's
# CPU-seconds (utime+stime from /proc/<pid>/stat) are read before and after its run.
# Prints medians per broker, the runnel/tansu ratios, and CPU-seconds per GB.
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
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
RUNNEL_PORT=${RUNNEL_PORT:-$(free_port)}
TANSU_PORT=${TANSU_PORT:-$(free_port)}
TANSU_VERSION=${TANSU_VERSION:-0.6.0}
OUT=${OUT:-$TARGET/bench-compare}
TANSU_ROOT=$TARGET/tansu
TANSU=$TANSU_ROOT/bin/tansu
BENCH=$TARGET/release/runnel-bench
RUNNEL=$TARGET/release/runnel-broker
TICKS=$(getconf CLK_TCK)

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

cpu_seconds() { # pid → utime+stime in seconds (fields 14 and 15, counted after the "comm" field)
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    awk -v t="$TICKS" '{ printf "%.2f", ($12 + $13) / t }' <<<"$rest"
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

printf 'broker\tacks\tpartitions\trun\tproduce_rps\tproduce_mbps\tconsume_rps\tconsume_mbps\tproduce_p50_ms\tproduce_p99_ms\te2e_p50_ms\te2e_p99_ms\tproduced_bytes\tconsumed_bytes\tcpu_s\terrors\n' >"$RESULTS"

bench_once() { # broker port pid acks partitions run
    local broker=$1 port=$2 pid=$3 acks=$4 parts=$5 run=$6
    local topic="cmp-$broker-acks$acks-p$parts-r$run" json="$OUT/$broker-acks$acks-p$parts-r$run.json"
    local before after
    before=$(cpu_seconds "$pid")
    "$BENCH" --bootstrap "127.0.0.1:$port" --topic "$topic" --create-topic --partitions "$parts" \
        --records "$RECORDS" --record-size 1024 --batch-size 16384 --acks "$acks" \
        --producers "$PRODUCERS" --consumers "$CONSUMERS" --timeout 600 --json >"$json" \
        || die "runnel-bench against $broker failed (acks=$acks partitions=$parts run $run)"
    after=$(cpu_seconds "$pid")
    python3 - "$json" "$broker" "$acks" "$parts" "$run" "$before" "$after" >>"$RESULTS" <<'PY'
import json, sys
path, broker, acks, parts, run, before, after = sys.argv[1:]
r = json.load(open(path))
p, c = r["produce"], r["consume"]
pl = p["latency_ms"] or {}
el = c["end_to_end_latency_ms"] or {}
row = [broker, acks, parts, run,
       p["throughput"]["records_per_sec"], p["throughput"]["mb_per_sec"],
       c["throughput"]["records_per_sec"], c["throughput"]["mb_per_sec"],
       pl.get("p50", ""), pl.get("p99", ""), el.get("p50", ""), el.get("p99", ""),
       p["throughput"]["bytes"], c["throughput"]["bytes"],
       round(float(after) - float(before), 2), r["error_total"]]
print("\t".join(str(x) for x in row))
PY
    tail -n1 "$RESULTS" | awk -F'\t' '{ printf "   %-6s acks=%-3s p=%-2s run %s: produce %.0f rec/s %.1f MB/s, consume %.0f rec/s, p99 %s ms, e2e p99 %s ms, cpu %.2f s, errors %s\n", $1, $2, $3, $4, $5, $6, $7, $10, $12, $15, $16 }'
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

echo "== medians (runnel on disk, tansu in memory; MB = 2^20 bytes; GB = 10^9 bytes)"
python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(rs, key):
    vals = [float(r[key]) for r in rs if r[key] != ""]
    return statistics.median(vals) if vals else float("nan")
groups = {}
for r in rows:
    groups.setdefault((r["acks"], r["partitions"]), {}).setdefault(r["broker"], []).append(r)
cols = ["produce_rps", "produce_mbps", "consume_rps", "produce_p99_ms", "e2e_p99_ms"]
print(f"{'acks':>4} {'parts':>5} {'broker':>7} {'prod rec/s':>11} {'prod MB/s':>9} {'cons rec/s':>11} "
      f"{'p99 ms':>8} {'e2e p99':>8} {'cpu s':>6} {'cpu-s/GB prod':>13} {'cpu-s/GB p+c':>12} {'errors':>6}")
for (acks, parts), by in sorted(groups.items()):
    summary = {}
    for broker in ("runnel", "tansu"):
        rs = by.get(broker, [])
        if not rs:
            continue
        cpu = [float(r["cpu_s"]) for r in rs]
        per_gb_p = [float(r["cpu_s"]) / (float(r["produced_bytes"]) / 1e9) for r in rs if float(r["produced_bytes"]) > 0]
        per_gb_pc = [float(r["cpu_s"]) / ((float(r["produced_bytes"]) + float(r["consumed_bytes"])) / 1e9)
                     for r in rs if float(r["produced_bytes"]) > 0]
        s = {k: med(rs, k) for k in cols}
        s["cpu"] = statistics.median(cpu)
        s["gb_p"] = statistics.median(per_gb_p) if per_gb_p else float("nan")
        s["gb_pc"] = statistics.median(per_gb_pc) if per_gb_pc else float("nan")
        s["errors"] = sum(int(r["errors"]) for r in rs)
        summary[broker] = s
        print(f"{acks:>4} {parts:>5} {broker:>7} {s['produce_rps']:>11.0f} {s['produce_mbps']:>9.1f} "
              f"{s['consume_rps']:>11.0f} {s['produce_p99_ms']:>8.2f} {s['e2e_p99_ms']:>8.2f} {s['cpu']:>6.2f} "
              f"{s['gb_p']:>13.2f} {s['gb_pc']:>12.2f} {s['errors']:>6}")
    if len(summary) == 2:
        a, b = summary["runnel"], summary["tansu"]
        ratio = lambda k: a[k] / b[k] if b[k] else float("nan")
        print(f"{'':>4} {'':>5} {'ratio':>7} {ratio('produce_rps'):>11.2f} {ratio('produce_mbps'):>9.2f} "
              f"{ratio('consume_rps'):>11.2f} {ratio('produce_p99_ms'):>8.2f} {ratio('e2e_p99_ms'):>8.2f} "
              f"{ratio('cpu'):>6.2f} {ratio('gb_p'):>13.2f} {ratio('gb_pc'):>12.2f}   (runnel / tansu)")
PY
echo "== raw results: $RESULTS"
