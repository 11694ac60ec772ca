"""Broker clusters on a network of the test's own, where a broker can be cut off and healed.

SIGSTOP cannot stand in for a network partition: a stopped broker also stops its timers.
Here every broker runs in a network namespace of its own, plugged into a bridge by a
veth pair, and `cut(i)` drops its traffic at the bridge while it keeps running
(network.py says how and why). The same `Broker`/`Cluster` as tests/compat run there,
with `ip netns exec` as their command prefix and an address each.

The pytest session re-executes itself under `unshare --mount --net` (as the Kubernetes
suite does, e2e/harness/netns.py): the bridge, the namespaces and the rules exist only
inside it, and /run is a tmpfs of its own, where `ip netns add` keeps the namespaces'
names. Nothing is added to the machine's network, even by a killed run. Run it alone:

    .venv/bin/pytest tests/netns        (root; iproute2, nftables, util-linux)

Without root or those tools every test is skipped, with the reason.

Fixtures:
    make_netns_cluster  factory: make_netns_cluster(3) starts three brokers (node ids
                        0..2, all voters), each in its own namespace at 10.99.<k>.10+i,
                        and waits until each lists all three. The cluster has cut(i),
                        heal(i), cut_between(i, j), heal_all(), sigstop/sigcont(i) and
                        brokers[i].kill9()/restart(). After the test its brokers are
                        stopped and its network deleted; anything left fails the test.
    make_network        factory for a bare Network(n) (no brokers), same clean-up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "compat"))
sys.path.insert(0, str(REPO / "e2e"))

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

from brokers import (BrokerError, Cluster, broker_binary,  # noqa: E402,F401
                     pytest_runtest_makereport, pytest_runtest_setup)
from harness import netns  # noqa: E402
from network import Network, missing_tools  # noqa: E402

TEST_TIMEOUT_S = 180

_skip_reason: str | None = None


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the tests create network namespaces, a bridge and nft rules"
    missing = missing_tools()
    if missing:
        return f"missing {', '.join(missing)}: apt-get install them or run scripts/test-deps.sh"
    return None


def pytest_configure(config):
    global _skip_reason
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")
    _skip_reason = _why_not()
    if _skip_reason is not None:
        return
    if not netns.inside():
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.stop_global_capturing()
        netns.reexec([sys.executable, "-m", "pytest", *config.invocation_params.args])
    _session_network()


def _session_network() -> None:
    """Inside the session's namespaces: loopback up, and a private /run/netns."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    # `ip netns add` creates /run/netns and a file per name on the machine's /run unless
    # a mount of ours is over it. Where /run/netns does not exist, creating the mount
    # point would itself leave a trace: the tmpfs then covers /run, which nothing run
    # here needs (the brokers and clients use /tmp and /dev/shm).
    target = "/run/netns" if os.path.isdir("/run/netns") else "/run"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=755", "runnel-netns", target],
                   check=True, capture_output=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _skip_reason is not None:
            item.add_marker(pytest.mark.skip(reason=_skip_reason))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


def pytest_report_header(config):
    if _skip_reason is not None:
        return f"netns: skipped: {_skip_reason}"
    return f"netns: session in its own namespaces (net {os.readlink('/proc/self/ns/net')})"


class NetnsCluster(Cluster):
    """A `Cluster` whose brokers live on `network`, with its partitions as methods."""

    def __init__(self, network: Network, binary: Path, base: Path, **kwargs):
        super().__init__(binary, base, network.n, hosts=network.addresses,
                         command_prefixes=[network.prefix(i) for i in range(network.n)],
                         die_with_parent=True, **kwargs)
        self.network = network

    def cut(self, i: int, *, clients: bool = False) -> None:
        self.network.cut(i, clients=clients)

    def heal(self, i: int) -> None:
        self.network.heal(i)

    def cut_between(self, i: int, j: int, *, one_way: bool = False) -> None:
        self.network.cut_between(i, j, one_way=one_way)

    def heal_all(self) -> None:
        self.network.heal_all()


class _Made:
    """Networks and clusters a test made, torn down in reverse, whatever happened."""

    def __init__(self):
        self.networks: list[Network] = []
        self.clusters: list[NetnsCluster] = []

    def network(self, n: int) -> Network:
        network = Network(len(self.networks), n)
        self.networks.append(network)
        return network.create()

    def teardown(self) -> None:
        for cluster in self.clusters:
            # Healed first: a broker shutting down may still say goodbye to its peers.
            try:
                cluster.heal_all()
            finally:
                cluster.stop_all()
        left = []
        for network in reversed(self.networks):
            left += network.destroy()
        if left:
            pytest.fail(f"the test's network was not removed: {left}", pytrace=False)


@pytest.fixture
def make_network():
    made = _Made()
    yield made.network
    made.teardown()


@pytest.fixture
def make_netns_cluster(tmp_path):
    made = _Made()

    def make(n: int = 3, **kwargs) -> NetnsCluster:
        network = made.network(n)
        cluster = NetnsCluster(network, broker_binary(), tmp_path / f"cluster{network.index}",
                               **kwargs)
        made.clusters.append(cluster)
        try:
            cluster.start()
        except (BrokerError, TimeoutError) as e:
            pytest.fail(str(e), pytrace=False)
        return cluster

    yield make
    made.teardown()


def pytest_sessionfinish(session):
    # Belt and braces for a test whose teardown could not run: the namespaces go with
    # the session anyway, but not before its brokers are gone.
    if _skip_reason is None and netns.inside() and shutil.which("ip"):
        subprocess.run(["ip", "-all", "netns", "delete"], capture_output=True)
