"""Scenario 1: the chart's examples on a fresh cluster, as README's "On Kubernetes" says.

The chart is installed by the backend (locally CRDs by `kubectl apply --server-side -f
crds/` and the rest from `helm template`; on kind by `helm install`); the operator runs
with the chart's ServiceAccount. Then, in one namespace, step by step:
`kubectl apply -f charts/runnel/examples/` (KafkaCluster `demo` with `replicas: 1` as the
example has it: brokers do not form one cluster yet), `kubectl wait` for Ready, Topics
Ready with what the broker reports, records produced and consumed through the bootstrap
Service's name with kafka-python, ConsumerGroup status with the real lag, and a deleted
broker pod back with every acknowledged record at its offset.
"""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from conftest import REPO
from harness.kube import condition, wait_for

EXAMPLES = REPO / "charts" / "runnel" / "examples"
RECORDS = 300
GROUP = "billing"  # the example ConsumerGroup observes this group


def examples_with(fields: dict) -> str:
    """The examples, with `fields` set on every KafkaCluster's spec."""
    objects = [o for path in sorted(EXAMPLES.glob("*.yaml"))
               for o in yaml.safe_load_all(path.read_text()) if o]
    for o in objects:
        if o["kind"] == "KafkaCluster":
            o["spec"].update(fields)
    return "\n".join(json.dumps(o) for o in objects)


@pytest.fixture(scope="module")
def demo(module_namespace, kubectl, backend):
    if backend.broker_fields:
        # The image under test instead of the example's default (kind).
        kubectl("apply", "-n", module_namespace, "-f", "-",
                input=examples_with(backend.broker_fields))
    else:
        kubectl("apply", "-n", module_namespace, "-f", str(EXAMPLES))
    return module_namespace


@pytest.fixture(scope="module")
def acked() -> dict[tuple[int, int], str]:
    """What the producing step had acknowledged: (partition, offset) -> value."""
    return {}


def bootstrap(ns: str) -> str:
    return f"demo-bootstrap.{ns}.svc:9092"


def get(api, ns: str, plural: str, name: str) -> dict:
    return api.get(f"/apis/runnel.dev/v1alpha1/namespaces/{ns}/{plural}/{name}")


def ready(obj: dict) -> bool:
    c = condition(obj, "Ready")
    return c is not None and c["status"] == "True"


def test_operator_runs_as_the_charts_service_account(operators, kubectl, chart):
    sa = f"system:serviceaccount:{chart.namespace}:{chart.service_account}"
    token = operators.token()
    whoami = kubectl("auth", "whoami", "--token", token, "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == sa
    # What the chart grants, and nothing beyond it.
    can = kubectl("auth", "can-i", "--token", token, "patch", "statefulsets", "-A", check=False)
    assert can.stdout.strip() == "yes"
    cannot = kubectl("auth", "can-i", "--token", token, "get", "secrets", "-A", check=False)
    assert cannot.stdout.strip() == "no"


def test_cluster_becomes_ready(demo, kubectl, api, backend):
    kubectl("wait", "-n", demo, "kafkacluster/demo", "--for=condition=Ready", "--timeout=120s",
            timeout=130)
    status = get(api, demo, "kafkaclusters", "demo")["status"]
    assert status["readyBrokers"] == 1
    assert status["bootstrapServers"] == bootstrap(demo)
    brokers = status["brokers"]
    assert [{k: v for k, v in b.items() if k != "live"} for b in brokers] == [
        {"id": 0, "pod": "demo-0", "state": "Ready"}]
    # Liveness comes from DescribeCluster once the bootstrap name answers: never false here.
    assert all(b.get("live", True) for b in brokers), brokers

    pod = api.get(f"/api/v1/namespaces/{demo}/pods/demo-0")
    assert pod["status"]["phase"] == "Running"
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(backend.pod_cidr)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    pvc = api.get(f"/api/v1/namespaces/{demo}/persistentvolumeclaims/data-demo-0")
    assert pvc["status"]["phase"] == "Bound"


def test_topics_become_ready_with_the_brokers_view(demo, api):
    def topics_ready():
        topics = [get(api, demo, "topics", n) for n in ("orders", "customer-profiles")]
        return topics if all(ready(t) for t in topics) else None

    orders, profiles = wait_for("Topics orders and customer-profiles Ready", topics_ready, 60)
    assert orders["status"]["partitions"] == 3
    assert orders["status"]["replicationFactor"] == 1
    assert orders["status"]["topicId"]
    assert orders["status"]["config"]["retention.ms"] == "86400000"
    assert profiles["status"]["partitions"] == 1
    assert profiles["status"]["config"]["cleanup.policy"] == "compact"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap(demo), request_timeout_ms=10000)
    try:
        described = {t.get("name") or t.get("topic"): t for t in admin.describe_topics(
            ["orders", "customers.profiles.v1"])}
    finally:
        admin.close()
    assert len(described["orders"]["partitions"]) == 3
    assert len(described["customers.profiles.v1"]["partitions"]) == 1


def consume(ns: str, count: int) -> dict[int, int]:
    """Consumes up to `count` records of `orders` as group GROUP and commits exactly
    those; returns the committed offset per partition consumed from."""
    consumer = KafkaConsumer(
        "orders", bootstrap_servers=bootstrap(ns), group_id=GROUP,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=15000)
    taken: dict[TopicPartition, int] = {}
    consumed = 0
    try:
        for record in consumer:
            taken[TopicPartition(record.topic, record.partition)] = record.offset + 1
            consumed += 1
            if consumed >= count:
                break
        consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in taken.items()})
    finally:
        consumer.close()
    return {tp.partition: off for tp, off in taken.items()}


def test_clients_produce_and_consume_through_the_bootstrap_name(demo, api, acked):
    host = bootstrap(demo).rsplit(":", 1)[0]
    wait_for(f"{host} to resolve", lambda: socket.getaddrinfo(host, 9092), 30)
    producer = KafkaProducer(bootstrap_servers=bootstrap(demo), acks="all", linger_ms=5)
    try:
        futures = [producer.send("orders", key=str(i).encode(), value=f"order-{i}".encode())
                   for i in range(RECORDS)]
        producer.flush(timeout=30)
        metadata = [f.get(timeout=10) for f in futures]
    finally:
        producer.close()
    acked.update({(m.partition, m.offset): f"order-{i}" for i, m in enumerate(metadata)})
    high_watermarks = {p: 1 + max(m.offset for m in metadata if m.partition == p)
                       for p in range(3)}
    assert sum(high_watermarks.values()) == RECORDS

    def group_status(expected_lag: dict[int, int]):
        """The billing group's status once it reports exactly `expected_lag`."""
        def check():
            group = get(api, demo, "consumergroups", "billing")
            status = group.get("status") or {}
            lag = {e["partition"]: e["lag"] for e in status.get("lag") or []}
            return status if ready(group) and lag == expected_lag else None
        return check

    # Lag is reported for the partitions the group has committed offsets for (as Kafka's
    # tools do), each the high watermark less the committed offset.
    committed = consume(demo, RECORDS // 3)
    expected = {p: high_watermarks[p] - off for p, off in committed.items()}
    status = wait_for(f"ConsumerGroup billing lag {expected}", group_status(expected), 60,
                      details=lambda: str(get(api, demo, "consumergroups", "billing")["status"]))
    assert status["totalLag"] == sum(expected.values())
    assert status["state"] == "Empty"
    assert all(e["highWatermark"] == high_watermarks[e["partition"]] for e in status["lag"])

    committed.update(consume(demo, RECORDS - sum(committed.values())))
    assert committed == high_watermarks
    status = wait_for("ConsumerGroup billing lag 0 on every partition",
                      group_status({0: 0, 1: 0, 2: 0}), 60,
                      details=lambda: str(get(api, demo, "consumergroups", "billing")["status"]))
    assert status["totalLag"] == 0


def test_explicit_offset_reset_is_applied_once(demo, api):
    def applied():
        group = get(api, demo, "consumergroups", "audit")
        status = group.get("status") or {}
        return status if status.get("lastAppliedResetRequestId") == "audit-from-start-1" else None

    wait_for("ConsumerGroup audit's reset audit-from-start-1", applied, 60,
             details=lambda: str(get(api, demo, "consumergroups", "audit").get("status")))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(demo), request_timeout_ms=10000)
    try:
        offsets = admin.list_group_offsets("audit")["audit"]
    finally:
        admin.close()
    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 0, 1: 0, 2: 0}
    # Lag counts from offset 0: every record produced by the previous step.
    wait_for(f"ConsumerGroup audit totalLag {RECORDS}",
             lambda: (get(api, demo, "consumergroups", "audit").get("status") or {})
             .get("totalLag") == RECORDS, 60,
             details=lambda: str(get(api, demo, "consumergroups", "audit").get("status")))


def test_deleted_broker_pod_returns_with_its_data(demo, kubectl, api, acked):
    """SIGTERM with the grace period, a new pod on the same claim: every acknowledged
    record is back at its offset."""
    assert len(acked) == RECORDS, "the producing step did not run"
    old = api.get(f"/api/v1/namespaces/{demo}/pods/demo-0")
    kubectl("delete", "pod", "-n", demo, "demo-0", "--timeout=90s", timeout=100)

    def replaced_and_ready():
        pod = api.get_or_none(f"/api/v1/namespaces/{demo}/pods/demo-0")
        if pod is None or pod["metadata"]["uid"] == old["metadata"]["uid"]:
            return None
        c = condition(pod, "Ready")
        return pod if c and c["status"] == "True" else None

    pod = wait_for("pod demo-0 replaced and Ready", replaced_and_ready, 90)
    assert pod["status"]["podIP"] != old["status"]["podIP"]
    kubectl("wait", "-n", demo, "kafkacluster/demo", "--for=condition=Ready", "--timeout=60s",
            timeout=70)

    def answers():
        # Through the bootstrap name, which now leads to the new pod (the only broker).
        admin = KafkaAdminClient(bootstrap_servers=bootstrap(demo), request_timeout_ms=5000)
        try:
            return "orders" in admin.list_topics()
        finally:
            admin.close()

    wait_for("the new broker answering through the bootstrap name", answers, 30)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap(demo), enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    try:
        partitions = [TopicPartition("orders", p) for p in range(3)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        stored = {(record.partition, record.offset): record.value.decode()
                  for record in consumer}
    finally:
        consumer.close()
    lost = {k: v for k, v in acked.items() if stored.get(k) != v}
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost or moved, " \
        f"e.g. {sorted(lost.items())[:5]}"
    assert len(stored) == RECORDS, f"{len(stored)} records stored, {RECORDS} produced"
