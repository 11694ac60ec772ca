"""kafka-python 3.x KafkaAdminClient against runnel-broker: topics, partitions, configs."""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (InvalidConfigurationError, InvalidPartitionsError,
                          MessageSizeTooLargeError, TopicAlreadyExistsError,
                          UnknownTopicOrPartitionError)

from compat_helpers import (admin_client, consumer, create_topic, producer, read_partition,
                            produce_values)


def topic_partition_count(admin, name: str) -> int:
    [t] = admin.describe_topics([name])
    assert t["error_code"] == 0, t
    return len(t["partitions"])


def topic_configs(admin, name: str, config_filter: str = "all") -> dict:
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                 config_filter=config_filter)
    return res["topic"][name]


def test_create_topics_with_new_topic_and_list(broker, unique_name):
    a, b = unique_name("adm-a"), unique_name("adm-b")
    with admin_client(broker.bootstrap) as admin:
        result = admin.create_topics([NewTopic(name=a, num_partitions=3, replication_factor=1),
                                      NewTopic(name=b, num_partitions=1, replication_factor=1)])
        assert sorted((t["name"], t["error_code"]) for t in result["topics"]) == sorted([(a, 0), (b, 0)])
        admin.wait_for_topics([a, b], timeout_ms=10000)
        topics = admin.list_topics()
        assert a in topics and b in topics
        assert topic_partition_count(admin, a) == 3
        assert topic_partition_count(admin, b) == 1
        [desc] = admin.describe_topics([a])
        parts = sorted(desc["partitions"], key=lambda p: p["partition_index"])
        cluster = admin.describe_cluster()
        [node] = cluster["brokers"]
        assert [p["partition_index"] for p in parts] == [0, 1, 2]
        assert all(p["leader_id"] == node["broker_id"] for p in parts)
        assert all(p["replica_nodes"] == [node["broker_id"]] for p in parts)
        assert all(p["isr_nodes"] == [node["broker_id"]] for p in parts)


def test_create_topics_dict_form_with_configs(broker, unique_name):
    name = unique_name("adm-cfg")
    with admin_client(broker.bootstrap) as admin:
        admin.create_topics({name: {"num_partitions": 2,
                                    "configs": {"retention.ms": "3600000", "cleanup.policy": "delete"}}})
        admin.wait_for_topics([name], timeout_ms=10000)
        assert topic_partition_count(admin, name) == 2
        configs = topic_configs(admin, name)
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"]["value"] == "delete"


def test_create_topic_with_broker_default_partitions(make_broker, unique_name):
    b = make_broker(num_partitions=4)
    name = unique_name("adm-default")
    with admin_client(b.bootstrap) as admin:
        admin.create_topics([name])  # num_partitions=-1, replication_factor=-1
        admin.wait_for_topics([name], timeout_ms=10000)
        assert topic_partition_count(admin, name) == 4


def test_create_topics_validate_only_creates_nothing(broker, unique_name):
    name = unique_name("adm-validate")
    with admin_client(broker.bootstrap) as admin:
        result = admin.create_topics([NewTopic(name=name, num_partitions=2, replication_factor=1,
                                               topic_configs={"retention.ms": "60000"})],
                                     validate_only=True)
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(name, 0)]
        assert name not in admin.list_topics()
        # and the real create still works afterwards
        admin.create_topics([NewTopic(name=name, num_partitions=2, replication_factor=1)])
        admin.wait_for_topics([name], timeout_ms=10000)
        assert topic_partition_count(admin, name) == 2


def test_create_existing_topic_fails_with_topic_already_exists(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    with admin_client(broker.bootstrap) as admin:
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name=topic, num_partitions=5, replication_factor=1)])
        assert topic_partition_count(admin, topic) == 2


def test_create_topic_invalid_arguments_are_rejected(broker, unique_name):
    with admin_client(broker.bootstrap) as admin:
        zero = unique_name("adm-zero")
        with pytest.raises(InvalidPartitionsError):
            admin.create_topics([NewTopic(name=zero, num_partitions=0, replication_factor=1)])
        bad_cfg = unique_name("adm-badcfg")
        with pytest.raises(InvalidConfigurationError):
            admin.create_topics([NewTopic(name=bad_cfg, num_partitions=1, replication_factor=1,
                                          topic_configs={"retention.ms": "not-a-number"})])
        topics = admin.list_topics()
        assert zero not in topics and bad_cfg not in topics


def test_delete_topics(broker, unique_name):
    keep, gone = unique_name("adm-keep"), unique_name("adm-gone")
    create_topic(broker.bootstrap, keep)
    create_topic(broker.bootstrap, gone)
    produce_values(broker.bootstrap, gone, [b"bye"])
    with admin_client(broker.bootstrap) as admin:
        result = admin.delete_topics([gone])
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(gone, 0)]
        topics = admin.list_topics()
        assert gone not in topics
        assert keep in topics
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([gone])


def test_delete_then_recreate_starts_empty(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_values(broker.bootstrap, topic, [b"old-1", b"old-2"])
    with admin_client(broker.bootstrap) as admin:
        admin.delete_topics([topic])
    create_topic(broker.bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    with consumer(broker.bootstrap) as c:
        assert c.end_offsets([tp]) == {tp: 0}
    metas = produce_values(broker.bootstrap, topic, [b"new"])
    assert metas[0].offset == 0
    assert [r.value for r in read_partition(broker.bootstrap, topic, 0, expected=1)] == [b"new"]


def test_create_partitions(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    with admin_client(broker.bootstrap) as admin:
        admin.create_partitions({topic: 5})
        assert topic_partition_count(admin, topic) == 5
        # shrinking is not allowed
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({topic: 3})
        assert topic_partition_count(admin, topic) == 5
    with producer(broker.bootstrap) as p:
        assert p.partitions_for(topic) == {0, 1, 2, 3, 4}
        meta = p.send(topic, value=b"in-new-partition", partition=4).get(timeout=30)
    assert (meta.partition, meta.offset) == (4, 0)
    assert [r.value for r in read_partition(broker.bootstrap, topic, 4, expected=1)] == [b"in-new-partition"]


def test_create_partitions_validate_only(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    with admin_client(broker.bootstrap) as admin:
        admin.create_partitions({topic: 3}, validate_only=True)
        assert topic_partition_count(admin, topic) == 1


def test_describe_configs_reports_defaults_and_overrides(broker, unique_name):
    name = unique_name("adm-desc")
    create_topic(broker.bootstrap, name, configs={"retention.ms": "86400000"})
    with admin_client(broker.bootstrap) as admin:
        everything = topic_configs(admin, name, "all")
        modified = topic_configs(admin, name, "modified")
    assert everything["retention.ms"]["value"] == "86400000"
    assert everything["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert everything["retention.ms"]["read_only"] is False
    # the standard topic configs are described, with Kafka's defaults where not overridden
    for key in ("cleanup.policy", "max.message.bytes", "segment.bytes", "retention.bytes"):
        assert key in everything, f"{key} missing from DescribeConfigs: {sorted(everything)}"
    assert everything["cleanup.policy"]["value"] == "delete"
    assert everything["retention.bytes"]["value"] == "-1"
    assert "DYNAMIC" not in everything["cleanup.policy"]["config_source"]
    assert set(modified) == {"retention.ms"}


def test_describe_configs_selected_keys(broker, topic):
    create_topic(broker.bootstrap, topic, configs={"retention.ms": "1234567"})
    with admin_client(broker.bootstrap) as admin:
        res = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=["retention.ms"])],
            config_filter="all")
    assert set(res["topic"][topic]) == {"retention.ms"}
    assert res["topic"][topic]["retention.ms"]["value"] == "1234567"


def test_alter_configs(broker, topic):
    create_topic(broker.bootstrap, topic, configs={"retention.ms": "3600000"})
    with admin_client(broker.bootstrap) as admin:
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                     configs={"retention.ms": "7200000",
                                                              "max.message.bytes": "2097152"})])
        assert result == {"topic": {topic: "OK"}}
        configs = topic_configs(admin, topic)
    assert configs["retention.ms"]["value"] == "7200000"
    assert configs["max.message.bytes"]["value"] == "2097152"
    assert configs["max.message.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"


def test_alter_configs_validate_only_changes_nothing(broker, topic):
    create_topic(broker.bootstrap, topic, configs={"retention.ms": "3600000"})
    with admin_client(broker.bootstrap) as admin:
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                     configs={"retention.ms": "60000"})],
                                     validate_only=True)
        assert result == {"topic": {topic: "OK"}}
        assert topic_configs(admin, topic)["retention.ms"]["value"] == "3600000"


def test_alter_configs_max_message_bytes_is_enforced(broker, topic):
    create_topic(broker.bootstrap, topic)
    with admin_client(broker.bootstrap) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"max.message.bytes": "2048"})])
    with producer(broker.bootstrap, retries=0, enable_idempotence=False, acks=1) as p:
        ok = p.send(topic, value=b"s" * 100).get(timeout=30)
        with pytest.raises(MessageSizeTooLargeError):
            p.send(topic, value=bytes(range(256)) * 40).get(timeout=30)  # ~10 KiB, incompressible
    assert ok.offset == 0
    assert [r.value for r in read_partition(broker.bootstrap, topic, 0, expected=1)] == [b"s" * 100]


def test_describe_cluster(broker):
    with admin_client(broker.bootstrap) as admin:
        cluster = admin.describe_cluster()
    [node] = cluster["brokers"]
    assert (node["host"], node["port"]) == ("127.0.0.1", broker.port)
    assert cluster["controller_id"] == node["broker_id"]
    assert cluster.get("cluster_id")
