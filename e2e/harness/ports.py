"""Ports for the servers the test harnesses start (brokers, etcd, API servers).

Asking the kernel for a free port (bind to port 0, then close) is not enough: the port is
free again at once, and a later ask, or any port-0 bind, may be given it before its server
binds it; nine such asks in a row repeat a port about once in 450. `free_port` never gives
a port twice in one process and takes it below the kernel's ephemeral range, which no
port-0 bind and no outgoing connection is given: the logic of
runnel_client::test_util::free_port. Used by tests/compat (brokers.py) and e2e/harness.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

_LOW = 10_000
_given = itertools.count()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now and that no earlier call in
    this process returned. Processes start at different places (by pid)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32_768
    high = ephemeral if ephemeral >= _LOW + 1_000 else 65_535
    span = high - _LOW
    for _ in range(span):
        port = _LOW + (os.getpid() * 7_919 + next(_given)) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise OSError(f"no free port left on {host} in {_LOW}..{high}")
