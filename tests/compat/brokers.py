"""runnel-broker processes for the Python suites: `Broker` (one process, restartable in
place, killable with -9) and `Cluster` (N brokers sharing one metadata quorum), plus the
pytest hooks that attach their logs to a failed test's report.

tests/compat/conftest.py uses them on loopback; tests/netns/ runs the same processes in
network namespaces of their own (a command prefix and an address per broker).
A conftest re-exports the hooks (`from brokers import pytest_runtest_setup, ...`) to
have the logs of the brokers its tests start in their failure reports.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from compat_helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
# e2e/harness/ports.py: the one port allocator of the Python harnesses.
sys.path.append(str(REPO / "e2e"))
from harness.ports import free_port  # noqa: E402

DEFAULT_BIN = REPO / "target" / "debug" / "runnel-broker"

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


class BrokerError(RuntimeError):
    pass


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, so that a killed
    session leaves no broker behind (the signal survives exec, and `ip netns exec` execs)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Broker:
    """One runnel-broker process on a fixed address and data dir, restartable in place.

    By default it listens on 127.0.0.1 on a free port. `host` and `port` place it
    elsewhere (e.g. its own address in a network namespace), and `command_prefix` runs
    it through a wrapper such as `ip netns exec <ns>`, which must exec the broker rather
    than fork it, so that `proc` is the broker and signals (-9, SIGSTOP) reach it.
    `die_with_parent` kills it when the test process dies (only for brokers started from
    the main thread: the kernel tracks the thread that forked).
    """

    # Every broker started in this session, so failure reports can attach their logs.
    instances: list["Broker"] = []

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, *,
                 num_partitions: int | None = None,
                 auto_create_topics: bool | None = None,
                 extra_args: list[str] | None = None,
                 host: str = "127.0.0.1",
                 port: int | None = None,
                 command_prefix: list[str] | None = None,
                 die_with_parent: bool = False):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.host = host
        self.port = port if port is not None else free_port()
        self.command_prefix = list(command_prefix or [])
        self.die_with_parent = die_with_parent
        self.num_partitions = num_partitions
        self.auto_create_topics = auto_create_topics
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        Broker.instances.append(self)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def args(self) -> list[str]:
        args = self.command_prefix + [
            str(self.binary),
            "--listen", self.bootstrap,
            "--advertised-listener", self.bootstrap,
            "--data-dir", str(self.data_dir),
        ]
        if self.num_partitions is not None:
            args += ["--num-partitions", str(self.num_partitions)]
        if self.auto_create_topics is not None:
            args += ["--auto-create-topics-enable", "true" if self.auto_create_topics else "false"]
        return args + self.extra_args

    def start(self) -> "Broker":
        if not self.binary.is_file():
            raise BrokerError(
                f"runnel-broker binary not found at {self.binary}: build it with "
                f"`cargo build -p runnel-broker` or set RUNNEL_BROKER_BIN")
        if self.running:
            raise BrokerError("broker is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("RUNNEL_LOG", "info,runnel_broker=debug,runnel_storage=debug")
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.args())}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         preexec_fn=_die_with_parent if self.die_with_parent else None)
        finally:
            log.close()
        try:
            wait_until(self._accepts, READY_TIMEOUT_S, what=f"runnel-broker to accept on {self.bootstrap}")
        except (TimeoutError, BrokerError) as e:
            self.kill9()
            raise BrokerError(f"{e}\n--- broker log ---\n{self.log_tail()}") from None
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise BrokerError(f"runnel-broker exited with status {self.proc.returncode} during startup")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait for a clean exit; returns the exit status. Kills after `timeout`."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise BrokerError(f"runnel-broker did not exit within {timeout}s of SIGTERM") from None
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: no shutdown path runs, unflushed state is lost as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, *, graceful: bool = True) -> "Broker":
        """Stops (SIGTERM, or SIGKILL when not graceful) and starts again, same port and data dir."""
        if graceful:
            self.stop()
        else:
            self.kill9()
        # The old socket may linger for a moment; the broker must be able to rebind.
        return self.start()

    def log_text(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Cluster:
    """N runnel-broker processes that form one cluster: node ids 0..N-1, the first three
    (or all, if fewer) are the metadata quorum's voters, as under the operator.

    By default every broker is on 127.0.0.1 with free ports. With `hosts` each broker has
    an address of its own (e.g. in its own network namespace) and the same ports on it
    (Kafka 9092, quorum 9093, metrics 9100); `command_prefixes[i]` wraps broker i's
    command (see `Broker`)."""

    KAFKA_PORT, CONTROLLER_PORT, METRICS_PORT = 9092, 9093, 9100

    def __init__(self, binary: Path, base: Path, n: int, *, extra_args: list[str] | None = None,
                 hosts: list[str] | None = None,
                 command_prefixes: list[list[str]] | None = None,
                 die_with_parent: bool = False):
        if hosts is None:
            self.hosts = ["127.0.0.1"] * n
            kafka_ports = [free_port() for _ in range(n)]
            self.controller_ports = [free_port() for _ in range(n)]
            self.metrics_ports = [free_port() for _ in range(n)]
        else:
            assert len(hosts) == n and len(set(hosts)) == n, f"one address per broker: {hosts}"
            self.hosts = list(hosts)
            kafka_ports = [self.KAFKA_PORT] * n
            self.controller_ports = [self.CONTROLLER_PORT] * n
            self.metrics_ports = [self.METRICS_PORT] * n
        prefixes = command_prefixes or [[] for _ in range(n)]
        voters = min(n, 3)
        self.voters = ",".join(f"{i}@{self.hosts[i]}:{self.controller_ports[i]}"
                               for i in range(voters))
        self.brokers = [
            Broker(binary, base / f"node{i}" / "data", base / f"node{i}.log",
                   host=self.hosts[i], port=kafka_ports[i], command_prefix=prefixes[i],
                   die_with_parent=die_with_parent,
                   extra_args=["--node-id", str(i),
                               "--controller-listen", f"{self.hosts[i]}:{self.controller_ports[i]}",
                               "--controller-quorum-voters", self.voters,
                               # Fast sessions, so that fencing is seen within a test.
                               "--broker-heartbeat-interval-ms", "200",
                               "--broker-session-timeout-ms", "2000",
                               "--metrics-listen", f"{self.hosts[i]}:{self.metrics_ports[i]}"]
                   + list(extra_args or []))
            for i in range(n)
        ]

    def start(self) -> "Cluster":
        for b in self.brokers:
            b.start()
        self.wait_for_brokers(len(self.brokers))
        return self

    def bootstrap(self, node: int) -> str:
        return self.brokers[node].bootstrap

    def describe(self, node: int) -> dict:
        """DescribeCluster as broker `node` answers it: `brokers` are the live ones, `fenced`
        the ids of the registered brokers it lists as fenced (kafka-python asks for them).
        Asked of that broker only: a plain admin client may ask any broker it knows."""
        from compat_helpers import node_admin
        with node_admin(self.bootstrap(node)) as admin:
            answer = admin.describe_cluster()
        listed = answer["brokers"]
        answer["brokers"] = [b for b in listed if not b.get("is_fenced")]
        answer["fenced"] = sorted(b["broker_id"] for b in listed if b.get("is_fenced"))
        return answer

    def wait_for_brokers(self, count: int, *, via: list[int] | None = None,
                         timeout: float = 60.0) -> dict:
        """Waits until each broker in `via` (default: the running ones) lists `count` brokers
        and a controller; returns the last answer."""
        nodes = via if via is not None else [i for i, b in enumerate(self.brokers) if b.running]
        answer: dict = {}

        def ready():
            nonlocal answer
            for node in nodes:
                try:
                    answer = self.describe(node)
                except Exception:  # noqa: BLE001 - not serving yet
                    return False
                if len(answer["brokers"]) != count or answer["controller_id"] < 0:
                    return False
            return True

        wait_until(ready, timeout, interval=0.2, what=f"{count} brokers listed by nodes {nodes}")
        return answer

    def stop_all(self) -> None:
        for b in self.brokers:
            if b.proc is not None and b.proc.poll() is None:
                b.proc.send_signal(signal.SIGCONT)
            try:
                b.stop()
            except BrokerError:
                b.kill9()

    def metric(self, node: int, name: str) -> float:
        """The value of the unlabelled Prometheus gauge or counter `name` on broker `node`."""
        import urllib.request
        url = f"http://{self.hosts[node]}:{self.metrics_ports[node]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(f"{name} not exported by broker {node}")

    def sigstop(self, node: int) -> None:
        self.brokers[node].proc.send_signal(signal.SIGSTOP)

    def sigcont(self, node: int) -> None:
        self.brokers[node].proc.send_signal(signal.SIGCONT)


def broker_binary() -> Path:
    return Path(os.environ.get("RUNNEL_BROKER_BIN", str(DEFAULT_BIN)))


def broker_binary() -> Path:
    return Path(os.environ.get("RUNNEL_BROKER_BIN", str(DEFAULT_BIN)))


# --- broker logs in failure reports -------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    item._broker_log_marks = {id(b): b.log_size() for b in Broker.instances}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    marks = getattr(item, "_broker_log_marks", {})
    for b in Broker.instances:
        start = marks.get(id(b), 0)
        text = b.log_text(start)
        if not text.strip():
            continue
        lines = text.splitlines()
        if len(lines) > 300:
            lines = [f"... ({len(lines) - 300} earlier lines in {b.log_path})"] + lines[-300:]
        rep.sections.append((f"runnel-broker log {b.bootstrap} ({b.log_path})", "\n".join(lines)))
