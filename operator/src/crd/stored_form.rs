//! The form in which the API server stores a CRD, so the generated file equals it.
//!
//! The API server decodes a CRD into Go structs whose fields are mostly `omitempty`:
//! `nullable: false`, `""`, `[]`, `{}` and a printer column's `priority: 0` are dropped
//! on write. A file that carries them never equals the stored object, and two managers
//! applying it server-side (`helm install`, `kubectl apply --server-side`) then conflict
//! over `.spec.versions`. [`stored_form`] drops exactly what the server drops; the
//! intent (`nullable: false` is the default) is unchanged.
//!
//! Not dropped, because the Go field is a pointer and keeps an explicit value:
//! `x-kubernetes-preserve-unknown-fields`, `default`, `minimum`/`maximum` and the other
//! numeric bounds, `x-kubernetes-list-type`, `x-kubernetes-map-type`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    JSONSchemaPropsOrStringArray, ValidationRule,
};

/// `crd` as the API server stores it: every `omitempty` value it would drop removed.
pub fn stored_form(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if version.deprecated == Some(false) {
            version.deprecated = None;
        }
        drop_empty(&mut version.deprecation_warning);
        for column in version.additional_printer_columns.iter_mut().flatten() {
            if column.priority == Some(0) {
                column.priority = None;
            }
            drop_empty(&mut column.description);
            drop_empty(&mut column.format);
        }
        drop_empty_vec(&mut version.additional_printer_columns);
        drop_empty_vec(&mut version.selectable_fields);
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema_stored_form(schema);
        }
    }
    crd
}

/// One schema node and everything below it, in stored form.
fn schema_stored_form(node: &mut JSONSchemaProps) {
    for flag in [
        &mut node.nullable,
        &mut node.exclusive_maximum,
        &mut node.exclusive_minimum,
        &mut node.unique_items,
        &mut node.x_kubernetes_embedded_resource,
        &mut node.x_kubernetes_int_or_string,
    ] {
        if *flag == Some(false) {
            *flag = None;
        }
    }
    for text in [
        &mut node.description,
        &mut node.format,
        &mut node.id,
        &mut node.pattern,
        &mut node.schema,
        &mut node.title,
        &mut node.type_,
    ] {
        drop_empty(text);
    }
    drop_empty_vec(&mut node.enum_);
    drop_empty_vec(&mut node.required);
    drop_empty_vec(&mut node.x_kubernetes_list_map_keys);
    for rule in node.x_kubernetes_validations.iter_mut().flatten() {
        rule_stored_form(rule);
    }
    drop_empty_vec(&mut node.x_kubernetes_validations);

    for list in [&mut node.all_of, &mut node.any_of, &mut node.one_of] {
        list.iter_mut().flatten().for_each(schema_stored_form);
        drop_empty_vec(list);
    }
    for map in [
        &mut node.properties,
        &mut node.pattern_properties,
        &mut node.definitions,
    ] {
        map.iter_mut()
            .flat_map(|m| m.values_mut())
            .for_each(schema_stored_form);
        if map.as_ref().is_some_and(|m| m.is_empty()) {
            *map = None;
        }
    }
    for dependency in node.dependencies.iter_mut().flat_map(|d| d.values_mut()) {
        if let JSONSchemaPropsOrStringArray::Schema(schema) = dependency {
            schema_stored_form(schema);
        }
    }
    if node.dependencies.as_ref().is_some_and(|d| d.is_empty()) {
        node.dependencies = None;
    }
    if let Some(not) = node.not.as_mut() {
        schema_stored_form(not);
    }
    match node.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(items)) => schema_stored_form(items),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(schema_stored_form)
        }
        None => {}
    }
    for nested in [&mut node.additional_properties, &mut node.additional_items] {
        if let Some(JSONSchemaPropsOrBool::Schema(schema)) = nested {
            schema_stored_form(schema);
        }
    }
}

fn rule_stored_form(rule: &mut ValidationRule) {
    drop_empty(&mut rule.message);
    drop_empty(&mut rule.message_expression);
    drop_empty(&mut rule.field_path);
}

fn drop_empty(text: &mut Option<String>) {
    if text.as_deref() == Some("") {
        *text = None;
    }
}

fn drop_empty_vec<T>(list: &mut Option<Vec<T>>) {
    if list.as_ref().is_some_and(|l| l.is_empty()) {
        *list = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd_with_schema(schema: serde_json::Value) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.dev"},
            "spec": {
                "group": "example.dev",
                "names": {"kind": "Thing", "plural": "things"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true, "deprecated": false,
                    "additionalPrinterColumns": [
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                         "priority": 0, "description": ""}
                    ],
                    "schema": {"openAPIV3Schema": schema}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn drops_what_the_api_server_drops_and_keeps_the_rest() {
        let crd = crd_with_schema(json!({
            "type": "object",
            "required": [],
            "properties": {
                "size": {"x-kubernetes-int-or-string": true, "nullable": false, "default": "1Gi"},
                "list": {"type": "array", "uniqueItems": false, "items": {
                    "type": "object", "properties": {}, "description": "",
                    "x-kubernetes-list-type": "atomic"
                }},
                "map": {"type": "object", "additionalProperties": {
                    "type": "integer", "minimum": 0.0, "exclusiveMinimum": false,
                    "x-kubernetes-validations": [{"rule": "self > 1", "message": ""}]
                }},
                "maybe": {"type": "string", "nullable": true, "enum": []}
            }
        }));
        let stored = serde_json::to_value(stored_form(crd)).unwrap();
        let version = &stored["spec"]["versions"][0];
        assert_eq!(version.get("deprecated"), None);
        assert_eq!(
            version["additionalPrinterColumns"][0],
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
        );
        assert_eq!(
            version["schema"]["openAPIV3Schema"],
            json!({
                "type": "object",
                "properties": {
                    "size": {"x-kubernetes-int-or-string": true, "default": "1Gi"},
                    "list": {"type": "array", "items": {
                        "type": "object", "x-kubernetes-list-type": "atomic"
                    }},
                    "map": {"type": "object", "additionalProperties": {
                        "type": "integer", "minimum": 0.0,
                        "x-kubernetes-validations": [{"rule": "self > 1"}]
                    }},
                    "maybe": {"type": "string", "nullable": true}
                }
            })
        );
    }
}
