//! CRD checks: the committed `crds/*.yaml` are current, and every schema is structural.

use serde_json::Value;

use super::{all, to_yaml};

fn crds_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, crd) in all() {
        let path = crds_dir().join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = to_yaml(&crd).unwrap();
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p runnel-operator --bin crdgen` and commit the result",
            path.display()
        );
    }
}

#[test]
fn committed_crds_parse_back_to_the_same_object() {
    for (file, crd) in all() {
        let text = std::fs::read_to_string(crds_dir().join(file)).unwrap();
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap();
        assert_eq!(parsed, crd, "{file}");
    }
}

/// Walks `schema` (a node at JSON path `path`) and collects structural-schema violations:
/// every node needs a `type` unless it is int-or-string or preserves unknown fields;
/// no `$ref`; `anyOf`/`oneOf`/`allOf`/`not` only in the int-or-string pattern; no
/// `additionalProperties` next to `properties`.
fn structural_violations(schema: &Value, path: &str, found: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        found.push(format!("{path}: not an object"));
        return;
    };
    let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !node.contains_key("type") && !int_or_string && !preserve {
        found.push(format!("{path}: no type"));
    }
    if node.contains_key("$ref") {
        found.push(format!("{path}: $ref"));
    }
    for combinator in ["anyOf", "oneOf", "allOf", "not"] {
        if node.contains_key(combinator) && !int_or_string {
            found.push(format!("{path}: {combinator} outside int-or-string"));
        }
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        found.push(format!("{path}: both properties and additionalProperties"));
    }
    if node.get("type").and_then(Value::as_str) == Some("array") && !node.contains_key("items") {
        found.push(format!("{path}: array without items"));
    }
    for (name, child) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        structural_violations(child, &format!("{path}.{name}"), found);
    }
    if let Some(items) = node.get("items") {
        structural_violations(items, &format!("{path}[]"), found);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        structural_violations(additional, &format!("{path}{{}}"), found);
    }
}

fn schema_of(crd: &impl serde::Serialize) -> Value {
    let crd = serde_json::to_value(crd).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn every_schema_is_structural() {
    for (file, crd) in all() {
        let mut found = Vec::new();
        structural_violations(&schema_of(&crd), "", &mut found);
        assert!(found.is_empty(), "{file}:\n{}", found.join("\n"));
    }
}

#[test]
fn the_checker_catches_what_the_api_server_rejects() {
    let bad = serde_json::json!({"type": "object", "properties": {
        "untyped": {"description": "no type"},
        "untagged": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "quantity": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
    }});
    let mut found = Vec::new();
    structural_violations(&bad, "", &mut found);
    assert_eq!(
        found,
        [
            ".untagged: no type",
            ".untagged: anyOf outside int-or-string",
            ".untyped: no type"
        ]
    );
}

#[test]
fn only_the_crds_we_expect_preserve_unknown_fields() {
    fn count_preserve(schema: &Value, path: &str, found: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                    found.push(path.to_string());
                }
                for (key, value) in map {
                    count_preserve(value, &format!("{path}/{key}"), found);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| count_preserve(v, path, found)),
            _ => {}
        }
    }
    for (file, crd) in all() {
        let mut found = Vec::new();
        count_preserve(&schema_of(&crd), "", &mut found);
        assert!(
            found.is_empty(),
            "{file} preserves unknown fields at {found:?}"
        );
    }
}

#[test]
fn validation_rules_and_defaults_are_in_the_schemas() {
    let topics = serde_json::to_value(<super::Topic as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &topics["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let partitions = &spec["properties"]["partitions"];
    assert_eq!(partitions["minimum"], 1.0);
    assert_eq!(
        partitions["x-kubernetes-validations"][0]["rule"],
        "self >= oldSelf"
    );
    assert_eq!(spec["properties"]["deletionPolicy"]["default"], "Delete");
    assert_eq!(
        spec["properties"]["deletionPolicy"]["enum"],
        serde_json::json!(["Delete", "Retain"])
    );
    assert_eq!(
        topics["spec"]["versions"][0]["subresources"]["status"],
        serde_json::json!({})
    );

    let clusters =
        serde_json::to_value(<super::KafkaCluster as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &clusters["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["replicas"]["minimum"], 1.0);
    assert_eq!(spec["properties"]["replicas"]["default"], 3);
    assert_eq!(
        spec["properties"]["storage"]["x-kubernetes-validations"][0]["rule"], "self == oldSelf",
        "storage is immutable: the StatefulSet's volume claim templates are"
    );
    let size = &spec["properties"]["storage"]["properties"]["size"];
    assert_eq!(size["x-kubernetes-int-or-string"], true);
    // Absent, not `false`: the API server drops `nullable: false` (see stored_form).
    let (_, generated) = &all()[0];
    let generated = schema_of(generated);
    let size = &generated["properties"]["spec"]["properties"]["storage"]["properties"]["size"];
    assert_eq!(size.get("nullable"), None);
    assert_eq!(size["default"], "10Gi");
    let columns: Vec<_> = clusters["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        columns,
        [
            "Ready",
            "Replicas",
            "Brokers",
            "Controller",
            "Bootstrap",
            "Age"
        ]
    );
    // The cluster id is fixed at creation, set or not; and what the broker accepts.
    assert_eq!(
        spec["x-kubernetes-validations"][0]["rule"],
        "(has(self.clusterId) ? self.clusterId : '') == (has(oldSelf.clusterId) ? oldSelf.clusterId : '')"
    );
    let cluster_id = &spec["properties"]["clusterId"];
    assert_eq!(
        (&cluster_id["minLength"], &cluster_id["maxLength"]),
        (&serde_json::json!(1), &serde_json::json!(64))
    );
    assert_eq!(cluster_id["pattern"], "^[A-Za-z0-9_-]+$");
    // Partitions moved at once: 1..=1000, the bound the operator also checks.
    let moving = &spec["properties"]["rebalance"]["properties"]["maxPartitionsMoving"];
    assert_eq!(
        (&moving["minimum"], &moving["maximum"], &moving["default"]),
        (
            &serde_json::json!(1.0),
            &serde_json::json!(f64::from(super::MAX_PARTITIONS_MOVING_LIMIT)),
            &serde_json::json!(4)
        )
    );
    assert_eq!(clusters["spec"]["scope"], "Namespaced");
    assert_eq!(clusters["spec"]["group"], "runnel.dev");
}
