"""Moving partitions between brokers with Kafka's own admin APIs (KIP-455), driven by
kafka-python's admin client on three broker processes: a partition moves from broker 0 to
broker 2 while an idempotent acks=all producer writes to it, ListPartitionReassignments
shows the move on every broker until it completes, a cancelled move leaves the old
assignment, the moved-away replica's files are deleted, and every acknowledged record is
read back once at its offset. A move in flight survives the kill of the active
controller, and a replica moved away, or a topic deleted, while its broker was down is
deleted when that broker returns (Kafka's stray replicas) and never served as a new topic
of the same name. Then leader elections: ElectLeaders on request, and the controller's
automatic return of leadership to preferred replicas.
"""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError

from compat_helpers import admin_client, producer, wait_until
from replica_check import compare_replicas
from test_replication import (LAG_MS, Load, assert_acknowledged_intact, describe, end_offsets,
                              leadership, read_all, wait_for_isr)

pytestmark = pytest.mark.timeout(300)


def controller(cluster, node: int) -> int | None:
    try:
        with admin_client(cluster.bootstrap(node)) as admin:
            return admin.describe_cluster()["controller_id"]
    except Exception:  # noqa: BLE001 - a broker between answers
        return None


def in_flight(cluster, node: int) -> dict[TopicPartition, dict]:
    # kafka-python's admin client asks a broker from its metadata for the controller; just
    # after a kill that can be the dead broker (connection refused): ask again.
    def ask():
        try:
            with admin_client(cluster.bootstrap(node)) as admin:
                return (admin.list_partition_reassignments(),)
        except KafkaConnectionError:
            return None
    (moves,) = wait_until(ask, 30, interval=0.2, what=f"the moves in flight, via broker {node}")
    return moves


@pytest.mark.crash
def test_a_partition_moves_from_broker_0_to_broker_2_while_a_producer_writes(make_cluster,
                                                                            unique_name):
    cluster = make_cluster(3, extra_args=["--replica-lag-time-max-ms", LAG_MS])
    topic = unique_name("moving")
    with admin_client(cluster.bootstrap(1)) as admin:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [0, 1], 1: [1, 0]},
                                      topic_configs={"min.insync.replicas": "2"})])
    wait_for_isr(cluster, topic, [0, 1], via=1)
    moving, cancelled = TopicPartition(topic, 0), TopicPartition(topic, 1)

    bootstrap = ",".join(cluster.bootstrap(n) for n in (0, 1))
    with Load(bootstrap, topic, partitions=2) as load:
        wait_until(lambda: len(load.acked) >= 500, 30, what="the load to start")
        # Broker 2 is down while the moves start: they cannot complete, so they can be seen.
        assert cluster.brokers[2].stop() == 0
        # A new admin client asks any broker its metadata lists for the controller: wait
        # until broker 2, fenced as it stopped, is listed by neither (they apply the fence
        # a moment after it committed).
        cluster.wait_for_brokers(2, timeout=30)
        # Admin clients send moves to the controller: one that was broker 2 has a successor.
        wait_until(lambda: all(controller(cluster, n) in (0, 1) for n in (0, 1)), 30,
                   what="brokers 0 and 1 to name a live controller")
        with admin_client(cluster.bootstrap(1)) as admin:
            assert admin.alter_partition_reassignments({moving: [2, 1], cancelled: [2, 0]}) == \
                {moving: None, cancelled: None}
        for node in (0, 1):
            listed = in_flight(cluster, node)
            assert listed[moving] == {"replicas": [2, 1, 0], "adding_replicas": [2],
                                      "removing_replicas": [0]}, (node, listed)
            assert listed[cancelled]["adding_replicas"] == [2], (node, listed)
        # While in flight, Metadata lists the union; the old leader keeps leading.
        during = describe(cluster, 0, topic)
        assert sorted(during[0]["replica_nodes"]) == [0, 1, 2]
        assert during[0]["leader_id"] == 0

        with admin_client(cluster.bootstrap(0)) as admin:
            assert admin.alter_partition_reassignments({cancelled: None}) == {cancelled: None}
            # Nothing left to cancel on that partition now.
            refused = admin.alter_partition_reassignments({cancelled: None})
            assert refused[cancelled].__name__ == "NoReassignmentInProgressError", refused
        assert list(in_flight(cluster, 1)) == [moving]
        after_cancel = describe(cluster, 1, topic)
        assert after_cancel[1]["replica_nodes"] == [1, 0]

        # Broker 2 comes back: it fetches partition 0 from the start while the producer
        # writes, joins the ISR, and the move completes.
        cluster.brokers[2].start()
        wait_until(lambda: not in_flight(cluster, 1), 60, interval=0.2, what="the move to complete")
        done = wait_until(lambda: (lambda d: d if d and d[0]["leader_id"] == 2 else None)(
            describe(cluster, 2, topic)), 30, what="broker 2 to lead the moved partition")
        assert done[0]["replica_nodes"] == [2, 1]
        assert sorted(done[0]["isr_nodes"]) == [1, 2]
        mark = len(load.acked)
        wait_until(lambda: len(load.acked) >= mark + 500, 30,
                   what="acknowledgements from the new leader")

    # Broker 0 deleted its copy; broker 2 never made one of the cancelled move's partition.
    gone = cluster.brokers[0].data_dir / f"{topic}-0"
    wait_until(lambda: not gone.exists(), 30, what=f"{gone} to be deleted")
    assert not (cluster.brokers[2].data_dir / f"{topic}-1").exists()

    got = read_all(cluster.bootstrap(2), topic, 2)
    assert_acknowledged_intact(load, got)
    ends = end_offsets(cluster.bootstrap(1), topic, 2)
    assert ends[0] > 1000
    cluster.stop_all()
    dirs = [cluster.brokers[n].data_dir for n in (2, 1)]
    assert compare_replicas(dirs, topic, 0, ends[0]) > 0


def in_flight_or_none(cluster, node: int) -> dict[TopicPartition, dict] | None:
    """in_flight, or None while the controller the client last saw cannot answer."""
    try:
        return in_flight(cluster, node)
    except Exception:  # noqa: BLE001 - a controller that just died, until it is fenced
        return None


def named_controllers(cluster, nodes) -> set[int | None]:
    return {controller(cluster, n) for n in nodes}


@pytest.mark.crash
def test_a_move_survives_a_controller_kill_and_the_copy_left_on_a_down_broker_goes(
        make_cluster, unique_name):
    # Brokers 0-2 are the quorum's voters; broker 3, the move's target, is not.
    cluster = make_cluster(4, extra_args=["--replica-lag-time-max-ms", LAG_MS])
    (active,) = wait_until(lambda: (lambda c: c if len(c) == 1 and None not in c else None)(
        named_controllers(cluster, range(4))), 30, what="one controller named by all")
    x, y = (n for n in (0, 1, 2) if n != active)
    topic = unique_name("moving")
    with admin_client(cluster.bootstrap(y)) as admin:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [x, y], 1: [y, x]})])
    wait_for_isr(cluster, topic, sorted([x, y]), via=y)
    moving = TopicPartition(topic, 0)

    with Load(cluster.bootstrap(y), topic, partitions=2) as load:
        wait_until(lambda: len(load.acked) >= 500, 30, what="the load to start")
        # The target is down: the move stays in flight.
        assert cluster.brokers[3].stop() == 0
        cluster.wait_for_brokers(3, timeout=30)  # broker 3 fenced: no client is sent to it
        with admin_client(cluster.bootstrap(y)) as admin:
            assert admin.alter_partition_reassignments({moving: [3, y]}) == {moving: None}
        expected = {"replicas": [3, y, x], "adding_replicas": [3], "removing_replicas": [x]}
        for node in (x, y):
            assert in_flight(cluster, node) == {moving: expected}, node

        # The active controller dies; a new one takes over the move.
        cluster.brokers[active].kill9()
        wait_until(lambda: named_controllers(cluster, (x, y)) <= {x, y}
                   and len(named_controllers(cluster, (x, y))) == 1, 30,
                   what=f"brokers {x} and {y} to name a new controller")
        for node in (x, y):
            assert in_flight(cluster, node) == {moving: expected}, node
        cluster.brokers[active].start()
        wait_until(lambda: controller(cluster, active) in (0, 1, 2), 30,
                   what=f"broker {active} to rejoin")

        # The replica the move removes is on a broker that dies before the move completes.
        cluster.brokers[x].kill9()
        cluster.brokers[3].start()
        wait_until(lambda: in_flight_or_none(cluster, y) == {}, 60, interval=0.2,
                   what="the move to complete")
        done = wait_until(lambda: (lambda d: d if d and sorted(d[0]["isr_nodes"]) == sorted([3, y])
                                   else None)(describe(cluster, y, topic)), 30,
                          what="the target replicas in sync")
        assert done[0]["replica_nodes"] == [3, y]
        mark = len(load.acked)
        wait_until(lambda: len(load.acked) >= mark + 500, 30, what="acknowledgements after the move")

        # Broker x returns: its copy of partition 0 is a stray and goes; partition 1 stays.
        stray = cluster.brokers[x].data_dir / f"{topic}-0"
        assert stray.exists()
        cluster.brokers[x].start()
        wait_until(lambda: not stray.exists(), 30, what=f"{stray} to be deleted")
        assert (cluster.brokers[x].data_dir / f"{topic}-1").exists()
        wait_until(lambda: (lambda v: v and v[1][2] == sorted([x, y]))(leadership(cluster, y, topic)),
                   30, what=f"broker {x} back in partition 1's ISR")
        mark = len(load.acked)
        wait_until(lambda: len(load.acked) >= mark + 200, 30, what="acknowledgements after the return")

    got = read_all(cluster.bootstrap(y), topic, 2)
    assert_acknowledged_intact(load, got)
    ends = end_offsets(cluster.bootstrap(y), topic, 2)
    cluster.stop_all()
    assert not (cluster.brokers[x].data_dir / f"{topic}-0").exists()
    dirs = [cluster.brokers[n].data_dir for n in (3, y)]
    assert compare_replicas(dirs, topic, 0, ends[0]) > 0


@pytest.mark.crash
def test_a_topic_deleted_while_its_broker_is_down_is_not_reborn_in_a_new_one(make_cluster,
                                                                             unique_name):
    cluster = make_cluster(3)
    reborn, deleted = unique_name("reborn"), unique_name("deleted")
    with admin_client(cluster.bootstrap(0)) as admin:
        admin.create_topics([NewTopic(t, replica_assignments={0: [2]}) for t in (reborn, deleted)])
    for t in (reborn, deleted):
        wait_until(lambda: (lambda d: d and d[0]["leader_id"] == 2)(describe(cluster, 0, t)), 30,
                   what=f"{t} led by broker 2")
    with producer(cluster.bootstrap(0), acks="all") as p:
        for i in range(10):
            p.send(reborn, value=b"old-%d" % i, partition=0)
            p.send(deleted, value=b"old-%d" % i, partition=0)
        p.flush(timeout=30)
    assert end_offsets(cluster.bootstrap(2), reborn, 1) == {0: 10}

    assert cluster.brokers[2].stop() == 0
    cluster.wait_for_brokers(2, timeout=30)  # broker 2 fenced: no client is sent to it
    wait_until(lambda: controller(cluster, 0) in (0, 1) and controller(cluster, 1) in (0, 1), 30,
               what="a live controller")
    with admin_client(cluster.bootstrap(0)) as admin:
        admin.delete_topics([reborn, deleted])
    for node in (0, 1):
        wait_until(lambda: describe(cluster, node, reborn) is None, 30, what=f"{reborn} deleted")
    # A new topic of the same name, on the broker that is down (registered, fenced).
    with admin_client(cluster.bootstrap(0)) as admin:
        admin.create_topics([NewTopic(reborn, replica_assignments={0: [2]})])
    cluster.brokers[2].start()
    wait_until(lambda: (lambda d: d and d[0]["leader_id"] == 2)(describe(cluster, 2, reborn)), 30,
               what=f"the new {reborn} led by broker 2")
    with producer(cluster.bootstrap(2), acks="all") as p:
        offsets = [p.send(reborn, value=b"new-%d" % i, partition=0).get(timeout=30).offset
                   for i in range(3)]
    assert offsets == [0, 1, 2]
    assert read_all(cluster.bootstrap(2), reborn, 1) == {0: [(i, b"new-%d" % i) for i in range(3)]}
    wait_until(lambda: not (cluster.brokers[2].data_dir / f"{deleted}-0").exists(), 30,
               what=f"the deleted topic's directory to go")
    cluster.stop_all()


@pytest.mark.crash
def test_leadership_returns_to_preferred_replicas_on_request_and_by_itself(make_cluster,
                                                                          unique_name):
    # Broker 0 returns twice: first with automatic balancing off (ElectLeaders brings its
    # leadership back), then on a cluster that balances every second by itself.
    for auto in (False, True):
        cluster = make_cluster(3, extra_args=[
            "--replica-lag-time-max-ms", LAG_MS,
            "--auto-leader-rebalance-enable", "true" if auto else "false",
            "--leader-imbalance-check-interval-seconds", "1"])
        topic = unique_name("preferred")
        with admin_client(cluster.bootstrap(1)) as admin:
            admin.create_topics([NewTopic(topic, replica_assignments={0: [0, 1, 2], 1: [1, 2, 0]})])
        wait_for_isr(cluster, topic, [0, 1, 2], via=1)
        assert cluster.brokers[0].stop() == 0
        moved = wait_until(lambda: (lambda v: v if v and v[0][0] in (1, 2) else None)(
            leadership(cluster, 1, topic)), 30, what="partition 0 to lead elsewhere")
        cluster.brokers[0].start()
        wait_for_isr(cluster, topic, [0, 1, 2], via=1)
        if not auto:
            # Nothing moves it back by itself...
            assert leadership(cluster, 1, topic)[0][0] == moved[0][0]
            with admin_client(cluster.bootstrap(2)) as admin:
                admin.elect_leaders(0, {topic: [0, 1]})
        back = wait_until(lambda: (lambda v: v if v and v[0][0] == 0 else None)(
            leadership(cluster, 2, topic)), 30, what="broker 0 to lead partition 0 again")
        assert back[0][1] > moved[0][1], "a new leader epoch"
        assert back[1][0] == 1, "partition 1 kept its preferred leader"
        cluster.stop_all()
