"""Consumer-group administration: kafka-python KafkaAdminClient and confluent-kafka AdminClient.

kafka-python 3.x renamed list_consumer_groups / describe_consumer_groups /
list_consumer_group_offsets / delete_consumer_groups to list_groups / describe_groups /
list_group_offsets / delete_groups; `kp_admin_call` uses whichever name the installed client
has. Checked: a live group (Stable, its member, client id and assignment) and an empty one
(Empty, no members) in the listing and descriptions, the committed offsets of both, deleting
a non-empty group refused (NON_EMPTY_GROUP) and an empty one deleted with its offsets (a new
member of the deleted group starts from auto_offset_reset again), OffsetDelete.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as Errors
from kafka.structs import OffsetAndMetadata

from compat_helpers import admin_client, create_topic, poll_until, produce_values
from conftest import Broker, BrokerError, broker_binary

pytestmark = [pytest.mark.groups, pytest.mark.timeout(120)]

PARTITIONS = 4
PER_PARTITION = 10
GROUP_CONF = dict(session_timeout_ms=10000, heartbeat_interval_ms=1000, request_timeout_ms=30000,
                  max_poll_interval_ms=60000, enable_auto_commit=False, auto_offset_reset="earliest")


@pytest.fixture(scope="module")
def abroker(tmp_path_factory):
    base = tmp_path_factory.mktemp("groups-admin")
    b = Broker(broker_binary(), base / "data", base / "broker.log",
               extra_args=["--group-initial-rebalance-delay-ms", "0"])
    try:
        b.start()
    except BrokerError as e:
        pytest.fail(str(e), pytrace=False)
    yield b
    b.stop()


def kp_admin_call(admin, names: tuple[str, ...], *args, **kwargs):
    for name in names:
        fn = getattr(admin, name, None)
        if fn is not None:
            return fn(*args, **kwargs)
    raise AttributeError(f"KafkaAdminClient has none of {names}")


def kp_list_groups(admin):
    return kp_admin_call(admin, ("list_consumer_groups", "list_groups"))


def kp_describe_groups(admin, groups):
    return kp_admin_call(admin, ("describe_consumer_groups", "describe_groups"), groups)


def kp_group_offsets(admin, group_id):
    res = kp_admin_call(admin, ("list_group_offsets", "list_consumer_group_offsets"), group_id)
    # 3.x: {group_id: {tp: OffsetAndMetadata}}; 2.x: {tp: OffsetAndMetadata}
    if isinstance(res, dict) and group_id in res:
        res = res[group_id]
    return {tp: om.offset for tp, om in res.items()}


def kp_delete_groups(admin, groups):
    return dict(kp_admin_call(admin, ("delete_consumer_groups", "delete_groups"), groups))


def listing_ids(listing) -> dict:
    """{group_id: entry} from list_groups() (dicts in 3.x, tuples in 2.x)."""
    out = {}
    for g in listing:
        if isinstance(g, dict):
            out[g["group_id"]] = g
        else:
            out[g[0]] = {"group_id": g[0], "protocol_type": g[1]}
    return out


@pytest.fixture
def topic_with_data(abroker):
    name = f"adm-{uuid.uuid4().hex[:8]}"
    create_topic(abroker.bootstrap, name, partitions=PARTITIONS)
    for p in range(PARTITIONS):
        produce_values(abroker.bootstrap, name, [b"%d-%d" % (p, i) for i in range(PER_PARTITION)],
                       partition=p)
    return name


def live_member(bootstrap, topic, group_id, client_id):
    """A KafkaConsumer that joined, read everything and committed; its heartbeat thread keeps
    it in the group while the test runs."""
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id,
                      **GROUP_CONF)
    records = poll_until(c, PARTITIONS * PER_PARTITION, timeout=30)
    assert len(records) == PARTITIONS * PER_PARTITION
    c.commit()
    return c


def test_kafka_python_admin_list_describe_offsets_delete(abroker, topic_with_data):
    bootstrap, topic = abroker.bootstrap, topic_with_data
    active, empty = f"adm-active-{uuid.uuid4().hex[:6]}", f"adm-empty-{uuid.uuid4().hex[:6]}"
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    # the empty group: committed chosen offsets, then left
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=empty, client_id="adm-empty",
                      **GROUP_CONF)
    try:
        assert len(poll_until(c, PARTITIONS * PER_PARTITION, timeout=30)) == PARTITIONS * PER_PARTITION
        c.commit({tp: OffsetAndMetadata(3 + tp.partition, "", -1) for tp in tps})
    finally:
        c.close(autocommit=False)

    member = live_member(bootstrap, topic, active, "adm-live-client")
    try:
        with admin_client(bootstrap) as admin:
            listed = listing_ids(kp_list_groups(admin))
            assert active in listed and empty in listed, sorted(listed)
            assert listed[active]["protocol_type"] == "consumer"
            assert listed[empty]["protocol_type"] == "consumer"
            if "group_state" in listed[active]:
                assert (listed[active]["group_state"], listed[empty]["group_state"]) == ("Stable", "Empty")

            desc = kp_describe_groups(admin, [active, empty])
            d_active, d_empty = desc[active], desc[empty]
            assert d_active["error"] is None and d_empty["error"] is None
            assert d_active["group_state"] == "Stable"
            assert d_active["protocol_type"] == "consumer"
            assert d_active["protocol_data"] == "range"
            [m] = d_active["members"]
            assert m["client_id"] == "adm-live-client"
            assert m["member_id"].startswith("adm-live-client")
            assignment = m["member_assignment"]
            assigned = [(t.topic if hasattr(t, "topic") else t["topic"],
                         sorted(t.partitions if hasattr(t, "partitions") else t["partitions"]))
                        for t in (assignment.assigned_partitions if hasattr(assignment, "assigned_partitions")
                                  else assignment["assigned_partitions"])]
            assert assigned == [(topic, list(range(PARTITIONS)))]
            subscription = m["member_metadata"]
            topics = subscription.topics if hasattr(subscription, "topics") else subscription["topics"]
            assert list(topics) == [topic]
            assert d_empty["group_state"] == "Empty"
            assert d_empty["members"] == []

            assert kp_group_offsets(admin, active) == {tp: PER_PARTITION for tp in tps}
            assert kp_group_offsets(admin, empty) == {tp: 3 + tp.partition for tp in tps}

            result = kp_delete_groups(admin, [active, empty])
            assert result[active] == "NonEmptyGroupError", result
            assert result[empty] == "OK", result

            listed = listing_ids(kp_list_groups(admin))
            assert empty not in listed and active in listed
            assert kp_group_offsets(admin, empty) == {}
            assert kp_group_offsets(admin, active) == {tp: PER_PARTITION for tp in tps}
            gone = kp_describe_groups(admin, [empty])[empty]
            assert gone["group_state"] == "Dead" or gone["error"] is not None, gone
            assert gone["members"] == []
    finally:
        member.close(autocommit=False)

    # a member of the deleted group starts over from auto_offset_reset
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=empty, client_id="adm-again",
                      **GROUP_CONF)
    try:
        again = poll_until(c, PARTITIONS * PER_PARTITION, timeout=30)
        assert sorted((r.partition, r.offset) for r in again) == \
            [(p, i) for p in range(PARTITIONS) for i in range(PER_PARTITION)]
    finally:
        c.close(autocommit=False)

    # the formerly live group, now empty, can be deleted
    with admin_client(bootstrap) as admin:
        deadline = time.monotonic() + 15
        while kp_describe_groups(admin, [active])[active]["group_state"] != "Empty" \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kp_describe_groups(admin, [active])[active]["group_state"] == "Empty"
        assert kp_delete_groups(admin, [active]) == {active: "OK"}
        assert kp_group_offsets(admin, active) == {}


def test_kafka_python_admin_delete_group_offsets(abroker, topic_with_data):
    """OffsetDelete: refused per partition (GROUP_SUBSCRIBED_TO_TOPIC) while a member is
    subscribed to the topic, done once the group is empty."""
    bootstrap, topic = abroker.bootstrap, topic_with_data
    g = f"adm-offdel-{uuid.uuid4().hex[:6]}"
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    member = live_member(bootstrap, topic, g, "adm-offdel")
    try:
        with admin_client(bootstrap) as admin:
            res = admin.delete_group_offsets(g, [tps[0]])
            assert res == {tps[0]: Errors.GroupSubscribedToTopicError}, res
            assert kp_group_offsets(admin, g) == {tp: PER_PARTITION for tp in tps}
    finally:
        member.close(autocommit=False)
    with admin_client(bootstrap) as admin:
        res = admin.delete_group_offsets(g, [tps[0], tps[1]])
        assert res == {tps[0]: Errors.NoError, tps[1]: Errors.NoError}, res
        assert kp_group_offsets(admin, g) == {tps[2]: PER_PARTITION, tps[3]: PER_PARTITION}


# --- confluent-kafka AdminClient -------------------------------------------------------------

def test_confluent_admin_consumer_groups(abroker, topic_with_data):
    bootstrap, topic = abroker.bootstrap, topic_with_data
    active, empty = f"ck-active-{uuid.uuid4().hex[:6]}", f"ck-empty-{uuid.uuid4().hex[:6]}"
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=empty, **GROUP_CONF)
    try:
        assert len(poll_until(c, PARTITIONS * PER_PARTITION, timeout=30)) == PARTITIONS * PER_PARTITION
        c.commit()
    finally:
        c.close(autocommit=False)
    member = live_member(bootstrap, topic, active, "ck-live-client")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        listing = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        assert listing.errors == []
        states = {g.group_id: g.state for g in listing.valid}
        assert states.get(active) == ConsumerGroupState.STABLE, states
        assert states.get(empty) == ConsumerGroupState.EMPTY, states
        assert not any(g.is_simple_consumer_group for g in listing.valid if g.group_id in (active, empty))

        futures = admin.describe_consumer_groups([active, empty], request_timeout=15)
        d_active = futures[active].result(timeout=30)
        d_empty = futures[empty].result(timeout=30)
        assert d_active.state == ConsumerGroupState.STABLE
        assert d_active.partition_assignor == "range"
        [m] = d_active.members
        assert m.client_id == "ck-live-client"
        assert sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions) == \
            [(topic, p) for p in range(PARTITIONS)]
        assert d_empty.state == ConsumerGroupState.EMPTY and d_empty.members == []

        for g in (active, empty):
            fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                    request_timeout=15)[g]
            offsets = {(tp.topic, tp.partition): tp.offset for tp in fut.result(timeout=30).topic_partitions}
            assert offsets == {(topic, p): PER_PARTITION for p in range(PARTITIONS)}, (g, offsets)

        futures = admin.delete_consumer_groups([active, empty], request_timeout=15)
        assert futures[empty].result(timeout=30) is None
        with pytest.raises(KafkaException) as refused:
            futures[active].result(timeout=30)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

        fut = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(empty, [CkTopicPartition(topic, p) for p in range(PARTITIONS)])],
            request_timeout=15)[empty]
        assert [tp.offset for tp in fut.result(timeout=30).topic_partitions] == [-1001] * PARTITIONS
        listing = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        ids = {g.group_id for g in listing.valid}
        assert empty not in ids and active in ids
    finally:
        member.close(autocommit=False)
