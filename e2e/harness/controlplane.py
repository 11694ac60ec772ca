"""etcd + kube-apiserver (+ kube-controller-manager) on loopback, for one run.

The Kubernetes binaries come from the directory named by RUNNEL_K8S_ASSETS, plain or as
`.xz` (unpacked once into target/k8s-assets/, keyed by the archive's size and mtime);
etcd is Debian's `etcd-server`. Each control plane gets fresh certificates and free ports;
etcd keeps its data on a tmpfs of the session's mount namespace (nothing to fsync).
"""

from __future__ import annotations

import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import certs, netns
from .kube import Api, ApiError, wait_for, write_kubeconfig
from .ports import free_port
from .procs import Proc, Processes

ASSETS_ENV = "RUNNEL_K8S_ASSETS"
BINARIES = ("kube-apiserver", "kube-controller-manager")
# The control plane keeps nothing worth a graceful stop (etcd is on a tmpfs); the API
# server's own graceful termination alone takes ~8 s.
STOP_GRACE_S = 2.0


class SetupError(RuntimeError):
    """Something the suite needs is missing; the message says what and how to get it."""


def resolve_assets(target_dir: Path) -> dict[str, Path]:
    """Paths of kube-apiserver and kube-controller-manager, unpacking `.xz` when needed."""
    assets = os.environ.get(ASSETS_ENV)
    if not assets:
        raise SetupError(
            f"{ASSETS_ENV} is not set: point it at a directory holding kube-apiserver and "
            "kube-controller-manager (plain or .xz), e.g. ../shared/k8s"
        )
    directory = Path(assets)
    if not directory.is_dir():
        raise SetupError(f"{ASSETS_ENV}={assets} is not a directory")
    unpacked = target_dir / "k8s-assets"
    found = {}
    for name in BINARIES:
        plain, packed = directory / name, directory / f"{name}.xz"
        if plain.is_file() and os.access(plain, os.X_OK):
            found[name] = plain
        elif packed.is_file():
            found[name] = _unpack(packed, unpacked / name)
        else:
            raise SetupError(
                f"{ASSETS_ENV}={assets} has neither {name} nor {name}.xz: it needs the "
                "static kube-apiserver and kube-controller-manager binaries (v1.36 works)"
            )
    return found


def _unpack(packed: Path, out: Path) -> Path:
    st = packed.stat()
    key = f"{packed.resolve()} {st.st_size} {int(st.st_mtime)}\n"
    stamp = out.with_name(out.name + ".source")
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + f".part{os.getpid()}")
    with lzma.open(packed) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    part.chmod(0o755)
    part.rename(out)
    stamp.write_text(key)
    return out


def etcd_binary() -> Path:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise SetupError(
            "etcd is missing: install Debian's etcd-server (apt-get install etcd-server) "
            "or run scripts/k8s-deps.sh"
        )
    return Path(etcd)


@dataclass
class ControlPlane:
    """A running API server: its address, admin credentials and processes."""

    name: str
    server: str
    creds: certs.Credentials
    admin_kubeconfig: Path
    api: Api
    procs: list[Proc]

    def kubeconfig_for(self, path: Path, token: str, namespace: str, user: str) -> Path:
        return write_kubeconfig(path, self.server, self.creds.ca_crt, token, namespace, user)

    def check_alive(self) -> None:
        """Fails, with the log's tail, when a control-plane process has exited."""
        for proc in self.procs:
            if not proc.running():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}; last lines of "
                    f"{proc.log}:\n{proc.log_tail()}"
                )


def start(
    name: str,
    workdir: Path,
    processes: Processes,
    binaries: dict[str, Path],
    *,
    controller_manager: bool = True,
    timeout_s: float = 60.0,
) -> ControlPlane:
    """Starts etcd and kube-apiserver (and kube-controller-manager) and waits for /readyz."""
    etcd = etcd_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    creds = certs.generate(workdir / "pki")

    etcd_dir = workdir / "etcd"
    netns.tmpfs(etcd_dir)
    client, peer, metrics = free_port(), free_port(), free_port()
    client_url = f"http://127.0.0.1:{client}"
    peer_url = f"http://127.0.0.1:{peer}"
    procs = [processes.spawn(f"{name}-etcd", [
        str(etcd), "--name", "etcd", "--data-dir", str(etcd_dir / "data"),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"etcd={peer_url}",
        "--listen-metrics-urls", f"http://127.0.0.1:{metrics}",
        "--log-level", "warn",
    ], grace_s=STOP_GRACE_S)]

    port = free_port()
    server = f"https://127.0.0.1:{port}"
    procs.append(processes.spawn(f"{name}-kube-apiserver", [
        str(binaries["kube-apiserver"]),
        f"--etcd-servers={client_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'pki'}",
        f"--tls-cert-file={creds.server_crt}", f"--tls-private-key-file={creds.server_key}",
        f"--client-ca-file={creds.ca_crt}",
        f"--token-auth-file={creds.token_file}",
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={creds.sa_pub}",
        f"--service-account-signing-key-file={creds.sa_key}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
    ], grace_s=STOP_GRACE_S))

    admin_kubeconfig = write_kubeconfig(
        workdir / "admin.kubeconfig", server, creds.ca_crt, creds.admin_token)
    api = Api(server, creds.ca_crt, creds.admin_token, timeout_s=5.0)
    plane = ControlPlane(name, server, creds, admin_kubeconfig, api, procs)

    def ready() -> bool:
        plane.check_alive()
        try:
            api.request("GET", "/readyz")
            return True
        except (ApiError, OSError):
            return False

    wait_for(f"{name}: kube-apiserver /readyz", ready, timeout_s, interval_s=0.2)

    if controller_manager:
        procs.append(processes.spawn(f"{name}-kube-controller-manager", [
            str(binaries["kube-controller-manager"]),
            f"--kubeconfig={admin_kubeconfig}",
            f"--authentication-kubeconfig={admin_kubeconfig}",
            f"--authorization-kubeconfig={admin_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--cert-dir={workdir / 'pki'}",
            f"--service-account-private-key-file={creds.sa_key}",
            f"--root-ca-file={creds.ca_crt}",
            "--leader-elect=false",
            "--controllers=*",
            "--v=1",
        ], grace_s=STOP_GRACE_S))
        # The service-account controller runs once "default" exists in kube-system.
        wait_for(
            f"{name}: kube-controller-manager (the default ServiceAccount)",
            lambda: plane.check_alive() or api.get_or_none(
                "/api/v1/namespaces/default/serviceaccounts/default"),
            timeout_s,
        )
    return plane
