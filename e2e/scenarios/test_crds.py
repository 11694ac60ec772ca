"""Scenario 1, the CRDs both ways: as README tells users (`kubectl apply --server-side -f
crds/`, also the upgrade step after `helm upgrade`) and the Helm way (`helm install`
creates the chart's crds/), each on a throwaway API server, in either order; and on the
session's cluster, whichever way its backend installed them (locally the README's way,
on kind `helm install`), stored as generated, with the README's upgrade step applying
cleanly over them.
"""

from __future__ import annotations

import yaml

from conftest import REPO

CRDS = REPO / "crds"
CHART = REPO / "charts" / "runnel"


def crd_files() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CRDS.glob("*.yaml"))]


def test_chart_crds_are_the_generated_ones():
    for path in sorted(CRDS.glob("*.yaml")):
        assert (CHART / "crds" / path.name).read_text() == path.read_text(), path.name


def assert_stored_as_generated(api) -> None:
    """Not only the schemas: names, printer columns, subresources, everything the file
    says is stored as the file says it. The server only adds its defaults
    (`conversion`, `names.listKind`), which nobody applies, so nobody conflicts over."""
    for crd in crd_files():
        name = crd["metadata"]["name"]
        stored = api.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")["spec"]
        assert stored.pop("conversion") == {"strategy": "None"}, name
        assert stored["names"].pop("listKind") == crd["spec"]["names"]["kind"] + "List", name
        assert stored == crd["spec"], name


def test_installed_crds_are_the_generated_ones_and_the_upgrade_step_applies(chart, kubectl,
                                                                            api):
    assert_stored_as_generated(api)
    kubectl("apply", "--server-side", "-f", str(CRDS))
    assert_stored_as_generated(api)


def test_crds_round_trip_through_the_api_server_unchanged(fresh_plane):
    plane, kubectl, _ = fresh_plane("crd-round-trip")
    kubectl("apply", "--server-side", "-f", str(CRDS))
    for crd in crd_files():
        stored = plane.api.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
        for want, got in zip(crd["spec"]["versions"], stored["spec"]["versions"], strict=True):
            assert got["schema"] == want["schema"], f"{crd['metadata']['name']} {want['name']}"


def test_readme_crd_upgrade_step_after_helm_install(fresh_plane):
    _, kubectl, helm = fresh_plane("crd-helm-first")
    helm("install", "runnel", str(CHART), "--namespace", "runnel-system", "--create-namespace")
    kubectl("get", "crd", "kafkaclusters.runnel.dev")
    kubectl("apply", "--server-side", "-f", str(CRDS))


def test_helm_install_after_readme_crds_then_upgrade_step(fresh_plane):
    _, kubectl, helm = fresh_plane("crd-kubectl-first")
    kubectl("apply", "--server-side", "-f", str(CRDS))
    helm("install", "runnel", str(CHART), "--namespace", "runnel-system", "--create-namespace")
    helm("upgrade", "runnel", str(CHART), "--namespace", "runnel-system")
    kubectl("apply", "--server-side", "-f", str(CRDS))


def test_crd_specs_round_trip_whole(fresh_plane):
    plane, kubectl, _ = fresh_plane("crd-spec-round-trip")
    kubectl("apply", "--server-side", "-f", str(CRDS))
    assert_stored_as_generated(plane.api)
