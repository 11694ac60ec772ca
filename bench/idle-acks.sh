#!/usr/bin/env bash
# The latency of acks=all at idle on a 3-broker loopback cluster: one producer sends one
# record per request (1 KiB, RF=3, 1 partition, one request in flight) at RATE records/s,
# so every produce finds the followers' fetches parked at the leader and waits for them
# to come back with their durable end. Prints runnel-bench's produce latency.
#
# A follower that reports its durable end only in a later fetch, and lets that fetch
# long-poll, would make each such produce wait up to replica.fetch.wait.max.ms (500 ms):
# this is the check that it does not.
#
# A higher RATE (with PARTITIONS and BATCH_SIZE) measures acks=all latency under a load
# below saturation, where a follower's fsync on the critical path shows in p50.
#
# Environment: RATE (20), PARTITIONS (1), BATCH_SIZE (1024), DURATION (10 s), WARMUP (2 s),
# PORT (29592: cluster 29592-29594,
# quorum +100, metrics +200), OUT (target/bench-idle-acks), RUNNEL_BROKER_BIN /
# RUNNEL_BENCH_BIN (else a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
RATE=${RATE:-20}
PARTITIONS=${PARTITIONS:-1}
BATCH_SIZE=${BATCH_SIZE:-1024}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PORT=${PORT:-29592}
OUT=${OUT:-$TARGET/bench-idle-acks}

if [[ -z ${RUNNEL_BROKER_BIN:-} || -z ${RUNNEL_BENCH_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release -p runnel-broker -p runnel-bench)
fi
BROKER=${RUNNEL_BROKER_BIN:-$TARGET/release/runnel-broker}
BENCH=${RUNNEL_BENCH_BIN:-$TARGET/release/runnel-bench}

# shellcheck source=bench/brokers.sh
source "$ROOT/bench/brokers.sh"
KAFKA_PORT=$PORT
CONTROLLER_PORT=$((PORT + 100))
METRICS_PORT=$((PORT + 200))
BROKERS_DIR=$OUT/brokers
BROKER_ARGS=()

brokers_prepare "$OUT"
cluster_start
"$BENCH" --bootstrap "127.0.0.1:$KAFKA_PORT" --topic idle3 --replication-factor 3 --create-topic \
    --partitions "$PARTITIONS" --record-size 1024 --batch-size "$BATCH_SIZE" --linger-ms 0 --rate "$RATE" \
    --producers 1 --consumers 0 --max-in-flight 1 --acks all \
    --duration "$DURATION" --warmup "$WARMUP" --json >"$OUT/idle.json"
python3 - "$OUT/idle.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["produce"]
lat = p["latency_ms"] or {}
print(f"acks=all, RF=3: {p['throughput']['records_per_sec']:.1f} records/s, "
      f"p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms")
PY
