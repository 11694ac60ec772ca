"""kafka-python 3.x consumer patterns without consumer groups: iteration with
consumer_timeout_ms, assign/seek, auto_offset_reset, offset look-ups."""

from __future__ import annotations

import time

from kafka import TopicPartition

from compat_helpers import consumer, create_topic, poll_until, producer, produce_values


def test_consumer_timeout_ms_ends_iteration(broker, topic):
    # Seed pattern: KafkaConsumer(topic, consumer_timeout_ms=1000); for msg in consumer: ...
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"a", b"b", b"c"])
    started = time.monotonic()
    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=3000) as c:
        got = [(m.topic, m.partition, m.offset, m.value) for m in c]
    elapsed = time.monotonic() - started
    assert got == [(topic, 0, 0, b"a"), (topic, 0, 1, b"b"), (topic, 0, 2, b"c")]
    assert elapsed < 30, f"iteration took {elapsed:.1f}s to end"


def test_consumer_timeout_ms_on_empty_topic_yields_nothing(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    started = time.monotonic()
    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=1000) as c:
        got = list(c)
    assert got == []
    assert time.monotonic() - started < 30


def test_consumer_record_fields(broker, topic):
    # The seed lists ConsumerRecord fields: topic, partition, offset, timestamp, timestamp_type,
    # key, value, serialized_key_size, serialized_value_size.
    create_topic(broker.bootstrap, topic, partitions=1)
    ts = int(time.time() * 1000) - 60_000
    with producer(broker.bootstrap) as p:
        p.send(topic, key=b"my_key", value=b"my_value", partition=0, timestamp_ms=ts).get(timeout=30)
    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=5000) as c:
        records = list(c)
    assert len(records) == 1
    r = records[0]
    assert (r.topic, r.partition, r.offset, r.key, r.value) == (topic, 0, 0, b"my_key", b"my_value")
    assert r.timestamp == ts
    assert r.timestamp_type == 0  # CreateTime
    assert (r.serialized_key_size, r.serialized_value_size) == (6, 8)


def test_assign_and_seek_reads_from_offset(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"v%d" % i for i in range(10)])
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, enable_auto_commit=False) as c:
        c.assign([tp])
        assert c.assignment() == {tp}
        c.seek(tp, 6)
        records = poll_until(c, expected=4)
        assert [(r.offset, r.value) for r in records] == [(i, b"v%d" % i) for i in range(6, 10)]
        assert c.position(tp) == 10
        # seek backwards re-reads
        c.seek(tp, 2)
        again = poll_until(c, expected=8)
        assert [r.offset for r in again] == list(range(2, 10))


def test_seek_to_beginning_and_end(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"x%d" % i for i in range(7)])
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, enable_auto_commit=False) as c:
        c.assign([tp])
        c.seek_to_end(tp)
        assert c.position(tp) == 7
        assert poll_until(c, expected=1, timeout=2) == []
        c.seek_to_beginning(tp)
        assert c.position(tp) == 0
        records = poll_until(c, expected=7)
        assert [r.value for r in records] == [b"x%d" % i for i in range(7)]
        # a record produced after seek_to_end is read
        c.seek_to_end(tp)
        assert c.position(tp) == 7
        produce_values(broker.bootstrap, topic, [b"late"])
        late = poll_until(c, expected=1)
        assert [(r.offset, r.value) for r in late] == [(7, b"late")]


def test_beginning_and_end_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_values(broker.bootstrap, topic, [b"p0"] * 5, partition=0)
    produce_values(broker.bootstrap, topic, [b"p2"] * 2, partition=2)
    tps = [TopicPartition(topic, p) for p in range(3)]
    with consumer(broker.bootstrap) as c:
        assert c.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0, tps[2]: 0}
        assert c.end_offsets(tps) == {tps[0]: 5, tps[1]: 0, tps[2]: 2}
        assert c.partitions_for_topic(topic) == {0, 1, 2}


def test_offsets_for_times(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    base = int(time.time() * 1000) - 3_600_000
    with producer(broker.bootstrap) as p:
        for i in range(5):
            p.send(topic, value=b"t%d" % i, partition=0, timestamp_ms=base + i * 1000).get(timeout=30)
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap) as c:
        found = c.offsets_for_times({tp: base + 2500})
        assert found[tp] is not None
        assert (found[tp].offset, found[tp].timestamp) == (3, base + 3000)
        exact = c.offsets_for_times({tp: base + 1000})
        assert (exact[tp].offset, exact[tp].timestamp) == (1, base + 1000)
        first = c.offsets_for_times({tp: 0})
        assert (first[tp].offset, first[tp].timestamp) == (0, base)
        after_all = c.offsets_for_times({tp: base + 10_000})
        assert after_all[tp] is None


def test_auto_offset_reset_earliest_without_group(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_values(broker.bootstrap, topic, [b"e0-%d" % i for i in range(3)], partition=0)
    produce_values(broker.bootstrap, topic, [b"e1-%d" % i for i in range(2)], partition=1)
    # No group_id: subscribe assigns every partition to this consumer.
    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=5000) as c:
        got = sorted((m.partition, m.offset, m.value) for m in c)
    assert got == [(0, i, b"e0-%d" % i) for i in range(3)] + [(1, i, b"e1-%d" % i) for i in range(2)]


def test_auto_offset_reset_latest_without_group_only_sees_new_records(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"old-%d" % i for i in range(5)])
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, topic, auto_offset_reset="latest") as c:
        # Wait until the subscription is assigned and the position resolved to the end.
        deadline = time.monotonic() + 20
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(timeout_ms=200)
        assert c.assignment() == {tp}
        assert c.position(tp) == 5
        produce_values(broker.bootstrap, topic, [b"new-%d" % i for i in range(3)])
        records = poll_until(c, expected=3)
    assert [(r.offset, r.value) for r in records] == [(5 + i, b"new-%d" % i) for i in range(3)]


def test_default_auto_offset_reset_is_latest(broker, topic):
    # The seed: "如果省略这个参数，那么默认就是latest" — the default is latest.
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"before"])
    with consumer(broker.bootstrap, topic, consumer_timeout_ms=1500) as c:
        assert list(c) == []
        assert c.assignment() == {TopicPartition(topic, 0)}
        assert c.position(TopicPartition(topic, 0)) == 1


def test_iterating_consumer_sees_records_produced_while_it_waits(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=200) as c:
        c.assign([tp])
        assert c.position(tp) == 0
        assert poll_until(c, expected=1, timeout=1) == []
        produce_values(broker.bootstrap, topic, [b"one", b"two"])
        records = poll_until(c, expected=2)
    assert [r.value for r in records] == [b"one", b"two"]


def test_fetch_spanning_many_batches(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    n = 2000
    with producer(broker.bootstrap, linger_ms=10, batch_size=16 * 1024) as p:
        for i in range(n):
            p.send(topic, value=b"%06d" % i + b"-" * 200, partition=0)
        p.flush(timeout=60)
    tp = TopicPartition(topic, 0)
    # small fetch sizes force many round trips and batch boundaries inside responses
    with consumer(broker.bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=32 * 1024,
                  fetch_max_bytes=64 * 1024) as c:
        c.assign([tp])
        c.seek(tp, 0)
        records = poll_until(c, expected=n, timeout=60)
    assert [r.offset for r in records] == list(range(n))
    assert [r.value[:6] for r in records] == [b"%06d" % i for i in range(n)]


def test_seek_past_end_resets_by_policy(broker, topic):
    # An out-of-range fetch offset triggers auto_offset_reset (here: earliest).
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"r0", b"r1"])
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False) as c:
        c.assign([tp])
        c.seek(tp, 1000)
        records = poll_until(c, expected=2)
    assert [(r.offset, r.value) for r in records] == [(0, b"r0"), (1, b"r1")]


def test_seek_into_the_middle_of_a_compressed_batch(broker, topic):
    # The broker returns whole batches; the client must get exactly the records from the
    # sought offset on (records before it in the same compressed batch are dropped client-side,
    # but the batch's offsets must be right for that to work).
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap, compression_type="gzip", linger_ms=100, batch_size=1024 * 1024) as p:
        futures = [p.send(topic, value=b"c%03d" % i, partition=0) for i in range(100)]
        p.flush(timeout=30)
        assert [f.get(timeout=30).offset for f in futures] == list(range(100))
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, enable_auto_commit=False) as c:
        c.assign([tp])
        c.seek(tp, 37)
        records = poll_until(c, expected=63)
    assert [(r.offset, r.value) for r in records] == [(i, b"c%03d" % i) for i in range(37, 100)]


def test_log_append_time_topic(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1,
                 configs={"message.timestamp.type": "LogAppendTime"})
    old = int(time.time() * 1000) - 86_400_000
    before = int(time.time() * 1000)
    with producer(broker.bootstrap) as p:
        meta = p.send(topic, value=b"x", partition=0, timestamp_ms=old).get(timeout=30)
    after = int(time.time() * 1000)
    # the produce response carries the broker's append time
    assert before - 1000 <= meta.timestamp <= after + 1000
    with consumer(broker.bootstrap, topic, auto_offset_reset="earliest", consumer_timeout_ms=5000) as c:
        [r] = list(c)
    assert r.timestamp_type == 1  # LogAppendTime
    assert before - 1000 <= r.timestamp <= after + 1000
