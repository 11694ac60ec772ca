"""Issue 14 item 6: a scale-up whose new brokers never ran can be undone. A broker that
was never ready holds no data, so lowering `replicas` again does not wait for it to
answer. Here the new pod is never created: a ResourceQuota of one pod refuses it.
"""

from __future__ import annotations

import json

from harness.kube import condition, wait_for

GROUP = "/apis/runnel.dev/v1alpha1"


def test_a_scale_up_whose_brokers_never_ran_can_be_undone(namespace, kubectl, api,
                                                          kafka_cluster):
    ns = namespace

    def apply_cluster(replicas: int) -> None:
        kubectl("apply", "-n", ns, "-f", "-", input=kafka_cluster("grow", replicas=replicas))

    apply_cluster(1)
    kubectl("wait", "-n", ns, "kafkacluster/grow", "--for=condition=Ready", "--timeout=120s",
            timeout=130)
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "one-pod"},
        "spec": {"hard": {"pods": "1"}}}))
    wait_for("the quota to count the broker's pod",
             lambda: api.get(f"/api/v1/namespaces/{ns}/resourcequotas/one-pod")
             .get("status", {}).get("used", {}).get("pods") == "1", 30)

    apply_cluster(2)

    def never_ran():
        kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/grow")
        brokers = (kc.get("status") or {}).get("brokers") or []
        return brokers if len(brokers) == 2 and brokers[1].get("neverReady") is True else None

    brokers = wait_for("broker 1 listed as never ready", never_ran, 30)
    assert brokers[1]["state"] in ("Missing", "Pending"), brokers
    assert api.get_or_none(f"/api/v1/namespaces/{ns}/pods/grow-1") is None

    apply_cluster(1)

    def undone():
        sts = api.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/grow")
        kc = api.get(f"{GROUP}/namespaces/{ns}/kafkaclusters/grow")
        ready, degraded = condition(kc, "Ready"), condition(kc, "Degraded")
        return kc if sts["spec"]["replicas"] == 1 and ready and ready["status"] == "True" \
            and degraded and degraded["status"] == "False" else None

    kc = wait_for("the scale-up undone: StatefulSet at 1 and the cluster Ready", undone, 30,
                  details=lambda: str(api.get(
                      f"{GROUP}/namespaces/{ns}/kafkaclusters/grow").get("status")))
    assert [b["id"] for b in kc["status"]["brokers"]] == [0]
