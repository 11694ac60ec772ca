"""Seed 004 (kingname, "使用 Python 读写 Kafka") with kafka-python 3.x, end to end.

What the post says, and what is asserted here with real consumers of one runnel-broker:

- a 10-partition topic read by 1, 2, 3, 10 and 11 consumers of one group: every partition is
  owned by exactly one consumer, with 10 / 5+5 / 4+3+3 / 1 each / the 11th idle (the range
  assignor, kafka-python's first default), and the members together read every message
  exactly once ("两个消费者程序读取数据不重复，不遗漏");
- same topic, same group_id: the data is shared out; different group_id: each group reads
  everything (unicast vs broadcast);
- after everything is consumed and the consumers are closed, the same group reads nothing
  more, a new group_id reads everything from the beginning again;
- auto_offset_reset only matters for a group without a committed offset: earliest starts at
  offset 0, latest over 100 existing messages sees only what is produced after it joined
  (the post says "offset 99": the next offset to read is 100), and a group stopped after
  message 50 and restarted with 'latest' continues at message 51 (offset 50);
- enable_auto_commit=False + commit(): uncommitted records are delivered again to the next
  member of the group (at-least-once); auto-commit commits in the background.

The partition-split tests run on a broker with the default group.initial.rebalance.delay.ms
(3000, as Kafka); the rest on one with the delay set to 0.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from compat_helpers import create_topic, producer, wait_until
from conftest import Broker, BrokerError, broker_binary

pytestmark = [pytest.mark.groups, pytest.mark.timeout(150),
              pytest.mark.filterwarnings("ignore:.*serializer does not implement:DeprecationWarning")]

NUM_PARTITIONS = 10
NUM_MESSAGES = 1000
NUM_KEYS = 100

GROUP_CONF = dict(session_timeout_ms=10000, heartbeat_interval_ms=1000, request_timeout_ms=30000,
                  max_poll_interval_ms=60000)


def _start_broker(tmp_path_factory, name: str, extra_args: list[str]) -> Broker:
    base = tmp_path_factory.mktemp(name)
    b = Broker(broker_binary(), base / "data", base / "broker.log", extra_args=extra_args)
    try:
        b.start()
    except BrokerError as e:
        pytest.fail(str(e), pytrace=False)
    return b


@pytest.fixture(scope="module")
def default_delay_broker(tmp_path_factory):
    """Default group.initial.rebalance.delay.ms (3000): members starting together land in
    one first rebalance, as with Kafka."""
    b = _start_broker(tmp_path_factory, "seed004-default-delay", [])
    yield b
    b.stop()


@pytest.fixture(scope="module")
def fast_broker(tmp_path_factory):
    b = _start_broker(tmp_path_factory, "seed004-fast", ["--group-initial-rebalance-delay-ms", "0"])
    yield b
    b.stop()


def group(name: str) -> str:
    return f"seed004-{name}-{uuid.uuid4().hex[:8]}"


def new_topic(prefix: str) -> str:
    return f"seed004-{prefix}-{uuid.uuid4().hex[:8]}"


def produce_keyed(bootstrap: str, topic: str, start: int, count: int) -> dict[int, tuple[int, int]]:
    """Sends json {"num": i} with key user-(i % NUM_KEYS) through the default partitioner;
    returns {num: (partition, offset)} from the acks."""
    futures = {}
    with producer(bootstrap, key_serializer=str.encode,
                  value_serializer=lambda m: json.dumps(m).encode()) as p:
        for i in range(start, start + count):
            futures[i] = p.send(topic, key=f"user-{i % NUM_KEYS}", value={"num": i})
        p.flush(timeout=30)
        placed = {}
        for i, f in futures.items():
            md = f.get(timeout=30)
            placed[i] = (md.partition, md.offset)
    return placed


def produce_numbers(bootstrap: str, topic: str, numbers, partition: int = 0):
    with producer(bootstrap) as p:
        futures = [p.send(topic, value=b"%d" % n, partition=partition) for n in numbers]
        p.flush(timeout=30)
        return [f.get(timeout=30).offset for f in futures]


class Member:
    """One KafkaConsumer in its own thread with its own poll loop, as a separate program
    running the seed's `for msg in consumer` would be."""

    def __init__(self, bootstrap: str, topic: str, group_id: str, name: str = "m", **conf):
        self.name = name
        self.records = []
        self.assignment: frozenset = frozenset()
        self.assignment_history: list[frozenset] = []
        self.error: str | None = None
        self.close_autocommit = True
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._args = (bootstrap, topic, group_id, conf)
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"member-{name}")

    def start(self) -> "Member":
        self.thread.start()
        return self

    def _run(self):
        bootstrap, topic, group_id, conf = self._args
        try:
            c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                              client_id=f"seed004-{self.name}", **conf)
            # topic metadata before subscribing: see KpMember in test_groups_confluent.py
            c.partitions_for_topic(topic)
            c.subscribe([topic])
            try:
                while not self._stop.is_set():
                    batch = c.poll(timeout_ms=100)
                    with self._lock:
                        for recs in batch.values():
                            self.records.extend(recs)
                    a = frozenset(c.assignment())
                    if a != self.assignment:
                        self.assignment_history.append(a)
                    self.assignment = a
            finally:
                c.close(autocommit=self.close_autocommit)
        except Exception:  # reported by the main thread
            self.error = traceback.format_exc()

    def snapshot(self) -> list:
        with self._lock:
            return list(self.records)

    def stop(self, timeout: float = 40.0):
        self._stop.set()
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), f"member {self.name} did not close within {timeout}s"


def stop_all(members):
    for m in members:
        m._stop.set()
    for m in members:
        m.stop()


def describe(members) -> str:
    return "; ".join(f"{m.name}: {sorted(tp.partition for tp in m.assignment)} "
                     f"read={len(m.records)} err={m.error and m.error.splitlines()[-1]}" for m in members)


# --- partition split: 1, 2, 3, 10, 11 consumers ---------------------------------------------

@pytest.fixture(scope="module")
def seed_topic(default_delay_broker):
    """10 partitions, 1000 keyed messages (100 keys), as the post's producer with a key."""
    name = new_topic("split")
    create_topic(default_delay_broker.bootstrap, name, partitions=NUM_PARTITIONS)
    placed = produce_keyed(default_delay_broker.bootstrap, name, 0, NUM_MESSAGES)
    per_partition = Counter(p for p, _ in placed.values())
    assert sorted(per_partition) == list(range(NUM_PARTITIONS)), per_partition
    return name, placed


EXPECTED_COUNTS = {
    1: [10],
    2: [5, 5],
    3: [4, 3, 3],
    10: [1] * 10,
    11: [1] * 10 + [0],
}


def run_group_until_everything_read(bootstrap, topic, group_id, n, placed, timeout=60.0, **conf):
    """Starts n members of group_id; waits until the partitions are split over
    min(n, 10) members with nothing shared and every message read; returns the members
    (still running) so the caller can check and stop them."""
    members = [Member(bootstrap, topic, group_id, name=f"{group_id[-8:]}-{i}",
                      auto_offset_reset="earliest", **{**GROUP_CONF, **conf}) for i in range(n)]
    for m in members:
        m.start()
    everything = {TopicPartition(topic, p) for p in range(NUM_PARTITIONS)}

    def settled():
        if any(m.error for m in members):
            return True  # reported below
        owners = [m.assignment for m in members]
        owned = [tp for a in owners for tp in a]
        read = sum(len(m.records) for m in members)
        return (len(owned) == NUM_PARTITIONS and set(owned) == everything
                and sum(1 for a in owners if a) == min(n, NUM_PARTITIONS)
                and read >= len(placed))

    try:
        wait_until(settled, timeout=timeout, interval=0.1,
                   what=f"{n} members of {group_id} to split {NUM_PARTITIONS} partitions and read "
                        f"{len(placed)} messages")
    except TimeoutError as e:
        stop_all(members)
        raise AssertionError(f"{e}: {describe(members)}") from None
    errors = [m.error for m in members if m.error]
    if errors:
        stop_all(members)
        raise AssertionError(f"a member failed: {errors[0]}")
    return members


def check_exactly_once(members, placed, topic):
    """Every message read once by the group, each by the member owning its partition,
    each key from a single partition."""
    records = [r for m in members for r in m.records]
    seen = Counter((r.partition, r.offset) for r in records)
    dupes = {k: v for k, v in seen.items() if v > 1}
    assert not dupes, f"{len(dupes)} records read more than once by one group, e.g. {list(dupes)[:5]}"
    assert sorted(seen) == sorted(placed.values())
    assert sorted(json.loads(r.value)["num"] for r in records) == list(range(len(placed)))
    for m in members:
        owned = {tp.partition for tp in m.assignment}
        assert {r.partition for r in m.records} <= owned, (
            f"{m.name} read partitions {sorted({r.partition for r in m.records})} but owns {sorted(owned)}")
    key_partitions = {}
    for r in records:
        key_partitions.setdefault(r.key, set()).add(r.partition)
        assert r.topic == topic
    assert len(key_partitions) == NUM_KEYS
    assert all(len(ps) == 1 for ps in key_partitions.values()), "one key spread over partitions"


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11])
def test_partitions_split_over_n_consumers_of_one_group(default_delay_broker, seed_topic, n):
    topic, placed = seed_topic
    members = run_group_until_everything_read(default_delay_broker.bootstrap, topic, group(f"n{n}"),
                                              n, placed)
    try:
        time.sleep(1.0)  # nothing more may arrive and the split must hold
        counts = sorted((len(m.assignment) for m in members), reverse=True)
        assert counts == EXPECTED_COUNTS[n], describe(members)
        owned = Counter(tp for m in members for tp in m.assignment)
        assert sorted(tp.partition for tp in owned) == list(range(NUM_PARTITIONS))
        assert set(owned.values()) == {1}, f"a partition owned twice: {owned}"
        if n == 11:
            [idle] = [m for m in members if not m.assignment]
            assert idle.records == [], "the consumer without partitions read something"
        # range assignor: each member owns a contiguous run of partitions
        for m in members:
            ps = sorted(tp.partition for tp in m.assignment)
            assert ps == list(range(ps[0], ps[0] + len(ps))) if ps else True, describe(members)
        check_exactly_once(members, placed, topic)
    finally:
        stop_all(members)
    assert [m.error for m in members] == [None] * n


def test_two_groups_each_read_everything_and_committed_group_reads_nothing_more(
        default_delay_broker, seed_topic):
    """Unicast inside a group, broadcast across groups; then the post's "关闭再运行，已经没有数据"
    and "修改一下 group_id，又能从头开始消费"."""
    topic, placed = seed_topic
    bootstrap = default_delay_broker.bootstrap
    g_two, g_one = group("unicast"), group("broadcast")
    # default enable_auto_commit=True, as in the post; close() commits what was read
    two = run_group_until_everything_read(bootstrap, topic, g_two, 2, placed)
    one = run_group_until_everything_read(bootstrap, topic, g_one, 1, placed)
    try:
        check_exactly_once(two, placed, topic)
        check_exactly_once(one, placed, topic)
        assert sorted(len(m.assignment) for m in two) == [5, 5]
    finally:
        stop_all(two + one)
    assert [m.error for m in two + one] == [None] * 3

    # restart one consumer of the first group: everything is committed, nothing is printed
    again = Member(bootstrap, topic, g_two, name="again", auto_offset_reset="earliest",
                   **GROUP_CONF).start()
    try:
        wait_until(lambda: len(again.assignment) == NUM_PARTITIONS or again.error, timeout=30,
                   what="the restarted consumer to own all partitions")
        time.sleep(3.0)
        assert again.error is None, again.error
        assert again.records == []
    finally:
        again.stop()
    # a new group_id reads everything again
    fresh = run_group_until_everything_read(bootstrap, topic, group("fresh"), 1, placed)
    try:
        check_exactly_once(fresh, placed, topic)
    finally:
        stop_all(fresh)


# --- auto_offset_reset and committed offsets ---------------------------------------------

def poll_n(c, n: int, timeout: float = 30.0):
    """Polls a subscribed consumer until it returned n records (never more: max_records)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=300, max_records=n - len(got)).values():
            got.extend(recs)
    return got


def kp_consumer(bootstrap, topic, group_id, **conf):
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                         client_id="seed004", **{**GROUP_CONF, **conf})


def test_new_group_earliest_reads_from_offset_zero(fast_broker):
    bootstrap, topic = fast_broker.bootstrap, new_topic("earliest")
    create_topic(bootstrap, topic, partitions=1)
    assert produce_numbers(bootstrap, topic, range(100)) == list(range(100))
    c = kp_consumer(bootstrap, topic, group("test2"), auto_offset_reset="earliest")
    try:
        got = poll_n(c, 100)
        assert [(r.offset, int(r.value)) for r in got] == [(i, i) for i in range(100)]
    finally:
        c.close()


def test_new_group_latest_reads_only_messages_produced_after_joining(fast_broker):
    bootstrap, topic = fast_broker.bootstrap, new_topic("latest")
    create_topic(bootstrap, topic, partitions=1)
    produce_numbers(bootstrap, topic, range(100))
    tp = TopicPartition(topic, 0)
    g = group("test3")
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="latest", enable_auto_commit=False)
    try:
        # "消费者看起来就像卡住了一样": joined, nothing returned
        got = []
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got.extend(recs)
        assert c.assignment() == {tp}
        got += poll_n(c, 1, timeout=2.0)
        assert got == []
        assert c.position(tp) == 100  # the post's "offset 99" is the last consumed one
        assert produce_numbers(bootstrap, topic, [100, 101, 102]) == [100, 101, 102]
        new = poll_n(c, 3)
        assert [(r.offset, int(r.value)) for r in new] == [(100, 100), (101, 101), (102, 102)]
        assert poll_n(c, 1, timeout=1.5) == []
        c.commit()
        assert c.committed(tp) == 103
    finally:
        c.close(autocommit=False)


def test_group_stopped_at_50_restarted_with_latest_resumes_at_51(fast_broker):
    """The post's test4: earliest, stop after 50 of 100 (auto-commit, as in the post's code:
    close() commits), restart with latest: continues with message 51, skips nothing."""
    bootstrap, topic = fast_broker.bootstrap, new_topic("resume")
    create_topic(bootstrap, topic, partitions=1)
    produce_numbers(bootstrap, topic, range(100))
    tp = TopicPartition(topic, 0)
    g = group("test4")
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="earliest", max_poll_records=10)
    try:
        first = poll_n(c, 50)
        assert [int(r.value) for r in first] == list(range(50))
    finally:
        c.close()  # autocommit=True: commits position 50
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="latest", enable_auto_commit=False)
    try:
        assert c.committed(tp) == 50
        rest = poll_n(c, 50)
        assert [(r.offset, int(r.value)) for r in rest] == [(i, i) for i in range(50, 100)]
        assert poll_n(c, 1, timeout=1.5) == []
    finally:
        c.close(autocommit=False)


def test_committed_offsets_win_over_auto_offset_reset_on_every_partition(fast_broker):
    """Same as above on 10 partitions with explicit commit of chosen offsets: the restarted
    member starts each partition exactly at the committed offset, whatever the reset says."""
    bootstrap, topic = fast_broker.bootstrap, new_topic("resume10")
    create_topic(bootstrap, topic, partitions=NUM_PARTITIONS)
    for p in range(NUM_PARTITIONS):
        produce_numbers(bootstrap, topic, range(20), partition=p)
    g = group("resume10")
    commit_at = {p: (p * 2) % 21 for p in range(NUM_PARTITIONS)}  # 0, 2, ..., 18
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        assert len(poll_n(c, 20 * NUM_PARTITIONS)) == 20 * NUM_PARTITIONS
        c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in commit_at.items()})
    finally:
        c.close(autocommit=False)
    for reset in ("latest", "earliest"):
        c = kp_consumer(bootstrap, topic, g, auto_offset_reset=reset, enable_auto_commit=False)
        try:
            expected = sum(20 - o for o in commit_at.values())
            got = poll_n(c, expected)
            assert poll_n(c, 1, timeout=1.0) == []
            firsts = {}
            for r in got:
                firsts.setdefault(r.partition, r.offset)
            assert firsts == {p: o for p, o in commit_at.items() if o < 20}, reset
            assert Counter(r.partition for r in got) == Counter(
                {p: 20 - o for p, o in commit_at.items() if o < 20}), reset
        finally:
            c.close(autocommit=False)


# --- manual commit: at-least-once; auto-commit -------------------------------------------

def test_manual_commit_uncommitted_records_are_redelivered(fast_broker):
    bootstrap, topic = fast_broker.bootstrap, new_topic("manual")
    create_topic(bootstrap, topic, partitions=1)
    produce_numbers(bootstrap, topic, range(30))
    tp = TopicPartition(topic, 0)
    g = group("manual")
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        ten = poll_n(c, 10)
        assert [int(r.value) for r in ten] == list(range(10))
        c.commit()
        assert c.committed(tp) == 10
        five = poll_n(c, 5)
        assert [int(r.value) for r in five] == list(range(10, 15))
        assert c.committed(tp) == 10  # nothing committed behind our back
    finally:
        c.close(autocommit=False)  # the consumer goes away without committing the 5
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="latest", enable_auto_commit=False)
    try:
        again = poll_n(c, 20)
        assert [(r.offset, int(r.value)) for r in again] == [(i, i) for i in range(10, 30)]
        assert c.committed(tp) == 10
    finally:
        c.close(autocommit=False)


def test_auto_commit_commits_in_background_and_restart_resumes(fast_broker):
    bootstrap, topic = fast_broker.bootstrap, new_topic("autocommit")
    create_topic(bootstrap, topic, partitions=3)
    for p in range(3):
        produce_numbers(bootstrap, topic, range(p * 100, p * 100 + 10 + p), partition=p)
    ends = {TopicPartition(topic, p): 10 + p for p in range(3)}
    g = group("auto")
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="earliest", enable_auto_commit=True,
                    auto_commit_interval_ms=200)
    try:
        assert len(poll_n(c, sum(ends.values()))) == sum(ends.values())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(c.committed(tp) != o for tp, o in ends.items()):
            c.poll(timeout_ms=200)
        assert {tp: c.committed(tp) for tp in ends} == ends
    finally:
        c.close(autocommit=False)  # not the close-time commit: the background ones did it
    produce_numbers(bootstrap, topic, [999], partition=1)
    c = kp_consumer(bootstrap, topic, g, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        got = poll_n(c, 1)
        assert [(r.partition, r.offset, int(r.value)) for r in got] == [(1, 11, 999)]
        assert poll_n(c, 1, timeout=1.5) == []
    finally:
        c.close(autocommit=False)
