"""A ConsumerGroup on a three-broker KafkaCluster whose coordinator is not the broker the
operator bootstraps from.

Brokers answer group requests for a group they do not coordinate with NOT_COORDINATOR,
and ListOffsets for a partition they do not lead with NOT_LEADER_OR_FOLLOWER, so the
operator must find the coordinator (FindCoordinator) and each partition's leader
(Metadata) as a Kafka client does. Here a topic has one partition led by each broker and
the group's coordinator is another broker than the one the bootstrap name reaches; the
ConsumerGroup's status must show the committed offsets, high watermarks and lag of every
partition, and two offset resets through the spec (Earliest, then Explicit) must reach
the group: its committed offsets and what a consumer of the group reads next.

Which broker the bootstrap name reaches: locally the bootstrap Service's name resolves to
one broker's address, found by comparing addresses; where it is a virtual address (kind)
that is unknown, and any group coordinated by a broker other than node 0 is taken.
"""

from __future__ import annotations

import collections
import json
import socket
import struct

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from harness.kube import condition, wait_for

GROUP_API = "/apis/runnel.dev/v1alpha1"
NAME = "routed"
TOPIC = "spread"
# Records produced to partitions 0, 1 and 2, and the offsets first committed there.
PRODUCED = {0: 10, 1: 15, 2: 20}
COMMITTED = {0: 3, 1: 9, 2: 20}
# A spec change is seen at once; a status pass takes a few calls.
SHOWS_WITHIN_S = 60
NOT_COORDINATOR = 16


@pytest.fixture(scope="module")
def routed(module_namespace, kubectl, kafka_cluster):
    kubectl("apply", "-n", module_namespace, "-f", "-",
            input=kafka_cluster(NAME, replicas=3))
    kubectl("wait", "-n", module_namespace, f"kafkacluster/{NAME}", "--for=condition=Ready",
            "--timeout=180s", timeout=190)
    host = f"{NAME}-bootstrap.{module_namespace}.svc"
    wait_for(f"{host} to resolve", lambda: socket.getaddrinfo(host, 9092), 30)
    return module_namespace


def _described(admin: KafkaAdminClient, topic: str) -> dict | None:
    """The topic as Metadata describes it, once every partition has a leader."""
    (described,) = admin.describe_topics([topic])
    if described["error_code"] != 0 or any(p["leader_id"] < 0 for p in described["partitions"]):
        return None
    return described


def broker_host(ns: str, node: int) -> str:
    return f"{NAME}-{node}.{NAME}-brokers.{ns}.svc"


def bootstrap_node(ns: str) -> int | None:
    """The broker the bootstrap name resolves to, when it resolves to a broker's address."""
    address = socket.gethostbyname(f"{NAME}-bootstrap.{ns}.svc")
    nodes = [n for n in range(3) if socket.gethostbyname(broker_host(ns, n)) == address]
    return nodes[0] if nodes else None


def kafka_call(host: str, api_key: int, version: int, body: bytes) -> bytes:
    """One request with a v1 header to `host`:9092; the response body after its header."""
    client_id = b"e2e"
    header = struct.pack(">hhih", api_key, version, 7, len(client_id)) + client_id
    frame = header + body
    with socket.create_connection((host, 9092), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _read(sock, 4))[0]
        response = _read(sock, size)
    assert struct.unpack(">i", response[:4])[0] == 7, "correlation id"
    return response[4:]


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def find_coordinator(host: str, group: str) -> int | None:
    """FindCoordinator v0 for `group`: the coordinator's node id, None while unavailable."""
    body = kafka_call(host, 10, 0, _string(group))
    error, node = struct.unpack(">hi", body[:6])
    return node if error == 0 else None


def describe_group_error(host: str, group: str) -> int:
    """The error code of DescribeGroups v0 for `group` sent to `host`."""
    body = kafka_call(host, 15, 0, struct.pack(">i", 1) + _string(group))
    count, error = struct.unpack(">ih", body[:6])
    assert count == 1, body
    return error


def group_path(ns: str) -> str:
    return f"{GROUP_API}/namespaces/{ns}/consumergroups/{NAME}"


def expected_lag(committed: dict[int, int]) -> list[dict]:
    return [{"topic": TOPIC, "partition": p, "committedOffset": committed[p],
             "highWatermark": PRODUCED[p], "lag": PRODUCED[p] - committed[p]}
            for p in sorted(PRODUCED)]


def status_with_lag(api, ns: str, committed: dict[int, int]):
    """A check: the group's status once Ready with exactly this lag."""
    def check():
        group = api.get(group_path(ns))
        ready = condition(group, "Ready")
        status = group.get("status") or {}
        return status if ready and ready["status"] == "True" \
            and status.get("lag") == expected_lag(committed) else None
    return check


def group_offsets(ns: str, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=f"{NAME}-bootstrap.{ns}.svc:9092",
                             request_timeout_ms=10000)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == TOPIC}


@pytest.fixture(scope="module")
def group(routed, api, kubectl):
    """The group id chosen, with records produced and offsets committed; the
    ConsumerGroup `routed` observes it."""
    ns = routed
    bootstrap = bootstrap_node(ns)
    avoid = bootstrap if bootstrap is not None else 0
    any_broker = broker_host(ns, 0)
    # FindCoordinator creates the offsets topic on first use: ask until it answers.
    wait_for("a coordinator for groups",
             lambda: find_coordinator(any_broker, "probe") is not None, 30)
    candidates = [f"orders-{i}" for i in range(50)]
    coordinators = {g: find_coordinator(any_broker, g) for g in candidates}
    chosen = next(g for g in candidates if coordinators[g] not in (None, avoid))
    coordinator = coordinators[chosen]
    print(f"bootstrap broker {bootstrap}, group {chosen} coordinated by {coordinator}")
    # Every broker agrees on the coordinator, and the others refuse the group.
    assert {find_coordinator(broker_host(ns, n), chosen) for n in range(3)} == {coordinator}
    for n in set(range(3)) - {coordinator}:
        assert describe_group_error(broker_host(ns, n), chosen) == NOT_COORDINATOR

    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "Topic", "metadata": {"name": TOPIC},
        "spec": {"clusterRef": {"name": NAME}, "partitions": 3}}))
    kubectl("wait", "-n", ns, f"topic/{TOPIC}", "--for=condition=Ready", "--timeout=60s",
            timeout=70)
    admin = KafkaAdminClient(bootstrap_servers=f"{NAME}-bootstrap.{ns}.svc:9092",
                             request_timeout_ms=10000)
    try:
        # The broker the operator created the topic through has applied it; the one the
        # bootstrap name reaches learns of it a moment later, as in Kafka.
        described = wait_for(f"topic {TOPIC} in Metadata through the bootstrap name",
                             lambda: _described(admin, TOPIC), 30)
    finally:
        admin.close()
    leaders = collections.Counter(p["leader_id"] for p in described["partitions"])
    assert leaders == {0: 1, 1: 1, 2: 1}, described

    producer = KafkaProducer(bootstrap_servers=f"{NAME}-bootstrap.{ns}.svc:9092", acks="all",
                             retries=5)
    try:
        for partition, count in PRODUCED.items():
            for i in range(count):
                producer.send(TOPIC, value=f"{partition}-{i}".encode(), partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=f"{NAME}-bootstrap.{ns}.svc:9092",
                             group_id=chosen, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(TOPIC, p): OffsetAndMetadata(o, "", -1)
                         for p, o in COMMITTED.items()})
    finally:
        consumer.close()
    assert group_offsets(ns, chosen) == COMMITTED

    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": NAME},
        "spec": {"clusterRef": {"name": NAME}, "groupId": chosen}}))
    return chosen


def test_status_shows_the_coordinators_offsets_and_each_leaders_lag(routed, group, api):
    ns = routed
    status = wait_for(f"ConsumerGroup {NAME} lag {expected_lag(COMMITTED)}",
                      status_with_lag(api, ns, COMMITTED), SHOWS_WITHIN_S,
                      details=lambda: str(api.get(group_path(ns)).get("status")))
    assert status["totalLag"] == 7 + 6 + 0
    assert status["state"] == "Empty"
    assert status["memberCount"] == 0


def test_offset_resets_through_the_spec_reach_the_group(routed, group, api):
    ns = routed
    path = group_path(ns)
    steps = [
        ({"requestId": "rewind-1", "strategy": "Earliest"}, {0: 0, 1: 0, 2: 0}),
        ({"requestId": "replay-2", "strategy": "Explicit",
          "offsets": [{"topic": TOPIC, "partition": p, "offset": o}
                      for p, o in {0: 2, 1: 7, 2: 19}.items()]}, {0: 2, 1: 7, 2: 19}),
    ]
    for reset, target in steps:
        api.merge_patch(path, {"spec": {"offsetReset": reset}})

        def applied(request_id=reset["requestId"], target=target):
            status = status_with_lag(api, ns, target)()
            done = condition(api.get(path), "OffsetReset")
            return status if status and status.get("lastAppliedResetRequestId") == request_id \
                and done and done["status"] == "True" else None

        status = wait_for(f"reset {reset['requestId']} applied with lag from {target}",
                          applied, SHOWS_WITHIN_S,
                          details=lambda: str(api.get(path).get("status")))
        assert status["totalLag"] == sum(PRODUCED[p] - o for p, o in target.items())
        assert group_offsets(ns, group) == target

    # A consumer of the group starts where the last reset put it and reads the rest.
    consumer = KafkaConsumer(bootstrap_servers=f"{NAME}-bootstrap.{ns}.svc:9092",
                             group_id=group, enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    try:
        partitions = [TopicPartition(TOPIC, p) for p in PRODUCED]
        consumer.assign(partitions)
        assert {tp.partition: consumer.position(tp) for tp in partitions} == {0: 2, 1: 7, 2: 19}
        read = collections.Counter(record.partition for record in consumer)
    finally:
        consumer.close()
    assert read == {0: 8, 1: 8, 2: 1}
