"""The scenarios of both Kubernetes suites, run against the backend RUNNEL_E2E_BACKEND
names (harness/backends.py): `local` (the default; `make test-k8s`) or `kind` (inside a
real cluster; `make e2e`).

The backend supplies the cluster (see harness/backends.py for its fixtures); this file
adds what every scenario uses on top:
    namespace        a fresh namespace for one test, deleted (not awaited) afterwards
    module_namespace one namespace shared by the steps (tests) of a scenario module
    kafka_cluster    `kafka_cluster(name, **spec)`: a KafkaCluster manifest with what this
                     backend's brokers need (the image under test on kind)
and, for a failed test, the objects, events and logs of the namespaces in use.

A new scenario is a `test_*.py` file here using only these fixtures and kubectl, the API
and Kafka clients; e2e/README.md says more.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "e2e"))

from harness import backends  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401,E402


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka")
    name = backends.selected(os.environ)
    plugin = importlib.import_module(f"harness.{name}")
    config.runnel_backend = plugin
    config.pluginmanager.register(plugin, f"runnel-e2e-backend-{name}")


def pytest_report_header(config):
    return f"e2e backend: {config.runnel_backend.__name__.removeprefix('harness.')}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(config.runnel_backend.TEST_TIMEOUT_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


_namespaces: list[str] = []  # namespaces of tests still running, for failure reports


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


@pytest.fixture(scope="session")
def kafka_cluster(backend):
    """`kafka_cluster(name, **spec)`: a KafkaCluster manifest (JSON) with one broker and
    1Gi of storage unless `spec` says otherwise, plus the fields every KafkaCluster needs
    on this backend; what `spec` gives wins."""
    def manifest(name: str, **spec) -> str:
        return json.dumps({
            "apiVersion": "runnel.dev/v1alpha1", "kind": "KafkaCluster",
            "metadata": {"name": name},
            "spec": {"replicas": 1, "storage": {"size": "1Gi"}, **backend.broker_fields,
                     **spec}})
    return manifest


@pytest.fixture(autouse=True)
def _report_on_failure(request):
    """On a failed test: the namespaces' objects, events and logs, into the report."""
    yield
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    failed = any(r is not None and r.failed for r in reports)
    if not failed or "operators" not in request.fixturenames:
        return
    diagnose = request.getfixturevalue("diagnose")
    for ns in list(_namespaces):
        print(diagnose(ns))
