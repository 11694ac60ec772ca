"""The kind backend: the scenarios inside a real cluster, as a Job (`make e2e`).

e2e/run.sh creates a kind cluster, loads the images, `helm install`s the chart and runs
the scenarios in a pod built from e2e/kind/runner.Dockerfile, so Kafka clients resolve
the brokers' names with the cluster's DNS like any client in the cluster. Nothing here is
kind-specific: any cluster with the chart installed, the broker image pullable and a
runner pod set up as e2e/run.sh does it would do. The pod needs:

- a ServiceAccount bound to `cluster-admin` (scenarios create namespaces, quotas,
  StatefulSets, evictions, tokens, and scale the operator's Deployment);
- `hostPID: true` and root, to SIGKILL an operator container's process (`kill_container`):
  the API can only delete a pod, which sends SIGTERM first, and the process then releases
  its Lease, so the lease-expiry path would go untested;
- RUNNEL_E2E_BROKER_IMAGE (the broker image every KafkaCluster gets, pulled
  IfNotPresent), RUNNEL_E2E_OPERATOR_NAMESPACE and RUNNEL_E2E_OPERATOR_DEPLOYMENT (the
  chart's release; defaults runnel-system and runnel).

The fixtures of harness/backends.py: `kubectl` and `api` with the pod's ServiceAccount,
`chart` read from the installed Deployment and ServiceAccount, `operators` the
Deployment's pods (`PodOperators`), `make_namespace` a plain namespace, `diagnose` the
operator's and the namespace's pods' logs; `fresh_plane` skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import urllib.request
from http.client import HTTPResponse
from pathlib import Path

import pytest

from . import chart as chart_mod
from .backends import POD_CIDR, Backend, describe_namespace, make_kubectl, namespace_name
from .kube import Api, condition, wait_for

TEST_TIMEOUT_S = 480  # per test: real pods start slower than local processes
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
BROKER_IMAGE_ENV = "RUNNEL_E2E_BROKER_IMAGE"
OPERATOR_NS = os.environ.get("RUNNEL_E2E_OPERATOR_NAMESPACE") or "runnel-system"
OPERATOR_DEPLOYMENT = os.environ.get("RUNNEL_E2E_OPERATOR_DEPLOYMENT") or "runnel"


def _setup_problems() -> list[str]:
    problems = []
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        problems.append("KUBERNETES_SERVICE_HOST is unset: this is not a pod")
    if not (SERVICE_ACCOUNT_DIR / "token").is_file():
        problems.append(f"{SERVICE_ACCOUNT_DIR}/token is missing: no ServiceAccount token")
    if shutil.which("kubectl") is None:
        problems.append("kubectl is not on PATH")
    if not os.environ.get(BROKER_IMAGE_ENV):
        problems.append(f"{BROKER_IMAGE_ENV} is unset: name the broker image under test")
    return problems


def pytest_configure(config):
    if config.option.collectonly:
        return
    problems = _setup_problems()
    if problems:
        raise pytest.UsageError(
            "e2e kind backend: runs inside a cluster, as the Job e2e/run.sh starts "
            "(`make e2e`): " + "; ".join(problems))


# --- the operator's replicas: the Deployment's pods ------------------------------------
def container_pids(container_id: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of the processes in container `container_id` (the hex id, no scheme), found
    by their cgroup path, which names the container under every cgroup driver
    (`.../cri-containerd-<id>.scope`, `.../<id>`). Needs the node's pid namespace."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if container_id in cgroups:
            pids.append(int(entry.name))
    return sorted(pids)


def kill_container(container_id: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signals every process of the container and waits until they are gone."""
    pids = container_pids(container_id)
    if not pids:
        raise RuntimeError(
            f"no process of container {container_id[:12]} is visible: the runner pod "
            "needs hostPID and root (e2e/run.sh sets both)")
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    wait_for(f"the processes {pids} of container {container_id[:12]} to end",
             lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30)
    return pids


class PodOperators:
    """The operator's replicas as the chart's Deployment runs them; see harness/backends.py
    for the contract. `start` scales the Deployment up by one; `kill` with SIGKILL kills
    the container's process (the kubelet restarts it in its pod), with SIGTERM deletes
    the pod (the Deployment replaces it)."""

    restarts_killed = True

    def __init__(self, api: Api, kubectl, rendered: chart_mod.Rendered):
        self.api, self.kubectl, self.rendered = api, kubectl, rendered
        deployment = rendered.one("Deployment")
        self.ns = rendered.namespace
        self.deployment = deployment["metadata"]["name"]
        self.selector = ",".join(f"{k}={v}" for k, v in
                                 deployment["spec"]["selector"]["matchLabels"].items())
        self.port = rendered.metrics_port

    def pods(self) -> list[dict]:
        """The Deployment's pods that run and are not being deleted, oldest first."""
        items = self.api.get(f"/api/v1/namespaces/{self.ns}/pods",
                             labelSelector=self.selector)["items"]
        running = [p for p in items if p["status"].get("phase") == "Running"
                   and not p["metadata"].get("deletionTimestamp")]
        return sorted(running, key=lambda p: p["metadata"]["creationTimestamp"])

    def pod(self, name: str) -> dict:
        return self.api.get(f"/api/v1/namespaces/{self.ns}/pods/{name}")

    @property
    def replicas(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.pods()]

    def token(self) -> str:
        sa = self.rendered.service_account
        return self.kubectl("-n", self.ns, "create", "token", sa, "--duration=4h").stdout.strip()

    def start(self) -> str:
        path = f"/apis/apps/v1/namespaces/{self.ns}/deployments/{self.deployment}"
        before = set(self.replicas)
        replicas = self.api.get(path)["spec"]["replicas"] + 1
        self.kubectl("-n", self.ns, "scale", f"deployment/{self.deployment}",
                     f"--replicas={replicas}")

        def started():
            new = [p for p in self.pods() if p["metadata"]["name"] not in before]
            ready = [p["metadata"]["name"] for p in new
                     if (c := condition(p, "Ready")) and c["status"] == "True"]
            return next((name for name in ready if self.readyz(name)), None)

        return wait_for(f"a new replica of deployment/{self.deployment} answering /readyz",
                        started, 120, details=self.logs)

    def _get(self, name: str, path: str) -> HTTPResponse:
        ip = self.pod(name)["status"]["podIP"]
        return urllib.request.urlopen(f"http://{ip}:{self.port}{path}", timeout=2)

    def readyz(self, name: str) -> bool:
        with self._get(name, "/readyz") as r:
            return r.status == 200

    def metrics(self, name: str) -> str:
        with self._get(name, "/metrics") as r:
            return r.read().decode()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        if sig == signal.SIGTERM:
            self.kubectl("-n", self.ns, "delete", "pod", name, "--wait=true", "--timeout=90s",
                         timeout=100)
            return
        if sig != signal.SIGKILL:
            raise ValueError(f"kill({name!r}, {sig}): only SIGKILL and SIGTERM")
        statuses = self.pod(name)["status"]["containerStatuses"]
        container_id = statuses[0]["containerID"].split("://", 1)[1]
        restarts = statuses[0]["restartCount"]
        kill_container(container_id)

        # The kubelet restarts the container in its pod; wait until it has noticed, so
        # that `replicas` and `metrics` speak of the new process from here on.
        def restarted():
            status = self.pod(name)["status"]["containerStatuses"][0]
            return status["restartCount"] > restarts and "running" in status["state"]
        wait_for(f"the kubelet to restart the operator container of {name}", restarted, 60)

    def lease_holder(self) -> str | None:
        return chart_mod.lease_holder(self.api, self.rendered)

    def logs(self, lines: int = 60) -> str:
        parts = []
        for name in self.replicas:
            result = self.kubectl("-n", self.ns, "logs", name, f"--tail={lines}", check=False)
            parts.append(f"--- operator pod {name}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def backend() -> Backend:
    image = os.environ[BROKER_IMAGE_ENV]
    return Backend("kind", POD_CIDR,
                   broker_fields={"image": image, "imagePullPolicy": "IfNotPresent"})


@pytest.fixture(scope="session")
def kubectl():
    # No KUBECONFIG: kubectl uses the pod's ServiceAccount (in-cluster config).
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return make_kubectl("kubectl", env)


@pytest.fixture(scope="session")
def api() -> Api:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    # Projected ServiceAccount tokens outlive a run (the kubelet refreshes the file well
    # before they expire); reading it once is enough.
    return Api(f"https://{host}:{port}", SERVICE_ACCOUNT_DIR / "ca.crt",
               (SERVICE_ACCOUNT_DIR / "token").read_text().strip())


@pytest.fixture(scope="session")
def chart(api) -> chart_mod.Rendered:
    """The chart as `helm install` left it: its Deployment and ServiceAccount."""
    deployment = api.get(f"/apis/apps/v1/namespaces/{OPERATOR_NS}/deployments/"
                         f"{OPERATOR_DEPLOYMENT}")
    sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    account = api.get(f"/api/v1/namespaces/{OPERATOR_NS}/serviceaccounts/{sa_name}")
    return chart_mod.Rendered("", [deployment, account], OPERATOR_NS)


@pytest.fixture(scope="session")
def operators(chart, api, kubectl) -> PodOperators:
    group = PodOperators(api, kubectl, chart)
    wait_for(f"a replica of deployment/{group.deployment} answering /readyz",
             lambda: any(group.readyz(name) for name in group.replicas), 120)
    return group


@pytest.fixture(scope="session")
def make_namespace(kubectl, operators):
    def make(hint: str) -> str:
        name = namespace_name(hint)
        kubectl("create", "namespace", name)
        return name
    return make


@pytest.fixture(scope="session")
def diagnose(kubectl, operators):
    """The namespace's objects and events, the operator's logs and its pods' logs."""
    def report(ns: str) -> str:
        parts = [describe_namespace(kubectl, ns), operators.logs()]
        pods = kubectl("-n", ns, "get", "pods", "-o", "name", check=False).stdout.split()
        for pod in pods:
            result = kubectl("-n", ns, "logs", pod, "--all-containers", "--tail=60",
                             check=False)
            parts.append(f"--- {pod}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)
    return report


@pytest.fixture
def fresh_plane():
    pytest.skip("throwaway API servers exist only in the local backend; on kind the CRDs "
                "were installed once, by helm install (test_installed_crds_* covers them)")
