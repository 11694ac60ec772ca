"""Unit tests of the scenarios' harness, no cluster needed: which backend a run gets, that
the kind backend collects every scenario, how it finds an operator container's
processes, the runner Job e2e/run.sh applies, and that both backends pin the same
packages. The kind path cannot run where there is no container engine; this is what of
it can be checked anywhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

E2E = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(E2E))

from harness import backends  # noqa: E402
from harness.kind import container_pids  # noqa: E402

SCENARIOS = E2E / "scenarios"
CONTAINER = "4f0c" * 16  # a containerd id: 64 hex digits


def test_local_is_the_default_backend():
    assert backends.selected({}) == "local"
    assert backends.selected({backends.ENV: ""}) == "local"


def test_a_backend_is_chosen_by_name():
    assert backends.selected({backends.ENV: "kind"}) == "kind"
    assert backends.selected({backends.ENV: "local"}) == "local"


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(pytest.UsageError) as refused:
        backends.selected({backends.ENV: "minikube"})
    assert "'minikube'" in str(refused.value)
    assert "local, kind" in str(refused.value)


def scenario_tests() -> set[str]:
    """`file::test` for every test function the scenario files define."""
    return {f"{path.relative_to(E2E.parent)}::{name}"
            for path in SCENARIOS.glob("test_*.py")
            for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M)}


def test_the_kind_backend_collects_every_scenario():
    env = {**os.environ, backends.ENV: "kind"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(SCENARIOS.relative_to(E2E.parent))],
        cwd=E2E.parent, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    collected = {line for line in result.stdout.splitlines() if "::" in line}
    assert collected == scenario_tests(), result.stdout
    assert len(collected) >= 30


def fake_proc(root: Path, cgroups: dict[str, str]) -> Path:
    for name, text in cgroups.items():
        (root / name).mkdir(parents=True)
        (root / name / "cgroup").write_text(text)
    (root / "self").mkdir()  # not a pid
    return root


def test_container_processes_are_found_by_their_cgroup_under_either_driver(tmp_path):
    proc = fake_proc(tmp_path, {
        # systemd driver, cgroup v2, seen from another cgroup namespace
        "41": f"0::/../../kubelet-kubepods-pod1_2.slice/cri-containerd-{CONTAINER}.scope\n",
        # cgroupfs driver, cgroup v1
        "7": f"12:pids:/kubepods/besteffort/pod1-2/{CONTAINER}\n11:cpu:/kubepods/x\n",
        # the pod's sandbox, and a process of another container
        "5": "0::/kubelet-kubepods-pod1_2.slice/cri-containerd-" + "9" * 64 + ".scope\n",
        "99": "0::/system.slice/containerd.service\n",
    })
    assert container_pids(CONTAINER, proc) == [7, 41]
    assert container_pids("0" * 64, proc) == []


def runner_objects(pytest_args: str) -> list[dict]:
    env = {**os.environ, "NS": "runnel-e2e", "RUNNER": "scenarios",
           "RUNNER_IMAGE": "runnel-e2e-runner:0.1.0-abc", "BROKER_IMAGE":
           "ghcr.io/runnel-dev/runnel-broker:0.1.0-abc", "OPERATOR_NS": "runnel-system",
           "RELEASE": "runnel", "TIMEOUT": "3600", "E2E_PYTEST_ARGS": pytest_args}
    result = subprocess.run(
        ["bash", "-c", f". {E2E / 'lib.sh'} && runner_manifest"],
        env=env, capture_output=True, text=True, check=True, timeout=30)
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def test_the_runner_job_runs_the_scenarios_with_the_kind_backend():
    account, binding, job = runner_objects("-k 'install or crds' -x")
    assert (account["kind"], binding["kind"], job["kind"]) == \
        ("ServiceAccount", "ClusterRoleBinding", "Job")
    assert binding["roleRef"]["name"] == "cluster-admin"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "scenarios", "namespace": "runnel-e2e"}]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "scenarios"
    assert pod["hostPID"] is True  # harness/kind.py kill_container
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    container = pod["containers"][0]
    assert container["image"] == "runnel-e2e-runner:0.1.0-abc"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        backends.ENV: "kind",
        "RUNNEL_E2E_BROKER_IMAGE": "ghcr.io/runnel-dev/runnel-broker:0.1.0-abc",
        "RUNNEL_E2E_OPERATOR_NAMESPACE": "runnel-system",
        "RUNNEL_E2E_OPERATOR_DEPLOYMENT": "runnel",
        "PYTEST_ADDOPTS": "-k 'install or crds' -x",
    }


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if line)


def test_the_kind_runner_pins_what_the_local_backend_pins():
    kind, local = pins(E2E / "kind" / "requirements.txt"), pins(E2E / "local" / "requirements.txt")
    assert kind.items() <= local.items(), (kind, local)


def test_the_runner_image_copies_what_exists_and_its_context_lets_through():
    dockerfile = (E2E / "kind" / "runner.Dockerfile").read_text()
    sources = re.findall(r"^COPY (\S+) ", dockerfile, re.M)
    allowed = {line[1:] for line in (E2E / "kind" / "runner.Dockerfile.dockerignore")
               .read_text().splitlines() if line.startswith("!")}
    assert "e2e/scenarios/" in sources and "e2e/harness/" in sources, sources
    for source in sources:
        assert (E2E.parent / source).exists(), source
        assert source in allowed, f"{source} is kept out of the build context"
