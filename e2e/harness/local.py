"""The local backend: the scenarios against a real API server on this machine.

Needs RUNNEL_K8S_ASSETS (a directory with kube-apiserver and kube-controller-manager,
plain or .xz), Debian's etcd, helm and kubectl from scripts/tools.sh, and the venv from
scripts/k8s-deps.sh; `make test-k8s` does all of it. The session re-executes itself in
its own mount and network namespaces (harness/netns.py: root, or a user namespace).

The fixtures of harness/backends.py, and those only this backend has:
    control_plane   etcd + kube-apiserver (RBAC, TLS, tokens) + kube-controller-manager
    kubectl, api    the admin kubeconfig's
    chart           CRDs as the README says (kubectl apply --server-side -f crds/), the
                    chart from `helm template` applied; returns the rendered chart
    operators       the operator's replicas as processes under the chart's ServiceAccount
                    (harness/operators.py: one running from the start; scenarios may
                    start and kill more)
    node_agent      scheduler + kubelet + DNS for namespaces labelled NODE_AGENT_LABEL
                    (e2e/local/node_agent.py)
    make_namespace  a namespace the node agent serves
    fresh_plane     a factory of extra, throwaway API servers (no controller manager)

Everything runs under target/k8s-runs/<run>/ (removed at the end) and logs go to
target/k8s-logs/<run>/ (kept when something failed, or with RUNNEL_K8S_KEEP_LOGS=1).
Processes are stopped by pid at the end, also on failure; a killed run's leftovers are
killed by the next run (harness/procs.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import chart as chart_mod
from . import controlplane, netns, procs
from .backends import POD_CIDR, Backend, describe_namespace, make_kubectl, namespace_name
from .kube import Api, wait_for
from .operators import Operators

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
TOOLS = Path(os.environ.get("RUNNEL_TOOLS_DIR") or REPO / ".tools") / "bin"
BROKER_BIN = Path(os.environ.get("RUNNEL_BROKER_BIN") or TARGET / "debug" / "runnel-broker")
OPERATOR_BIN = Path(os.environ.get("RUNNEL_OPERATOR_BIN")
                    or TARGET / "debug" / "runnel-operator")
OPERATOR_NS = "runnel-system"
NODE_AGENT_LABEL = "e2e.runnel.dev/node-agent"
NODE_AGENT = REPO / "e2e" / "local" / "node_agent.py"
TEST_TIMEOUT_S = 240  # per test, unless it says otherwise

_failed = False  # any test failed: keep the logs


def _check_setup() -> dict[str, Path]:
    binaries = controlplane.resolve_assets(TARGET)
    controlplane.etcd_binary()
    for tool in ("helm", "kubectl"):
        if not (TOOLS / tool).is_file():
            raise controlplane.SetupError(f"{TOOLS / tool} is missing: run scripts/tools.sh")
    for name, path in (("runnel-broker", BROKER_BIN), ("runnel-operator", OPERATOR_BIN)):
        if not path.is_file():
            raise controlplane.SetupError(
                f"{path} is missing: cargo build -p runnel-broker -p runnel-operator")
    return binaries


def pytest_configure(config):
    try:
        config.runnel_k8s_binaries = _check_setup()
    except controlplane.SetupError as e:
        raise pytest.UsageError(f"e2e/local: {e}") from None
    if not netns.inside():
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.stop_global_capturing()
        netns.reexec([sys.executable, "-m", "pytest", *config.invocation_params.args])
    # The pods' addresses are local to the session's loopback; the node agent hands them out.
    netns.network_up(POD_CIDR)


def pytest_runtest_logreport(report):
    if report.failed:
        global _failed
        _failed = True


# --- the run ---------------------------------------------------------------------------
class Run:
    def __init__(self, say):
        self.id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        runs = TARGET / "k8s-runs"
        runs.mkdir(parents=True, exist_ok=True)
        for leftover in procs.kill_leftovers(runs):
            say(f"e2e/local: killed a leftover of a killed run: {leftover}")
        self.dir = runs / self.id
        self.logs = TARGET / "k8s-logs" / self.id
        self.pid_file = procs.PidFile(self.dir / "pids")
        self.pid_file.create(os.getpid())
        self.processes = procs.Processes(self.pid_file, self.logs)
        self.hosts_baseline = netns.hosts_layers()

    def stop(self) -> None:
        self.processes.stop_all(grace_s=15)
        # Processes the node agent started are recorded in the pid file too.
        _, entries = self.pid_file.entries()
        for pid, started, _name in reversed(entries):
            procs.signal_and_wait(pid, started, grace_s=5)

    def finish(self, say) -> None:
        self.stop()
        netns.unmount_hosts(self.hosts_baseline)
        for mount in netns.mounts_under(self.dir):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        if _failed or os.environ.get("RUNNEL_K8S_KEEP_LOGS") == "1":
            say(f"e2e/local: logs of this run are in {self.logs}")
        else:
            shutil.rmtree(self.logs, ignore_errors=True)


@pytest.fixture(scope="session")
def run(pytestconfig):
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        terminal.write_line(line) if terminal else print(line, file=sys.stderr)

    r = Run(say)
    atexit.register(r.stop)
    # SIGTERM (a timeout, CI cancelling) unwinds like Ctrl-C, so teardown runs.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield r
    finally:
        signal.signal(signal.SIGTERM, previous)
        r.finish(say)


@pytest.fixture(scope="session")
def control_plane(run, pytestconfig):
    return controlplane.start("main", run.dir / "main", run.processes,
                              pytestconfig.runnel_k8s_binaries)


def kubectl_for(kubeconfig: Path):
    return make_kubectl(str(TOOLS / "kubectl"), {**os.environ, "KUBECONFIG": str(kubeconfig)})


def make_helm(kubeconfig: Path):
    def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(TOOLS / "helm"), *args], capture_output=True, text=True, timeout=180,
            env={**os.environ, "KUBECONFIG": str(kubeconfig),
                 "HELM_CACHE_HOME": str(kubeconfig.parent / "helm-cache"),
                 "HELM_CONFIG_HOME": str(kubeconfig.parent / "helm-config"),
                 "HELM_DATA_HOME": str(kubeconfig.parent / "helm-data")})
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result
    return helm


@pytest.fixture(scope="session")
def backend() -> Backend:
    return Backend("local", POD_CIDR)


@pytest.fixture(scope="session")
def kubectl(control_plane):
    return kubectl_for(control_plane.admin_kubeconfig)


@pytest.fixture(scope="session")
def api(control_plane) -> Api:
    return control_plane.api


@pytest.fixture(scope="session")
def chart(kubectl):
    """CRDs the README's way, then the chart's objects from `helm template`."""
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    rendered = chart_mod.render(TOOLS / "helm", REPO / "charts" / "runnel", "runnel",
                                OPERATOR_NS)
    kubectl("create", "namespace", OPERATOR_NS)
    kubectl("apply", "-n", OPERATOR_NS, "-f", "-", input=rendered.text)
    return rendered


@pytest.fixture(scope="session")
def operators(chart, control_plane, run, kubectl):
    group = Operators(control_plane, run.processes, chart, OPERATOR_BIN,
                      run.dir / "operators", kubectl)
    group.start()
    return group


@pytest.fixture(scope="session")
def node_agent(control_plane, run, api):
    proc = run.processes.spawn("node-agent", [
        sys.executable, str(NODE_AGENT),
        "--kubeconfig", str(control_plane.admin_kubeconfig),
        "--namespace-label", NODE_AGENT_LABEL,
        "--work-dir", str(run.dir / "node"),
        "--log-dir", str(run.logs / "pods"),
        "--hosts-dir", str(run.dir / "hosts"),
        "--pid-file", str(run.pid_file.path),
        "--image", f"runnel-broker={BROKER_BIN}",
        "--pod-cidr", POD_CIDR,
    ])

    def registered():
        if not proc.running():
            raise RuntimeError(f"the node agent exited:\n{proc.log_tail()}")
        return api.get_or_none("/api/v1/nodes/runnel-local-node")

    wait_for("the node agent's Node", registered, 30)
    return proc


@pytest.fixture(scope="session")
def make_namespace(kubectl, operators, node_agent):
    """Creates a fresh namespace the node agent serves, named after `hint`."""
    def make(hint: str) -> str:
        name = namespace_name(hint)
        kubectl("create", "namespace", name)
        kubectl("label", "namespace", name, f"{NODE_AGENT_LABEL}=true")
        return name
    return make


@pytest.fixture(scope="session")
def diagnose(kubectl, operators, node_agent):
    """The namespace's objects and events and the tails of the logs, for a failure report."""
    def report(ns: str) -> str:
        return "\n".join([describe_namespace(kubectl, ns), operators.logs(),
                          f"--- node agent ({node_agent.log})\n{node_agent.log_tail(60)}"])
    return report


@pytest.fixture
def fresh_plane(run, pytestconfig):
    """A factory of extra API servers (etcd + kube-apiserver only), stopped afterwards."""
    started: list[controlplane.ControlPlane] = []

    def make(name: str) -> tuple[controlplane.ControlPlane, object, object]:
        plane = controlplane.start(name, run.dir / name, run.processes,
                                   pytestconfig.runnel_k8s_binaries, controller_manager=False)
        started.append(plane)
        return plane, kubectl_for(plane.admin_kubeconfig), make_helm(plane.admin_kubeconfig)

    yield make
    for plane in started:
        for proc in reversed(plane.procs):
            proc.stop(grace_s=controlplane.STOP_GRACE_S)
