#!/usr/bin/env bash
# Regenerates the fuzzer's corpus (fuzz/corpus) from what real clients send:
#   1. builds the broker and runnel-fuzz, installs the clients (scripts/test-deps.sh);
#   2. scripts/capture-corpus.py: a recording proxy in front of a real broker while
#      kafka-python, confluent-kafka, kafkajs and kcat produce, consume and administer;
#   3. runnel-fuzz derive-corpus: names and selects the frames, and derives every served
#      API version no client sent by re-encoding a captured frame with kafka-protocol.
# The capture (one directory per client) is kept in target/fuzz-capture for inspection.
#
# Usage: scripts/capture-corpus.sh [CORPUS_DIR]      (default: fuzz/corpus)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
capture="$target_dir/fuzz-capture"
corpus="${1:-$repo/fuzz/corpus}"

scripts/test-deps.sh
cargo build -q -p runnel-broker -p runnel-fuzz
rm -rf "$capture"
.venv/bin/python scripts/capture-corpus.py --broker-bin "$target_dir/debug/runnel-broker" --out "$capture"
"$target_dir/debug/runnel-fuzz" derive-corpus --captured "$capture" --out "$corpus"
