"""The local Kubernetes suite: the operator and brokers against a real API server.

Needs RUNNEL_K8S_ASSETS (a directory with kube-apiserver and kube-controller-manager,
plain or .xz), Debian's etcd, helm and kubectl from scripts/tools.sh, and the venv from
scripts/k8s-deps.sh; `make test-k8s` does all of it. The session re-executes itself in
its own mount and network namespaces (harness/netns.py: root, or a user namespace).

Session fixtures (one control plane for every scenario):
    control_plane   etcd + kube-apiserver (RBAC, TLS, tokens) + kube-controller-manager
    kubectl         runs kubectl with the admin kubeconfig
    chart           CRDs as the README says (kubectl apply --server-side -f crds/), the
                    chart from `helm template` applied; returns the rendered chart
    operators       the operator's replicas as processes under the chart's ServiceAccount
                    (one running from the start; scenarios may start and kill more)
    node_agent      scheduler + kubelet + DNS for namespaces labelled NODE_AGENT_LABEL
Per test:
    namespace       a fresh namespace the node agent serves; on failure its objects,
                    events and the operator's and node agent's logs go to the report
    fresh_plane     a factory of extra, throwaway API servers (no controller manager)

Everything runs under target/k8s-runs/<run>/ (removed at the end) and logs go to
target/k8s-logs/<run>/ (kept when something failed, or with RUNNEL_K8S_KEEP_LOGS=1). Processes are stopped by pid at the
end, also on failure; a killed run's leftovers are killed by the next run (harness/procs.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import chart as chart_mod  # noqa: E402
from harness import controlplane, netns, procs  # noqa: E402
from harness.kube import Api, wait_for  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401,E402

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
TOOLS = Path(os.environ.get("RUNNEL_TOOLS_DIR") or REPO / ".tools") / "bin"
BROKER_BIN = Path(os.environ.get("RUNNEL_BROKER_BIN") or TARGET / "debug" / "runnel-broker")
OPERATOR_BIN = Path(os.environ.get("RUNNEL_OPERATOR_BIN")
                    or TARGET / "debug" / "runnel-operator")
OPERATOR_NS = "runnel-system"
NODE_AGENT_LABEL = "e2e.runnel.dev/node-agent"
POD_CIDR = "10.244.0.0/16"  # local to the session's loopback; the node agent hands it out
DEFAULT_TEST_TIMEOUT_S = 240

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
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka")
    try:
        config.runnel_k8s_binaries = _check_setup()
    except controlplane.SetupError as e:
        raise pytest.UsageError(f"e2e/local: {e}") from None
    if not netns.inside():
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.stop_global_capturing()
        netns.reexec([sys.executable, "-m", "pytest", *config.invocation_params.args])
    netns.network_up(POD_CIDR)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed:
        global _failed
        _failed = True
    return report


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


def make_kubectl(kubeconfig: Path):
    def kubectl(*args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(TOOLS / "kubectl"), *args], input=input, capture_output=True, text=True,
            timeout=timeout, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result
    return kubectl


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
def kubectl(control_plane):
    return make_kubectl(control_plane.admin_kubeconfig)


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
    group = chart_mod.Operators(control_plane, run.processes, chart, OPERATOR_BIN,
                                run.dir / "operators", kubectl)
    group.start()
    return group


@pytest.fixture(scope="session")
def node_agent(control_plane, run, api):
    proc = run.processes.spawn("node-agent", [
        sys.executable, str(Path(__file__).resolve().parent / "node_agent.py"),
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


_namespaces: list[str] = []  # namespaces of tests still running, for failure reports


@pytest.fixture(scope="session")
def make_namespace(kubectl, operators, node_agent):
    """Creates a fresh namespace the node agent serves, named after `hint`."""
    def make(hint: str) -> str:
        name = "e2e-" + hint.removeprefix("test_")[:30].replace("_", "-").strip("-") \
            + "-" + uuid.uuid4().hex[:4]
        kubectl("create", "namespace", name)
        kubectl("label", "namespace", name, f"{NODE_AGENT_LABEL}=true")
        return name
    return make


def _drop_namespace(kubectl, name: str) -> None:
    _namespaces.remove(name)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(request, make_namespace, kubectl):
    """A namespace for one test; deleted (not awaited) afterwards."""
    name = make_namespace(request.node.name)
    _namespaces.append(name)
    yield name
    _drop_namespace(kubectl, name)


@pytest.fixture(scope="module")
def module_namespace(request, make_namespace, kubectl):
    """A namespace shared by the steps (tests) of one scenario module."""
    name = make_namespace(request.module.__name__)
    _namespaces.append(name)
    yield name
    _drop_namespace(kubectl, name)


@pytest.fixture(autouse=True)
def _report_on_failure(request):
    """On a failed test: the namespaces' objects, events and logs, into the report."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or "operators" not in request.fixturenames:
        return
    kubectl = request.getfixturevalue("kubectl")
    operators = request.getfixturevalue("operators")
    agent = request.getfixturevalue("node_agent")
    for ns in list(_namespaces):
        print(diagnose(kubectl, ns, operators, agent))


def diagnose(kubectl, ns: str, operators, node_agent) -> str:
    """The namespace's objects and events and the tails of the logs, for a failure report."""
    parts = []
    for args in (
        ("get", "kafkaclusters,topics,consumergroups,statefulsets,pods,pvc,svc,endpointslices",
         "-n", ns, "-o", "wide"),
        ("get", "kafkaclusters,topics,consumergroups,pods", "-n", ns, "-o", "yaml"),
        ("get", "events", "-n", ns, "--sort-by=.lastTimestamp"),
    ):
        result = kubectl(*args, check=False)
        parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
    parts.append(operators.logs())
    parts.append(f"--- node agent ({node_agent.log})\n{node_agent.log_tail(60)}")
    return "\n".join(parts)


@pytest.fixture
def fresh_plane(run, pytestconfig):
    """A factory of extra API servers (etcd + kube-apiserver only), stopped afterwards."""
    started: list[controlplane.ControlPlane] = []

    def make(name: str) -> tuple[controlplane.ControlPlane, object, object]:
        plane = controlplane.start(name, run.dir / name, run.processes,
                                   pytestconfig.runnel_k8s_binaries, controller_manager=False)
        started.append(plane)
        return plane, make_kubectl(plane.admin_kubeconfig), make_helm(plane.admin_kubeconfig)

    yield make
    for plane in started:
        for proc in reversed(plane.procs):
            proc.stop(grace_s=controlplane.STOP_GRACE_S)
