"""The brokers' PodDisruptionBudget, judged by the real API server's eviction API (and the
disruption controller of kube-controller-manager): a one-broker cluster's only broker is
never evicted; a drain waits instead of taking the cluster and its only copy offline.
"""

from __future__ import annotations

import pytest

from harness.kube import ApiError, condition, wait_for


def test_the_only_broker_of_a_one_broker_cluster_is_not_evicted(namespace, kubectl, api,
                                                                kafka_cluster):
    ns = namespace
    kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster("solo"))
    kubectl("wait", "-n", ns, "kafkacluster/solo", "--for=condition=Ready", "--timeout=120s",
            timeout=130)
    pdb_path = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/solo"

    def budget_observed():
        pdb = api.get(pdb_path)
        status = pdb.get("status", {})
        return pdb if status.get("observedGeneration") == pdb["metadata"]["generation"] \
            and status.get("currentHealthy") == 1 else None

    pdb = wait_for("the disruption controller to observe PDB solo", budget_observed, 30)
    assert pdb["spec"]["maxUnavailable"] == 0, pdb["spec"]
    assert pdb["status"]["disruptionsAllowed"] == 0, pdb["status"]

    with pytest.raises(ApiError) as refused:
        api.create(f"/api/v1/namespaces/{ns}/pods/solo-0/eviction", {
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "solo-0", "namespace": ns}})
    assert refused.value.status == 429, refused.value
    assert "disruption budget" in refused.value.body, refused.value.body
    pod = api.get(f"/api/v1/namespaces/{ns}/pods/solo-0")
    assert pod["metadata"].get("deletionTimestamp") is None
    assert condition(pod, "Ready")["status"] == "True"
