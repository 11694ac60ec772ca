"""The operator's replicas as local processes (the local backend's `operators`).

Each replica runs the chart's rendered Deployment container (its args and env, `$(VAR)`
expanded) as a `runnel-operator` process with a kubeconfig holding a token of the chart's
ServiceAccount (`kubectl create token`): RBAC is exactly what the chart grants. Replica
names play the pods' names (the Lease identity is `<name>_<random>`). A killed replica
stays gone: nothing restarts it (`restarts_killed` is False).
"""

from __future__ import annotations

import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import chart, pods
from .controlplane import ControlPlane
from .ports import free_port
from .kube import wait_for
from .procs import Proc, Processes


@dataclass
class Operators:
    """The operator's replicas, as processes; see harness/backends.py for the contract."""

    plane: ControlPlane
    processes: Processes
    rendered: chart.Rendered
    binary: Path
    workdir: Path
    kubectl: object
    replicas: dict[str, tuple[Proc, int]] = field(default_factory=dict)
    counter: int = 0
    restarts_killed: bool = False

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
        proc, port = self.replicas[name]
        if not proc.running():
            raise RuntimeError(f"operator {name} exited with {proc.popen.returncode}:\n"
                               f"{proc.log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200

    def metrics(self, name: str) -> str:
        _, port = self.replicas[name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """SIGKILL: the process dies holding what it holds; SIGTERM: it stops cleanly."""
        proc, _ = self.replicas.pop(name)
        proc.stop(grace_s=30, sig=sig)

    def lease_holder(self) -> str | None:
        return chart.lease_holder(self.plane.api, self.rendered)

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"--- {name} ({proc.log})\n{proc.log_tail(lines)}"
                         for name, (proc, _) in self.replicas.items())
