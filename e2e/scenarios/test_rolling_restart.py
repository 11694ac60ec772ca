"""Scenarios 2 and 5: a config change rolls the brokers one pod at a time, and an operator
killed mid-rollout is succeeded by one that finishes it without restarting a broker twice.

A three-broker KafkaCluster `roll`, one Kafka cluster whose three voters restart one at a
time (a restarted broker is Ready only once it has rejoined the metadata quorum). The
topic has three replicas and `min.insync.replicas=2`: a producer writing acks=all through
the whole roll loses nothing and sees no error its retries do not absorb, and every
acknowledged record is read back once. The StatefulSet uses `OnDelete`; the operator
deletes stale pods itself, the highest ordinal first and the active controller last, each
only once the previous one is Ready again and the brokers say it is safe (ISR).
"""

from __future__ import annotations

import signal

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from harness.kube import condition, wait_for
from harness.load import Producing, assert_acked_once, read_all
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


def assert_one_at_a_time(history: PodHistory, order: list[str]) -> None:
    """Each broker restarted exactly once, in `order`, each deletion only after the
    previously restarted broker was Ready again."""
    report = history.describe()
    for pod in PODS:
        assert len(history.of(pod)) == 2, f"{pod} was not restarted exactly once:\n{report}"
    deleted = history.deletions()
    assert [life.name for life in deleted] == order, report
    for previous, following in zip(deleted, deleted[1:]):
        replacement = history.of(previous.name)[-1]
        assert replacement.ready is not None and replacement.ready <= following.deleting, \
            f"{following.name} went before {previous.name} was Ready again:\n{report}"


def controller_last(admin) -> list[str]:
    """The restart order: highest ordinal first, the active controller last."""
    controller = admin.describe_cluster()["controller_id"]
    assert controller in (0, 1, 2), controller
    return [f"roll-{i}" for i in (2, 1, 0) if i != controller] + [f"roll-{controller}"]


def test_config_change_rolls_brokers_one_at_a_time_while_clients_produce(roll, kubectl, api,
                                                                         cluster):
    ns = roll
    bootstrap = f"roll-bootstrap.{ns}.svc:9092"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic("ledger", 2, 3,
                                      topic_configs={"min.insync.replicas": "2"})])
        order = controller_last(admin)
    finally:
        admin.close()

    producing = Producing(bootstrap, "ledger", 2).start()
    try:
        wait_for("records acknowledged", lambda: len(producing.acked) >= 50, 30)
        with PodHistory(api, ns) as history:
            kubectl("apply", "-n", ns, "-f", "-",
                    input=cluster({"num.partitions": "1", "log.retention.ms": "3600000"}))
            wait_for("the rollout", rolled_out(api, ns, history), ROLLOUT_TIMEOUT_S,
                     details=history.describe)
        acked_during = len(producing.acked)
        wait_for("records acknowledged after the rollout",
                 lambda: len(producing.acked) >= acked_during + 50, 60)
    finally:
        producing.finish()
    assert_one_at_a_time(history, order)

    assert not producing.failed, producing.failed[:5]
    assert_acked_once(producing.acked, read_all(bootstrap, "ledger", 2))


def test_operator_killed_mid_rollout_is_finished_by_its_successor(roll, kubectl, api, operators,
                                                                   cluster):
    ns = roll
    admin = KafkaAdminClient(bootstrap_servers=f"roll-bootstrap.{ns}.svc:9092",
                             request_timeout_ms=10000)
    try:
        order = controller_last(admin)
    finally:
        admin.close()
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
    assert_one_at_a_time(history, order)
