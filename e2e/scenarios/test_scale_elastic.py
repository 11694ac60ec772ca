"""Issue 17: an elastic KafkaCluster. Partitions follow the brokers as a cluster grows and
shrinks, while clients write with acks=all.

One KafkaCluster `elastic`, three brokers, in steps (file order):

1. scale 3 → 5 while a producer writes acks=all records to a 6-partition, replication
   factor 2 topic: the operator moves partitions onto the new brokers (replicas on
   brokers 3 and 4 in Metadata), `Rebalancing` ends `Balanced`, and every acknowledged record is
   read back exactly once;
2. at five brokers a Topic with replication factor 4 makes a scale-down to 3 impossible:
   refused with `Degraded/ScaleDownImpossible` and a Warning Event, the StatefulSet
   untouched; lowering the Topic's replication factor to 2 (a reassignment, shown in its
   status) lifts the refusal, and the scale-down goes on by itself: brokers 3 and 4 are
   drained (no replica left on them), their pods go, they leave DescribeCluster, and the
   records of both topics are all there;
3. deleting the KafkaCluster (no finalizer) drops its series from the operator's metrics.
"""

from __future__ import annotations

import json

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from harness.kube import condition, wait_for
from harness.load import Producing, assert_acked_once, read_all

GROUP = "/apis/runnel.dev/v1alpha1"
NAME = "elastic"
LEDGER, LEDGER_PARTITIONS = "ledger", 6
WIDE = "wide"
# Bounds, generous for a 2-core CI machine: pods start, brokers register, partitions move.
SCALE_UP_S = 150
REFUSAL_SHOWS_S = 30
SCALE_DOWN_S = 180
# What step 1 acknowledged, checked again after the scale-down.
ACKED: dict[str, list[bytes]] = {}


@pytest.fixture(scope="module")
def elastic(module_namespace, kubectl, kafka_cluster):
    kubectl("apply", "-n", module_namespace, "-f", "-", input=kafka_cluster(NAME, replicas=3))
    kubectl("wait", "-n", module_namespace, f"kafkacluster/{NAME}", "--for=condition=Ready",
            "--timeout=180s", timeout=190)
    return module_namespace


def bootstrap(ns: str) -> str:
    return f"{NAME}-bootstrap.{ns}.svc:9092"


def cluster_object(api, ns: str) -> dict:
    return api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/{NAME}")


def scale(kubectl, kafka_cluster, ns: str, replicas: int) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster(NAME, replicas=replicas))


def placement(admin, topic: str) -> dict[int, list[int]] | None:
    """Partition → replicas of `topic`, as Metadata lists them."""
    (described,) = admin.describe_topics([topic])
    if described["error_code"] != 0:
        return None
    return {p["partition_index"]: sorted(p["replica_nodes"]) for p in described["partitions"]}


def settled(api, ns: str, brokers: int):
    """The cluster at `brokers` ready brokers, current, nothing moving."""
    def check():
        kc = cluster_object(api, ns)
        status = kc.get("status") or {}
        ready, rebalancing = condition(kc, "Ready"), condition(kc, "Rebalancing")
        return kc if status.get("observedGeneration") == kc["metadata"]["generation"] \
            and status.get("readyBrokers") == brokers \
            and ready and ready["status"] == "True" \
            and rebalancing and rebalancing["status"] == "False" \
            and rebalancing["reason"] == "Balanced" else None
    return check


def leader_metrics(operators) -> str:
    """The leading operator's /metrics text."""
    return operators.metrics((operators.lease_holder() or "").split("_", 1)[0])


def metric(operators, line_start: str) -> float | None:
    """The value of the leading operator's metric line that starts with `line_start`."""
    for line in leader_metrics(operators).splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_scale_up_moves_partitions_to_the_new_brokers_while_producing(elastic, kubectl, api,
                                                                      kafka_cluster, operators):
    ns = elastic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(ns), request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(LEDGER, LEDGER_PARTITIONS, 2,
                                      topic_configs={"min.insync.replicas": "2"})])
        before = wait_for("ledger in Metadata", lambda: placement(admin, LEDGER), 30)
        assert all(b < 3 for replicas in before.values() for b in replicas), before

        producing = Producing(bootstrap(ns), LEDGER, LEDGER_PARTITIONS).start()
        try:
            wait_for("records acknowledged", lambda: len(producing.acked) >= 50, 30)
            scale(kubectl, kafka_cluster, ns, 5)
            details = lambda: json.dumps(cluster_object(api, ns).get("status"))  # noqa: E731
            wait_for("the rebalance to start or finish",
                     lambda: any(b in r for r in (placement(admin, LEDGER) or {}).values()
                                 for b in (3, 4)), SCALE_UP_S, details=details)
            kc = wait_for("five brokers, balanced", settled(api, ns, 5), SCALE_UP_S,
                          details=details)
            acked_then = len(producing.acked)
            wait_for("records acknowledged after the rebalance",
                     lambda: len(producing.acked) >= acked_then + 50, 60)
        finally:
            producing.finish()
        after = placement(admin, LEDGER)
    finally:
        admin.close()

    assert kc["status"].get("rebalance") is None, kc["status"]
    on = {b: sum(b in r for r in after.values()) for b in range(5)}
    assert on[3] >= 1 and on[4] >= 1, f"no replica on the new brokers: {after}"
    # Balanced by bytes (the partitions differ a little in size): counts stay close.
    assert max(on.values()) - min(on.values()) <= 2, f"replicas not spread: {on}"
    assert all(len(r) == 2 for r in after.values()), after

    assert not producing.failed, producing.failed[:5]
    assert_acked_once(producing.acked, read_all(bootstrap(ns), LEDGER, LEDGER_PARTITIONS))
    ACKED[LEDGER] = producing.acked

    # The operator counted the moves it started and shows none in flight now.
    labels = f'{{kafkacluster="{NAME}",namespace="{ns}"}}'
    assert metric(operators, "runnel_operator_partition_reassignments_started_total") >= 1
    assert metric(operators,
                  f"runnel_operator_partition_reassignments_in_flight{labels}") == 0
    assert metric(operators, f"runnel_operator_rolling_restarts_in_progress{labels}") == 0
    # The ledger's partitions hold records: the completed moves copied bytes.
    assert metric(operators,
                  f"runnel_operator_partition_reassignment_bytes_moved_total{labels}") > 0


def test_scale_down_refused_then_drained_and_brokers_removed(elastic, kubectl, api,
                                                            kafka_cluster):
    ns = elastic
    topic = {"apiVersion": "runnel.dev/v1alpha1", "kind": "Topic",
             "metadata": {"name": WIDE},
             "spec": {"clusterRef": {"name": NAME}, "partitions": 2, "replicationFactor": 4}}
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(topic))
    topic_path = f"{GROUP}/namespaces/{ns}/topics/{WIDE}"
    wait_for("Topic wide Ready", lambda: (condition(api.get(topic_path), "Ready") or {})
             .get("status") == "True", 60)
    wide = Producing(bootstrap(ns), WIDE, 2, prefix="w", interval_s=0).start()
    wait_for("records to wide", lambda: len(wide.acked) >= 40, 30)
    wide.finish()

    # Replication factor 4 cannot live on 3 brokers: refused, nothing touched.
    scale(kubectl, kafka_cluster, ns, 3)

    def refused():
        kc = cluster_object(api, ns)
        degraded = condition(kc, "Degraded")
        return kc if degraded and degraded["reason"] == "ScaleDownImpossible" \
            and kc["status"].get("observedGeneration") == kc["metadata"]["generation"] else None

    kc = wait_for("Degraded/ScaleDownImpossible", refused, REFUSAL_SHOWS_S)
    assert f"partition {WIDE}-" in condition(kc, "Degraded")["message"], kc["status"]
    wait_for("a Warning Event ScaleDownImpossible",
             lambda: [e for e in api.events(ns, "KafkaCluster", NAME)
                      if e.get("type") == "Warning" and e.get("reason") == "ScaleDownImpossible"],
             REFUSAL_SHOWS_S)
    sts = api.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/{NAME}")
    assert sts["spec"]["replicas"] == 5, sts["spec"]

    # A replication factor of 2 (a reassignment removing replicas) lifts the refusal.
    topic["spec"]["replicationFactor"] = 2
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(topic))

    def reduced():
        status = api.get(topic_path).get("status") or {}
        ready = condition({"status": status}, "Ready") or {}
        return status if status.get("replicationFactor") == 2 and ready.get("status") == "True" \
            else None

    status = wait_for("Topic wide at replication factor 2", reduced, 90,
                      details=lambda: json.dumps(api.get(topic_path).get("status")))
    assert status.get("reassigningPartitions") is None, status
    assert (condition({"status": status}, "Reassigning") or {}).get("status") == "False", status

    admin = KafkaAdminClient(bootstrap_servers=bootstrap(ns), request_timeout_ms=15000)
    try:
        def removed():
            sts = api.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/{NAME}")
            pods = [api.get_or_none(f"/api/v1/namespaces/{ns}/pods/{NAME}-{i}") for i in (3, 4)]
            brokers = sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"])
            return brokers if sts["spec"]["replicas"] == 3 and pods == [None, None] \
                and brokers == [0, 1, 2] else None

        wait_for("brokers 3 and 4 drained, their pods gone and unregistered", removed,
                 SCALE_DOWN_S,
                 details=lambda: json.dumps(cluster_object(api, ns).get("status")))
        for topic_name in (LEDGER, WIDE):
            replicas = placement(admin, topic_name)
            assert all(b < 3 for r in replicas.values() for b in r), (topic_name, replicas)
    finally:
        admin.close()
    wait_for("three brokers, balanced", settled(api, ns, 3), 60,
             details=lambda: json.dumps(cluster_object(api, ns).get("status")))

    # The data is intact: every record of both topics, once.
    assert_acked_once(ACKED[LEDGER], read_all(bootstrap(ns), LEDGER, LEDGER_PARTITIONS))
    assert_acked_once(wide.acked, read_all(bootstrap(ns), WIDE, 2))


def test_deleting_the_cluster_drops_its_metric_series(elastic, kubectl, operators):
    ns = elastic
    labels = f'{{kafkacluster="{NAME}",namespace="{ns}"}}'

    def series() -> list[str]:
        return [line for line in leader_metrics(operators).splitlines() if labels in line]

    assert len(series()) == 4, leader_metrics(operators)
    kubectl("delete", "-n", ns, f"kafkacluster/{NAME}", "--timeout=60s", timeout=70)
    wait_for(f"no series of KafkaCluster {NAME}", lambda: not series(), 30,
             details=lambda: "\n".join(series()))
