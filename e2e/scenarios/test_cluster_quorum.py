"""Issue 15 item 7: the brokers of a KafkaCluster form one Kafka cluster.

A three-broker KafkaCluster `quorum`: its pods start together (a voter of the metadata
quorum is not ready until a majority of voters answers, so `OrderedReady` would never get
past pod 0) and the cluster becomes Ready; a real client through the bootstrap name sees
three brokers, one controller and the cluster id the operator derived from the object's
uid; a topic with replication factor 3 has a replica on every broker, and records reach
every partition's leader and come back; status shows the controller and three live
brokers. Then a scale-down to 2, which would remove voter 2, is refused with a condition
and a Warning Event, and undone.

Until replication lands a partition's data lives on its leader only: this checks
membership, placement and routing, not copies of the data.
"""

from __future__ import annotations

import base64
import collections
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from harness.kube import condition, wait_for

GROUP = "/apis/runnel.dev/v1alpha1"
NAME = "quorum"
# How long a spec change may take to show: the operator sees it at once.
SHOWS_WITHIN_S = 30


@pytest.fixture(scope="module")
def quorum(module_namespace, kubectl, kafka_cluster):
    kubectl("apply", "-n", module_namespace, "-f", "-",
            input=kafka_cluster(NAME, replicas=3))
    kubectl("wait", "-n", module_namespace, f"kafkacluster/{NAME}", "--for=condition=Ready",
            "--timeout=180s", timeout=190)
    return module_namespace


def cluster_object(api, ns: str) -> dict:
    return api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/{NAME}")


def test_three_brokers_are_one_cluster_with_one_controller(quorum, api):
    ns = quorum
    sts = api.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/{NAME}")
    assert sts["spec"]["podManagementPolicy"] == "Parallel"

    bootstrap = f"{NAME}-bootstrap.{ns}.svc:9092"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        described = wait_for("three brokers and a controller in DescribeCluster",
                             lambda: _three_brokers(admin), 60)
        listed = sorted((b["broker_id"], b["host"], b["port"]) for b in described["brokers"])
        assert listed == [(i, f"{NAME}-{i}.{NAME}-brokers.{ns}.svc", 9092) for i in range(3)]
        assert described["controller_id"] in (0, 1, 2), described

        # One cluster id per KafkaCluster: the uid's 16 bytes, URL-safe base64.
        kc = cluster_object(api, ns)
        derived = base64.urlsafe_b64encode(uuid.UUID(kc["metadata"]["uid"]).bytes)
        assert described["cluster_id"] == derived.decode().rstrip("=")
        assert kc["status"]["clusterId"] == described["cluster_id"]
        assert kc["status"]["quorumVoters"] == [0, 1, 2]

        admin.create_topics([NewTopic("spread", 3, 3)])
        partitions = wait_for("topic spread in Metadata",
                              lambda: _partitions(admin, "spread"), 30)
    finally:
        admin.close()
    for p in partitions:
        assert sorted(p["replica_nodes"]) == [0, 1, 2], partitions
    leaders = collections.Counter(p["leader_id"] for p in partitions)
    assert leaders == {0: 1, 1: 1, 2: 1}, partitions

    # A client of the bootstrap name reaches every partition's leader and reads it back.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        for partition in range(3):
            for i in range(10):
                producer.send("spread", value=f"{partition}-{i}".encode(), partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    try:
        consumer.assign([TopicPartition("spread", p) for p in range(3)])
        consumer.seek_to_beginning()
        read = collections.Counter(record.partition for record in consumer)
    finally:
        consumer.close()
    assert read == {0: 10, 1: 10, 2: 10}

    def status_shows_the_cluster():
        status = cluster_object(api, ns).get("status") or {}
        live = [(b["id"], b.get("live")) for b in status.get("brokers") or []]
        return status if status.get("controllerId") in (0, 1, 2) \
            and live == [(0, True), (1, True), (2, True)] else None

    wait_for("status with the controller and three live brokers", status_shows_the_cluster,
             SHOWS_WITHIN_S, details=lambda: str(cluster_object(api, ns).get("status")))


def _three_brokers(admin) -> dict | None:
    described = admin.describe_cluster()
    live = [b for b in described["brokers"] if not b.get("is_fenced")]
    return described if len(live) == 3 \
        and described["controller_id"] in (0, 1, 2) else None


def _partitions(admin, topic: str) -> list[dict] | None:
    (described,) = admin.describe_topics([topic])
    if described["error_code"] != 0 or len(described["partitions"]) != 3:
        return None
    return sorted(described["partitions"], key=lambda p: p["partition_index"])


def test_a_scale_down_that_would_remove_a_voter_is_refused(quorum, kubectl, api, kafka_cluster):
    ns = quorum
    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster(NAME, replicas=2))

    def refused():
        kc = cluster_object(api, ns)
        degraded = condition(kc, "Degraded")
        if not degraded or degraded.get("reason") != "ScaleDownRemovesVoters" \
                or kc["status"].get("observedGeneration") != kc["metadata"]["generation"]:
            return None
        return kc

    kc = wait_for("Degraded/ScaleDownRemovesVoters", refused, SHOWS_WITHIN_S)
    message = condition(kc, "Degraded")["message"]
    assert "quorum-2 would leave the metadata quorum" in message, message
    ready = condition(kc, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ScaleDownBlocked"), ready

    warnings = wait_for(
        "a Warning Event ScaleDownRemovesVoters",
        lambda: [e for e in api.events(ns, "KafkaCluster", NAME)
                 if e.get("type") == "Warning" and e.get("reason") == "ScaleDownRemovesVoters"],
        SHOWS_WITHIN_S)
    assert "quorum-2" in warnings[-1]["message"], warnings[-1]

    # Nothing went: the StatefulSet keeps three brokers and broker 2 runs on.
    sts = api.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/{NAME}")
    assert sts["spec"]["replicas"] == 3
    pod = api.get(f"/api/v1/namespaces/{ns}/pods/{NAME}-2")
    assert not pod["metadata"].get("deletionTimestamp"), pod["metadata"]

    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster(NAME, replicas=3))

    def settled():
        kc = cluster_object(api, ns)
        ready, degraded = condition(kc, "Ready"), condition(kc, "Degraded")
        return kc if ready and ready["status"] == "True" \
            and degraded and degraded["status"] == "False" else None

    wait_for("the cluster Ready again at three brokers", settled, SHOWS_WITHIN_S,
             details=lambda: str(cluster_object(api, ns).get("status")))
