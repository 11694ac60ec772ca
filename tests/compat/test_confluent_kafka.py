"""confluent-kafka (librdkafka 2.x) against runnel-broker: every compression codec,
the idempotent producer, and the AdminClient. Consumers use assign() with explicit
offsets, so no consumer-group API is needed (group.id is still mandatory in the
client config; nothing is committed)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource, NewPartitions,
                                  NewTopic)

from compat_helpers import (ck_consume_partition as consume_partition,
                            ck_consumer_conf as consumer_conf, ck_create_topic as create_topic,
                            ck_produce_all as produce_all, ck_producer_conf as producer_conf,
                            ck_wait_for_topic as wait_for_topic)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(broker, topic, codec):
    create_topic(broker.bootstrap, topic)
    records = []
    for i in range(300):
        headers = [("seq", str(i).encode()), ("codec", codec.encode())]
        if i % 10 == 0:
            headers.append(("empty", b""))
        records.append((f"key-{i}".encode(), (f"payload {i} " * (1 + i % 40)).encode(), headers))
    reports = produce_all(broker.bootstrap, topic, records, **{
        "compression.type": codec, "linger.ms": 20, "batch.num.messages": 100})

    assert [r[0] for r in reports] == [None] * 300
    assert [r[2] for r in reports] == list(range(300))

    msgs = consume_partition(broker.bootstrap, topic, 0, expected=300)
    assert [m.offset() for m in msgs] == list(range(300))
    assert [m.key() for m in msgs] == [r[0] for r in records]
    assert [m.value() for m in msgs] == [r[1] for r in records]
    assert [m.headers() for m in msgs] == [r[2] for r in records]


def test_consume_from_explicit_offset(broker, topic):
    create_topic(broker.bootstrap, topic)
    produce_all(broker.bootstrap, topic, [(b"k%d" % i, b"v%d" % i, None) for i in range(20)])
    msgs = consume_partition(broker.bootstrap, topic, 0, expected=5, start=15)
    assert [(m.offset(), m.key(), m.value()) for m in msgs] == [
        (i, b"k%d" % i, b"v%d" % i) for i in range(15, 20)]


def test_watermarks_and_offsets_for_times(broker, topic):
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 600_000
    p = Producer(producer_conf(broker.bootstrap))
    for i in range(4):
        p.produce(topic, value=b"t%d" % i, partition=0, timestamp=base + i * 100)
    assert p.flush(30) == 0
    c = Consumer(consumer_conf(broker.bootstrap))
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 4)
        [found] = c.offsets_for_times([TopicPartition(topic, 0, base + 150)], timeout=10)
        assert found.offset == 2
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_idempotent_producer_acks_all(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=3)
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.value()))

    errors = []
    p = Producer(producer_conf(broker.bootstrap, **{
        "enable.idempotence": True, "acks": "all", "linger.ms": 5,
        "compression.type": codec, "error_cb": errors.append}))
    for i in range(600):
        p.produce(topic, key=b"k%d" % (i % 13), value=b"%d" % i, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    assert errors == []
    assert [r[0] for r in reports] == [None] * 600

    for partition in range(3):
        mine = [r for r in reports if r[1] == partition]
        assert [r[2] for r in mine] == list(range(len(mine)))
        msgs = consume_partition(broker.bootstrap, topic, partition, expected=len(mine))
        assert [m.value() for m in msgs] == [r[3] for r in mine]


def test_admin_list_topics_and_cluster(broker, topic):
    admin = create_topic(broker.bootstrap, topic, partitions=2)
    md = admin.list_topics(timeout=10)
    assert topic in md.topics
    assert sorted(md.topics[topic].partitions) == [0, 1]
    [(broker_id, b)] = md.brokers.items()
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == broker_id
    for p in md.topics[topic].partitions.values():
        assert p.leader == broker_id
        assert p.replicas == [broker_id]
        assert p.isrs == [broker_id]
    assert md.cluster_id


def test_admin_describe_cluster(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    desc = admin.describe_cluster(request_timeout=10).result(timeout=30)
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert desc.controller is not None and desc.controller.id == node.id
    assert desc.cluster_id


def test_admin_create_topics_with_config_and_describe_configs(broker, unique_name):
    name = unique_name("ck-cfg")
    admin = create_topic(broker.bootstrap, name, partitions=3,
                         config={"retention.ms": "5400000", "cleanup.policy": "delete"})
    [(res, fut)] = admin.describe_configs([ConfigResource("TOPIC", name)],
                                          request_timeout=10).items()
    entries = fut.result(timeout=30)
    assert entries["retention.ms"].value == "5400000"
    assert entries["retention.ms"].source in (ConfigSource.DYNAMIC_TOPIC_CONFIG,
                                              ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert entries["retention.ms"].is_default is False
    assert entries["cleanup.policy"].value == "delete"
    assert "max.message.bytes" in entries


def test_admin_describe_configs_unknown_topic(broker, unique_name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    name = unique_name("ck-missing")
    [(res, fut)] = admin.describe_configs([ConfigResource("TOPIC", name)], request_timeout=10).items()
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_create_existing_topic_and_create_partitions(broker, topic):
    admin = create_topic(broker.bootstrap, topic, partitions=1)
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as e:
        futures[topic].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=30)
    # (the broker must report the new partitions in Metadata at once)
    wait_for_topic(admin, topic, 4)
    reports = produce_all(broker.bootstrap, topic, [(b"k", b"p3", None)], partition=3)
    assert [(r[0], r[1], r[2]) for r in reports] == [(None, 3, 0)]


def test_admin_delete_topics(broker, topic):
    admin = create_topic(broker.bootstrap, topic)
    admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=30)
    deadline = time.monotonic() + 10
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics(timeout=10).topics


def test_pipelined_produce_requests_keep_order(broker, topic):
    # librdkafka keeps many ProduceRequests in flight on one connection; Kafka handles the
    # requests of a connection in order, so a partition's log is in send order.
    create_topic(broker.bootstrap, topic)
    records = [(None, b"%05d" % i, None) for i in range(2000)]
    reports = produce_all(broker.bootstrap, topic, records, **{
        "linger.ms": 1, "batch.num.messages": 10, "max.in.flight.requests.per.connection": 100})
    assert [r[0] for r in reports] == [None] * 2000
    # delivery reports come back in send order with offsets in send order
    assert [r[4] for r in reports] == [v for _, v, _ in records]
    assert [r[2] for r in reports] == list(range(2000))
    msgs = consume_partition(broker.bootstrap, topic, 0, expected=2000)
    assert [m.value() for m in msgs] == [v for _, v, _ in records]
