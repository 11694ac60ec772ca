"""Scenario 4: two operator replicas with leader election (the chart's default, one
Lease in the release namespace). Only the holder reconciles; when it is killed the
standby takes over once the Lease expires (15 s), and when it stops cleanly (SIGTERM)
it releases the Lease, so the standby need not wait. Either way the new leader
reconciles.

It replaces the session's operator replica with its successors. On a real cluster the
kubelet restarts a SIGKILLed container in its pod and the Deployment replaces a deleted
pod, so there the successor is whichever new process wins the Lease: the standby or the
restarted one; locally a killed replica stays gone and the successor is the standby.
"""

from __future__ import annotations

import json
import re
import signal
import time

from harness.kube import condition, wait_for

LEASE_DURATION_S = 15  # operator/src/leader.rs
RETRY_PERIOD_S = 2


def leader_gauge(operators, name: str) -> float | None:
    m = re.search(r"^runnel_operator_leader(?:\{[^}]*\})? (\S+)$", operators.metrics(name), re.M)
    return float(m.group(1)) if m else None


def reconciles(operators, name: str) -> float:
    """The replica's reconciles so far, all controllers together."""
    return sum(float(v) for v in re.findall(
        r"^runnel_operator_reconciles_total(?:\{[^}]*\})? (\S+)$", operators.metrics(name), re.M))


def holder_replica(operators) -> str | None:
    """The replica whose identity (`<pod name>_<random>`) holds the Lease."""
    holder = operators.lease_holder() or ""
    return next((name for name in operators.replicas if holder.startswith(name + "_")), None)


def assert_reconciles(kubectl, api, ns: str, topic: str) -> None:
    """The leader acts: a new Topic on the running cluster becomes Ready."""
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "Topic", "metadata": {"name": topic},
        "spec": {"clusterRef": {"name": "ha"}, "partitions": 1}}))

    def ready():
        obj = api.get(f"/apis/runnel.dev/v1alpha1/namespaces/{ns}/topics/{topic}")
        c = condition(obj, "Ready")
        return c is not None and c["status"] == "True"

    wait_for(f"Topic {topic} Ready (reconciled by the new leader)", ready, 60)


def take_over(operators, kubectl, api, ns: str, sig: int, within_s: float, topic: str):
    held_by = operators.lease_holder()
    leader = holder_replica(operators)
    assert leader is not None, f"no replica holds the Lease ({held_by})"
    standby = operators.start()
    assert operators.lease_holder() == held_by
    wait_for(f"{leader} reporting itself leader", lambda: leader_gauge(operators, leader) == 1, 10)
    assert leader_gauge(operators, standby) == 0
    assert reconciles(operators, leader) > 0
    assert reconciles(operators, standby) == 0, "a standby reconciled"

    operators.kill(leader, sig)
    stopped = time.monotonic()
    wait_for(f"a successor of {held_by} to take the Lease",
             lambda: operators.lease_holder() not in (None, held_by),
             within_s + 15, details=operators.logs)
    took = time.monotonic() - stopped
    successor = holder_replica(operators)
    assert took <= within_s, f"{successor} took the Lease after {took:.1f}s"
    if not operators.restarts_killed:
        assert successor == standby, f"{successor} holds the Lease, not the standby {standby}"
    wait_for(f"{successor} reporting itself leader",
             lambda: leader_gauge(operators, successor) == 1, 10)
    assert_reconciles(kubectl, api, ns, topic)


def test_standby_takes_over_from_a_killed_leader(namespace, operators, kubectl, api,
                                                 kafka_cluster):
    kubectl("apply", "-n", namespace, "-f", "-", input=kafka_cluster("ha"))
    kubectl("wait", "-n", namespace, "kafkacluster/ha", "--for=condition=Ready",
            "--timeout=120s", timeout=130)

    # SIGKILL: the Lease is left held; the standby takes it once it expires.
    take_over(operators, kubectl, api, namespace, signal.SIGKILL,
              LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 2, "after-kill")
    # SIGTERM: the leader releases the Lease; the standby takes it on its next attempt.
    take_over(operators, kubectl, api, namespace, signal.SIGTERM,
              2 * RETRY_PERIOD_S + 2, "after-sigterm")
