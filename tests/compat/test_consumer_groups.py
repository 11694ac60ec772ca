"""The consumer-group behaviour the seed blog posts describe, with kafka-python 3.x.
All need FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit/OffsetFetch and
LeaveGroup; they are marked `groups` (deselect with -m 'not groups' while the broker has none).

Seed claims checked here:
- KafkaConsumer(topic, group_id=..., auto_offset_reset='earliest') reads everything;
- a group that has committed does not re-read ("已经没有数据会被打印出来了"), a new group_id
  reads from the beginning again;
- auto_offset_reset only applies when the group has no committed offset: a group stopped
  half-way and restarted with 'latest' continues where it stopped, skipping nothing;
- two consumers of one group split the partitions, no record is read by both;
- subscribe(pattern=...) and subscribe(topics=[...]).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from compat_helpers import (consumer, create_topic, poll_until, produce_values, producer,
                            wait_until)

pytestmark = [pytest.mark.groups, pytest.mark.timeout(180)]

GROUP_CONF = dict(session_timeout_ms=10000, heartbeat_interval_ms=1000, request_timeout_ms=30000,
                  max_poll_interval_ms=60000)


def group(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def drain(c, expected: int, timeout: float = 30.0):
    """Iterates a subscribed consumer until `expected` records or `timeout`."""
    return poll_until(c, expected=expected, timeout=timeout)


def test_group_consumer_reads_all_then_commit_prevents_rereading(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_values(broker.bootstrap, topic, [b"a%d" % i for i in range(6)], partition=0)
    produce_values(broker.bootstrap, topic, [b"b%d" % i for i in range(4)], partition=1)
    g = group("g1")
    with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="earliest",
                  enable_auto_commit=False, **GROUP_CONF) as c:
        records = drain(c, expected=10)
        assert sorted(r.value for r in records) == sorted([b"a%d" % i for i in range(6)] + [b"b%d" % i for i in range(4)])
        c.commit()
        assert c.committed(TopicPartition(topic, 0)) == 6
        assert c.committed(TopicPartition(topic, 1)) == 4

    # same group again: nothing old is re-read, only new records
    produce_values(broker.bootstrap, topic, [b"new"], partition=1)
    with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="earliest",
                  enable_auto_commit=False, consumer_timeout_ms=8000, **GROUP_CONF) as c:
        again = list(c)
    assert [(r.partition, r.offset, r.value) for r in again] == [(1, 4, b"new")]

    # a different group reads everything from the beginning
    with consumer(broker.bootstrap, topic, group_id=group("g2"), auto_offset_reset="earliest",
                  **GROUP_CONF) as c:
        assert len(drain(c, expected=11)) == 11


def test_auto_commit_and_resume(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"r%d" % i for i in range(10)])
    g = group("auto")
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="earliest",
                  enable_auto_commit=True, auto_commit_interval_ms=200, **GROUP_CONF) as c:
        assert len(drain(c, expected=10)) == 10
        # auto-commit runs inside poll() every auto_commit_interval_ms
        deadline = time.monotonic() + 20
        while c.committed(tp) != 10 and time.monotonic() < deadline:
            c.poll(timeout_ms=200)
        assert c.committed(tp) == 10
    # a new member of the same group resumes from the committed offset
    produce_values(broker.bootstrap, topic, [b"r10"])
    with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="earliest", **GROUP_CONF) as c:
        assert c.committed(tp) == 10
        assert [(r.offset, r.value) for r in drain(c, expected=1)] == [(10, b"r10")]


def test_auto_offset_reset_only_applies_without_committed_offset(broker, topic):
    # Seed (004): stop at record 50 of 100, restart with 'latest': it continues at 50.
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"%d" % i for i in range(100)])
    tp = TopicPartition(topic, 0)
    g = group("resume")
    with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="earliest",
                  enable_auto_commit=False, max_poll_records=10, **GROUP_CONF) as c:
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 50 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500, max_records=50 - len(got)).values():
                got.extend(recs)
        assert [int(r.value) for r in got] == list(range(50))
        c.commit({tp: OffsetAndMetadata(50, "", -1)})
    with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="latest",
                  **GROUP_CONF) as c:
        rest = drain(c, expected=50)
    assert [int(r.value) for r in rest] == list(range(50, 100))


def test_new_group_with_latest_sees_only_new_records(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"old"] * 5)
    with consumer(broker.bootstrap, topic, group_id=group("latest"), auto_offset_reset="latest",
                  **GROUP_CONF) as c:
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(timeout_ms=200)
        assert c.assignment() == {TopicPartition(topic, 0)}
        assert c.position(TopicPartition(topic, 0)) == 5
        produce_values(broker.bootstrap, topic, [b"fresh"])
        records = drain(c, expected=1)
    assert [(r.offset, r.value) for r in records] == [(5, b"fresh")]


def test_two_consumers_in_one_group_split_partitions(broker, topic):
    # Seed (004): a second consumer in the group takes over part of the partitions; each
    # consumer runs its own poll loop (as separate programs would), here in two threads.
    create_topic(broker.bootstrap, topic, partitions=4)
    for p in range(4):
        produce_values(broker.bootstrap, topic, [b"p%d-%d" % (p, i) for i in range(5)], partition=p)
    g = group("split")
    stop = threading.Event()
    members = [{"records": [], "assignment": set(), "error": None} for _ in range(2)]

    def run(member):
        try:
            with consumer(broker.bootstrap, topic, group_id=g, auto_offset_reset="earliest",
                          enable_auto_commit=False, **GROUP_CONF) as c:
                while not stop.is_set():
                    for recs in c.poll(timeout_ms=200).values():
                        member["records"].extend(recs)
                    member["assignment"] = set(c.assignment())
        except Exception as e:  # reported by the main thread
            member["error"] = repr(e)

    threads = [threading.Thread(target=run, args=(m,), daemon=True) for m in members]
    for t in threads:
        t.start()
    everything = {TopicPartition(topic, p) for p in range(4)}

    def split_done():
        a1, a2 = members[0]["assignment"], members[1]["assignment"]
        read = {r.value for m in members for r in m["records"]}
        return a1 and a2 and not (a1 & a2) and (a1 | a2) == everything and len(read) == 20

    try:
        wait_until(split_done, timeout=60, interval=0.2, what="the group to split 4 partitions over 2 members")
    except TimeoutError as e:
        raise AssertionError(f"{e}: assignments {members[0]['assignment']} / {members[1]['assignment']}, "
                             f"errors {[m['error'] for m in members]}") from None
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert [m["error"] for m in members] == [None, None]
    values = {r.value for m in members for r in m["records"]}
    assert values == {b"p%d-%d" % (p, i) for p in range(4) for i in range(5)}


def test_subscribe_pattern(broker, unique_name):
    prefix = unique_name("pat")
    t1, t2, other = f"{prefix}-one", f"{prefix}-two", unique_name("other")
    for t in (t1, t2, other):
        create_topic(broker.bootstrap, t)
        produce_values(broker.bootstrap, t, [t.encode()])
    with consumer(broker.bootstrap, group_id=group("pattern"), auto_offset_reset="earliest",
                  **GROUP_CONF) as c:
        c.subscribe(pattern=f"^{prefix}.*")
        records = drain(c, expected=2)
    assert sorted(r.value for r in records) == sorted([t1.encode(), t2.encode()])


def test_subscribe_multiple_topics(broker, unique_name):
    t1, t2 = unique_name("multi-a"), unique_name("multi-b")
    for t in (t1, t2):
        create_topic(broker.bootstrap, t)
        produce_values(broker.bootstrap, t, [t.encode()])
    with consumer(broker.bootstrap, group_id=group("multi"), auto_offset_reset="earliest",
                  **GROUP_CONF) as c:
        c.subscribe(topics=[t1, t2])
        records = drain(c, expected=2)
    assert sorted(r.value for r in records) == sorted([t1.encode(), t2.encode()])


def test_assign_with_group_id_commits_offsets(broker, topic):
    # Seed (003): KafkaConsumer(group_id=...) + assign([TopicPartition(...)]) then iterate.
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"x%d" % i for i in range(3)])
    g = group("assign")
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap, group_id=g, auto_offset_reset="earliest",
                  enable_auto_commit=False, **GROUP_CONF) as c:
        c.assign([tp])
        assert [r.value for r in drain(c, expected=3)] == [b"x0", b"x1", b"x2"]
        c.commit()
    with consumer(broker.bootstrap, group_id=g, **GROUP_CONF) as c:
        assert c.committed(tp) == 3


def test_seed_consumer_with_pinned_api_version_and_group(broker, topic):
    # Seed (002): KafkaConsumer(topic, api_version=(0, 11, 5), group_id=..., auto_offset_reset='earliest')
    create_topic(broker.bootstrap, topic, partitions=1)
    with producer(broker.bootstrap, value_serializer=lambda m: json.dumps(m).encode()) as p:
        for i in range(5):
            p.send(topic, {"num": i + 1, "msg": "成功"})
        p.flush(timeout=30)
    with consumer(broker.bootstrap, topic, api_version=(0, 11, 5), group_id=group("ichpan"),
                  auto_offset_reset="earliest", **GROUP_CONF) as c:
        records = drain(c, expected=5)
    assert [json.loads(r.value) for r in records] == [{"num": i + 1, "msg": "成功"} for i in range(5)]
