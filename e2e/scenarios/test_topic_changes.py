"""A Topic's edits reach the broker: partitions grow from 3 to 5 and two configs change;
the Topic's status and the broker's own answers (the Kafka admin API) both show the new
count and values, the new partitions take records, and the records written before the
edit are still at their offsets.
"""

from __future__ import annotations

import json

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import TopicPartition

from harness.kube import condition, wait_for

TOPIC_PATH = "/apis/runnel.dev/v1alpha1/namespaces/{ns}/topics/events"
RECORDS = 60
EDITED = {"retention.ms": "3600000", "max.message.bytes": "524288"}


def produce(bootstrap: str, values: list[str], partition: int | None = None) -> dict:
    """Produces `values` (acks=all); returns (partition, offset) -> value of each ack."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [(v, producer.send("events", value=v.encode(), partition=partition))
                   for v in values]
        producer.flush(timeout=30)
        metadata = [(v, f.get(timeout=10)) for v, f in futures]
    finally:
        producer.close()
    return {(m.partition, m.offset): v for v, m in metadata}


def broker_view(bootstrap: str) -> tuple[int, dict]:
    """The partition count and the EDITED configs of `events`, as the broker reports them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        described = {t.get("name") or t.get("topic"): t for t in admin.describe_topics(["events"])}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "events")])["topic"]["events"]
    finally:
        admin.close()
    return (len(described["events"]["partitions"]),
            {k: (configs.get(k) or {}).get("value") for k in EDITED})


def test_topic_edits_reach_the_broker(namespace, kubectl, api, kafka_cluster):
    ns = namespace
    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster("edits"))
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "events"},
        "spec": {"clusterRef": {"name": "edits"}, "partitions": 3,
                 "config": {"retention.ms": "86400000"}}}))
    kubectl("wait", "-n", ns, "kafkacluster/edits", "--for=condition=Ready", "--timeout=120s",
            timeout=130)
    kubectl("wait", "-n", ns, "topic/events", "--for=condition=Ready", "--timeout=60s",
            timeout=70)
    bootstrap = f"edits-bootstrap.{ns}.svc:9092"
    wait_for("the broker answering through the bootstrap name",
             lambda: broker_view(bootstrap)[0] == 3, 30)
    before = produce(bootstrap, [f"before-{i}" for i in range(RECORDS)])

    kubectl("patch", "-n", ns, "topic/events", "--type=merge", "-p", json.dumps(
        {"spec": {"partitions": 5, "config": EDITED}}))
    path = TOPIC_PATH.format(ns=ns)

    def status_edited():
        topic = api.get(path)
        status = topic.get("status") or {}
        c = condition(topic, "Ready")
        return status if status.get("observedGeneration") == topic["metadata"]["generation"] \
            and c and c["status"] == "True" and status.get("partitions") == 5 \
            and all((status.get("config") or {}).get(k) == v for k, v in EDITED.items()) \
            else None

    wait_for("Topic events to report 5 partitions and the edited config", status_edited, 60,
             details=lambda: str(api.get(path).get("status")))
    assert broker_view(bootstrap) == (5, EDITED)

    after = produce(bootstrap, [f"after-{i}" for i in range(10)], partition=4)
    assert {p for p, _ in after} == {4}

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    try:
        partitions = [TopicPartition("events", p) for p in range(5)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        stored = {(r.partition, r.offset): r.value.decode() for r in consumer}
    finally:
        consumer.close()
    assert stored == {**before, **after}
