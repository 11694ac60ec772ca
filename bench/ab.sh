#!/usr/bin/env bash
# A/B of two single-broker builds under one runnel-bench: produce throughput and the
# broker's CPU per record, in pairs whose order alternates so the machine's noise hits
# both builds alike.
#
#   bench/ab.sh BEFORE_BROKER_BIN AFTER_BROKER_BIN
#
# Each call starts a fresh broker (bench/brokers.sh's standalone one: loopback, a temporary
# data directory, deleted after), creates an 8-partition topic, produces RECORDS records of
# 1 KiB with no consumer, and reads the broker's CPU-seconds (utime + stime from
# /proc/<pid>/stat) before and after the produce. For each acks setting it prints every
# pair and the medians of the per-pair ratios after/before: records/s (above 1: after is
# faster) and CPU per record (below 1: after is cheaper).
#
# Environment: PAIRS (6), RECORDS (2000000), ACKS ("1 all"), PARTITIONS (8),
# RUNNEL_BENCH_BIN (else this checkout's release build). Only 127.0.0.1 is contacted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
(($# == 2)) || { echo "usage: $0 BEFORE_BROKER_BIN AFTER_BROKER_BIN" >&2; exit 2; }
BEFORE=$1 AFTER=$2
PAIRS=${PAIRS:-6}
RECORDS=${RECORDS:-2000000}
ACKS=${ACKS:-1 all}
PARTITIONS=${PARTITIONS:-8}
BENCH=${RUNNEL_BENCH_BIN:-$TARGET/release/runnel-bench}
if [[ -z ${RUNNEL_BENCH_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release -p runnel-bench)
fi
for bin in "$BEFORE" "$AFTER" "$BENCH"; do
    [[ -x $bin ]] || { echo "$bin is not an executable" >&2; exit 1; }
done

BROKERS_DIR=$(mktemp -d)
BROKER_ARGS=()
RESULTS=$BROKERS_DIR/results
# shellcheck source=bench/brokers.sh
. "$ROOT/bench/brokers.sh"
trap 'brokers_stop_all; rm -rf "$BROKERS_DIR"' EXIT

# One call: prints "<records acknowledged> <records/s> <broker CPU-seconds>".
call() {
    local port before after summary
    BROKER=$1
    port=$(free_port)
    single_start "$port" "$(free_port)"
    broker_wait single
    local bench=("$BENCH" --bootstrap "127.0.0.1:$port" --topic ab --partitions "$PARTITIONS"
        --consumers 0 --acks "$2")
    "${bench[@]}" --create-topic --records 100 >/dev/null
    before=$(cpu_seconds "${BROKER_PIDS[single]}")
    summary=$("${bench[@]}" --records "$RECORDS" --json |
        python3 -c 'import json, sys; p = json.load(sys.stdin)["produce"]; print(p["records_acked"], p["throughput"]["records_per_sec"])')
    after=$(cpu_seconds "${BROKER_PIDS[single]}")
    brokers_stop_all
    echo "$summary $(python3 -c "print($after - $before)")"
}

for acks in $ACKS; do
    for ((pair = 1; pair <= PAIRS; pair++)); do
        if ((pair % 2)); then order="before after"; else order="after before"; fi
        for side in $order; do
            if [[ $side == before ]]; then bin=$BEFORE; else bin=$AFTER; fi
            echo "$acks $pair $side $(call "$bin" "$acks")" >>"$RESULTS"
        done
    done
done

python3 - "$RESULTS" <<'EOF'
import statistics
import sys

runs = {}
for line in open(sys.argv[1]):
    acks, pair, side, acked, rps, cpu = line.split()
    runs.setdefault(acks, {}).setdefault(int(pair), {})[side] = (int(acked), float(rps), float(cpu))
for acks, pairs in runs.items():
    speed, cost = [], []
    print(f"acks={acks}: pair  before records/s  after records/s  before CPU µs/record  after CPU µs/record")
    for pair, sides in sorted(pairs.items()):
        (na, ra, ca), (nb, rb, cb) = sides["before"], sides["after"]
        speed.append(rb / ra)
        cost.append((cb / nb) / (ca / na))
        print(f"  {pair:4d}  {ra:16,.0f}  {rb:15,.0f}  {1e6 * ca / na:20.3f}  {1e6 * cb / nb:19.3f}")
    print(f"  after/before, medians of {len(speed)} pairs: records/s {statistics.median(speed):.3f}, "
          f"CPU per record {statistics.median(cost):.3f}")
EOF
