//! Pure builders: from a [`KafkaCluster`] to the Kubernetes objects that run it.
//!
//! Every builder is a function of its arguments alone — no I/O, no clock — so the
//! controller can apply its output every pass and tests can snapshot it.
//!
//! | object | name | builder |
//! |---|---|---|
//! | ConfigMap (`broker.toml`) | `<name>-config` | [`configmap::desired_configmap`] |
//! | headless Service (per-broker DNS) | `<name>-brokers` | [`service::desired_headless_service`] |
//! | bootstrap Service | `<name>-bootstrap` | [`service::desired_bootstrap_service`] |
//! | StatefulSet | `<name>` | [`statefulset::desired_statefulset`] |
//! | PodDisruptionBudget | `<name>` | [`pdb::desired_pdb`] |
//! | ServiceMonitor (optional) | `<name>` | [`servicemonitor::desired_servicemonitor`] |
//!
//! Before any of them is built, [`configmap::validate_broker_config`] refuses settings
//! the operator owns and, through [`broker_settings`], settings the broker would refuse;
//! [`quorum::validate_listeners`] refuses ports that collide.
//!
//! The StatefulSet also takes the metadata quorum's voters ([`quorum::Voters`]), which
//! are fixed when the cluster is created and read back from the StatefulSet after that.

pub mod broker_settings;
pub mod configmap;
pub mod pdb;
pub mod quorum;
pub mod service;
pub mod servicemonitor;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::KafkaCluster;

/// Mount point of the broker's persistent volume.
pub const DATA_MOUNT: &str = "/var/lib/runnel";
/// The broker's `--data-dir`, a directory on the volume (not its root, which may hold
/// `lost+found`).
pub const DATA_DIR: &str = "/var/lib/runnel/data";
/// Mount point of the broker config map.
pub const CONFIG_MOUNT: &str = "/etc/runnel";
/// Key of the broker config file in the config map.
pub const CONFIG_FILE: &str = "broker.toml";
/// Pod label set by the StatefulSet controller to the pod's ordinal (Kubernetes ≥ 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Pod-template annotation carrying a hash of the broker config, so a changed config is
/// visible as a new StatefulSet revision (the rolling restart acts on it).
pub const CONFIG_HASH_ANNOTATION: &str = "runnel.dev/config-hash";
/// Label telling the headless Service apart from the bootstrap Service.
pub const SERVICE_ROLE_LABEL: &str = "runnel.dev/service";

/// Names of the objects derived from one cluster.
pub mod names {
    use super::*;

    /// The StatefulSet (pods are `<name>-<ordinal>`).
    pub fn statefulset(kc: &KafkaCluster) -> String {
        kc.name_any()
    }

    /// The headless Service giving each broker a DNS name.
    pub fn headless_service(kc: &KafkaCluster) -> String {
        format!("{}-brokers", kc.name_any())
    }

    /// The client-facing bootstrap Service.
    pub fn bootstrap_service(kc: &KafkaCluster) -> String {
        format!("{}-bootstrap", kc.name_any())
    }

    /// The broker config map.
    pub fn configmap(kc: &KafkaCluster) -> String {
        format!("{}-config", kc.name_any())
    }

    /// Pod of broker `id`.
    pub fn pod(kc: &KafkaCluster, id: i32) -> String {
        format!("{}-{id}", kc.name_any())
    }

    /// The stable DNS name of broker `id`: `<pod>.<headless service>.<namespace>.svc`.
    pub fn broker_host(kc: &KafkaCluster, id: i32) -> String {
        format!(
            "{}.{}.{}.svc",
            pod(kc, id),
            headless_service(kc),
            kc.namespace().unwrap_or_default()
        )
    }

    /// The bootstrap address clients use: `<name>-bootstrap.<namespace>.svc:<port>`.
    pub fn bootstrap_servers(kc: &KafkaCluster) -> String {
        format!(
            "{}.{}.svc:{}",
            bootstrap_service(kc),
            kc.namespace().unwrap_or_default(),
            kc.spec.listeners.kafka_port
        )
    }
}

/// Labels selecting the broker pods of `kc` (stable for the cluster's lifetime).
pub fn selector_labels(kc: &KafkaCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "runnel".to_string()),
        ("app.kubernetes.io/instance".to_string(), kc.name_any()),
        (
            "app.kubernetes.io/component".to_string(),
            "broker".to_string(),
        ),
    ])
}

/// The standard `app.kubernetes.io/*` labels on every object the operator creates.
pub fn standard_labels(kc: &KafkaCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(kc);
    labels.insert(
        "app.kubernetes.io/part-of".to_string(),
        "runnel".to_string(),
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        crate::context::FIELD_MANAGER.to_string(),
    );
    labels
}

/// Metadata of a child object: name, the cluster's namespace, standard labels and the
/// controller owner reference (absent only when `kc` has no uid, i.e. was never stored).
pub fn child_meta(kc: &KafkaCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: kc.namespace(),
        labels: Some(standard_labels(kc)),
        owner_references: kc.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod test_cluster {
    use std::collections::BTreeMap;

    use kube::api::ObjectMeta;

    use crate::crd::{KafkaCluster, KafkaClusterSpec, ListenersSpec, MetricsSpec, StorageSpec};

    /// A stored cluster `demo` in namespace `streaming` with default settings.
    pub fn demo() -> KafkaCluster {
        let spec: KafkaClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut kc = KafkaCluster::new("demo", spec);
        kc.metadata = ObjectMeta {
            name: Some("demo".into()),
            namespace: Some("streaming".into()),
            uid: Some("0b6e5b8e-5f3c-4b8e-9d6c-1d2f3a4b5c6d".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        kc
    }

    /// `demo` with every optional setting used.
    pub fn demo_customised() -> KafkaCluster {
        let mut kc = demo();
        kc.spec.replicas = 5;
        kc.spec.image = "registry.example/runnel-broker:1.2.3".into();
        kc.spec.storage = StorageSpec {
            size: k8s_openapi::apimachinery::pkg::api::resource::Quantity("100Gi".into()),
            storage_class_name: Some("fast-ssd".into()),
        };
        kc.spec.config = BTreeMap::from([
            ("log.retention.ms".to_string(), "86400000".to_string()),
            ("num.partitions".to_string(), "6".to_string()),
        ]);
        kc.spec.listeners = ListenersSpec {
            kafka_port: 19092,
            health_port: 19095,
            metrics_port: 19090,
        };
        kc.spec.metrics = serde_json::from_value::<MetricsSpec>(serde_json::json!({
            "serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prom"}}
        }))
        .unwrap();
        kc.spec.pod_template = Some(serde_json::from_value(serde_json::json!({
            "labels": {"team": "data", "app.kubernetes.io/name": "not-allowed"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "kafka"}
        }))
        .unwrap());
        kc.spec.resources = Some(
            serde_json::from_value(serde_json::json!({
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"memory": "2Gi"}
            }))
            .unwrap(),
        );
        kc
    }
}
