"""kafka-python's KafkaAdminClient.describe_log_dirs() against runnel-broker: one log
directory per broker (its data directory), the size of every hosted partition, growing
with what is produced, and the file system's total and usable bytes."""

from __future__ import annotations

from kafka.admin import NewTopic

from compat_helpers import admin_client, create_topic, produce_values, wait_until


def log_dirs(admin, topic_partitions=None) -> list[dict]:
    [answer] = admin.describe_log_dirs(topic_partitions)
    return answer["log_dirs"]


def partition_sizes(log_dir: dict, topic: str) -> dict[int, int]:
    return {p["partition_index"]: p["partition_size"]
            for t in log_dir["topics"] if t["name"] == topic
            for p in t["partitions"]}


def test_describe_log_dirs_sizes_grow_with_produced_bytes(make_broker, topic):
    b = make_broker(num_partitions=1)
    create_topic(b.bootstrap, topic, partitions=2)
    with admin_client(b.bootstrap) as admin:
        [before] = log_dirs(admin)
        assert before["error_code"] == 0, before
        assert before["log_dir"] == str(b.data_dir)
        assert partition_sizes(before, topic) == {0: 0, 1: 0}
        assert 0 <= before["usable_bytes"] <= before["total_bytes"], before
        assert before["total_bytes"] > 0

        produce_values(b.bootstrap, topic, [b"x" * 1000] * 20, partition=1)
        [after] = log_dirs(admin)
        sizes = partition_sizes(after, topic)
        assert sizes[0] == 0
        # 20 records of 1000 bytes, each in its own batch: more than 20,000 bytes stored.
        assert 20_000 < sizes[1] < 30_000, sizes
        for t in after["topics"]:
            for p in t["partitions"]:
                assert p["offset_lag"] == 0 and p["is_future_key"] is False, p


def test_describe_log_dirs_of_named_partitions_leaves_out_what_is_not_hosted(make_broker, topic):
    b = make_broker(num_partitions=1)
    create_topic(b.bootstrap, topic, partitions=2)
    with admin_client(b.bootstrap) as admin:
        [named] = log_dirs(admin, {topic: [1, 7], "no-such-topic": [0]})
        assert named["error_code"] == 0
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
                for t in named["topics"]] == [(topic, [1])]


def test_every_replica_reports_its_size_in_a_cluster(make_cluster, topic):
    """Each broker describes its own directory: a partition's replicas report the same
    size once the followers hold what the leader has, and a broker without a replica
    leaves the partition out."""
    cluster = make_cluster(3)
    bootstrap = ",".join(cluster.bootstrap(n) for n in range(3))
    with admin_client(bootstrap) as admin:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [0, 1]})])
    produce_values(bootstrap, topic, [b"y" * 1000] * 10, acks="all")

    def sizes():
        with admin_client(bootstrap) as admin:
            answers = admin.describe_log_dirs({topic: [0]})
        by_broker = {}
        for answer in answers:
            [log_dir] = answer["log_dirs"]
            assert log_dir["error_code"] == 0, log_dir
            by_broker[answer["broker"]] = partition_sizes(log_dir, topic)
        return by_broker if by_broker.get(1) == by_broker.get(0) else None

    by_broker = wait_until(sizes, 20, what="the follower to hold what the leader has")
    assert set(by_broker) == {0, 1, 2}
    assert by_broker[2] == {}
    assert by_broker[0][0] > 10_000, by_broker
