"""What the scenarios (e2e/scenarios) may ask of a cluster, and which cluster they get.

A backend is a pytest plugin module, `harness.<name>`, that e2e/scenarios/conftest.py
registers: `RUNNEL_E2E_BACKEND=local` (the default: a real API server on this machine,
brokers run by a node agent; `make test-k8s`) or `kind` (inside a real cluster, as the Job
that e2e/run.sh starts; `make e2e`). Scenarios use only these fixtures:

| fixture | scope | what |
|---|---|---|
| `backend` | session | a `Backend`: its name, the pods' address range, what every KafkaCluster needs here |
| `kubectl` | session | `kubectl(*args, input=, check=, timeout=)` with cluster-admin rights |
| `api` | session | a `harness.kube.Api` with cluster-admin rights |
| `chart` | session | the chart's objects (`harness.chart.Rendered`), installed |
| `operators` | session | the operator's replicas: the `Operators` contract below |
| `make_namespace` | session | `make_namespace(hint)`: a fresh namespace where brokers run |
| `diagnose` | session | `diagnose(ns)`: logs worth reading when a test in `ns` failed |
| `fresh_plane` | function | throwaway API servers; only the local backend has them (kind skips) |

The conftest builds `namespace`, `module_namespace`, `kafka_cluster` and the failure
reports on top of them. A scenario that one backend cannot run gets its skip from that
backend's fixture, with the reason, never from an `if` in the scenario.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol

import pytest

ENV = "RUNNEL_E2E_BACKEND"
NAMES = ("local", "kind")
DEFAULT = "local"
# Both backends hand pods addresses from this range (the local node agent, and kind's
# podSubnet in e2e/kind/kind-config.yaml).
POD_CIDR = "10.244.0.0/16"


def selected(environ: Mapping[str, str]) -> str:
    """The backend `environ` asks for; a name that is not a backend is a usage error."""
    name = environ.get(ENV) or DEFAULT
    if name not in NAMES:
        raise pytest.UsageError(
            f"{ENV}={name!r} is not a backend of e2e/scenarios: use one of {', '.join(NAMES)}")
    return name


@dataclass(frozen=True)
class Backend:
    """What scenarios may know about the backend beyond kubectl and the API."""

    name: str
    pod_cidr: str
    # Spec fields every KafkaCluster gets here (kind: the broker image under test).
    broker_fields: dict = field(default_factory=dict)


class Operators(Protocol):
    """The operator's replicas (local: processes; kind: the Deployment's pods)."""

    # Names of the running replicas; a Lease identity is `<name>_<random>`.
    replicas: Iterable[str]
    # Whether a killed replica comes back by itself (the kubelet restarts its container).
    restarts_killed: bool

    def token(self) -> str:
        """A token of the chart's ServiceAccount."""

    def start(self) -> str:
        """Adds a replica and waits until it answers /readyz; returns its name."""

    def kill(self, name: str, sig: int) -> None:
        """SIGKILL: the process dies at once, holding the Lease; SIGTERM: a clean stop."""

    def lease_holder(self) -> str | None:
        """The identity holding the leader Lease, if any."""

    def metrics(self, name: str) -> str:
        """The replica's /metrics text."""

    def logs(self, lines: int = 60) -> str:
        """The tails of the replicas' logs."""


Kubectl = Callable[..., subprocess.CompletedProcess]


def make_kubectl(binary: str, env: Mapping[str, str]) -> Kubectl:
    """kubectl with `env`; a failure (unless `check=False`) fails the test with its output."""
    def kubectl(*args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [binary, *args], input=input, capture_output=True, text=True,
            timeout=timeout, env=dict(env))
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result
    return kubectl


def namespace_name(hint: str) -> str:
    """`e2e-<hint>-<random>`, a valid namespace name from a test or module name."""
    return "e2e-" + hint.removeprefix("test_")[:30].replace("_", "-").strip("-") \
        + "-" + uuid.uuid4().hex[:4]


def describe_namespace(kubectl: Kubectl, ns: str) -> str:
    """The namespace's objects and events, for a failure report."""
    parts = []
    for args in (
        ("get", "kafkaclusters,topics,consumergroups,statefulsets,pods,pvc,svc,endpointslices",
         "-n", ns, "-o", "wide"),
        ("get", "kafkaclusters,topics,consumergroups,pods", "-n", ns, "-o", "yaml"),
        ("get", "events", "-n", ns, "--sort-by=.lastTimestamp"),
    ):
        result = kubectl(*args, check=False)
        parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
    return "\n".join(parts)
