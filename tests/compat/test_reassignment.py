"""Moving partitions between brokers with Kafka's own admin APIs (KIP-455), driven by
kafka-python's admin client on three broker processes: a partition moves from broker 0 to
broker 2 while an idempotent acks=all producer writes to it, ListPartitionReassignments
shows the move on every broker until it completes, a cancelled move leaves the old
assignment, the moved-away replica's files are deleted, and every acknowledged record is
read back once at its offset. Then leader elections: ElectLeaders on request, and the
controller's automatic return of leadership to preferred replicas.
"""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic

from compat_helpers import admin_client, wait_until
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
    with admin_client(cluster.bootstrap(node)) as admin:
        return admin.list_partition_reassignments()


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
