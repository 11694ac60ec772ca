//! `ConsumerGroup`: status of a Kafka consumer group, and declared offset resets.
//!
//! Its controller needs the broker's admin API and lands separately; the type is
//! complete so the CRD can be installed and validated now.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ClusterRef;

/// A consumer group to observe, and an optional one-shot offset reset.
// clippy reads the repeated `type_ = ...` of separate `printcolumn(...)` entries as
// duplicated attributes; they are not.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    plural = "consumergroups",
    shortname = "kcg",
    category = "runnel",
    namespaced,
    status = "ConsumerGroupStatus",
    derive = "PartialEq",
    doc = "A Kafka consumer group on a Runnel KafkaCluster: its state, lag and offset resets.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.groupId"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSpec {
    /// The cluster the group lives on; cannot change.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clusterRef is immutable"}]))]
    pub cluster_ref: ClusterRef,
    /// The Kafka `group.id`; cannot change.
    #[schemars(
        length(min = 1),
        extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "groupId is immutable"}])
    )]
    pub group_id: String,
    /// An offset reset, applied once (per `requestId`) when the group has no members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_reset: Option<OffsetReset>,
}

/// A one-shot reset of the group's committed offsets.
///
/// Kept flat (a `strategy` plus the fields it needs) rather than as a Rust enum with
/// data, so the schema stays structural; CEL rules tie the fields to the strategy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.strategy != 'Timestamp' || has(self.timestampMs)", "message": "strategy Timestamp needs timestampMs"},
    {"rule": "self.strategy != 'Explicit' || size(self.offsets) > 0", "message": "strategy Explicit needs offsets"},
    {"rule": "self.strategy == 'Explicit' || size(self.offsets) == 0", "message": "offsets are only for strategy Explicit"}
]))]
pub struct OffsetReset {
    /// Identifies this reset: a reset is applied once per distinct `requestId`, and the
    /// applied id is recorded in `status.lastAppliedResetRequestId`.
    #[schemars(length(min = 1, max = 253))]
    pub request_id: String,
    /// Where to move the offsets.
    pub strategy: OffsetResetStrategy,
    /// Topics to reset; every topic the group has offsets for when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// For `Timestamp`: the first offset at or after this time (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timestamp_ms: Option<i64>,
    /// For `Explicit`: the offset of each listed partition.
    #[serde(default)]
    pub offsets: Vec<PartitionOffset>,
}

/// Where an offset reset moves a group's committed offsets.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OffsetResetStrategy {
    /// The log start offset of each partition.
    Earliest,
    /// The log end offset (high watermark) of each partition.
    Latest,
    /// The first offset whose timestamp is at or after `timestampMs`.
    Timestamp,
    /// The offsets listed in `offsets`.
    Explicit,
}

/// One partition's target offset in an explicit reset.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffset {
    /// Topic name.
    #[schemars(length(min = 1))]
    pub topic: String,
    /// Partition index.
    #[schemars(range(min = 0))]
    pub partition: i32,
    /// The offset to commit.
    #[schemars(range(min = 0))]
    pub offset: i64,
}

/// Observed state of a consumer group.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// `Ready` and `ResetApplied`-style conditions, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The group's state as the coordinator reports it (`Empty`, `Stable`,
    /// `PreparingRebalance`, `CompletingRebalance`, `Dead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Number of members.
    #[serde(default)]
    pub member_count: i32,
    /// The members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
    /// Lag of each partition the group has committed offsets for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lag: Vec<PartitionLag>,
    /// Sum of `lag[].lag`.
    #[serde(default)]
    pub total_lag: i64,
    /// The `requestId` of the last offset reset applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_reset_request_id: Option<String>,
}

/// One member of a consumer group.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// The member's `client.id`.
    #[serde(default)]
    pub client_id: String,
    /// The member's host as the coordinator saw it.
    #[serde(default)]
    pub client_host: String,
}

/// Lag of one partition: high watermark minus committed offset.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The group's committed offset.
    pub committed_offset: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// `highWatermark - committedOffset`, never below zero.
    pub lag: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_reset_reads_from_yaml() {
        let yaml = "clusterRef: {name: demo}\ngroupId: billing\noffsetReset:\n  requestId: r1\n  strategy: Explicit\n  \
                    offsets:\n  - {topic: orders, partition: 0, offset: 42}\n";
        let spec: ConsumerGroupSpec = serde_saphyr::from_str(yaml).unwrap();
        let reset = spec.offset_reset.unwrap();
        assert_eq!(reset.strategy, OffsetResetStrategy::Explicit);
        assert_eq!(
            reset.offsets,
            [PartitionOffset {
                topic: "orders".into(),
                partition: 0,
                offset: 42
            }]
        );
    }

    #[test]
    fn an_unknown_strategy_is_rejected() {
        let yaml = "clusterRef: {name: demo}\ngroupId: billing\noffsetReset: {requestId: r1, strategy: Newest}\n";
        assert!(serde_saphyr::from_str::<ConsumerGroupSpec>(yaml).is_err());
    }
}
