"""Disk faults under real clients: a broker whose fsync fails takes its data directory
offline and stops (as Kafka halts when its last log directory fails), and nothing a
producer was told is stored goes missing.

The fault comes from the broker's hidden test hook `--debug-fail-fsync-after-file PATH`:
while PATH exists, fsyncs of the partition logs under its data directory fail with EIO.

- Three brokers, a factor-3 topic with min.insync.replicas=2 and an idempotent acks=all
  producer: the partition leader's fsync fails; it exits non-zero, a new leader comes
  from the ISR, every acknowledged record is readable once at its acknowledged offset,
  the broker restarted on a healthy disk rejoins the ISR, and the replicas hold the same
  bytes below the high watermark.
- One broker: the acks=all produce whose fsync fails is answered KAFKA_STORAGE_ERROR
  (or, if a background fsync failed first, its connection closes unanswered), the broker
  exits non-zero, and after a restart every acknowledged record is there.
"""

from __future__ import annotations

import time

import pytest
from kafka.errors import KafkaConnectionError, KafkaStorageError

from brokers import Cluster, broker_binary
from compat_helpers import producer, read_partition, wait_until
from test_replication import (LAG_MS, Load, assert_acknowledged_intact, check_replicas, create,
                              end_offsets, leadership, read_all, wait_for_isr)

pytestmark = [pytest.mark.crash, pytest.mark.timeout(300)]

# The failed broker must be gone within this (its shutdown grace period is 10 s).
EXIT_WITHIN_S = 30


def wait_for_exit(broker, what: str) -> int:
    wait_until(lambda: not broker.running, EXIT_WITHIN_S, interval=0.1, what=what)
    return broker.proc.returncode


def test_a_leader_whose_fsync_fails_stops_and_leadership_moves_losing_nothing(tmp_path,
                                                                              unique_name):
    triggers = [tmp_path / f"fail-fsync-{node}" for node in range(3)]
    cluster = Cluster(broker_binary(), tmp_path / "cluster", 3,
                      extra_args=["--replica-lag-time-max-ms", LAG_MS,
                                  "--acks-all-durability", "fsync"])
    for node, broker in enumerate(cluster.brokers):
        broker.extra_args += ["--debug-fail-fsync-after-file", str(triggers[node])]
    try:
        cluster.start()
        topic = unique_name("disk-fault")
        partitions = 3
        create(cluster, topic, partitions=partitions, min_isr=2)
        wait_for_isr(cluster, topic, [0, 1, 2], via=0)
        with Load(",".join(cluster.bootstrap(n) for n in range(3)), topic, partitions) as load:
            wait_until(lambda: len(load.acked) >= 500, 30, what="the load to start")
            (leader, epoch, _isr) = leadership(cluster, 0, topic)[0]
            watcher = (leader + 1) % 3
            before = len(load.acked)
            faulted_at = time.monotonic()
            triggers[leader].write_text("")

            status = wait_for_exit(cluster.brokers[leader], f"broker {leader} to stop")
            stopped_after = time.monotonic() - faulted_at
            assert status != 0, f"broker {leader} exited with status {status}"
            log = cluster.brokers[leader].log_text()
            assert "the data directory failed: stopping the broker" in log
            assert "Input/output error (os error 5)" in log

            def moved():
                now = leadership(cluster, watcher, topic)
                if now and now[0][0] not in (-1, leader) and now[0][1] > epoch:
                    return now
                return None

            (new_leader, _epoch, isr) = wait_until(moved, 30, interval=0.1,
                                                   what=f"a new leader of {topic}-0")[0]
            assert new_leader in isr and leader not in isr
            wait_until(lambda: len(load.acked) > before + 200, 60,
                       what="acknowledgements from the new leader")
            triggers[leader].unlink()
            cluster.brokers[leader].start()
            wait_for_isr(cluster, topic, [0, 1, 2], via=watcher, timeout=60)
        ends = end_offsets(cluster.bootstrap(watcher), topic, partitions)
        assert_acknowledged_intact(load, read_all(cluster.bootstrap(watcher), topic, partitions))
        batches = check_replicas(cluster, topic, partitions, ends)
        assert batches > 0
        print(f"broker {leader} stopped {stopped_after:.2f}s after its fsync failed; "
              f"{len(load.acked)} records acknowledged, {batches} batches compared")
    finally:
        cluster.stop_all()


def test_a_single_broker_answers_storage_error_stops_and_keeps_what_it_acknowledged(
        make_broker, tmp_path, unique_name):
    trigger = tmp_path / "fail-fsync"
    broker = make_broker(extra_args=["--debug-fail-fsync-after-file", str(trigger)])
    topic = unique_name("disk-fault-single")
    acked = {}
    with producer(broker.bootstrap, acks="all", retries=0, enable_idempotence=False) as p:
        for i in range(100):
            value = b"before-%03d" % i
            acked[p.send(topic, value=value, partition=0).get(timeout=30).offset] = value
        trigger.write_text("")
        # The produce's own fsync fails (KAFKA_STORAGE_ERROR), or a background fsync
        # failed first and the stopping broker closed the connection before reading it:
        # either way the record is not acknowledged.
        with pytest.raises((KafkaStorageError, KafkaConnectionError)):
            p.send(topic, value=b"during", partition=0).get(timeout=30)
    status = wait_for_exit(broker, "the broker to stop")
    assert status != 0, f"the broker exited with status {status}"

    trigger.unlink()
    broker.start()
    records = read_partition(broker.bootstrap, topic, 0, expected=len(acked))
    stored = {r.offset: r.value for r in records}
    assert {o: stored.get(o) for o in acked} == acked
