"""Scenarios 2 and 5: a config change rolls the brokers one pod at a time, and an operator
killed mid-rollout is succeeded by one that finishes it without restarting a broker twice.

A three-broker KafkaCluster `roll`, one Kafka cluster whose three voters restart one at a
time (a restarted broker is Ready only once it has rejoined the metadata quorum). Partition
data is not replicated yet: the topic's one partition lives on its leader, is offline while
that broker restarts (the producer retries), and the records are checked on the leader.
The StatefulSet uses `OnDelete`; the operator deletes stale pods itself, the highest
ordinal first, each only once the previous one is Ready again.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from harness.kube import condition, wait_for
from harness.watch import PodHistory

PODS = ["roll-0", "roll-1", "roll-2"]
ROLLOUT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def cluster(kafka_cluster):
    """The manifest of KafkaCluster `roll`, three brokers, with broker settings `config`."""
    return lambda config: kafka_cluster("roll", replicas=3, config=config)


@pytest.fixture(scope="module")
def roll(module_namespace, kubectl, cluster):
    kubectl("apply", "-n", module_namespace, "-f", "-", input=cluster({"num.partitions": "1"}))
    kubectl("wait", "-n", module_namespace, "kafkacluster/roll", "--for=condition=Ready",
            "--timeout=120s", timeout=130)
    return module_namespace


def rolled_out(api, ns: str, history: PodHistory):
    """Every pod replaced since `history` began, and the cluster Ready at its generation."""
    def check():
        if any(len(history.of(p)) < 2 or history.of(p)[-1].ready is None for p in PODS):
            return None
        kc = api.get(f"/apis/runnel.dev/v1alpha1/namespaces/{ns}/kafkaclusters/roll")
        ready, progressing = condition(kc, "Ready"), condition(kc, "Progressing")
        return (kc["status"].get("observedGeneration") == kc["metadata"]["generation"]
                and ready and ready["status"] == "True"
                and progressing and progressing["status"] == "False")
    return check


def assert_one_at_a_time(history: PodHistory) -> None:
    """Each broker restarted exactly once, highest ordinal first, each deletion only after
    the previously restarted broker was Ready again."""
    report = history.describe()
    for pod in PODS:
        assert len(history.of(pod)) == 2, f"{pod} was not restarted exactly once:\n{report}"
    deleted = history.deletions()
    assert [life.name for life in deleted] == ["roll-2", "roll-1", "roll-0"], report
    for previous, following in zip(deleted, deleted[1:]):
        replacement = history.of(previous.name)[-1]
        assert replacement.ready is not None and replacement.ready <= following.deleting, \
            f"{following.name} went before {previous.name} was Ready again:\n{report}"


class Producing:
    """A producer thread writing `acks=all` records until stopped; keeps what was acked."""

    def __init__(self, bootstrap: str, topic: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                      retry_backoff_ms=200, delivery_timeout_ms=120000)
        self.topic, self.acked, self.failed = topic, [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="producing")

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            value = f"r{i}".encode()
            future = self.producer.send(self.topic, value=value)
            future.add_callback(lambda _m, v=value: self.acked.append(v))
            future.add_errback(lambda e, v=value: self.failed.append((v, e)))
            i += 1
            time.sleep(0.02)

    def broker(self) -> str:
        node = self.producer._metadata.leader_for_partition(TopicPartition(self.topic, 0))
        return self.producer._metadata.broker_metadata(node).host

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.producer.flush(timeout=120)
        self.producer.close()


def test_config_change_rolls_brokers_one_at_a_time_while_clients_produce(roll, kubectl, api,
                                                                         cluster):
    ns = roll
    bootstrap = f"roll-bootstrap.{ns}.svc:9092"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic("ledger", 1, 1)])
    finally:
        admin.close()

    producing = Producing(bootstrap, "ledger")
    producing.thread.start()
    wait_for("records acknowledged", lambda: len(producing.acked) >= 50, 30)
    broker = producing.broker()

    with PodHistory(api, ns) as history:
        kubectl("apply", "-n", ns, "-f", "-",
                input=cluster({"num.partitions": "1", "log.retention.ms": "3600000"}))
        wait_for("the rollout", rolled_out(api, ns, history), ROLLOUT_TIMEOUT_S,
                 details=history.describe)
    acked_during = len(producing.acked)
    wait_for("records acknowledged after the rollout",
             lambda: len(producing.acked) >= acked_during + 50, 60)
    producing.finish()
    assert_one_at_a_time(history)

    assert not producing.failed, producing.failed[:5]
    consumer = KafkaConsumer(bootstrap_servers=f"{broker}:9092", enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    try:
        consumer.assign([TopicPartition("ledger", 0)])
        consumer.seek_to_beginning()
        stored = {record.value for record in consumer}
    finally:
        consumer.close()
    missing = [v for v in producing.acked if v not in stored]
    assert not missing, f"{len(missing)} acknowledged records are gone, e.g. {missing[:5]}"


def test_operator_killed_mid_rollout_is_finished_by_its_successor(roll, kubectl, api, operators,
                                                                   cluster):
    ns = roll
    with PodHistory(api, ns) as history:
        kubectl("apply", "-n", ns, "-f", "-",
                input=cluster({"num.partitions": "1", "log.retention.ms": "7200000"}))
        wait_for("the rollout's first deletion", history.deletions, 60, interval_s=0.1,
                 details=history.describe)
        leaders = [name for name in operators.replicas
                   if (operators.lease_holder() or "").startswith(name + "_")]
        for name in leaders:
            operators.kill(name, signal.SIGKILL)
        operators.start()
        wait_for("the rollout, finished by the new operator", rolled_out(api, ns, history),
                 ROLLOUT_TIMEOUT_S, details=lambda: history.describe() + "\n" + operators.logs())
    assert_one_at_a_time(history)
