"""What the node agent does to a pod spec, as functions of the pod (no I/O but probes).

- `container_env`: the container's environment as the kubelet builds it: `value` with
  `$(VAR)` references to earlier variables, `valueFrom.fieldRef` (the downward API),
  `configMapKeyRef`/`secretKeyRef` and `envFrom` (through a lookup the caller gives).
- `expand`: Kubernetes' `$(VAR)` expansion of command and args (`$$` is a literal `$`).
- `rewrite_paths`: volume mount paths in args mapped to the pod's host directories, since
  the process runs in the machine's filesystem, not in an image.
- `rewrite_wildcard`: `0.0.0.0:`/`[::]:` listen addresses become the pod's own IP (a pod's
  network namespace holds only its address; here all pods share one loopback).
- `Probe`: exec-free probes (gRPC health, TCP, HTTP GET) with the pod's thresholds.
"""

from __future__ import annotations

import base64
import re
import socket
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class PodConfigError(RuntimeError):
    """The pod cannot start as specified (the kubelet's CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """`$(VAR)` replaced by `env[VAR]` when defined (kept as is otherwise); `$$` → `$`."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _REF.sub(sub, text)


def field_value(pod: dict, path: str) -> str:
    """The downward-API field `path` of `pod` (what `valueFrom.fieldRef` reads)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
    }
    if path in simple:
        return simple[path] or ""
    m = _LABEL.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise PodConfigError(f"fieldRef {path!r} is not supported by the node agent")


Lookup = Callable[[str, str], dict | None]  # (kind "configmaps"|"secrets", name) -> object


def _key_from(lookup: Lookup, kind: str, ref: dict) -> str | None:
    obj = lookup(kind, ref["name"])
    data = (obj or {}).get("data") or {}
    if obj is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise PodConfigError(f"{kind[:-1]} {ref['name']!r} has no key {ref['key']!r}")
    value = data[ref["key"]]
    return base64.b64decode(value).decode() if kind == "secrets" else value


def container_env(pod: dict, container: dict, lookup: Lookup) -> dict[str, str]:
    """The container's environment variables, in the kubelet's order of precedence."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            if key in source:
                obj = lookup(kind, source[key]["name"])
                if obj is None and not source[key].get("optional"):
                    raise PodConfigError(f"{kind[:-1]} {source[key]['name']!r} not found")
                for k, v in ((obj or {}).get("data") or {}).items():
                    if kind == "secrets":
                        v = base64.b64decode(v).decode()
                    env[source.get("prefix", "") + k] = v
    for var in container.get("env") or []:
        name, source = var["name"], var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "configmaps" if "configMapKeyRef" in source else "secrets"
            value = _key_from(lookup, kind, source.get("configMapKeyRef")
                              or source["secretKeyRef"])
            if value is not None:
                env[name] = value
        else:
            raise PodConfigError(f"env {name}: {sorted(source)} is not supported")
    return env


def rewrite_paths(arg: str, mounts: list[tuple[str, str]]) -> str:
    """`arg` (or the value of `--flag=value`) with a mount path prefix replaced by the
    host directory behind it; `mounts` is (mountPath, host path), longest first."""
    prefix, value = "", arg
    if arg.startswith("-") and "=" in arg:
        flag, _, value = arg.partition("=")
        prefix = flag + "="
    for mount_path, host in mounts:
        base = mount_path.rstrip("/")
        if value == base or value.startswith(base + "/"):
            return prefix + host + value[len(base):]
    return arg


def rewrite_wildcard(arg: str, pod_ip: str) -> str:
    """Wildcard listen addresses bound to the pod's own IP instead."""
    return arg.replace("0.0.0.0:", f"{pod_ip}:").replace("[::]:", f"{pod_ip}:")


def _grpc_check(host: str, port: int, service: str, timeout_s: float) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _named_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    if str(port).isdigit():
        return int(port)
    raise PodConfigError(f"probe port {port!r} names no container port")


@dataclass
class Probe:
    """One probe of a container with the kubelet's thresholds; `scale` shortens periods."""

    kind: str  # startup, readiness, liveness
    spec: dict
    container: dict
    scale: float
    successes: int = 0
    failures: int = 0
    last_error: str = ""
    next_at: float = field(default=0.0)

    def start(self, now: float) -> None:
        self.successes = self.failures = 0
        self.next_at = now + self.spec.get("initialDelaySeconds", 0) * self.scale

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def run(self, host: str, now: float) -> str | None:
        """Probes once; returns "success" or "failure" when a threshold is crossed."""
        self.next_at = now + max(0.2, self.spec.get("periodSeconds", 10) * self.scale)
        timeout = self.spec.get("timeoutSeconds", 1)
        try:
            ok = self._check(host, timeout)
            self.last_error = "" if ok else "not serving"
        except Exception as e:  # noqa: BLE001 - any failure is a failed probe
            ok, self.last_error = False, f"{type(e).__name__}: {e}"[:200]
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.get("successThreshold", 1):
                return "success"
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.spec.get("failureThreshold", 3):
                return "failure"
        return None

    def _check(self, host: str, timeout: float) -> bool:
        spec = self.spec
        if "grpc" in spec:
            return _grpc_check(host, spec["grpc"]["port"], spec["grpc"].get("service", ""),
                               timeout)
        if "tcpSocket" in spec:
            port = _named_port(self.container, spec["tcpSocket"]["port"])
            with socket.create_connection((host, port), timeout=timeout):
                return True
        if "httpGet" in spec:
            get = spec["httpGet"]
            port = _named_port(self.container, get["port"])
            url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{port}{get.get('path', '/')}"
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return 200 <= resp.status < 400
        raise PodConfigError("exec probes are not supported by the node agent")


def probes(container: dict, scale: float) -> dict[str, Probe]:
    return {
        kind: Probe(kind, container[f"{kind}Probe"], container, scale)
        for kind in ("startup", "readiness", "liveness")
        if container.get(f"{kind}Probe")
    }


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
