#!/usr/bin/env bash
# Checks the Helm chart charts/runnel without a cluster:
#   1. charts/runnel/crds/ is identical to crds/ (what `make crds` generates);
#   2. `helm lint --strict` with the default values and each charts/runnel/ci/*-values.yaml;
#   3. `helm template` with the same values, and every rendered object validated against
#      the Kubernetes schemas with `kubernetes-validate --strict` (and the CRDs themselves);
#   4. each rendering has the objects its values promise (scripts/chart-check.py);
#   5. the example custom resources in charts/runnel/examples/ validate against the
#      openAPIV3Schema of the generated CRDs (Python jsonschema, unknown fields refused).
#
# Tools come from the registries through scripts/tools.sh (into .tools/, gitignored).
# Quiet on success; a failure prints what failed and why, and exits non-zero.
#
# Usage: scripts/chart-check.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${RUNNEL_TOOLS_DIR:-$repo/.tools}"
chart="$repo/charts/runnel"
# The Kubernetes version k8s-openapi's `latest` feature targets (v1_37).
kube_version="${KUBE_VERSION:-1.37.0}"
release=runnel
namespace=runnel-system

"$repo/scripts/tools.sh"
helm="$tools/bin/helm"
python="$tools/venv/bin/python"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/log"

script=chart-check
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

# --- 1. the chart's CRDs are the generated ones -------------------------------------------
if ! diff -r "$repo/crds" "$chart/crds" >"$log" 2>&1; then
    echo "chart-check: charts/runnel/crds/ differs from crds/; run \`make crds\`:" >&2
    cat "$log" >&2
    exit 1
fi

# --- 2 and 3. lint and render each values case ------------------------------------------
cases=("default=")
for values in "$chart"/ci/*-values.yaml; do
    [ -e "$values" ] || continue
    name="$(basename "$values" -values.yaml)"
    cases+=("$name=$values")
done

rendered=()
for case in "${cases[@]}"; do
    name="${case%%=*}"
    values="${case#*=}"
    values_flag=()
    [ -n "$values" ] && values_flag=(--values "$values")

    run "helm lint --strict ($name values)" \
        "$helm" lint --strict --kube-version "$kube_version" --namespace "$namespace" \
        "${values_flag[@]}" "$chart"
    run "helm template ($name values)" \
        "$helm" template "$release" "$chart" --namespace "$namespace" \
        --kube-version "$kube_version" "${values_flag[@]}"
    cp "$log" "$work/$name.yaml"
    rendered+=(--rendered "$name=$work/$name.yaml")
done

# A value the schema refuses must fail the render: values.schema.json is in force.
if "$helm" template "$release" "$chart" --set logFormat=xml >"$log" 2>&1; then
    fail "helm template accepted logFormat=xml: values.schema.json is not applied"
fi

# The CRDs themselves, as the API server's CustomResourceDefinition schema sees them.
run "kubernetes-validate --strict of crds/" \
    "$tools/venv/bin/kubernetes-validate" --strict --quiet -k "$kube_version" "$repo"/crds/*.yaml
[ ! -s "$log" ] || fail "kubernetes-validate warned about crds/: $(cat "$log")"

# --- 3, 4 and 5 -------------------------------------------------------------------------
"$python" "$repo/scripts/chart-check.py" \
    --kube-version "$kube_version" \
    --crds "$repo/crds" \
    --examples "$chart/examples" \
    "${rendered[@]}"
