"""Log compaction seen by a real client: a compacted topic written with compressed batches
(kafka-python, each codec) is read back with only the latest value of every key.

The cleaner runs every 100 ms here (--log-cleaner-backoff-ms) and never touches the active
segment, so the test ends with filler batches over half of segment.bytes, each in a segment
of its own: every keyed round then lies in closed segments, where compaction must leave
exactly one record per key.
"""

from __future__ import annotations

import os

import pytest

from compat_helpers import create_topic, producer, read_partition, wait_until

KEYS = [b"k%d" % i for i in range(10)]
ROUNDS = 20
FILLERS = 3


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_compact_to_the_latest_value_per_key(make_broker, unique_name, codec):
    b = make_broker(extra_args=["--log-cleaner-backoff-ms", "100"])
    topic = unique_name(f"compact-{codec}")
    create_topic(b.bootstrap, topic, configs={"cleanup.policy": "compact", "segment.bytes": "2048"})

    with producer(b.bootstrap, compression_type=codec, linger_ms=1000, batch_size=64 * 1024) as p:
        for r in range(ROUNDS):
            # One compressed batch per round: ten keys, each a new value.
            for k in KEYS:
                p.send(topic, key=k, value=b"%s-%d" % (k, r), partition=0)
            p.flush(timeout=30)
        for i in range(FILLERS):
            # Incompressible and over half of segment.bytes: each filler rolls a new segment.
            p.send(topic, key=b"filler-%d" % i, value=os.urandom(1500), partition=0)
            p.flush(timeout=30)
    produced = len(KEYS) * ROUNDS + FILLERS

    def compacted():
        records = read_partition(b.bootstrap, topic, 0, expected=produced, start=None, timeout=3)
        keyed = [r for r in records if r.key in KEYS]
        return records if len(keyed) == len(KEYS) else None

    records = wait_until(compacted, timeout=30, interval=0.2,
                         what=f"the {codec} batches to be compacted to one record per key")
    latest = {r.key: r.value for r in records if r.key in KEYS}
    assert latest == {k: b"%s-%d" % (k, ROUNDS - 1) for k in KEYS}
    # Offsets are kept (gaps, never renumbering): the survivors sit in the last round.
    offsets = [r.offset for r in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    last_round = range(len(KEYS) * (ROUNDS - 1), len(KEYS) * ROUNDS)
    assert all(r.offset in last_round for r in records if r.key in KEYS)
    assert [r.key for r in records if r.key not in KEYS] == [b"filler-%d" % i for i in range(FILLERS)]
