"""Replication throttle configs through kafka-python's KafkaAdminClient: the two rates are
the broker configs that change at runtime (per broker, or as the default of every broker,
shown with Kafka's config sources); every other broker config stays read-only; the
throttled-replica lists are topic configs in Kafka's format."""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from compat_helpers import NodeAdmin, admin_client, create_topic

LEADER_RATE = "leader.replication.throttled.rate"
FOLLOWER_RATE = "follower.replication.throttled.rate"
UNLIMITED = str(2**63 - 1)


def broker_config(admin, node: str, name: str) -> dict:
    res = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, node)],
                                 config_filter="all")
    return res["broker"][node][name]


def set_default(bootstrap: str, name: str, value: str) -> int:
    """IncrementalAlterConfigs SET of `name` on BROKER resource "": the error code."""
    request = KafkaAdminClient._alter_configs_request(
        [ConfigResource(ConfigResourceType.BROKER, "", configs={name: value})],
        incremental=True)
    node = NodeAdmin(bootstrap)
    try:
        [answer] = node.send(request).responses
    finally:
        node.close()
    return answer.error_code


def alter(admin, resource_type, name: str, configs: dict, **kwargs):
    res = admin.alter_configs([ConfigResource(resource_type, name, configs=configs)], **kwargs)
    [(_, by_name)] = res.items()
    return by_name[name]


def test_throttle_rates_change_at_runtime_with_kafkas_sources(make_broker):
    b = make_broker()
    with admin_client(b.bootstrap) as admin:
        [node] = admin.describe_cluster()["brokers"]
        me = str(node["broker_id"])
        unset = broker_config(admin, me, LEADER_RATE)
        assert (unset["value"], unset["config_source"], unset["read_only"]) == \
            (UNLIMITED, "DEFAULT_CONFIG", False), unset

        # The default of every broker (resource name "", which KafkaAdminClient does
        # not send: its own request object, sent as it would), then this broker's own
        # value over it.
        assert set_default(b.bootstrap, LEADER_RATE, "2097152") == 0
        default = broker_config(admin, me, LEADER_RATE)
        assert (default["value"], default["config_source"]) == \
            ("2097152", "DYNAMIC_DEFAULT_BROKER_CONFIG")
        assert alter(admin, ConfigResourceType.BROKER, me, {LEADER_RATE: "1048576"}) == "OK"
        own = broker_config(admin, me, LEADER_RATE)
        assert (own["value"], own["config_source"]) == ("1048576", "DYNAMIC_BROKER_CONFIG")

        # Removing this broker's value falls back to the default.
        admin.reset_configs([ConfigResource(ConfigResourceType.BROKER, me,
                                            configs=[LEADER_RATE])])
        back = broker_config(admin, me, LEADER_RATE)
        assert (back["value"], back["config_source"]) == \
            ("2097152", "DYNAMIC_DEFAULT_BROKER_CONFIG")
        assert broker_config(admin, me, FOLLOWER_RATE)["value"] == UNLIMITED
        # AlterConfigs (not incremental) sets them too.
        assert alter(admin, ConfigResourceType.BROKER, me, {FOLLOWER_RATE: "5"},
                     incremental=False) == "OK"
        assert broker_config(admin, me, FOLLOWER_RATE)["value"] == "5"

        # Kept across a restart: they are records of the metadata log.
    b.stop()
    b.start()
    with admin_client(b.bootstrap) as admin:
        kept = broker_config(admin, me, LEADER_RATE)
        assert (kept["value"], kept["config_source"]) == \
            ("2097152", "DYNAMIC_DEFAULT_BROKER_CONFIG")


@pytest.mark.parametrize("configs", [
    {LEADER_RATE: "-1"},
    {FOLLOWER_RATE: "fast"},
    {"log.retention.ms": "1000"},
    {"num.partitions": "3"},
])
def test_other_broker_configs_and_bad_rates_are_refused(make_broker, configs):
    b = make_broker()
    with admin_client(b.bootstrap) as admin:
        [node] = admin.describe_cluster()["brokers"]
        me = str(node["broker_id"])
        error = alter(admin, ConfigResourceType.BROKER, me, configs, raise_on_unknown=False)
        assert error.startswith("[Error 40] InvalidConfigurationError"), error
        assert broker_config(admin, me, LEADER_RATE)["value"] == UNLIMITED


def test_throttled_replica_lists_are_topic_configs(make_broker, topic):
    b = make_broker()
    create_topic(b.bootstrap, topic, partitions=2)
    with admin_client(b.bootstrap) as admin:
        assert alter(admin, ConfigResourceType.TOPIC, topic,
                     {"leader.replication.throttled.replicas": "0:0,1:0",
                      "follower.replication.throttled.replicas": "*"}) == "OK"
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        configs = res["topic"][topic]
        assert configs["leader.replication.throttled.replicas"]["value"] == "0:0,1:0"
        assert configs["follower.replication.throttled.replicas"]["value"] == "*"
        error = alter(admin, ConfigResourceType.TOPIC, topic,
                      {"leader.replication.throttled.replicas": "0-0"})
        assert error.startswith("[Error 40] InvalidConfigurationError"), error
