//! A small Kafka admin client: what the Topic and ConsumerGroup controllers ask of a
//! cluster, as `kafka-protocol` requests sent over [`runnel_client::Connection`]s.
//!
//! | file | what it holds |
//! |---|---|
//! | `client.rs` | [`TcpAdminClient`] and the topic-level calls, sent to the bootstrap broker |
//! | `routing.rs` | connections per broker, coordinators found with FindCoordinator, retries |
//! | `groups.rs` | the group calls (DescribeGroups, OffsetFetch, OffsetCommit) |
//! | `leaders.rs` | ListOffsets, split by partition leader |
//! | `reassign.rs` | partition reassignment, log dir sizes, leader election, unregistering brokers |
//! | `error.rs` | [`KafkaError`], keeping the broker's error codes |
//!
//! Controllers see the cluster only through the [`KafkaAdmin`] trait, made by an
//! [`AdminFactory`] held in the [`Context`](crate::Context), so tests swap in a fake.
//!
//! The brokers of a KafkaCluster form one Kafka cluster, and calls are routed as
//! Kafka's own admin client routes them:
//!
//! - Metadata, DescribeCluster and the admin changes (topics, partitions, configs) go to
//!   the broker the bootstrap address reaches: any broker answers them for the whole
//!   cluster and forwards changes to the controller.
//! - Group calls go to the group's coordinator (the leader of its `__consumer_offsets`
//!   partition), found with FindCoordinator; other brokers answer NOT_COORDINATOR.
//! - ListOffsets goes to each partition's leader, found with Metadata; other brokers
//!   answer NOT_LEADER_OR_FOLLOWER.
//!
//! A coordinator or leader that moved is looked up again a bounded number of times;
//! then the call fails with the broker's error code. A [`TcpAdminClient`] keeps one
//! connection per broker for its lifetime, and serves a single-broker cluster on the
//! bootstrap connection alone.

mod client;
mod error;
#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod fake_answers;
#[cfg(test)]
mod fake_cluster;
mod groups;
mod leaders;
#[cfg(test)]
mod leaders_tests;
mod reassign;
#[cfg(test)]
mod reassign_tests;
mod routing;
#[cfg(test)]
mod routing_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use client::{TcpAdminClient, TcpAdminFactory};
pub use error::KafkaError;

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A topic as the cluster's metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// The topic id (a UUID), when the broker reports one.
    pub topic_id: Option<String>,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// Replicas per partition (the smallest over partitions); `None` without partitions.
    pub fn replication_factor(&self) -> Option<i32> {
        self.partitions
            .iter()
            .map(|p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX))
            .min()
    }
}

/// One partition in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Broker id of the leader (`-1` when none).
    pub leader: i32,
    /// Broker ids of the replicas.
    pub replicas: Vec<i32>,
}

/// The cluster as a broker describes it (DescribeCluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The active controller; `None` when the broker names none (`-1`).
    pub controller_id: Option<i32>,
    /// The registered brokers the answer lists, by id. Brokers answering DescribeCluster
    /// below version 2 list only live ones; from version 2 fenced ones are listed too.
    pub brokers: Vec<ClusterBroker>,
}

/// One registered broker of a [`ClusterDescription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterBroker {
    /// The broker (node) id.
    pub id: i32,
    /// Fenced: registered, but its session lapsed or it shut down; clients are not sent
    /// to it.
    pub fenced: bool,
    /// The broker's rack (`broker.rack`), when it has one.
    pub rack: Option<String>,
}

/// A partition reassignment in flight (ListPartitionReassignments, KIP-455).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reassignment {
    /// Every replica while the move runs: the union of the old and the target set.
    pub replicas: Vec<i32>,
    /// Replicas being added (catching up).
    pub adding: Vec<i32>,
    /// Replicas to be removed once the target set is in sync.
    pub removing: Vec<i32>,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition; the broker's default when `None`.
    pub replication_factor: Option<i16>,
    /// Topic configs by Kafka's names.
    pub config: BTreeMap<String, String>,
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself (`DYNAMIC_TOPIC_CONFIG`): an override.
    Topic,
    /// The broker's default.
    Default,
    /// Any other source (broker-level settings), by Kafka's number.
    Other(i8),
}

impl ConfigSource {
    /// From Kafka's `config_source` number.
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => Self::Topic,
            5 => Self::Default,
            other => Self::Other(other),
        }
    }
}

/// One config of a topic as the broker describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The value (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// Where it comes from.
    pub source: ConfigSource,
}

/// One change of IncrementalAlterConfigs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlterConfigOp {
    /// Set `name` to `value` on the topic.
    Set {
        /// Config name.
        name: String,
        /// New value.
        value: String,
    },
    /// Remove the topic's override of `name` (back to the default).
    Delete {
        /// Config name.
        name: String,
    },
}

/// Which offset `ListOffsets` looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch
    /// (`-1` from the broker when there is none).
    Timestamp(i64),
}

impl OffsetSpec {
    /// The `timestamp` field Kafka expects for this spec.
    pub fn wire_timestamp(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::Timestamp(ms) => ms,
        }
    }
}

/// A consumer group as the coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Dead`.
    pub state: String,
    /// The members.
    pub members: Vec<GroupMemberDescription>,
}

impl GroupDescription {
    /// Whether offsets may be changed from outside: no member could overwrite them.
    pub fn is_inactive(&self) -> bool {
        self.members.is_empty() && (self.state == "Empty" || self.state == "Dead")
    }
}

/// One member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host.
    pub client_host: String,
}

/// The admin operations the controllers need, on one cluster.
///
/// Implementations must be cheap to call repeatedly within one reconcile; each method
/// is one Kafka request, or a bounded few when it is routed (lookups and retries), and
/// fails with the broker's error code kept.
#[async_trait::async_trait]
pub trait KafkaAdmin: Send + Sync {
    /// Metadata of `topics` (every topic when `None`); topics that do not exist are
    /// left out rather than reported as errors.
    async fn metadata(&self, topics: Option<&[String]>) -> Result<Vec<TopicMetadata>, KafkaError>;

    /// The cluster id, the active controller and the registered brokers.
    async fn describe_cluster(&self) -> Result<ClusterDescription, KafkaError>;

    /// Creates a topic; returns its topic id when the broker reports it.
    async fn create_topic(&self, topic: &NewTopic) -> Result<Option<String>, KafkaError>;

    /// Grows `topic` to `total` partitions.
    async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), KafkaError>;

    /// Every config of `topic`, by name.
    async fn describe_topic_config(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<String, ConfigEntry>, KafkaError>;

    /// Applies `ops` to `topic` with IncrementalAlterConfigs.
    async fn alter_topic_config(
        &self,
        topic: &str,
        ops: &[AlterConfigOp],
    ) -> Result<(), KafkaError>;

    /// Deletes `topic`.
    async fn delete_topic(&self, topic: &str) -> Result<(), KafkaError>;

    /// The offset `spec` names for each partition (`-1` when a timestamp finds none),
    /// asked of each partition's leader. Every partition is answered or the call fails:
    /// a partition that does not exist, or has no live leader (offline), is an error.
    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError>;

    /// State and members of `group`, as its coordinator reports them.
    async fn describe_group(&self, group: &str) -> Result<GroupDescription, KafkaError>;

    /// Committed offsets of `group`, every partition it has one for.
    async fn fetch_offsets(&self, group: &str)
        -> Result<BTreeMap<TopicPartition, i64>, KafkaError>;

    /// Commits `offsets` for `group` as a standalone (memberless) commit: generation
    /// `-1`, empty member id. The coordinator accepts it only while the group is empty.
    async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaError>;

    /// Starts moving each partition of `targets` to its replica list (the first is the
    /// preferred leader), or cancels its move (`None`), with AlterPartitionReassignments.
    /// The partitions the broker refused come back with their errors.
    async fn alter_partition_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> Result<Refusals, KafkaError>;

    /// Every partition reassignment in flight (ListPartitionReassignments).
    async fn list_partition_reassignments(
        &self,
    ) -> Result<BTreeMap<TopicPartition, Reassignment>, KafkaError>;

    /// The size in bytes of every partition replica the bootstrap broker itself holds
    /// (DescribeLogDirs answers for the broker asked only; ask each broker).
    async fn describe_log_dirs(&self) -> Result<BTreeMap<TopicPartition, i64>, KafkaError>;

    /// Moves the leadership of `partitions` to their preferred (first) replica
    /// (ElectLeaders, preferred). Partitions already led by it are not errors.
    async fn elect_preferred_leaders(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<(), KafkaError>;

    /// Removes broker `id`'s registration from the cluster's metadata (UnregisterBroker);
    /// refused while it is live or still holds replicas.
    async fn unregister_broker(&self, id: i32) -> Result<(), KafkaError>;
}

/// Per-partition refusals of an AlterPartitionReassignments call: the partitions the
/// broker did not accept, each with its error (the others were accepted).
pub type Refusals = Vec<(TopicPartition, KafkaError)>;

/// Makes [`KafkaAdmin`]s for a bootstrap address (`host:port[,host:port...]`).
#[async_trait::async_trait]
pub trait AdminFactory: Send + Sync {
    /// Connects to the cluster at `bootstrap`.
    async fn connect(&self, bootstrap: &str) -> Result<Arc<dyn KafkaAdmin>, KafkaError>;
}
