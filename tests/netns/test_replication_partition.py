"""Replication across a real network partition: the leader of a partition is cut off from
the other brokers while it keeps running (and its clients still reach it). It must not
acknowledge acks=all writes; the majority elects a new leader from the ISR and goes on;
after the heal the old leader truncates what it alone holds and follows, and nothing
acknowledged is lost. A checker compares every replica's bytes at the end.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from compat_helpers import admin_client, consumer, node_admin, producer, wait_until
from replica_check import compare_replicas

pytestmark = pytest.mark.timeout(240)


def leadership(cluster, node: int, topic: str):
    """(leader, leader epoch, sorted ISR) of partition 0 as broker `node` answers, or None."""
    try:
        with node_admin(cluster.bootstrap(node)) as admin:
            partitions = admin.leaderships(topic)
    except Exception:  # noqa: BLE001 - between answers
        return None
    return partitions and partitions.get(0)


def test_an_isolated_leader_acknowledges_nothing_and_loses_nothing_acknowledged(
        make_netns_cluster, capsys):
    cluster = make_netns_cluster(3, extra_args=["--replica-lag-time-max-ms", "3000"])
    topic = f"isolated-{uuid.uuid4().hex[:8]}"
    everyone = ",".join(cluster.bootstrap(n) for n in range(3))
    with admin_client(everyone) as admin:
        admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=3,
                                      topic_configs={"min.insync.replicas": "2"})])
    leader, epoch, _ = wait_until(
        lambda: (view := leadership(cluster, 0, topic)) and view[2] == [0, 1, 2] and view,
        30, interval=0.2, what="a whole ISR")
    majority = [n for n in range(3) if n != leader]

    acked: dict[int, bytes] = {}
    with producer(everyone, acks="all", enable_idempotence=True) as p:
        for i in range(100):
            meta = p.send(topic, value=b"before-%03d" % i, partition=0).get(timeout=30)
            acked[meta.offset] = b"before-%03d" % i

    cluster.cut(leader)
    cut_at = time.monotonic()
    # A client that still reaches the isolated leader cannot get acks=all: the followers
    # no longer fetch, so the high watermark cannot cover the write.
    isolated = KafkaProducer(bootstrap_servers=cluster.bootstrap(leader), acks="all", retries=0,
                             request_timeout_ms=6000, max_block_ms=10000)
    try:
        with pytest.raises(KafkaError):
            isolated.send(topic, value=b"isolated", partition=0).get(timeout=30)
    finally:
        isolated.close(timeout=5)

    # The majority fences the cut broker and elects a new leader from the ISR.
    new_leader, new_epoch, isr = wait_until(
        lambda: (view := leadership(cluster, majority[0], topic)) and view[0] in majority
        and view,
        30, interval=0.1, what="a new leader on the majority side")
    elected_s = time.monotonic() - cut_at
    assert new_epoch > epoch and leader not in isr
    bootstrap = ",".join(cluster.bootstrap(n) for n in majority)
    with producer(bootstrap, acks="all", enable_idempotence=True) as p:
        for i in range(100):
            meta = p.send(topic, value=b"during-%03d" % i, partition=0).get(timeout=30)
            acked[meta.offset] = b"during-%03d" % i

    cluster.heal(leader)
    healed_at = time.monotonic()
    wait_until(lambda: (view := leadership(cluster, majority[0], topic)) and view[2] == [0, 1, 2],
               60, interval=0.2, what="the healed broker back in the ISR")
    rejoined_s = time.monotonic() - healed_at
    with capsys.disabled():
        print(f"\n    isolated leader {leader}: new leader {new_leader} seen {elected_s:.2f}s after "
              f"the cut (looked for once the isolated write had failed); back in the ISR "
              f"{rejoined_s:.2f}s after the heal")

    with consumer(everyone) as c:
        end = c.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    assert end == 200
    got = {}
    with consumer(everyone, enable_auto_commit=False, consumer_timeout_ms=10000) as c:
        c.assign([TopicPartition(topic, 0)])
        c.seek_to_beginning()
        for record in c:
            got[record.offset] = record.value
            if len(got) >= end:
                break
    assert got == acked, "what was acknowledged, where it was acknowledged, and nothing else"
    cluster.heal_all()
    cluster.stop_all()
    assert compare_replicas([b.data_dir for b in cluster.brokers], topic, 0, end) > 0
