//! The optional prometheus-operator `ServiceMonitor`, as a dynamic object (its CRD is
//! not ours and may be absent, so there is no typed struct for it).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{child_meta, names, selector_labels, SERVICE_ROLE_LABEL};
use crate::crd::KafkaCluster;

/// The `monitoring.coreos.com/v1` `ServiceMonitor` API.
pub fn servicemonitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// The desired `ServiceMonitor` `<name>` scraping every broker through the headless
/// Service, or `None` when `spec.metrics.serviceMonitor.enabled` is off.
pub fn desired_servicemonitor(kc: &KafkaCluster) -> Option<DynamicObject> {
    let monitor = &kc.spec.metrics.service_monitor;
    if !monitor.enabled {
        return None;
    }
    let mut metadata = child_meta(kc, names::statefulset(kc));
    if let Some(labels) = metadata.labels.as_mut() {
        for (key, value) in &monitor.labels {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let mut endpoint = json!({"port": "metrics", "path": "/metrics"});
    if let Some(interval) = &monitor.interval {
        endpoint["interval"] = json!(interval);
    }
    let mut match_labels = selector_labels(kc);
    match_labels.insert(SERVICE_ROLE_LABEL.to_string(), "brokers".to_string());
    let mut object = DynamicObject::new(&names::statefulset(kc), &servicemonitor_resource());
    object.metadata = metadata;
    object.data = json!({
        "spec": {
            "selector": {"matchLabels": match_labels},
            "endpoints": [endpoint],
        }
    });
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster::{demo, demo_customised};

    #[test]
    fn disabled_by_default() {
        assert!(desired_servicemonitor(&demo()).is_none());
    }

    #[test]
    fn enabled_servicemonitor() {
        let monitor = desired_servicemonitor(&demo_customised());
        insta::assert_yaml_snapshot!(monitor);
    }
}
