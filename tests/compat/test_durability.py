"""Crash and restart: what a client was told is stored must still be there, once.

- kill -9 mid-stream of an idempotent acks=all producer, restart on the same data dir:
  every acknowledged record is present exactly once and in order.
- SIGTERM and restart: topics, partition counts, configs and data are all back.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from confluent_kafka import KafkaException, Producer
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from compat_helpers import (admin_client, ck_consume_partition, ck_producer_conf, consumer,
                            create_topic, produce_values, read_partition, wait_until)


class NumberedStream:
    """Produces "0", "1", "2", ... to one partition from a background thread with an
    idempotent acks=all confluent-kafka producer, recording which were acknowledged."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.acked: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.client_errors: list[str] = []
        self.sent = 0
        self.fatal: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.producer = Producer(ck_producer_conf(bootstrap, **{
            "enable.idempotence": True, "acks": "all", "linger.ms": 2,
            "message.timeout.ms": 60000, "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "error_cb": lambda e: self.client_errors.append(f"{e.code()} fatal={e.fatal()} {e.str()}"),
        }))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, msg):
        n = int(msg.value())
        with self._lock:
            if err is None:
                self.acked.append(n)
            else:
                self.failed.append((n, str(err)))

    def _run(self):
        while not self._stop.is_set():
            try:
                try:
                    self.producer.produce(self.topic, value=str(self.sent).encode(), partition=0,
                                          on_delivery=self._on_delivery)
                    self.sent += 1
                except BufferError:
                    pass  # local queue full while the broker is down: just wait for room
                self.producer.poll(0.001)
            except KafkaException as e:  # a fatal producer error: nothing more can be sent
                self.fatal = str(e)
                return

    def start(self):
        self.thread.start()
        return self

    def acked_count(self) -> int:
        """Acknowledged so far; raises if the producer hit a fatal error (waits end at once)."""
        if self.fatal is not None:
            raise AssertionError(f"the idempotent producer failed fatally: {self.fatal}; "
                                 f"{len(self.acked)} acked, errors: {self.client_errors[-3:]}")
        with self._lock:
            return len(self.acked)

    def stop(self, flush_timeout: float = 60) -> int:
        self._stop.set()
        self.thread.join(timeout=10)
        return self.producer.flush(flush_timeout)


@pytest.mark.crash
@pytest.mark.timeout(240)
def test_kill9_mid_stream_keeps_every_acknowledged_record_once_in_order(make_broker, topic):
    b = make_broker()
    create_topic(b.bootstrap, topic, partitions=1)
    stream = NumberedStream(b.bootstrap, topic).start()

    wait_until(lambda: stream.acked_count() >= 2000, timeout=60, what="2000 acknowledged records")
    b.kill9()
    acked_before_crash = stream.acked_count()
    b.start()  # same port, same data dir
    wait_until(lambda: stream.acked_count() >= acked_before_crash + 1000, timeout=90,
               what="1000 more acknowledged records after the restart")
    unflushed = stream.stop()
    stream.acked_count()  # fails on a fatal producer error

    acked = list(stream.acked)
    assert acked == sorted(acked), "delivery reports out of order"
    msgs = ck_consume_partition(b.bootstrap, topic, 0, expected=None, timeout=30)
    values = [int(m.value()) for m in msgs]
    offsets = [m.offset() for m in msgs]

    dupes = sorted(v for v, n in Counter(values).items() if n > 1)
    assert dupes == [], f"duplicated records after crash: {dupes[:20]}"
    missing = sorted(set(acked) - set(values))
    assert missing == [], f"{len(missing)} acknowledged records lost, first: {missing[:20]}"
    assert values == sorted(values), "records out of order in the log"
    assert offsets == list(range(len(offsets))), "offsets are not contiguous from 0"
    assert unflushed == 0, f"{unflushed} records still undelivered after the restart"
    fatal = [e for e in stream.client_errors if "fatal=True" in e]
    assert fatal == [], f"the idempotent producer hit fatal errors: {fatal}"


@pytest.mark.crash
def test_kill9_after_acknowledged_writes_and_topic_creation(make_broker, unique_name):
    b = make_broker()
    a, c = unique_name("k9-a"), unique_name("k9-c")
    create_topic(b.bootstrap, a, partitions=2, configs={"retention.ms": "999000"})
    create_topic(b.bootstrap, c, partitions=1)
    produce_values(b.bootstrap, a, [b"a%d" % i for i in range(30)], partition=1, acks="all")
    produce_values(b.bootstrap, c, [b"c0"], acks="all")
    b.kill9()
    b.start()

    with admin_client(b.bootstrap) as admin:
        admin.wait_for_topics([a, c], timeout_ms=10000)
        assert {a, c} <= set(admin.list_topics())
        [desc] = admin.describe_topics([a])
        assert len(desc["partitions"]) == 2
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, a)])["topic"][a]
        assert cfg["retention.ms"]["value"] == "999000"
    assert [r.value for r in read_partition(b.bootstrap, a, 1, expected=30)] == [b"a%d" % i for i in range(30)]
    assert [r.value for r in read_partition(b.bootstrap, c, 0, expected=1)] == [b"c0"]
    # appends continue after the recovered end, not over it
    assert produce_values(b.bootstrap, a, [b"after"], partition=1)[0].offset == 30


@pytest.mark.crash
def test_sigterm_restart_restores_topics_configs_and_data(make_broker, unique_name):
    b = make_broker()
    t1, t2 = unique_name("rs-one"), unique_name("rs-two")
    create_topic(b.bootstrap, t1, partitions=3,
                 configs={"retention.ms": "123456789", "cleanup.policy": "delete"})
    create_topic(b.bootstrap, t2, partitions=1, configs={"max.message.bytes": "65536"})
    # a config changed after creation must survive too
    with admin_client(b.bootstrap) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t2,
                                            configs={"retention.ms": "600000"})])
    before = {}
    for p in range(3):
        metas = produce_values(b.bootstrap, t1, [b"%s-p%d-%d" % (t1.encode(), p, i) for i in range(10 + p)],
                               partition=p)
        before[(t1, p)] = [m.offset for m in metas]
    produce_values(b.bootstrap, t2, [b"two-%d" % i for i in range(5)], compression_type="gzip")

    assert b.stop() == 0, "runnel-broker did not exit cleanly on SIGTERM"
    b.start()

    with admin_client(b.bootstrap) as admin:
        admin.wait_for_topics([t1, t2], timeout_ms=10000)
        topics = set(admin.list_topics())
        assert {t1, t2} <= topics
        parts = {d["name"]: len(d["partitions"]) for d in admin.describe_topics([t1, t2])}
        assert parts == {t1: 3, t2: 1}
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t1),
                                      ConfigResource(ConfigResourceType.TOPIC, t2)])["topic"]
    assert cfg[t1]["retention.ms"]["value"] == "123456789"
    assert cfg[t1]["cleanup.policy"]["value"] == "delete"
    assert cfg[t2]["max.message.bytes"]["value"] == "65536"
    assert cfg[t2]["retention.ms"]["value"] == "600000"

    tps = [TopicPartition(t1, p) for p in range(3)] + [TopicPartition(t2, 0)]
    with consumer(b.bootstrap) as c:
        assert c.end_offsets(tps) == {tps[0]: 10, tps[1]: 11, tps[2]: 12, tps[3]: 5}
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
    for p in range(3):
        records = read_partition(b.bootstrap, t1, p, expected=10 + p)
        assert [r.value for r in records] == [b"%s-p%d-%d" % (t1.encode(), p, i) for i in range(10 + p)]
    assert [r.value for r in read_partition(b.bootstrap, t2, 0, expected=5)] == [b"two-%d" % i for i in range(5)]
    # new writes continue the offsets
    assert produce_values(b.bootstrap, t1, [b"next"], partition=0)[0].offset == 10

    # and a second restart (now from a cleanly-shut-down state with new writes) still works
    assert b.stop() == 0
    b.start()
    assert [r.value for r in read_partition(b.bootstrap, t1, 0, expected=11, start=10)] == [b"next"]


@pytest.mark.crash
def test_idempotent_producer_survives_restart_without_duplicates(make_broker, topic):
    # The same confluent-kafka producer keeps going across a graceful restart.
    b = make_broker()
    create_topic(b.bootstrap, topic, partitions=1)
    stream = NumberedStream(b.bootstrap, topic).start()
    wait_until(lambda: stream.acked_count() >= 500, timeout=60, what="500 acknowledged records")
    assert b.stop() == 0
    b.start()
    base = stream.acked_count()
    wait_until(lambda: stream.acked_count() >= base + 500, timeout=90,
               what="500 more acknowledged records after the restart")
    assert stream.stop() == 0
    stream.acked_count()  # fails on a fatal producer error
    msgs = ck_consume_partition(b.bootstrap, topic, 0, expected=None, timeout=30)
    values = [int(m.value()) for m in msgs]
    assert len(values) == len(set(values)), "duplicates after a graceful restart"
    assert set(stream.acked) <= set(values)
    assert values == sorted(values)
    assert [m.offset() for m in msgs] == list(range(len(msgs)))


@pytest.mark.crash
@pytest.mark.groups
def test_committed_group_offsets_survive_restart(make_broker, topic):
    # Seed (004): a group that consumed and committed does not re-read after a restart.
    b = make_broker()
    create_topic(b.bootstrap, topic, partitions=2)
    produce_values(b.bootstrap, topic, [b"a", b"b", b"c"], partition=0)
    produce_values(b.bootstrap, topic, [b"d"], partition=1)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    from kafka.structs import OffsetAndMetadata
    with consumer(b.bootstrap, group_id="durable-group", enable_auto_commit=False) as c:
        c.commit({tp0: OffsetAndMetadata(2, "meta-0", -1), tp1: OffsetAndMetadata(1, "", -1)})
        assert c.committed(tp0) == 2
    b.kill9()
    b.start()
    with consumer(b.bootstrap, group_id="durable-group", enable_auto_commit=False) as c:
        assert c.committed(tp0) == 2
        assert c.committed(tp0, metadata=True).metadata == "meta-0"
        assert c.committed(tp1) == 1
    assert b.stop() == 0
    b.start()
    with consumer(b.bootstrap, topic, group_id="durable-group", auto_offset_reset="earliest",
                  enable_auto_commit=False, consumer_timeout_ms=8000) as c:
        rest = sorted((r.partition, r.offset, r.value) for r in c)
    assert rest == [(0, 2, b"c")]
