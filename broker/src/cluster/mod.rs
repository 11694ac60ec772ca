//! The cluster: a metadata quorum that every broker of a cluster shares.
//!
//! | module          | what it holds                                                  |
//! |-----------------|----------------------------------------------------------------|
//! | `identity`      | `meta.properties`: the cluster and node a data directory belongs to |
//! | `placement`     | where new partitions' replicas go (round-robin, rack-aware)    |
//! | `voters`        | `controller.quorum.voters` (`0@host:port,...`)                |
//! | `log_store`     | the Raft log and vote on disk (openraft's `RaftLogStorage`)    |
//! | `state_machine` | the [`MetadataImage`] the log builds, and its snapshots        |
//! | `membership`    | broker heartbeats; the leader fences brokers that miss their session |
//! | `network`       | openraft's RPCs to other voters, over tonic                   |
//! | `service`       | the `runnel.quorum.v1.Quorum` gRPC service on the controller listener |
//! | `quorum`        | starting a voter: forming the cluster, rejoining after a lost volume, writes |
//! | `alter_partition` | a leader's ISR change (KIP-497), committed as an `AlterPartition` record |
//! | `leader_balance` | the leader moves leadership back to preferred replicas (`auto.leader.rebalance.enable`) |
//!
//! The Raft engine is openraft; the records it replicates are the [`MetadataRecord`]s
//! that a single broker used to append to its local metadata log.

// openraft's storage and RPC traits fix their error types (`StorageError` is over 200
// bytes); the helpers that feed them return the same types.
#![allow(clippy::result_large_err)]

pub mod alter_partition;
pub mod identity;
pub mod leader_balance;
mod log_store;
pub mod membership;
mod network;
pub mod placement;
mod quorum;
mod service;
mod state_machine;
mod voters;

#[cfg(test)]
mod tests;

/// Types generated from `proto/runnel/quorum/v1/quorum.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("runnel.quorum.v1");
}

pub use alter_partition::{alter_partition, AlterPartitionError};
pub use identity::IdentityError;
pub use leader_balance::LeaderBalance;
pub use membership::Sessions;
pub use quorum::{Quorum, QuorumConfig, QuorumError, QuorumStatus};
pub use voters::{parse_voters, VotersError};

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataImage, MetadataRecord};

/// A broker's node id as Raft knows it (`node.id`, which is ≥ 0).
pub type NodeId = u64;

/// One entry of the metadata log: records applied together, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The records, applied in order.
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata record(s)", self.records.len())
    }
}

/// What applying a [`Command`] gives back to the writer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Index of the log entry that held the command.
    pub index: u64,
}

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The Raft instance of the metadata quorum.
pub type Raft = openraft::Raft<TypeConfig>;

/// The state every voter's snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotState {
    /// The metadata at the snapshot's last log id.
    pub image: MetadataImage,
}
