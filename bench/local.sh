#!/usr/bin/env bash
# Runs runnel-bench against a fresh release runnel-broker on a free 127.0.0.1 port (a temporary data
# dir), then stops the broker. Arguments go to runnel-bench; the default is a 30-second
# run on an 8-partition topic. Used by `make bench`.
#
#   bench/local.sh                                  # defaults below
#   bench/local.sh --records 1000000 --acks all --json
#
# Environment: PORT (a free one), BENCH_TOPIC (bench); RUNNEL_BROKER_BIN and
# RUNNEL_BENCH_BIN run those binaries instead of building this checkout's (to compare two
# broker builds under one bench binary, alternate calls with two RUNNEL_BROKER_BINs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${PORT:-$(free_port)}
TOPIC=${BENCH_TOPIC:-bench}

BROKER=${RUNNEL_BROKER_BIN:-$TARGET/release/runnel-broker}
BENCH=${RUNNEL_BENCH_BIN:-$TARGET/release/runnel-bench}
build=()
[[ -n ${RUNNEL_BROKER_BIN:-} ]] || build+=(-p runnel-broker)
[[ -n ${RUNNEL_BENCH_BIN:-} ]] || build+=(-p runnel-bench)
if ((${#build[@]})); then
    (cd "$ROOT" && cargo build --release "${build[@]}")
fi
for bin in "$BROKER" "$BENCH"; do
    [[ -x $bin ]] || { echo "$bin is not an executable" >&2; exit 1; }
done
[[ -z ${RUNNEL_BROKER_BIN:-} ]] || echo "bench/local.sh: broker $BROKER (RUNNEL_BROKER_BIN)" >&2

if port_open "$PORT"; then
    echo "127.0.0.1:$PORT is already in use by another process" >&2
    exit 1
fi
DATA=$(mktemp -d)
RUNNEL_LOG=warn "$BROKER" --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"' EXIT

deadline=$((SECONDS + 60))
until port_open "$PORT"; do
    kill -0 "$PID" 2>/dev/null || { cat "$DATA.log" >&2; echo "runnel-broker exited" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "runnel-broker did not listen within 60 s" >&2; exit 1; }
    sleep 0.2
done
kill -0 "$PID" 2>/dev/null || { cat "$DATA.log" >&2; echo "runnel-broker exited" >&2; exit 1; }

if (($# == 0)); then
    set -- --partitions 8 --duration 30 --warmup 5
fi
"$BENCH" --bootstrap "127.0.0.1:$PORT" --topic "$TOPIC" --create-topic "$@"
