"""Replication across three broker processes, driven by real clients: followers join the
ISR and hold the leader's bytes; acks=all waits for the ISR and honours
min.insync.replicas; a stopped follower leaves the ISR and comes back; and killing the
leader again and again loses no acknowledged record and duplicates none.

After each run a checker reads every replica's segment files and compares them byte for
byte below the high watermark (replica_check.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import NotEnoughReplicasError

from compat_helpers import (admin_client, consumer, java_hash_partition, poll_until, producer,
                            wait_until)
from replica_check import compare_replicas

pytestmark = pytest.mark.timeout(300)

# A follower that has not caught up for this long leaves the ISR (fast, for the tests).
LAG_MS = "3000"
# Leader kills in the short form (make test); RUNNEL_FAILOVER_CYCLES sets the long form.
CYCLES = int(os.environ.get("RUNNEL_FAILOVER_CYCLES", "3"))


def replicated_cluster(make_cluster, durability: str = "fsync"):
    return make_cluster(3, extra_args=["--replica-lag-time-max-ms", LAG_MS,
                                       "--acks-all-durability", durability])


def describe(cluster, node: int, topic: str) -> dict[int, dict] | None:
    """{partition: Metadata's partition entry} as broker `node` answers, or None while it
    cannot answer."""
    try:
        with admin_client(cluster.bootstrap(node)) as admin:
            (described,) = admin.describe_topics([topic])
    except Exception:  # noqa: BLE001 - a broker between answers
        return None
    if described["error_code"] != 0:
        return None
    return {p["partition_index"]: p for p in described["partitions"]}


def leadership(cluster, node: int, topic: str) -> dict | None:
    """{partition: (leader, leader epoch, sorted ISR)} as broker `node` answers Metadata,
    or None while it cannot answer."""
    described = describe(cluster, node, topic)
    if described is None:
        return None
    return {i: (p["leader_id"], p["leader_epoch"], sorted(p["isr_nodes"]))
            for i, p in described.items()}


def wait_for_isr(cluster, topic: str, isr: list[int], via: int, timeout: float = 30.0) -> dict:
    def full():
        now = leadership(cluster, via, topic)
        return now if now and all(v[2] == isr and v[0] >= 0 for v in now.values()) else None
    return wait_until(full, timeout, interval=0.2, what=f"ISR {isr} on every partition of {topic}")


def create(cluster, topic: str, partitions: int, min_isr: int) -> None:
    with admin_client(cluster.bootstrap(0)) as admin:
        admin.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=3,
                                      topic_configs={"min.insync.replicas": str(min_isr)})])


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    with consumer(bootstrap) as c:
        ends = c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    return {tp.partition: offset for tp, offset in ends.items()}


def read_all(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, bytes]]]:
    """Every record below the high watermark of each partition: {partition: [(offset, value)]}."""
    ends = end_offsets(bootstrap, topic, partitions)
    got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    with consumer(bootstrap, enable_auto_commit=False, consumer_timeout_ms=10000) as c:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        c.seek_to_beginning()
        deadline = time.monotonic() + 60
        while any(len(got[p]) < ends[p] for p in got) and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=1000).items():
                got[tp.partition].extend((r.offset, r.value) for r in records)
    return got


def check_replicas(cluster, topic: str, partitions: int, ends: dict[int, int]) -> int:
    """Stops the brokers cleanly and compares every replica below the high watermark."""
    cluster.stop_all()
    dirs = [b.data_dir for b in cluster.brokers]
    return sum(compare_replicas(dirs, topic, p, ends[p]) for p in range(partitions))


@pytest.mark.crash
@pytest.mark.parametrize("durability", ["fsync", "replication"])
def test_followers_join_the_isr_and_hold_the_leaders_bytes(make_cluster, unique_name, durability):
    cluster = replicated_cluster(make_cluster, durability)
    topic = unique_name("replicated")
    create(cluster, topic, partitions=3, min_isr=2)
    wait_for_isr(cluster, topic, [0, 1, 2], via=1)
    acked = {}
    with producer(cluster.bootstrap(2), acks="all", enable_idempotence=True,
                  compression_type="lz4", linger_ms=5) as p:
        futures = {i: p.send(topic, value=b"v%05d" % i, partition=i % 3) for i in range(3000)}
        p.flush()
        for i, f in futures.items():
            meta = f.get(timeout=30)
            acked[(meta.partition, meta.offset)] = b"v%05d" % i
    # The ISR stayed whole and every broker says so in its metrics.
    assert wait_for_isr(cluster, topic, [0, 1, 2], via=0)
    for node in range(3):
        assert cluster.metric(node, "runnel_under_replicated_partitions") == 0
    ends = end_offsets(cluster.bootstrap(0), topic, 3)
    assert ends == {0: 1000, 1: 1000, 2: 1000}
    got = read_all(cluster.bootstrap(1), topic, 3)
    assert {(p, o): v for p, records in got.items() for o, v in records} == acked
    assert check_replicas(cluster, topic, 3, ends) > 0


@pytest.mark.crash
def test_a_stopped_follower_leaves_the_isr_and_comes_back(make_cluster, unique_name):
    cluster = replicated_cluster(make_cluster)
    topic = unique_name("follower")
    create(cluster, topic, partitions=1, min_isr=2)
    (leader, epoch, _isr), = wait_for_isr(cluster, topic, [0, 1, 2], via=0).values()
    follower = (leader + 1) % 3
    cluster.sigstop(follower)
    try:
        rest = sorted({0, 1, 2} - {follower})
        wait_for_isr(cluster, topic, rest, via=leader)
        # Two in-sync replicas meet min.insync.replicas=2: acks=all goes on.
        with producer(cluster.bootstrap(leader), acks="all", enable_idempotence=True) as p:
            offsets = [p.send(topic, value=b"while-stopped-%d" % i).get(timeout=30).offset
                       for i in range(50)]
        assert offsets == list(range(50))
        assert cluster.metric(leader, "runnel_under_replicated_partitions") == 1
    finally:
        cluster.sigcont(follower)
    (now_leader, now_epoch, _), = wait_for_isr(cluster, topic, [0, 1, 2], via=leader).values()
    assert (now_leader, now_epoch) == (leader, epoch), "a follower's return moves no leadership"
    ends = end_offsets(cluster.bootstrap(leader), topic, 1)
    assert ends == {0: 50}
    assert check_replicas(cluster, topic, 1, ends) > 0


@pytest.mark.crash
def test_a_paused_controller_fences_nobody_when_it_resumes(make_cluster, unique_name):
    """The active controller is stopped past every session and a new one takes over. When
    it resumes, its view of the heartbeats is stale: it must fence nobody (it is no longer
    the leader, and its own last round is far behind its time)."""
    cluster = replicated_cluster(make_cluster)
    topic = unique_name("paused-controller")
    create(cluster, topic, partitions=3, min_isr=2)
    wait_for_isr(cluster, topic, [0, 1, 2], via=0)
    paused = cluster.wait_for_brokers(3)["controller_id"]
    others = sorted({0, 1, 2} - {paused})
    marks = [b.log_size() for b in cluster.brokers]
    cluster.sigstop(paused)
    try:
        wait_until(lambda: cluster.describe(others[0])["controller_id"] in others, 30,
                   interval=0.2, what="a new controller")
        wait_until(lambda: paused in cluster.describe(others[0])["fenced"], 30, interval=0.2,
                   what=f"broker {paused} fenced")
        before = leadership(cluster, others[0], topic)
        # Past a session of the others' heartbeats (2 s) as the paused broker sees them.
        time.sleep(3)
    finally:
        cluster.sigcont(paused)
    cluster.wait_for_brokers(3, timeout=30)
    # Long enough for the resumed broker's liveness task to run several rounds.
    wait_until(lambda: all(b.log_size() > m for b, m in zip(cluster.brokers, marks)), 10,
               what="the brokers to log")
    time.sleep(2)
    for node, (broker, mark) in enumerate(zip(cluster.brokers, marks)):
        wrongly = [line for line in broker.log_text(mark).splitlines()
                   if "; fencing it" in line and f"node_id={paused}" not in line]
        assert not wrongly, f"broker {node} fenced a live broker: {wrongly}"
    after = leadership(cluster, others[0], topic)
    moved = {p: (before[p], after[p]) for p in before
             if before[p][0] in others and after[p][:2] != before[p][:2]}
    assert not moved, f"leadership of live brokers moved: {moved}"


@pytest.mark.crash
def test_acks_all_below_min_insync_replicas_is_refused_and_acks_1_is_not(make_cluster, unique_name):
    cluster = replicated_cluster(make_cluster)
    topic = unique_name("min-isr")
    create(cluster, topic, partitions=1, min_isr=3)
    (leader, _epoch, _isr), = wait_for_isr(cluster, topic, [0, 1, 2], via=0).values()
    follower = (leader + 1) % 3
    cluster.sigstop(follower)
    try:
        wait_for_isr(cluster, topic, sorted({0, 1, 2} - {follower}), via=leader)
        p = KafkaProducer(bootstrap_servers=cluster.bootstrap(leader), acks="all", retries=0,
                          request_timeout_ms=10000)
        try:
            with pytest.raises(NotEnoughReplicasError):
                p.send(topic, value=b"refused").get(timeout=30)
        finally:
            p.close(timeout=10)
        with producer(cluster.bootstrap(leader), acks=1) as p1:
            assert p1.send(topic, value=b"accepted").get(timeout=30).offset == 0
    finally:
        cluster.sigcont(follower)
    wait_for_isr(cluster, topic, [0, 1, 2], via=leader)
    with producer(cluster.bootstrap(leader), acks="all") as p:
        assert p.send(topic, value=b"whole-again").get(timeout=30).offset == 1


@pytest.mark.crash
def test_a_groups_committed_offsets_survive_its_coordinator(make_cluster, unique_name):
    cluster = replicated_cluster(make_cluster)
    topic, group = unique_name("grouped"), unique_name("group")
    create(cluster, topic, partitions=3, min_isr=2)
    wait_for_isr(cluster, topic, [0, 1, 2], via=0)
    everyone = ",".join(cluster.bootstrap(n) for n in range(3))
    with producer(everyone, acks="all") as p:
        for i in range(300):
            p.send(topic, value=b"g%03d" % i, partition=i % 3)
        p.flush()
    with consumer(everyone, topic, group_id=group, enable_auto_commit=False,
                  auto_offset_reset="earliest") as c:
        assert len(poll_until(c, 300, timeout=60)) == 300
        c.commit()
    # The coordinator is the leader of the group's __consumer_offsets partition, which
    # has three replicas: killing it moves the group to a broker that has its offsets.
    offsets_partition = java_hash_partition(group, 50)
    (coordinator, epoch, isr) = wait_for_isr(cluster, "__consumer_offsets", [0, 1, 2],
                                             via=0)[offsets_partition]
    cluster.brokers[coordinator].kill9()
    survivors = [n for n in range(3) if n != coordinator]

    def moved():
        view = leadership(cluster, survivors[0], "__consumer_offsets")
        return view and view[offsets_partition][0] in survivors \
            and view[offsets_partition][1] > epoch
    wait_until(moved, 30, interval=0.2, what="a new coordinator")
    with admin_client(",".join(cluster.bootstrap(n) for n in survivors)) as admin:
        committed = admin.list_group_offsets(group)[group]
    assert {tp.partition: m.offset for tp, m in committed.items()} == {0: 100, 1: 100, 2: 100}
    with producer(",".join(cluster.bootstrap(n) for n in survivors), acks="all") as p:
        for i in range(30):
            p.send(topic, value=b"after-%02d" % i, partition=i % 3)
        p.flush()
    with consumer(",".join(cluster.bootstrap(n) for n in survivors), topic, group_id=group,
                  enable_auto_commit=False, auto_offset_reset="earliest") as c:
        values = sorted(r.value for r in poll_until(c, 30, timeout=60))
    assert values == sorted(b"after-%02d" % i for i in range(30))


def assert_acknowledged_intact(load: "Load", got: dict[int, list[tuple[int, bytes]]]) -> None:
    """Every send of `load` was acknowledged, and `got` (read_all's answer) holds each
    acknowledged record once, at its acknowledged partition and offset."""
    assert load.failed == 0, f"{load.failed} sends failed"
    assert len(load.acked) == load.sent
    values = Counter(v for records in got.values() for _o, v in records)
    duplicated = [v for v, n in values.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} values twice, e.g. {duplicated[:5]}"
    stored = {v: (p, o) for p, records in got.items() for o, v in records}
    lost = [v for v in load.acked if v not in stored]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    moved = [v for v, at in load.acked.items() if stored[v] != at]
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:5]}"


class Load:
    """An idempotent acks=all producer writing numbered values to every partition from a
    thread, recording what each acknowledgement said."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.failed = 0
        self.stop = threading.Event()
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                      enable_idempotence=True, retries=2**31 - 1,
                                      request_timeout_ms=10000, delivery_timeout_ms=120000,
                                      max_in_flight_requests_per_connection=5, linger_ms=2)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ack(self, value: bytes):
        def done(meta):
            self.acked[value] = (meta.partition, meta.offset)
        return done

    def _fail(self, _error):
        self.failed += 1

    def _run(self):
        i = 0
        while not self.stop.is_set():
            value = b"n%07d" % i
            # Partition 0 gets half the load: the busiest one, whose leader is killed.
            partition = 0 if i % 2 == 0 else 1 + (i // 2) % (self.partitions - 1)
            self.producer.send(self.topic, value=value, partition=partition) \
                .add_callback(self._ack(value)).add_errback(self._fail)
            i += 1
            if i % 200 == 0:
                time.sleep(0.01)
        self.producer.flush(timeout=120)
        self.sent = i

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=180)
        self.producer.close(timeout=30)


@pytest.mark.crash
def test_killing_the_leader_again_and_again_loses_and_duplicates_nothing(make_cluster, unique_name):
    cluster = replicated_cluster(make_cluster)
    topic = unique_name("failover")
    partitions = 3
    create(cluster, topic, partitions=partitions, min_isr=2)
    wait_for_isr(cluster, topic, [0, 1, 2], via=0)
    kills = []
    with Load(",".join(cluster.bootstrap(n) for n in range(3)), topic, partitions) as load:
        wait_until(lambda: len(load.acked) >= 500, 30, what="the load to start")
        for cycle in range(CYCLES):
            view = leadership(cluster, 0, topic) or leadership(cluster, 1, topic)
            leader, epoch, _ = view[0]
            watcher = (leader + 1) % 3
            before = len(load.acked)
            killed_at = time.monotonic()
            cluster.brokers[leader].kill9()

            def moved():
                now = leadership(cluster, watcher, topic)
                return now and now[0][0] not in (-1, leader) and now[0][1] > epoch

            wait_until(moved, 30, interval=0.1, what=f"a new leader of {topic}-0 (cycle {cycle})")
            wait_until(lambda: len(load.acked) > before + 100, 60,
                       what=f"acknowledgements after the kill (cycle {cycle})")
            kills.append(time.monotonic() - killed_at)
            cluster.brokers[leader].start()
            wait_for_isr(cluster, topic, [0, 1, 2], via=watcher, timeout=60)
    ends = end_offsets(cluster.bootstrap(0), topic, partitions)
    assert_acknowledged_intact(load, read_all(cluster.bootstrap(1), topic, partitions))
    assert sum(ends.values()) == len(load.acked)
    batches = check_replicas(cluster, topic, partitions, ends)
    print(f"{CYCLES} leader kills, {len(load.acked)} records acknowledged, {batches} batches "
          f"compared; kill to acknowledgement after it: "
          f"{', '.join(f'{k:.2f}s' for k in kills)}")
