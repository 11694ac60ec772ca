"""kafka-python 3.x producer patterns from the seed blog posts, against runnel-broker."""

from __future__ import annotations

import json

import pytest
from kafka.admin import NewTopic
from kafka.errors import (KafkaTimeoutError, MessageSizeTooLargeError, RecordListTooLargeError,
                          UnknownTopicOrPartitionError)

from compat_helpers import (admin_client, consumer, create_topic, producer,
                            read_partition)


def test_send_get_returns_record_metadata_with_sequential_offsets(broker, topic):
    # Seed pattern: future = producer.send(topic, value=..., key=...); future.get(timeout=30)
    create_topic(broker.bootstrap, topic, partitions=1)
    metas = []
    with producer(broker.bootstrap) as p:
        for i in range(5):
            future = p.send(topic, value=f"aa.bb.cc.{i}".encode(), key=f"{i}".encode())
            metas.append(future.get(timeout=30))

    assert [m.topic for m in metas] == [topic] * 5
    assert [m.partition for m in metas] == [0] * 5
    assert [m.offset for m in metas] == [0, 1, 2, 3, 4]
    assert all(m.timestamp > 0 for m in metas)

    records = read_partition(broker.bootstrap, topic, 0, expected=5)
    assert [(r.offset, r.key, r.value) for r in records] == [
        (i, f"{i}".encode(), f"aa.bb.cc.{i}".encode()) for i in range(5)]


def test_unacknowledged_sends_then_flush(broker, topic):
    # Seed pattern: "produce asynchronously" — 100 sends without get(), then flush().
    create_topic(broker.bootstrap, topic, partitions=1)
    acked, failed = [], []
    with producer(broker.bootstrap, linger_ms=20) as p:
        for i in range(100):
            p.send(topic, f"msg-{i}".encode()).add_callback(acked.append).add_errback(failed.append)
        p.flush(timeout=30)
    assert failed == []
    assert sorted(m.offset for m in acked) == list(range(100))

    records = read_partition(broker.bootstrap, topic, 0, expected=100)
    assert [r.value for r in records] == [f"msg-{i}".encode() for i in range(100)]


def test_same_key_goes_to_same_partition(broker, topic):
    with admin_client(broker.bootstrap) as admin:
        admin.create_topics([NewTopic(name=topic, num_partitions=4, replication_factor=1)])
        admin.wait_for_topics([topic], timeout_ms=10000)

    keys = [f"user-{i}".encode() for i in range(20)]
    placed: dict[bytes, set[int]] = {k: set() for k in keys}
    with producer(broker.bootstrap) as p:
        assert p.partitions_for(topic) == {0, 1, 2, 3}
        for round_ in range(3):
            for k in keys:
                meta = p.send(topic, key=k, value=b"r%d" % round_).get(timeout=30)
                placed[k].add(meta.partition)

    assert all(len(parts) == 1 for parts in placed.values()), placed
    used = {next(iter(parts)) for parts in placed.values()}
    assert len(used) > 1, "20 distinct keys all hashed to one of 4 partitions"

    # Each partition holds exactly the keys that were reported for it, in send order.
    for partition in range(4):
        want_keys = [k for k in keys if placed[k] == {partition}]
        records = read_partition(broker.bootstrap, topic, partition, expected=3 * len(want_keys))
        assert [r.offset for r in records] == list(range(3 * len(want_keys)))
        assert [(r.key, r.value) for r in records] == [
            (k, b"r%d" % round_) for round_ in range(3) for k in want_keys]


def test_explicit_partition(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    with producer(broker.bootstrap) as p:
        m1 = p.send(topic, key=b"k", value=b"to-2", partition=2).get(timeout=30)
        m2 = p.send(topic, key=b"k", value=b"to-1", partition=1).get(timeout=30)
        m3 = p.send(topic, key=b"k", value=b"to-2-again", partition=2).get(timeout=30)
    assert (m1.partition, m1.offset) == (2, 0)
    assert (m2.partition, m2.offset) == (1, 0)
    assert (m3.partition, m3.offset) == (2, 1)

    assert [r.value for r in read_partition(broker.bootstrap, topic, 2, expected=2)] == [b"to-2", b"to-2-again"]
    assert [r.value for r in read_partition(broker.bootstrap, topic, 1, expected=1)] == [b"to-1"]
    assert read_partition(broker.bootstrap, topic, 0, expected=1, timeout=2) == []


def test_json_value_serializer_and_deserializer_round_trip(broker, topic):
    # Seed pattern: value_serializer=lambda m: json.dumps(m).encode() and json.loads on read.
    create_topic(broker.bootstrap, topic, partitions=1)
    sent = [{"num": i + 1, "ts": f"2024-01-01 00:00:{i:02d}", "msg": "成功"} for i in range(10)]
    with producer(broker.bootstrap, value_serializer=lambda m: json.dumps(m).encode()) as p:
        for data in sent:
            p.send(topic, data)
        p.flush(timeout=30)

    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                  value_deserializer=lambda m: json.loads(m.decode("utf-8"))) as c:
        got = [msg.value for msg in c]
    assert got == sent


def test_key_and_value_serializers_strings(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap, key_serializer=str.encode, value_serializer=str.encode) as p:
        for i in range(3):
            p.send(topic, key=f"key-{i}", value=f"välue-{i}")
        p.flush(timeout=30)
    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                  key_deserializer=bytes.decode, value_deserializer=bytes.decode) as c:
        got = [(m.key, m.value) for m in c]
    assert got == [(f"key-{i}", f"välue-{i}") for i in range(3)]


def test_headers_round_trip(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    headers = [("trace-id", b"abc123"), ("empty", b""), ("dup", b"first"), ("dup", b"second"),
               ("binary", bytes(range(256)))]
    with producer(broker.bootstrap) as p:
        p.send(topic, key=b"k", value=b"with-headers", headers=headers).get(timeout=30)
        p.send(topic, key=b"k", value=b"no-headers").get(timeout=30)
    records = read_partition(broker.bootstrap, topic, 0, expected=2)
    assert [r.value for r in records] == [b"with-headers", b"no-headers"]
    assert list(records[0].headers) == headers
    assert list(records[1].headers) == []


def test_null_key_and_null_value(broker, topic):
    # A null value is a tombstone; the seed shows serialized_value_size == -1 for it.
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap) as p:
        p.send(topic, key=b"tomb", value=None, partition=0).get(timeout=30)
        p.send(topic, key=None, value=b"no-key", partition=0).get(timeout=30)
    records = read_partition(broker.bootstrap, topic, 0, expected=2)
    assert [(r.key, r.value) for r in records] == [(b"tomb", None), (None, b"no-key")]
    assert records[0].serialized_value_size == -1
    assert records[1].serialized_key_size == -1


def test_large_record_round_trip(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    big = bytes(range(256)) * 2048  # 512 KiB, below the default 1 MiB max.message.bytes
    with producer(broker.bootstrap, max_request_size=2 * 1024 * 1024) as p:
        meta = p.send(topic, value=big).get(timeout=30)
    assert meta.offset == 0
    records = read_partition(broker.bootstrap, topic, 0, expected=1)
    assert len(records) == 1 and records[0].value == big


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=1)
    sent = [(f"key-{i}".encode(), (f"value {i} " * 50).encode()) for i in range(200)]
    with producer(broker.bootstrap, compression_type=codec, linger_ms=50, batch_size=64 * 1024) as p:
        futures = [p.send(topic, key=k, value=v, headers=[("i", str(i).encode())])
                   for i, (k, v) in enumerate(sent)]
        p.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
    assert [m.offset for m in metas] == list(range(200))

    records = read_partition(broker.bootstrap, topic, 0, expected=200)
    assert [(r.key, r.value) for r in records] == sent
    assert [r.offset for r in records] == list(range(200))
    assert [r.headers for r in records] == [[("i", str(i).encode())] for i in range(200)]


def test_idempotence_is_on_by_default_and_works(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap) as p:
        # kafka-python 3.x silently disables default idempotence against brokers it
        # believes too old; against a Kafka-compatible broker it must stay on.
        tm = p._transaction_manager
        assert tm is not None, "idempotence was disabled: broker looks older than 0.11 to kafka-python"
        futures = [p.send(topic, value=b"idem-%d" % i) for i in range(50)]
        p.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
        assert tm.producer_id_and_epoch.producer_id >= 0, "no producer id from InitProducerId"
    assert [m.offset for m in metas] == list(range(50))
    records = read_partition(broker.bootstrap, topic, 0, expected=50)
    assert [r.value for r in records] == [b"idem-%d" % i for i in range(50)]


def test_explicit_idempotence_with_acks_all(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    with producer(broker.bootstrap, enable_idempotence=True, acks="all", linger_ms=5) as p:
        futures = [p.send(topic, key=b"k%d" % (i % 7), value=b"v%d" % i) for i in range(100)]
        p.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
    by_partition: dict[int, list[int]] = {}
    for m in metas:
        by_partition.setdefault(m.partition, []).append(m.offset)
    for partition, offsets in by_partition.items():
        assert offsets == list(range(len(offsets))), (partition, offsets)
        records = read_partition(broker.bootstrap, topic, partition, expected=len(offsets))
        assert [r.offset for r in records] == offsets


def test_produce_to_unknown_topic_auto_creates_it(broker, unique_name):
    name = unique_name("auto")
    with producer(broker.bootstrap) as p:
        meta = p.send(name, key=b"k", value=b"first").get(timeout=30)
        assert meta.topic == name
        assert meta.offset == 0
        partitions = p.partitions_for(name)
    assert meta.partition in partitions
    with admin_client(broker.bootstrap) as admin:
        assert name in admin.list_topics()
    records = read_partition(broker.bootstrap, name, meta.partition, expected=1)
    assert [(r.key, r.value) for r in records] == [(b"k", b"first")]


def test_auto_created_topic_uses_num_partitions(make_broker, unique_name):
    b = make_broker(num_partitions=3)
    name = unique_name("auto3")
    with producer(b.bootstrap) as p:
        p.send(name, value=b"x").get(timeout=30)
        assert p.partitions_for(name) == {0, 1, 2}
    with consumer(b.bootstrap) as c:
        assert c.partitions_for_topic(name) == {0, 1, 2}


def test_auto_create_disabled_rejects_unknown_topic(make_broker, unique_name):
    b = make_broker(auto_create_topics=False)
    name = unique_name("noauto")
    with producer(b.bootstrap, max_block_ms=3000) as p:
        # Either metadata never shows the topic (timeout) or the broker answers
        # UNKNOWN_TOPIC_OR_PARTITION: both are Kafka's behaviour with auto-create off.
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            p.send(name, value=b"x").get(timeout=10)
    with admin_client(b.bootstrap) as admin:
        assert name not in admin.list_topics()


def test_pinned_old_api_version_producer_and_consumer(broker, topic):
    # Seed pattern: api_version=(0, 11, 5) pins old protocol versions (Produce v3, Fetch v5, ...).
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap, api_version=(0, 11, 5)) as p:
        metas = [p.send(topic, key=b"k%d" % i, value=b"old-%d" % i).get(timeout=30) for i in range(3)]
    assert [m.offset for m in metas] == [0, 1, 2]
    with consumer(broker.bootstrap, topic, api_version=(0, 11, 5), auto_offset_reset="earliest",
                  consumer_timeout_ms=5000) as c:
        got = [(m.offset, m.key, m.value) for m in c]
    assert got == [(i, b"k%d" % i, b"old-%d" % i) for i in range(3)]


def test_send_to_partition_out_of_range_fails(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    with producer(broker.bootstrap) as p:
        with pytest.raises(ValueError, match="Unrecognized partition"):
            # kafka-python validates the partition against the broker's metadata.
            p.send(topic, value=b"x", partition=5)
        assert p.partitions_for(topic) == {0, 1}


def test_acks_0_records_still_land(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap, acks=0, enable_idempotence=False) as p:
        # no response with acks=0: whatever offset the client reports is its own invention
        for i in range(5):
            p.send(topic, value=b"fire-%d" % i, partition=0).get(timeout=30)
        p.flush(timeout=30)
    records = read_partition(broker.bootstrap, topic, 0, expected=5)
    assert [r.value for r in records] == [b"fire-%d" % i for i in range(5)]


def test_batch_larger_than_a_segment_is_record_list_too_large(broker, topic):
    # Batches never span segments: one larger than segment.bytes (but within
    # max.message.bytes) gets Kafka's RECORD_LIST_TOO_LARGE, and nothing is appended.
    create_topic(broker.bootstrap, topic, partitions=1, configs={"segment.bytes": "16384"})
    with producer(broker.bootstrap, retries=0, enable_idempotence=False, acks=1) as p:
        with pytest.raises(RecordListTooLargeError):
            p.send(topic, value=bytes(range(256)) * 128, partition=0).get(timeout=30)
        ok = p.send(topic, value=b"small", partition=0).get(timeout=30)
    assert ok.offset == 0
    assert [r.value for r in read_partition(broker.bootstrap, topic, 0, expected=1)] == [b"small"]


def test_record_larger_than_max_message_bytes_is_rejected(broker, topic):
    # Kafka's default message.max.bytes is 1048588; a 1.5 MiB batch is refused with
    # MESSAGE_TOO_LARGE and nothing is appended.
    create_topic(broker.bootstrap, topic, partitions=1)
    too_big = bytes(range(256)) * 6144  # 1.5 MiB, incompressible-ish, uncompressed anyway
    with producer(broker.bootstrap, max_request_size=4 * 1024 * 1024, retries=0,
                  enable_idempotence=False, acks=1) as p:
        with pytest.raises(MessageSizeTooLargeError):
            p.send(topic, value=too_big, partition=0).get(timeout=30)
        ok = p.send(topic, value=b"small", partition=0).get(timeout=30)
    assert ok.offset == 0
    assert [r.value for r in read_partition(broker.bootstrap, topic, 0, expected=1)] == [b"small"]
