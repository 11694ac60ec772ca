//! `KafkaCluster`: a set of Runnel brokers run as one StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Runnel cluster.
// clippy reads the repeated `type_ = ...` of separate `printcolumn(...)` entries as
// duplicated attributes; they are not.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    shortname = "kc",
    category = "runnel",
    namespaced,
    status = "KafkaClusterStatus",
    derive = "PartialEq",
    doc = "A Kafka-compatible Runnel cluster: brokers, their storage, configuration and services.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Brokers",
        type_ = "integer",
        description = "Ready brokers",
        json_path = ".status.readyBrokers"
    ),
    printcolumn(
        name = "Controller",
        type_ = "integer",
        description = "The active controller (the metadata quorum's leader)",
        json_path = ".status.controllerId"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        priority = 1,
        json_path = ".status.bootstrapServers"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.clusterId) ? self.clusterId : '') == (has(oldSelf.clusterId) ? oldSelf.clusterId : '')",
    "message": "clusterId is fixed when the KafkaCluster is created: the brokers' volumes belong to that cluster id"
}]))]
pub struct KafkaClusterSpec {
    /// Number of brokers; broker ids are the pod ordinals `0..replicas`. The brokers
    /// form one cluster; the first three ordinals (all, if fewer) are the metadata
    /// quorum's voters, fixed when the cluster is created: growing adds non-voters, and
    /// a scale-down that would remove a voter is refused.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Container image of `runnel-broker`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of the broker container (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,
    /// The persistent volume each broker keeps its logs on. Fixed once the cluster
    /// exists (a StatefulSet's volume claim templates cannot change): the API server
    /// refuses an edit.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "storage is immutable: a StatefulSet's volume claim templates cannot change (resize each PersistentVolumeClaim directly where its StorageClass allows expansion)"
    }]))]
    pub storage: StorageSpec,
    /// CPU and memory of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Broker settings by Kafka's config names (`num.partitions`, `log.retention.ms`,
    /// ...), written to the brokers' config file. Settings the operator owns (listeners,
    /// data directory, node id) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Ports the brokers listen on.
    #[serde(default)]
    pub listeners: ListenersSpec,
    /// Additions to the broker pods' template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,
    /// Prometheus integration.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// How partitions are moved between brokers.
    #[serde(default)]
    pub rebalance: RebalanceSpec,
    /// The Kafka cluster id the brokers share (`cluster.id`); fixed at creation. Unset:
    /// derived from this object's uid. Set it to the id of a deleted KafkaCluster (its
    /// `status.clusterId`) to run a new one on that cluster's retained volumes; the
    /// brokers refuse a volume of another cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub cluster_id: Option<String>,
}

fn default_replicas() -> i32 {
    3
}

fn default_image() -> String {
    "ghcr.io/runnel-dev/runnel-broker:latest".to_string()
}

/// The persistent volume claim template of each broker.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each broker's volume (a Kubernetes quantity, e.g. `10Gi`).
    #[serde(default = "default_storage_size")]
    // Not nullable (overrides the Quantity schema's `nullable: true`; the generated file
    // then leaves the key out, as the API server would): a `null` is pruned and
    // defaulted instead of surviving to fail deserialization.
    #[schemars(extend("nullable" = false))]
    pub size: Quantity,
    /// Storage class of the volumes; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_string())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Ports of the broker pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// Port of the Kafka protocol listener (clients and other brokers).
    #[serde(default = "default_kafka_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka_port: i32,
    /// Port of the gRPC health and admin service (`grpc.health.v1`), used by probes.
    #[serde(default = "default_health_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub health_port: i32,
    /// Port of the Prometheus `/metrics` endpoint.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
}

fn default_kafka_port() -> i32 {
    9092
}

fn default_health_port() -> i32 {
    9095
}

fn default_metrics_port() -> i32 {
    9090
}

impl Default for ListenersSpec {
    fn default() -> Self {
        Self {
            kafka_port: default_kafka_port(),
            health_port: default_health_port(),
            metrics_port: default_metrics_port(),
        }
    }
}

/// Overrides merged into the broker pod template.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod labels (the operator's own `app.kubernetes.io/*` labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Replaces the default affinity (preferred anti-affinity across nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the broker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node selector of the broker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Priority class of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// How the operator moves partitions between brokers: the balance after a scale-up, the
/// drain before a scale-down, and a Topic's replication-factor change.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Partitions moved at once: how many partition reassignments the operator submits
    /// together; the next batch starts when none of them is in flight any more. A
    /// moving partition copies its data to its new replicas, so this bounds the copy
    /// traffic against how long a rebalance takes. It counts partitions across the whole
    /// cluster, not per broker. A Topic's replication-factor change on this cluster
    /// submits at most this many of that topic's partitions at a time, counted apart
    /// from the rebalance's (which waits for every move in flight, the topic's too).
    #[serde(default = "default_max_partitions_moving")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_partitions_moving: i32,
}

/// The most partitions [`RebalanceSpec::max_partitions_moving`] allows; the schema's
/// `maximum` says the same.
pub const MAX_PARTITIONS_MOVING_LIMIT: i32 = 1000;

fn default_max_partitions_moving() -> i32 {
    4
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        Self {
            max_partitions_moving: default_max_partitions_moving(),
        }
    }
}

/// Prometheus integration.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// A prometheus-operator `ServiceMonitor` scraping every broker.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

/// The `ServiceMonitor` the operator creates when enabled.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the `ServiceMonitor` (needs the prometheus-operator CRDs).
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval (e.g. `30s`); Prometheus' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Extra labels on the `ServiceMonitor`, e.g. to match a Prometheus selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Observed state of a Runnel cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// `Ready`, `Progressing` and `Degraded`, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Brokers whose pod is ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Address clients bootstrap from (`<name>-bootstrap.<namespace>.svc:<port>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// One entry per broker, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerStatus>,
    /// The cluster id the brokers are started with (`--cluster-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Node ids of the metadata quorum's voters, fixed when the cluster was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quorum_voters: Vec<i32>,
    /// The active controller (the metadata quorum's leader) as the brokers report it
    /// (DescribeCluster); absent while no broker answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<i32>,
    /// Partition moves under way (the balance after a scale-up, the drain before a
    /// scale-down); absent when none are, with the `Rebalancing` condition `False`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceStatus>,
}

/// Progress of the partition moves the operator runs, one bounded batch at a time.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    /// Partitions being moved now (reassignments in flight).
    pub partitions_moving: i32,
    /// Partitions planned to move after those.
    pub partitions_pending: i32,
    /// Bytes still to copy to new replicas.
    pub bytes_left: i64,
    /// Brokers that go with the scale-down and still hold replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining_brokers: Vec<i32>,
}

/// What the operator sees of one broker.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Broker (node) id, equal to the pod ordinal.
    pub id: i32,
    /// Name of the broker's pod.
    pub pod: String,
    /// Lifecycle state of the pod.
    pub state: BrokerState,
    /// `true` while the broker has not been ready once since the operator first listed
    /// it: it never ran, so it holds no data and a scale-down does not wait for it.
    /// Absent (`false`) once it has been ready, and for entries listed before the
    /// operator kept track: those count as having run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never_ready: bool,
    /// Whether the cluster counts this broker as live: registered with the metadata
    /// quorum and not fenced (its session current). `false`: fenced or not registered.
    /// Absent while no broker answers DescribeCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
}

/// Lifecycle state of a broker pod.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BrokerState {
    /// No pod exists yet for this ordinal.
    Missing,
    /// The pod is scheduled or pulling its image.
    Pending,
    /// The pod runs but is not ready.
    Starting,
    /// The pod is ready and serving.
    Ready,
    /// The pod is being deleted.
    Terminating,
    /// The pod failed or a container is crash-looping.
    Failed,
}
