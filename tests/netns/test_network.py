"""The harness's network on its own, with a TCP listener in each namespace instead of a
broker: who reaches whom after each cut and heal, that a cut is silence (a connect
hangs; nothing refuses it), and that nothing is left once the test is over."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

PORT = 7000
CONNECT_TIMEOUT_S = 1.0

# Listens on ADDR:PORT and accepts forever; prints "ready" once bound.
LISTENER = """
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""

# Connects to ADDR:PORT once; prints what happened: connected, timeout or the error.
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(type(e).__name__)
"""


def probe_from_session(address: str) -> str:
    try:
        socket.create_connection((address, PORT), timeout=CONNECT_TIMEOUT_S).close()
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__


def probe_from(network, i: int, address: str) -> str:
    done = subprocess.run([*network.prefix(i), sys.executable, "-c", PROBE, address, str(PORT),
                           str(CONNECT_TIMEOUT_S)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def reachability(network) -> dict:
    """{(from, to): outcome} for every pair of namespaces, and ("clients", i)."""
    seen = {("clients", j): probe_from_session(network.addresses[j]) for j in range(network.n)}
    for i in range(network.n):
        for j in range(network.n):
            if i != j:
                seen[(i, j)] = probe_from(network, i, network.addresses[j])
    return seen


@pytest.fixture
def listening(make_network):
    network = make_network(3)
    listeners = []
    try:
        for i in range(network.n):
            p = subprocess.Popen([*network.prefix(i), sys.executable, "-c", LISTENER,
                                  network.addresses[i], str(PORT)],
                                 stdout=subprocess.PIPE, text=True)
            listeners.append(p)
            assert p.stdout.readline().strip() == "ready"
        yield network
    finally:
        for p in listeners:
            p.kill()
            p.wait(timeout=10)


def expect(network, lost: set) -> dict:
    """Every pair connects except those in `lost`, which time out (never refused)."""
    return {pair: ("timeout" if pair in lost else "connected")
            for pair in [("clients", j) for j in range(network.n)]
            + [(i, j) for i in range(network.n) for j in range(network.n) if i != j]}


def test_cuts_are_silent_and_heal(listening):
    network = listening
    assert reachability(network) == expect(network, set())

    network.cut(0)
    assert reachability(network) == expect(network, {(0, 1), (0, 2), (1, 0), (2, 0)})
    started = time.monotonic()
    assert probe_from(network, 1, network.addresses[0]) == "timeout"
    # Silence, not an error: the connect waited for its whole timeout.
    assert time.monotonic() - started >= CONNECT_TIMEOUT_S

    network.cut(0, clients=True)
    assert reachability(network) == expect(network, {(0, 1), (0, 2), (1, 0), (2, 0),
                                                     ("clients", 0)})
    network.heal(0)
    assert reachability(network) == expect(network, set())

    network.cut_between(0, 1)
    assert reachability(network) == expect(network, {(0, 1), (1, 0)})
    network.heal_all()
    network.cut_between(2, 1, one_way=True)
    # TCP needs both ways: a one-way cut loses the connects of either side.
    assert reachability(network) == expect(network, {(2, 1), (1, 2)})
    network.heal(1)
    assert reachability(network) == expect(network, set())


def test_the_network_is_gone_after_destroy(make_network):
    network = make_network(2)
    assert network.leftovers() == [f"netns {ns}" for ns in network.namespaces] + [
        f"link {link}" for link in [*network.ports, network.bridge]] + [
        f"nft table bridge {network.table}"]
    assert network.destroy() == []
    assert network.leftovers() == []
