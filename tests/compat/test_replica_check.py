"""replica_check.py against a real broker's segment files: it reads back exactly the
batches a producer wrote (offsets, record counts, compression, producer ids and
sequences), and it finds a flipped byte and a missing batch in a copy."""

from __future__ import annotations

import shutil

import pytest

from compat_helpers import create_topic, producer
from replica_check import (HEADER_LEN, CorruptBatch, ReplicasDiffer, compare_replicas,
                           read_partition)

GZIP = 1


def send_group(bootstrap: str, topic: str, values: list[bytes], *, one_by_one: bool = False,
               **config) -> list[int]:
    """Sends `values` to partition 0 (each awaited before the next when `one_by_one`,
    hence a batch each); returns their offsets."""
    with producer(bootstrap, **config) as p:
        if one_by_one:
            return [p.send(topic, value=v, partition=0).get(timeout=30).offset for v in values]
        futures = [p.send(topic, value=v, partition=0) for v in values]
        p.flush(timeout=30)
        return [f.get(timeout=30).offset for f in futures]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One broker, one topic, three producers; stopped cleanly. Yields (data dir, topic,
    offsets per group of records)."""
    from brokers import Broker, broker_binary
    base = tmp_path_factory.mktemp("replica-check")
    broker = Broker(broker_binary(), base / "data", base / "broker.log")
    broker.start()
    topic = "replica-check"
    try:
        create_topic(broker.bootstrap, topic)
        offsets = {
            "plain": send_group(broker.bootstrap, topic, [b"plain-%d" % i for i in range(20)],
                                enable_idempotence=False, acks=1, linger_ms=50),
            "single": send_group(broker.bootstrap, topic, [b"single-%d" % i for i in range(5)],
                                 enable_idempotence=False, acks=1, one_by_one=True),
            "gzip": send_group(broker.bootstrap, topic, [b"gzip-%d" % i for i in range(30)],
                               enable_idempotence=False, acks=1, compression_type="gzip",
                               linger_ms=50),
            "idempotent": send_group(broker.bootstrap, topic,
                                     [b"idem-%d" % i for i in range(25)],
                                     enable_idempotence=True, acks="all", linger_ms=50),
        }
    finally:
        assert broker.stop() == 0
    yield broker.data_dir, topic, offsets


def covering(batches, offsets):
    """The batches that hold `offsets`; asserts they hold exactly those."""
    chosen = [b for b in batches if b.base_offset <= offsets[-1] and b.last_offset >= offsets[0]]
    held = [o for b in chosen for o in range(b.base_offset, b.last_offset + 1)]
    assert held == offsets, (held, offsets)
    assert sum(b.record_count for b in chosen) == len(offsets)
    return chosen


def test_reads_back_what_was_produced(written):
    data_dir, topic, offsets = written
    batches = read_partition(data_dir, topic, 0)
    everything = offsets["plain"] + offsets["single"] + offsets["gzip"] + offsets["idempotent"]
    assert everything == list(range(80))
    assert [o for b in batches for o in range(b.base_offset, b.last_offset + 1)] == everything
    assert all(b.record_count == b.last_offset - b.base_offset + 1 for b in batches)
    assert len({b.leader_epoch for b in batches}) == 1 and batches[0].leader_epoch >= 0

    for b in covering(batches, offsets["plain"]):
        assert (b.producer_id, b.producer_epoch, b.base_sequence, b.compression) == (-1, -1, -1, 0)
    singles = covering(batches, offsets["single"])
    assert [(b.base_offset, b.record_count) for b in singles] == [(o, 1) for o in offsets["single"]]
    gzipped = covering(batches, offsets["gzip"])
    assert {b.compression for b in gzipped} == {GZIP}
    assert all(b.producer_id == -1 for b in gzipped)

    idempotent = covering(batches, offsets["idempotent"])
    assert len({(b.producer_id, b.producer_epoch) for b in idempotent}) == 1
    assert idempotent[0].producer_id >= 0 and idempotent[0].producer_epoch >= 0
    # Sequences run on from batch to batch, from 0.
    sequence = 0
    for b in idempotent:
        assert b.base_sequence == sequence, (b, sequence)
        sequence += b.record_count

    raw = b"".join(b.raw for b in batches)
    assert b"plain-19" in raw and b"idem-24" in raw and b"gzip-0" not in raw  # compressed


def copy_replica(data_dir, topic, to):
    shutil.copytree(data_dir / f"{topic}-0", to / f"{topic}-0")
    return to


def test_identical_replicas_compare_equal(written, tmp_path):
    data_dir, topic, _ = written
    copy = copy_replica(data_dir, topic, tmp_path / "copy")
    # The active segment may be preallocated: a zero tail is no batch.
    (segment,) = {b.segment for b in read_partition(copy, topic, 0)}
    segment.write_bytes(segment.read_bytes() + bytes(4096))
    assert compare_replicas([data_dir, copy], topic, 0, below_offset=80) == len(
        read_partition(data_dir, topic, 0))


def segment_and_batches(data_dir, topic):
    batches = read_partition(data_dir, topic, 0)
    (segment,) = {b.segment for b in batches}
    return segment, batches


def test_a_flipped_byte_is_found(written, tmp_path):
    data_dir, topic, _ = written
    copy = copy_replica(data_dir, topic, tmp_path / "copy")
    segment, batches = segment_and_batches(copy, topic)
    target = batches[len(batches) // 2]

    # In the records, the CRC gives it away.
    data = bytearray(segment.read_bytes())
    data[target.position + HEADER_LEN + 2] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptBatch, match=f"at byte {target.position}: the batch at offset "
                                           f"{target.base_offset} has CRC"):
        compare_replicas([data_dir, copy], topic, 0, below_offset=80)

    # Outside the CRC (the leader epoch), the comparison names the byte and the field.
    data[target.position + HEADER_LEN + 2] ^= 0x01
    data[target.position + 15] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(ReplicasDiffer, match=f"the batches at offset {target.base_offset} differ "
                                             f"at byte 15 \\(partitionLeaderEpoch\\)"):
        compare_replicas([data_dir, copy], topic, 0, below_offset=80)
    # A difference at or above the offset compared is none of its business.
    assert compare_replicas([data_dir, copy], topic, 0, below_offset=target.base_offset) > 0


def test_a_missing_batch_is_found(written, tmp_path):
    data_dir, topic, _ = written
    copy = copy_replica(data_dir, topic, tmp_path / "copy")
    segment, batches = segment_and_batches(copy, topic)
    gone = batches[len(batches) // 2]
    data = segment.read_bytes()
    segment.write_bytes(data[:gone.position] + data[gone.position + len(gone.raw):])
    with pytest.raises(ReplicasDiffer, match=f"part at offset {gone.base_offset}: .* has offsets "
                                             f"{gone.base_offset}\\.\\.{gone.last_offset}"):
        compare_replicas([data_dir, copy], topic, 0, below_offset=80)
    # A replica that stops short of the offset compared is told apart as well.
    truncated = copy_replica(data_dir, topic, tmp_path / "short")
    segment, batches = segment_and_batches(truncated, topic)
    segment.write_bytes(segment.read_bytes()[:batches[-1].position])
    with pytest.raises(ReplicasDiffer, match="has no batch"):
        compare_replicas([data_dir, truncated], topic, 0, below_offset=80)
    with pytest.raises(ReplicasDiffer, match="ends at offset"):
        compare_replicas([truncated, data_dir], topic, 0, below_offset=80)
