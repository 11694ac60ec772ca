"""Scenario 3: invalid specs of every kind get refused up front, or a condition and a
Warning Event; never retried as if time would fix them.

Two layers: what the API server refuses itself (the CRDs' schemas and CEL rules,
evaluated by the real API server), and what only the operator can judge (reserved broker
settings, values the broker refuses, changes the StatefulSet API forbids).
"""

from __future__ import annotations

import json

import pytest

from harness.kube import condition, wait_for

GROUP = "/apis/runnel.dev/v1alpha1"
# How long a spec error may take to show: the operator sees the change at once.
SHOWS_WITHIN_S = 15


def cr(kind: str, name: str, spec: dict) -> str:
    return json.dumps({"apiVersion": "runnel.dev/v1alpha1", "kind": kind,
                       "metadata": {"name": name}, "spec": spec})


def refused(kubectl, ns: str, manifest: str) -> str:
    """Applies `manifest`, expecting the API server to refuse it; returns its message."""
    result = kubectl("apply", "-n", ns, "-f", "-", input=manifest, check=False)
    assert result.returncode != 0, f"the API server accepted {manifest}"
    return result.stderr


def warnings_about(api, ns: str, kind: str, name: str) -> list[dict]:
    return [e for e in api.events(ns, kind, name) if e.get("type") == "Warning"]


def wait_warning(api, ns: str, kind: str, name: str, timeout_s: float = SHOWS_WITHIN_S):
    return wait_for(f"a Warning Event on {kind} {name}",
                    lambda: warnings_about(api, ns, kind, name), timeout_s)


@pytest.fixture(scope="module")
def small(module_namespace, kubectl, kafka_cluster):
    """A one-broker cluster `small`, Ready, for the steps that need a running cluster."""
    kubectl("apply", "-n", module_namespace, "-f", "-", input=kafka_cluster("small"))
    kubectl("wait", "-n", module_namespace, "kafkacluster/small", "--for=condition=Ready",
            "--timeout=120s", timeout=130)
    return module_namespace


def test_api_server_refuses_invalid_specs_of_every_kind(small, kubectl, kafka_cluster):
    ns = small
    assert "replicas" in refused(kubectl, ns, kafka_cluster("zero", replicas=0))
    for moving in (0, 1001):
        assert "maxPartitionsMoving" in refused(
            kubectl, ns, kafka_cluster("batch", rebalance={"maxPartitionsMoving": moving}))

    kubectl("apply", "-n", ns, "-f", "-",
            input=cr("Topic", "events", {"clusterRef": {"name": "small"}, "partitions": 2}))
    assert "partitions cannot decrease" in refused(
        kubectl, ns, cr("Topic", "events", {"clusterRef": {"name": "small"}, "partitions": 1}))
    assert "clusterRef is immutable" in refused(
        kubectl, ns, cr("Topic", "events", {"clusterRef": {"name": "other"}, "partitions": 2}))
    assert "topicName is immutable" in refused(kubectl, ns, cr("Topic", "events", {
        "clusterRef": {"name": "small"}, "partitions": 2, "topicName": "renamed"}))

    assert "strategy Timestamp needs timestampMs" in refused(kubectl, ns, cr(
        "ConsumerGroup", "replay", {"clusterRef": {"name": "small"}, "groupId": "replay",
                                    "offsetReset": {"requestId": "r1", "strategy": "Timestamp"}}))
    kubectl("apply", "-n", ns, "-f", "-", input=cr(
        "ConsumerGroup", "replay", {"clusterRef": {"name": "small"}, "groupId": "replay"}))
    assert "groupId is immutable" in refused(kubectl, ns, cr(
        "ConsumerGroup", "replay", {"clusterRef": {"name": "small"}, "groupId": "other"}))


def test_reserved_broker_setting_gets_invalid_spec_and_a_warning(small, kubectl, api,
                                                                  kafka_cluster):
    ns = small
    kubectl("apply", "-n", ns, "-f", "-",
            input=kafka_cluster("reserved", config={"node.id": "7"}))

    def degraded():
        kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/reserved")
        c = condition(kc, "Degraded")
        return c if c and c["status"] == "True" and c["reason"] == "InvalidSpec" else None

    c = wait_for("KafkaCluster reserved Degraded/InvalidSpec", degraded, SHOWS_WITHIN_S)
    assert "node.id" in c["message"]
    event = wait_warning(api, ns, "KafkaCluster", "reserved")[-1]
    assert event["reason"] == "invalid_spec"
    assert "node.id" in event["message"]
    # Refused before anything was built: no StatefulSet, no pods.
    assert api.get_or_none(f"/apis/apps/v1/namespaces/{ns}/statefulsets/reserved") is None


def test_invalid_cluster_says_it_is_not_ready(small, kubectl, api, kafka_cluster):
    ns = small
    kubectl("apply", "-n", ns, "-f", "-",
            input=kafka_cluster("reserved-too", config={"node.id": "7"}))
    wait_warning(api, ns, "KafkaCluster", "reserved-too")
    kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/reserved-too")
    ready = condition(kc, "Ready")
    assert ready is not None and ready["status"] == "False", kc.get("status")


def test_bad_broker_config_value_is_refused_before_rollout(small, kubectl, api, kafka_cluster):
    ns = small
    kubectl("apply", "-n", ns, "-f", "-",
            input=kafka_cluster("bad-value", config={"num.partitions": "abc"}))

    def invalid():
        c = condition(api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/bad-value"), "Degraded")
        return c if c and c["reason"] == "InvalidSpec" else None

    wait_for("KafkaCluster bad-value Degraded/InvalidSpec", invalid, SHOWS_WITHIN_S)
    assert api.get_or_none(f"/apis/apps/v1/namespaces/{ns}/statefulsets/bad-value") is None


def topic_refused_by_broker(kubectl, api, ns: str) -> dict:
    kubectl("apply", "-n", ns, "-f", "-", input=cr(
        "Topic", "too-many-replicas",
        {"clusterRef": {"name": "small"}, "partitions": 1, "replicationFactor": 3}))

    def not_ready():
        topic = api.get(f"{GROUP}/namespaces/{ns}/topics/too-many-replicas")
        c = condition(topic, "Ready")
        return c if c and c["status"] == "False" and c.get("message") else None

    return wait_for("Topic too-many-replicas Ready=False with a reason", not_ready,
                    SHOWS_WITHIN_S)


def test_topic_the_broker_refuses_says_why(small, kubectl, api):
    c = topic_refused_by_broker(kubectl, api, small)
    assert "replication" in c["message"].lower(), c


def test_topic_the_broker_refuses_gets_a_warning(small, kubectl, api):
    topic_refused_by_broker(kubectl, api, small)
    wait_warning(api, small, "Topic", "too-many-replicas")


def test_storage_change_is_refused_up_front(small, kubectl, api):
    ns = small
    patch = kubectl("patch", "-n", ns, "kafkacluster/small", "--type=merge",
                    "-p", '{"spec":{"storage":{"size":"2Gi"}}}', check=False)
    if patch.returncode != 0:
        return  # refused by the API server (a CEL transition rule): up front
    event = wait_warning(api, ns, "KafkaCluster", "small")[-1]
    kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/small")
    assert kc["status"]["observedGeneration"] == kc["metadata"]["generation"]
    assert any(c["status"] == "True" and c["type"] == "Degraded"
               for c in kc["status"]["conditions"]), (event, kc["status"])


def test_storage_changes_are_refused_by_the_crd(small, kubectl):
    ns = small
    for patch in ('{"spec":{"storage":{"size":"2Gi"}}}',
                  '{"spec":{"storage":{"storageClassName":"fast"}}}'):
        result = kubectl("patch", "-n", ns, "kafkacluster/small", "--type=merge", "-p", patch,
                         check=False)
        assert result.returncode != 0, patch
        assert "storage is immutable" in result.stderr, result.stderr


def test_a_statefulset_change_the_api_server_forbids_is_a_spec_error(small, kubectl, api,
                                                                      kafka_cluster):
    """The operator's StatefulSet apply is refused (422): a StatefulSet of the same name
    already exists with another selector and serviceName, fields that cannot change."""
    ns = small
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "squatted"},
        "spec": {"replicas": 0, "serviceName": "elsewhere",
                 "selector": {"matchLabels": {"app": "squatter"}},
                 "template": {"metadata": {"labels": {"app": "squatter"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster("squatted"))

    def refused_condition():
        kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/squatted")
        c = condition(kc, "Degraded")
        return (kc, c) if c and c["status"] == "True" and c["reason"] == "RefusedByAPIServer" \
            else None

    kc, c = wait_for("KafkaCluster squatted Degraded/RefusedByAPIServer", refused_condition,
                     SHOWS_WITHIN_S)
    assert "Forbidden" in c["message"], c
    assert kc["status"]["observedGeneration"] == kc["metadata"]["generation"]
    event = wait_warning(api, ns, "KafkaCluster", "squatted")[-1]
    assert event["reason"] == "kube_refused", event


def test_service_monitor_without_its_crd_says_what_is_missing(small, kubectl, api,
                                                               kafka_cluster):
    """No Prometheus Operator here: the API server answers the ServiceMonitor apply with a
    plain-text `404 page not found`; the cluster is built anyway and says what is missing."""
    ns = small
    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster(
        "monitored", metrics={"serviceMonitor": {"enabled": True}}))

    def unavailable():
        c = condition(api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/monitored"), "Degraded")
        return c if c and c["status"] == "True" \
            and c["reason"] == "ServiceMonitorUnavailable" else None

    c = wait_for("KafkaCluster monitored Degraded/ServiceMonitorUnavailable", unavailable,
                 SHOWS_WITHIN_S)
    assert "monitoring.coreos.com/v1" in c["message"], c
    event = wait_warning(api, ns, "KafkaCluster", "monitored")[-1]
    assert event["reason"] == "ServiceMonitorUnavailable", event
    assert api.get_or_none(f"/apis/apps/v1/namespaces/{ns}/statefulsets/monitored") is not None


def test_kubectl_wait_for_ready_ends_on_an_invalid_cluster(small, kubectl, kafka_cluster):
    ns = small
    kubectl("apply", "-n", ns, "-f", "-",
            input=kafka_cluster("never", config={"node.id": "3"}))
    kubectl("wait", "-n", ns, "kafkacluster/never", "--for=condition=Ready=False",
            f"--timeout={SHOWS_WITHIN_S}s", timeout=SHOWS_WITHIN_S + 10)
    reason = kubectl("get", "-n", ns, "kafkacluster/never", "-o",
                     "jsonpath={.status.conditions[?(@.type=='Ready')].reason}").stdout
    assert reason == "InvalidSpec", reason


def test_topic_conflicts_and_refused_adoptions_get_warnings(small, kubectl, api):
    ns = small

    def topic(name: str, **spec) -> str:
        return cr("Topic", name, {"clusterRef": {"name": "small"}, **spec})

    def ready(name: str, status: str):
        def check():
            c = condition(api.get(f"{GROUP}/namespaces/{ns}/topics/{name}"), "Ready")
            return c if c and c["status"] == status else None
        return wait_for(f"Topic {name} Ready={status}", check, SHOWS_WITHIN_S)

    # Two objects, one topic: the younger one reports the conflict.
    kubectl("apply", "-n", ns, "-f", "-", input=topic("claim-a", topicName="claimed"))
    ready("claim-a", "True")
    kubectl("apply", "-n", ns, "-f", "-", input=topic("claim-b", topicName="claimed"))
    assert ready("claim-b", "False")["reason"] == "ResourceConflict"
    event = wait_warning(api, ns, "Topic", "claim-b")[-1]
    assert event["reason"] == "ResourceConflict" and "claim-a" in event["message"], event

    # A retained topic that differs from a new object is not adopted.
    kubectl("apply", "-n", ns, "-f", "-",
            input=topic("kept", partitions=1, deletionPolicy="Retain"))
    ready("kept", "True")
    kubectl("delete", "-n", ns, "topic/kept", "--timeout=30s")
    kubectl("apply", "-n", ns, "-f", "-", input=topic("adopter", topicName="kept", partitions=2))
    assert ready("adopter", "False")["reason"] == "AdoptionRefused"
    event = wait_warning(api, ns, "Topic", "adopter")[-1]
    assert event["reason"] == "AdoptionRefused" and "1 partitions" in event["message"], event


def test_bad_config_edit_of_a_running_cluster_rolls_nothing(small, kubectl, api):
    ns = small
    pod_uid = api.get(f"/api/v1/namespaces/{ns}/pods/small-0")["metadata"]["uid"]
    configmap = api.get(f"/api/v1/namespaces/{ns}/configmaps/small-config")["data"]
    kubectl("patch", "-n", ns, "kafkacluster/small", "--type=merge",
            "-p", '{"spec":{"config":{"log.cleanup.policy":"shred"}}}')

    def invalid():
        kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/small")
        c = condition(kc, "Degraded")
        return c if c and c["reason"] == "InvalidSpec" \
            and kc["status"]["observedGeneration"] == kc["metadata"]["generation"] else None

    c = wait_for("KafkaCluster small Degraded/InvalidSpec", invalid, SHOWS_WITHIN_S)
    assert "log.cleanup.policy" in c["message"], c
    assert api.get(f"/api/v1/namespaces/{ns}/configmaps/small-config")["data"] == configmap
    assert api.get(f"/api/v1/namespaces/{ns}/pods/small-0")["metadata"]["uid"] == pod_uid

    # Taking the edit back clears it, still without a restart.
    kubectl("patch", "-n", ns, "kafkacluster/small", "--type=json",
            "-p", '[{"op":"remove","path":"/spec/config"}]')
    kubectl("wait", "-n", ns, "kafkacluster/small", "--for=condition=Ready",
            f"--timeout={SHOWS_WITHIN_S}s", timeout=SHOWS_WITHIN_S + 10)
    assert api.get(f"/api/v1/namespaces/{ns}/pods/small-0")["metadata"]["uid"] == pod_uid


def test_topic_and_group_of_an_unreachable_cluster_say_why(small, kubectl, api, kafka_cluster):
    """A cluster whose broker never runs (an image nobody can run): the Topic and the
    ConsumerGroup say in status that Kafka does not answer, not only in the logs."""
    ns = small
    kubectl("apply", "-n", ns, "-f", "-",
            input=kafka_cluster("silent", image="example.invalid/no-such-broker:0"))
    kubectl("apply", "-n", ns, "-f", "-",
            input=cr("Topic", "unheard", {"clusterRef": {"name": "silent"}}))
    kubectl("apply", "-n", ns, "-f", "-", input=cr(
        "ConsumerGroup", "unheard", {"clusterRef": {"name": "silent"}, "groupId": "unheard"}))
    for plural in ("topics", "consumergroups"):
        def unavailable():
            c = condition(api.get(f"{GROUP}/namespaces/{ns}/{plural}/unheard"), "Ready")
            return c if c and c["status"] == "False" and c["reason"] == "KafkaUnavailable" \
                else None
        c = wait_for(f"{plural}/unheard Ready=False/KafkaUnavailable", unavailable,
                     SHOWS_WITHIN_S)
        assert "silent-bootstrap" in c["message"], c
