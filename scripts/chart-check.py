"""Validation half of scripts/chart-check.sh (run with the .tools/venv Python).

    chart-check.py --kube-version 1.37.0 --crds crds --examples charts/runnel/examples \
        --rendered default=out/default.yaml --rendered namespaced=out/namespaced.yaml ...

1. Every rendered object of a built-in kind goes through `kubernetes-validate --strict`
   for that Kubernetes version; an object of a kind it has no schema for fails, except
   the prometheus-operator ServiceMonitor, checked here against the fields the chart uses.
2. Each rendering case (the values file name) has the objects its values promise
   (cluster-wide or namespaced RBAC, leader election, metrics Service, ServiceMonitor).
3. The example custom resources validate against the openAPIV3Schema of the CRD they
   name, strictly: an unknown field fails, as the API server's strict field validation
   (kubectl's default) would.

Prints nothing on success; every problem found is printed, then it exits 1.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

# Groups whose kinds kubernetes-validate cannot know: custom resources.
CUSTOM_GROUPS = {"runnel.dev", "monitoring.coreos.com"}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# prometheus-operator's Duration pattern (monitoring.coreos.com/v1).
PROM_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"

# The part of the ServiceMonitor schema the chart uses; unknown fields fail.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
        "kind": {"enum": ["ServiceMonitor"]},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": PROM_DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": PROM_DURATION},
                        },
                    },
                },
            },
        },
    },
}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def load_documents(path: pathlib.Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    where = f"{namespace}/" if namespace else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


# --- 1. built-in kinds through kubernetes-validate --------------------------------------
def validate_builtin(case: str, docs: list[dict], kube_version: str, workdir: pathlib.Path) -> None:
    files = []
    for index, doc in enumerate(docs):
        if group_of(doc.get("apiVersion", "")) in CUSTOM_GROUPS:
            continue
        path = workdir / f"{case}-{index:03d}-{doc.get('kind', 'unknown').lower()}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    if not files:
        problem(f"{case}: rendered no built-in objects at all")
        return
    validate = pathlib.Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(validate), "--strict", "--quiet", "-k", kube_version, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    # --quiet leaves only warnings and failures; a warning means a kind without a schema.
    if result.returncode != 0 or output:
        problem(f"{case}: kubernetes-validate --strict -k {kube_version}:\n{output}")


def validate_custom(case: str, docs: list[dict]) -> None:
    for doc in docs:
        if group_of(doc.get("apiVersion", "")) not in CUSTOM_GROUPS:
            continue
        if doc.get("kind") == "ServiceMonitor":
            for error in jsonschema.Draft7Validator(SERVICE_MONITOR_SCHEMA).iter_errors(doc):
                problem(f"{case}: {name_of(doc)}: {error_text(error)}")
        else:
            problem(f"{case}: {name_of(doc)}: the chart is not expected to render this kind")


# --- 2. what each values file promises --------------------------------------------------
def kinds(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def operator_container(docs: list[dict]) -> dict:
    deployments = kinds(docs, "Deployment")
    if len(deployments) != 1:
        problem(f"expected one Deployment, rendered {len(deployments)}")
        return {}
    return deployments[0]["spec"]["template"]["spec"]["containers"][0]


def expect(case: str, condition: bool, what: str) -> None:
    if not condition:
        problem(f"{case}: expected {what}")


def check_case(case: str, docs: list[dict]) -> None:
    container = operator_container(docs)
    args = container.get("args", [])
    deployment = (kinds(docs, "Deployment") or [{}])[0]
    spec = deployment.get("spec", {})
    # Every namespaced object carries its namespace, so `helm template | kubectl apply`
    # lands where `helm install -n` would.
    for doc in docs:
        if doc.get("kind") not in {"ClusterRole", "ClusterRoleBinding"}:
            expect(case, bool((doc.get("metadata") or {}).get("namespace")), f"{name_of(doc)} to set metadata.namespace")
        expect(case, bool(DNS_SUBDOMAIN.match((doc.get("metadata") or {}).get("name", ""))), f"{name_of(doc)} to have a DNS-1123 name")

    if case == "default":
        expect(case, spec.get("replicas") == 1, "1 operator replica")
        expect(case, "--leader-elect" in args, "--leader-elect in the operator args")
        expect(case, not any(a.startswith("--watch-namespaces") for a in args), "no --watch-namespaces")
        expect(case, len(kinds(docs, "ClusterRole")) == 1, "one ClusterRole")
        expect(case, len(kinds(docs, "ClusterRoleBinding")) == 1, "one ClusterRoleBinding")
        expect(case, [r["metadata"]["name"] for r in kinds(docs, "Role")] == ["runnel-leader-election"], "only the leader-election Role")
        expect(case, len(kinds(docs, "ServiceAccount")) == 1, "a ServiceAccount")
        expect(case, len(kinds(docs, "Service")) == 1, "the metrics Service")
        expect(case, not kinds(docs, "ServiceMonitor"), "no ServiceMonitor")
    elif case == "namespaced":
        expect(case, spec.get("replicas") == 2, "2 operator replicas")
        expect(case, "--watch-namespaces=team-a,team-b" in args, "--watch-namespaces=team-a,team-b")
        expect(case, not kinds(docs, "ClusterRole") and not kinds(docs, "ClusterRoleBinding"), "nothing cluster-wide")
        roles = sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in kinds(docs, "Role"))
        expect(case, roles == [("runnel-system", "streaming-operator-leader-election"), ("team-a", "streaming-operator"), ("team-b", "streaming-operator")], f"a Role per watched namespace, got {roles}")
        expect(case, len(kinds(docs, "RoleBinding")) == 3, "three RoleBindings")
        expect(case, len(kinds(docs, "ServiceMonitor")) == 1, "the ServiceMonitor")
        expect(case, "@sha256:" in container.get("image", ""), "the image pinned by digest")
    elif case == "minimal":
        expect(case, "--leader-elect" not in args, "no --leader-elect")
        expect(case, spec.get("strategy", {}).get("type") == "Recreate", "the Recreate strategy without leader election")
        for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "ServiceMonitor"):
            expect(case, not kinds(docs, kind), f"no {kind}")

    # Whatever the values, RBAC rules name only what the operator touches.
    for role in kinds(docs, "ClusterRole") + [r for r in kinds(docs, "Role") if not r["metadata"]["name"].endswith("-leader-election")]:
        for rule in role.get("rules", []):
            expect(case, "*" not in rule.get("verbs", []) and "*" not in rule.get("resources", []), f"no wildcard in {name_of(role)}")


# --- 3. example custom resources against the CRDs ---------------------------------------
def strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever the API server would prune them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    # The API server adds these to every custom resource's root schema.
    root = schema.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root.setdefault("metadata", {"type": "object"})
    walk(schema)
    return schema


def error_text(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{path}: {error.message}"


def load_crd_schemas(crd_dir: pathlib.Path) -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in load_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                problem(f"{path}: not a CustomResourceDefinition")
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    if not schemas:
        problem(f"{crd_dir}: no CRDs found")
    return schemas


def validate_examples(schemas: dict, examples: pathlib.Path) -> None:
    files = sorted(examples.glob("*.yaml"))
    if not files:
        problem(f"{examples}: no example YAML files")
    seen_kinds = set()
    for path in files:
        for doc in load_documents(path):
            key = (doc.get("apiVersion"), doc.get("kind"))
            where = f"{path}: {name_of(doc)}"
            if key not in schemas:
                problem(f"{where}: no served CRD for {key[0]} {key[1]}")
                continue
            seen_kinds.add(key[1])
            name = (doc.get("metadata") or {}).get("name", "")
            if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
                problem(f"{where}: metadata.name {name!r} is not a DNS subdomain")
            if "status" in doc:
                problem(f"{where}: examples must not carry a status")
            for error in jsonschema.Draft4Validator(schemas[key]).iter_errors(doc):
                problem(f"{where}: {error_text(error)}")
    for kind in ("KafkaCluster", "Topic", "ConsumerGroup"):
        if kind not in seen_kinds:
            problem(f"{examples}: no example {kind}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kube-version", required=True)
    parser.add_argument("--crds", required=True, type=pathlib.Path)
    parser.add_argument("--examples", required=True, type=pathlib.Path)
    parser.add_argument("--rendered", action="append", default=[], metavar="CASE=FILE")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        for item in opts.rendered:
            case, _, file = item.partition("=")
            docs = load_documents(pathlib.Path(file))
            validate_builtin(case, docs, opts.kube_version, pathlib.Path(tmp))
            validate_custom(case, docs)
            check_case(case, docs)
    validate_examples(load_crd_schemas(opts.crds), opts.examples)

    for message in problems:
        print(f"chart-check: {message}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
