"""Real-client compatibility suite for runnel-broker.

Each test drives the real `runnel-broker` binary over TCP on 127.0.0.1 with a real Kafka
client (kafka-python, confluent-kafka, kafkajs, kcat). The binary comes from
`RUNNEL_BROKER_BIN` (default `<repo>/target/debug/runnel-broker`); build it first with
`cargo build -p runnel-broker` and install the clients with `scripts/test-deps.sh`.

Fixtures:
    broker        one broker shared by the whole session (default flags)
    make_broker   factory for function-scoped brokers with their own flags/data dir,
                  for crash, restart and broker-config tests
    make_cluster  factory for clusters of N broker processes sharing one metadata quorum
                  (voters: the first three node ids), each restartable, killable (-9)
                  and stoppable (SIGSTOP)
    topic         a unique topic name per test (not created: tests decide how)

When a test fails, the broker log lines written while it ran are attached to the report.
"""

from __future__ import annotations

import uuid
import warnings

import pytest

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

# The processes live in brokers.py; the hooks attach their logs to failed tests' reports.
from brokers import (REPO, Broker, BrokerError, Cluster, broker_binary,  # noqa: F401
                     free_port, pytest_runtest_makereport, pytest_runtest_setup)

# Every test is bounded; tests that need longer set their own @pytest.mark.timeout.
DEFAULT_TEST_TIMEOUT_S = 120


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "groups: needs consumer groups (FindCoordinator/JoinGroup/SyncGroup/OffsetCommit); "
        "deselect with -m 'not groups' while the broker has none",
    )
    config.addinivalue_line("markers", "crash: kills and restarts a broker")
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Broker:
    """The shared broker: default flags (auto-create on, default partition count)."""
    base = tmp_path_factory.mktemp("shared-broker")
    b = Broker(broker_binary(), base / "data", base / "broker.log")
    try:
        b.start()
    except BrokerError as e:
        pytest.fail(str(e), pytrace=False)
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path):
    """Factory for brokers owned by one test: make_broker(num_partitions=3, auto_create_topics=False)."""
    made: list[Broker] = []

    def make(**kwargs) -> Broker:
        n = len(made)
        b = Broker(broker_binary(), tmp_path / f"broker{n}-data", tmp_path / f"broker{n}.log", **kwargs)
        made.append(b)
        try:
            b.start()
        except BrokerError as e:
            pytest.fail(str(e), pytrace=False)
        return b

    yield make
    for b in made:
        try:
            b.stop()
        except BrokerError:
            b.kill9()


@pytest.fixture
def make_cluster(tmp_path):
    """Factory for clusters owned by one test: make_cluster(3) starts three brokers and
    waits until every one lists all three."""
    made: list[Cluster] = []

    def make(n: int = 3, **kwargs) -> Cluster:
        c = Cluster(broker_binary(), tmp_path / f"cluster{len(made)}", n, **kwargs)
        made.append(c)
        try:
            c.start()
        except (BrokerError, TimeoutError) as e:
            pytest.fail(str(e), pytrace=False)
        return c

    yield make
    for c in made:
        c.stop_all()


@pytest.fixture
def topic(request) -> str:
    """A topic name no other test uses."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"compat-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_name():
    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"
    return make
