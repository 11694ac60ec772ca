"""The chart's objects, as `helm template` renders them or as a cluster holds them.

`render` is `helm template charts/runnel` (the local backend applies that); on a real
cluster the kind backend reads the installed Deployment and ServiceAccount instead. Both
give a `Rendered`, which names what the scenarios need: the operator's namespace,
ServiceAccount, container, and the Lease its replicas compete for.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .kube import Api, ApiError


@dataclass
class Rendered:
    """The chart's objects, and the parts the suite needs by name."""

    text: str
    objects: list[dict]
    namespace: str

    def one(self, kind: str) -> dict:
        found = [o for o in self.objects if o["kind"] == kind]
        assert len(found) == 1, f"the chart renders {len(found)} {kind} objects, not 1"
        return found[0]

    @property
    def container(self) -> dict:
        return self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]

    @property
    def service_account(self) -> str:
        return self.one("ServiceAccount")["metadata"]["name"]

    @property
    def lease_name(self) -> str:
        return next(a.split("=", 1)[1] for a in self.container["args"]
                    if a.startswith("--leader-election-lease="))

    @property
    def metrics_port(self) -> int:
        """The port of `--metrics-listen=HOST:PORT` (/metrics, /healthz, /readyz)."""
        return next(int(a.rsplit(":", 1)[1]) for a in self.container["args"]
                    if a.startswith("--metrics-listen="))


def render(helm: Path, chart: Path, release: str, namespace: str,
           values: list[str] = ()) -> Rendered:
    argv = [str(helm), "template", release, str(chart), "--namespace", namespace]
    for v in values:
        argv += ["--set", v]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    objects = [o for o in yaml.safe_load_all(text) if o]
    return Rendered(text, objects, namespace)


def lease_holder(api: Api, rendered: Rendered) -> str | None:
    """The identity (`<replica name>_<random>`) holding the operator's Lease, if any."""
    try:
        lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/{rendered.namespace}"
                        f"/leases/{rendered.lease_name}")
    except ApiError as e:
        if e.status == 404:
            return None
        raise
    return lease["spec"].get("holderIdentity")
