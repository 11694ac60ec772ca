//! Cluster metadata, kept the KRaft way: every change is a [`MetadataRecord`] appended to
//! the metadata log and applied to the in-memory [`MetadataImage`]. On a single broker the
//! log is a local file; replication of the same records comes with the cluster work.

mod broker_configs;
mod image;
mod log;
mod partition_change;
mod reassignment;

/// Helpers for tests that build images.
#[cfg(test)]
pub(crate) use image::tests as test_support;

/// Producer ids reserved at a time by one broker.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub use broker_configs::{BrokerConfigSource, DynamicBrokerConfigs};
pub use image::{BrokerImage, Leadership, MetadataImage, TopicImage};
pub(crate) use log::{decode_line, encode_line};
pub use log::{MetadataLog, MetadataLogError};
pub use partition_change::AlterPartitionRejection;
pub use reassignment::{Election, Reassignment};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's identity, written once when the first broker formats its data dir.
    Cluster {
        /// `cluster.id`, as clients see it in Metadata.
        cluster_id: String,
    },
    /// A topic was created.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Topic id (Metadata v10+, Fetch v13+).
        id: Uuid,
        /// Number of partitions.
        partitions: i32,
        /// Topic-level configs that differ from the broker defaults.
        configs: BTreeMap<String, String>,
        /// Replica broker ids of each partition, the preferred leader first. Empty in
        /// logs written by a single broker before clusters existed: that broker holds
        /// every partition.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<i32>>,
    },
    /// A topic was deleted.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// A topic grew to `partitions` partitions.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// New total partition count.
        partitions: i32,
        /// Replica broker ids of each new partition (as in `CreateTopic`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<i32>>,
    },
    /// Topic configs were set (`Some`) or reset to the default (`None`).
    AlterTopicConfigs {
        /// Topic name.
        name: String,
        /// Changes by config name.
        changes: BTreeMap<String, Option<String>>,
    },
    /// A block of [`PRODUCER_ID_BLOCK`] producer ids for broker `node_id`: it starts at
    /// the image's `next_producer_id` as this record is applied, so two brokers asking at
    /// once get different blocks (the start is in `producer_id_blocks`).
    ProducerIdBlock {
        /// The broker the block is for.
        node_id: i32,
    },
    /// Producer ids below `next` are handed out (written before blocks had owners).
    ProducerIds {
        /// First producer id not yet allocated.
        next: i64,
    },
    /// A broker started and registered with the cluster (every start registers anew).
    /// Applying it gives the broker a new broker epoch, larger than any before
    /// ([`BrokerImage::epoch`]).
    RegisterBroker {
        /// `node.id`.
        node_id: i32,
        /// Host clients are told to connect to.
        host: String,
        /// Port clients are told to connect to.
        port: i32,
        /// `broker.rack`, if set.
        #[serde(default)]
        rack: Option<String>,
        /// Random per process start: tells one run of the broker from the next.
        incarnation: Uuid,
    },
    /// A broker missed its session (or is shutting down): its partitions have no leader
    /// there and clients are not sent to it.
    FenceBroker {
        /// `node.id`.
        node_id: i32,
        /// The run of the broker this applies to; a later run is not fenced by it.
        incarnation: Uuid,
    },
    /// A fenced broker is heard from again.
    UnfenceBroker {
        /// `node.id`.
        node_id: i32,
        /// The run of the broker this applies to.
        incarnation: Uuid,
    },
    /// A voter of the metadata quorum has taken part in it with its storage. A voter
    /// that later starts with empty storage while this record exists lost its volume,
    /// and is caught up as a learner before it votes again.
    QuorumMember {
        /// The voter's node id.
        node_id: u64,
    },
    /// A partition's leader proposes a new ISR (Kafka's AlterPartition, KIP-497). Applied
    /// only if `leader`, `leader_epoch` and `partition_epoch` are the partition's current
    /// ones and every member is an eligible replica (see
    /// [`MetadataImage::check_alter_partition`]); then the ISR becomes `isr` (kept in
    /// replica order) and the partition epoch rises by one. Otherwise nothing changes:
    /// every broker applies the same records to the same image, so a rejected proposal
    /// is simply one that left the image as it was.
    AlterPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The proposing leader's broker id.
        leader: i32,
        /// The leader epoch the leader proposes in.
        leader_epoch: i32,
        /// The partition epoch the proposal is based on.
        partition_epoch: i32,
        /// The proposed in-sync replicas, each with the broker epoch the leader knows it by.
        isr: Vec<IsrMember>,
    },
    /// The replicas of a partition start moving to `target` (KIP-455), replacing a move
    /// in flight; `None` cancels the one in flight. See `reassignment.rs`.
    ReassignPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The new replicas, preferred leader first; `None` to cancel.
        target: Option<Vec<i32>>,
    },
    /// An election of a partition's leader on request (ElectLeaders, KIP-460).
    ElectLeader {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Preferred or unclean.
        election: Election,
    },
    /// Dynamic broker configs were set (`Some`) or removed (`None`), for one broker
    /// (`node_id`) or as the cluster-wide default (`None`); see `broker_configs.rs`.
    AlterBrokerConfigs {
        /// The broker, or `None` for the default of every broker.
        node_id: Option<i32>,
        /// Changes by config name.
        changes: BTreeMap<String, Option<String>>,
    },
    /// A fenced broker leaves the cluster's metadata (UnregisterBroker, KIP-631); a live
    /// one is not removed.
    UnregisterBroker {
        /// `node.id`.
        node_id: i32,
    },
}

/// One member of a proposed ISR: a replica and the broker epoch of the run of that
/// broker the leader saw in sync (KIP-903), so a broker that restarted since (and may
/// have lost unflushed data) cannot enter or stay in the ISR on an old run's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrMember {
    /// The replica's broker id.
    pub node_id: i32,
    /// Its broker epoch ([`BrokerImage::epoch`]).
    pub broker_epoch: i64,
}
