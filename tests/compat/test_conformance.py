"""Two Kafka rules librdkafka's own test suite checks, seen by real clients:

- a record without a key sent to a `cleanup.policy=compact` topic is refused with
  INVALID_RECORD (per record, from Produce v8), while records to other partitions in the
  same flush are delivered, and nothing of the refused batch is stored;
- `compression.type` on a topic re-compresses batches on append: whatever codec the
  producer used, the stored batches carry the topic's codec (read from the segment file)
  and every consumer reads every value back.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition as CkTopicPartition
from kafka.errors import InvalidRecordError

from compat_helpers import (ck_consume_partition, ck_consumer_conf, ck_producer_conf,
                            create_topic, producer, read_partition)

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    c = Consumer(ck_consumer_conf(bootstrap))
    try:
        return c.get_watermark_offsets(CkTopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def stored_codecs(data_dir: Path, topic: str) -> list[int]:
    """The codec id of every batch in partition 0's segment files, in order, read from
    the v2 batch headers (attributes bits 0-2); stops at the zeros preallocated after the
    last batch."""
    codecs = []
    for segment in sorted((data_dir / f"{topic}-0").glob("*.log")):
        data = segment.read_bytes()
        at = 0
        while at + 61 <= len(data):
            (length,) = struct.unpack_from(">i", data, at + 8)
            if length <= 0:
                break
            (attributes,) = struct.unpack_from(">h", data, at + 21)
            codecs.append(attributes & 0x07)
            at += 12 + length
    return codecs


def test_confluent_keyless_record_to_a_compacted_topic_is_invalid_record(broker, unique_name):
    compacted, plain = unique_name("compacted"), unique_name("plain")
    create_topic(broker.bootstrap, compacted, configs={"cleanup.policy": "compact"})
    create_topic(broker.bootstrap, plain)
    reports = {}

    def on_delivery(err, msg):
        reports[(msg.topic(), msg.value())] = (err, msg.offset())

    # linger.ms: both records go out in the same flush, one ProduceRequest.
    p = Producer(ck_producer_conf(broker.bootstrap, **{"linger.ms": 200}))
    p.produce(compacted, value=b"no key", partition=0, on_delivery=on_delivery)
    p.produce(plain, key=b"k", value=b"keyed", partition=0, on_delivery=on_delivery)
    assert p.flush(30) == 0

    err, _ = reports[(compacted, b"no key")]
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    assert not err.retriable()
    assert reports[(plain, b"keyed")] == (None, 0)
    assert watermarks(broker.bootstrap, compacted) == (0, 0)
    assert watermarks(broker.bootstrap, plain) == (0, 1)

    # Keyed records are welcome in the compacted topic.
    p = Producer(ck_producer_conf(broker.bootstrap))
    p.produce(compacted, key=b"k", value=b"v", partition=0, on_delivery=on_delivery)
    assert p.flush(30) == 0
    assert reports[(compacted, b"v")] == (None, 0)


def test_kafka_python_keyless_record_to_a_compacted_topic_is_invalid_record(broker, unique_name):
    compacted, plain = unique_name("compacted"), unique_name("plain")
    create_topic(broker.bootstrap, compacted, configs={"cleanup.policy": "compact"})
    create_topic(broker.bootstrap, plain)
    with producer(broker.bootstrap, linger_ms=200, retries=0) as p:
        refused = p.send(compacted, value=b"no key", partition=0)
        delivered = p.send(plain, key=b"k", value=b"keyed", partition=0)
        p.flush(timeout=30)
        with pytest.raises(InvalidRecordError):
            refused.get(timeout=30)
        assert delivered.get(timeout=30).offset == 0
    assert watermarks(broker.bootstrap, compacted) == (0, 0)


@pytest.mark.parametrize("topic_codec", ["gzip", "zstd"])
@pytest.mark.parametrize("producer_codec", ["lz4", "none"])
def test_batches_are_stored_with_the_topics_codec(broker, unique_name, topic_codec,
                                                  producer_codec):
    topic = unique_name(f"{topic_codec}-from-{producer_codec}")
    create_topic(broker.bootstrap, topic, configs={"compression.type": topic_codec})
    values = [(b"value %d " % i) * (1 + i % 7) for i in range(200)]

    # confluent-kafka writes the first half, kafka-python the second.
    p = Producer(ck_producer_conf(broker.bootstrap, **{
        "compression.type": producer_codec, "linger.ms": 20, "batch.num.messages": 25}))
    for v in values[:100]:
        p.produce(topic, value=v, partition=0)
    assert p.flush(30) == 0
    kp_codec = None if producer_codec == "none" else producer_codec
    with producer(broker.bootstrap, compression_type=kp_codec, linger_ms=20,
                  batch_size=2048) as kp:
        for v in values[100:]:
            kp.send(topic, value=v, partition=0)
        kp.flush(timeout=30)

    codecs = stored_codecs(broker.data_dir, topic)
    assert len(codecs) > 2, codecs
    assert set(codecs) == {CODEC_IDS[topic_codec]}, codecs

    read = read_partition(broker.bootstrap, topic, 0, expected=len(values))
    assert [(r.offset, r.value) for r in read] == list(enumerate(values))
    msgs = ck_consume_partition(broker.bootstrap, topic, 0, expected=len(values))
    assert [(m.offset(), m.value()) for m in msgs] == list(enumerate(values))


def test_a_producer_topic_keeps_the_producers_codec(broker, unique_name):
    topic = unique_name("producer-codec")
    create_topic(broker.bootstrap, topic, configs={"compression.type": "producer"})
    # Compressible: kafka-python sends a batch uncompressed when lz4 would not shrink it.
    compressible = b"lz4 " * 100
    with producer(broker.bootstrap, compression_type="lz4") as kp:
        kp.send(topic, value=compressible, partition=0).get(timeout=30)
    with producer(broker.bootstrap) as kp:
        kp.send(topic, value=b"plain", partition=0).get(timeout=30)
    assert stored_codecs(broker.data_dir, topic) == [CODEC_IDS["lz4"], CODEC_IDS["none"]]
    read = read_partition(broker.bootstrap, topic, 0, expected=2)
    assert [r.value for r in read] == [compressible, b"plain"]
