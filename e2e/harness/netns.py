"""The test session's own network and mount namespaces.

The whole pytest session re-executes itself under `unshare --mount --net`: a network with
only a loopback interface, on which a whole pod range (10.244.0.0/16) is local, so each pod
gets its own address and nothing collides with the machine's ports or other test runs; and
a private mount table
in which the suite's own hosts file is bind-mounted over /etc/hosts. The machine's
/etc/hosts is never written; the namespaces end with the session.

Names are updated by mounting a new file over the previous one (`mount --bind`), which
is atomic for every reader: glibc opens /etc/hosts afresh on each lookup. Each layer pins
the file below it, so `unmount_hosts` peels them off before the files are removed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

_MARK = "RUNNEL_K8S_NAMESPACED"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _ns(kind: str, pid: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def inside() -> bool:
    """Whether this process runs in namespaces of its own (set up by `reexec`)."""
    if os.environ.get(_MARK) != str(os.getpid()):
        return False
    return _ns("net", "self") != os.environ.get(_MARK + "_HOST_NET")


def reexec(argv: list[str]) -> None:
    """Replaces this process by `argv` run in new mount and network namespaces."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit(
            "e2e/local: 'unshare' (util-linux) is missing: apt-get install util-linux"
        )
    flags = ["--mount", "--net"]
    if os.geteuid() != 0:
        # Without root, a user namespace maps us to root inside, where the kernel allows
        # it (untested: these machines and CI run the suite as root).
        flags.insert(0, "--map-root-user")
    env = dict(os.environ)
    env[_MARK] = str(os.getpid())  # exec keeps the pid: only this process is "inside"
    env[_MARK + "_HOST_NET"] = _ns("net", "self")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(unshare, [unshare, *flags, "--", *argv], env)


def network_up(pod_cidr: str) -> None:
    """Brings up `lo` (a new network namespace starts with it down) and makes every
    address of `pod_cidr` local to it, so each pod binds an address of its own. Pod
    addresses cannot be loopback ones: EndpointSlices refuse 127.0.0.0/8."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    ip = shutil.which("ip")
    if ip is None:
        raise SystemExit("e2e/local: 'ip' (iproute2) is missing: apt-get install iproute2 "
                         "or run scripts/k8s-deps.sh")
    subprocess.run([ip, "route", "add", "local", pod_cidr, "dev", "lo"], check=True,
                   capture_output=True)


class Hosts:
    """The namespace's /etc/hosts: a base plus names that `publish` replaces."""

    BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

    def __init__(self, directory: Path):
        self.directory = directory
        self.generation = 0
        directory.mkdir(parents=True, exist_ok=True)

    def publish(self, entries: list[tuple[str, list[str]]]) -> None:
        """Makes /etc/hosts map each (ip, names) pair, and nothing else beyond the base."""
        self.generation += 1
        path = self.directory / f"hosts.{os.getpid()}.{self.generation}"
        lines = [self.BASE] + [f"{ip}\t{' '.join(names)}\n" for ip, names in entries]
        path.write_text("".join(lines))
        path.chmod(0o644)
        subprocess.run(["mount", "--bind", str(path), "/etc/hosts"], check=True,
                       capture_output=True)


def tmpfs(path: Path) -> None:
    """Mounts a tmpfs at `path` (inside the private mount namespace only)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(path)],
                   check=True, capture_output=True)


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def hosts_layers() -> int:
    """How many mounts are stacked on /etc/hosts in this mount namespace."""
    return sum(1 for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4] == "/etc/hosts")


def unmount_hosts(baseline: int) -> None:
    """Unmounts the layers published over /etc/hosts since there were `baseline`."""
    for _ in range(hosts_layers() - baseline):
        subprocess.run(["umount", "/etc/hosts"], capture_output=True)
