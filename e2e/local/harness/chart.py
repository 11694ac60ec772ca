"""The chart as users install it, and the operator run from what the chart renders.

`render` is `helm template charts/runnel`; `Operators` runs the rendered Deployment's
container (its args and env, `$(VAR)` expanded) as local `runnel-operator` processes, one
per replica, each with a kubeconfig holding a token of the chart's ServiceAccount
(`kubectl create token`): RBAC is exactly what the chart grants.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import pods
from .controlplane import ControlPlane, free_port
from .kube import ApiError, wait_for
from .procs import Proc, Processes


@dataclass
class Rendered:
    """`helm template` output: the objects, and the parts the suite needs by name."""

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


def render(helm: Path, chart: Path, release: str, namespace: str,
           values: list[str] = ()) -> Rendered:
    argv = [str(helm), "template", release, str(chart), "--namespace", namespace]
    for v in values:
        argv += ["--set", v]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    objects = [o for o in yaml.safe_load_all(text) if o]
    return Rendered(text, objects, namespace)


@dataclass
class Operators:
    """The operator's replicas, as processes; replica names play the pods' names."""

    plane: ControlPlane
    processes: Processes
    rendered: Rendered
    binary: Path
    workdir: Path
    kubectl: object
    replicas: dict[str, tuple[Proc, int]] = field(default_factory=dict)
    counter: int = 0

    def token(self) -> str:
        ns, sa = self.rendered.namespace, self.rendered.service_account
        return self.kubectl("-n", ns, "create", "token", sa, "--duration=4h").stdout.strip()

    def start(self, name: str | None = None) -> str:
        """Starts a replica and waits for its /readyz; returns its name."""
        if name is None:
            name = f"runnel-operator-{self.counter}"
            self.counter += 1
        ns = self.rendered.namespace
        kubeconfig = self.plane.kubeconfig_for(
            self.workdir / f"{name}.kubeconfig", self.token(), ns, user=name)
        container = self.rendered.container
        fields = {"metadata.namespace": ns, "metadata.name": name}
        env = {}
        for var in container.get("env") or []:
            source = (var.get("valueFrom") or {}).get("fieldRef")
            env[var["name"]] = (fields[source["fieldPath"]] if source
                                else pods.expand(var.get("value", ""), env))
        port = free_port()
        args = []
        for arg in container.get("args") or []:
            arg = pods.expand(arg, env)
            if arg.startswith("--metrics-listen="):
                arg = f"--metrics-listen=127.0.0.1:{port}"
            args.append(arg)
        env.update({"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"})
        proc = self.processes.spawn(name, [str(self.binary), *args], env=env)
        self.replicas[name] = (proc, port)
        wait_for(f"operator {name} /readyz", lambda: self.readyz(name), 60,
                 details=lambda: proc.log_tail())
        return name

    def readyz(self, name: str) -> bool:
        import urllib.request

        proc, port = self.replicas[name]
        if not proc.running():
            raise RuntimeError(f"operator {name} exited with {proc.popen.returncode}:\n"
                               f"{proc.log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200

    def metrics(self, name: str) -> str:
        import urllib.request

        _, port = self.replicas[name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc, _ = self.replicas.pop(name)
        proc.stop(grace_s=30, sig=sig)

    def lease_holder(self) -> str | None:
        lease_name = next(a.split("=", 1)[1] for a in self.rendered.container["args"]
                          if a.startswith("--leader-election-lease="))
        try:
            lease = self.plane.api.get(
                f"/apis/coordination.k8s.io/v1/namespaces/{self.rendered.namespace}"
                f"/leases/{lease_name}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return lease["spec"].get("holderIdentity")

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"--- {name} ({proc.log})\n{proc.log_tail(lines)}"
                         for name, (proc, _) in self.replicas.items())
