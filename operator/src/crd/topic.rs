//! `Topic`: a Kafka topic declared as a Kubernetes object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ClusterRef;

/// Desired state of a topic.
// clippy reads the repeated `type_ = ...` of separate `printcolumn(...)` entries as
// duplicated attributes; they are not.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "Topic",
    plural = "topics",
    shortname = "kt",
    category = "runnel",
    namespaced,
    status = "TopicStatus",
    derive = "PartialEq",
    doc = "A Kafka topic on a Runnel KafkaCluster.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.partitions"
    ),
    printcolumn(
        name = "RF",
        type_ = "integer",
        description = "Replication factor",
        json_path = ".status.replicationFactor"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.topicName) ? self.topicName : '') == (has(oldSelf.topicName) ? oldSelf.topicName : '')",
    "message": "topicName is immutable"
}]))]
pub struct TopicSpec {
    /// The cluster the topic lives on; cannot change.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clusterRef is immutable"}]))]
    pub cluster_ref: ClusterRef,
    /// Name of the topic on the cluster; `metadata.name` when unset. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic_name: Option<String>,
    /// Number of partitions; can grow, never shrink.
    #[serde(default = "default_partitions")]
    #[schemars(
        range(min = 1),
        extend("x-kubernetes-validations" = [{"rule": "self >= oldSelf", "message": "partitions cannot decrease"}])
    )]
    pub partitions: i32,
    /// Replicas per partition; the cluster's `default.replication.factor` when unset.
    /// A change becomes a partition reassignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: Option<i32>,
    /// Topic configs by Kafka's names (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// What deleting this object does to the topic.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_partitions() -> i32 {
    1
}

impl TopicSpec {
    /// The topic's name on the cluster: `topicName`, else the object's name.
    pub fn effective_name<'a>(&'a self, object_name: &'a str) -> &'a str {
        self.topic_name.as_deref().unwrap_or(object_name)
    }
}

/// What deleting a `Topic` object does to the topic on the cluster.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the topic and its data.
    #[default]
    Delete,
    /// Keep the topic; only the Kubernetes object goes.
    Retain,
}

/// What the cluster really has for this topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// `Ready` and friends, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Partitions the topic has on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor the topic has on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// The cluster's id of the topic (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Topic configs set on the cluster (non-default values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Partitions still being reassigned to reach the declared replication factor;
    /// absent when none are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassigning_partitions: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_topic_takes_the_defaults() {
        let yaml = "clusterRef:\n  name: demo\n";
        let spec: TopicSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.partitions, 1);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.replication_factor, None);
        assert_eq!(
            spec.effective_name("orders"),
            "orders",
            "topicName defaults to metadata.name"
        );
    }

    #[test]
    fn topic_name_overrides_the_object_name() {
        let yaml = "clusterRef: {name: demo}\ntopicName: orders.v2\npartitions: 12\ndeletionPolicy: Retain\n";
        let spec: TopicSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.effective_name("orders"), "orders.v2");
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
    }
}
