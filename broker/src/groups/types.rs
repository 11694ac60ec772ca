//! The values exchanged with a group's state machine: its state, members, and the
//! requests and results of JoinGroup and SyncGroup.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

/// A group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// The name Kafka reports in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Kafka error code.
    pub error: i16,
    /// The generation joined.
    pub generation: i32,
    /// The chosen protocol (assignor).
    pub protocol_name: Option<String>,
    /// The group's protocol type (e.g. "consumer").
    pub protocol_type: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader should keep the current assignment rather than compute one (KIP-814).
    pub skip_assignment: bool,
}

/// What a SyncGroup gets back: an error code and this member's assignment.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Kafka error code.
    pub error: i16,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// A JoinGroup as the state machine sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id; empty for a new member.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The client's id and host, for DescribeGroups.
    pub client_id: String,
    /// Host the client connects from.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocol type, e.g. "consumer".
    pub protocol_type: String,
    /// Protocols (assignors) by preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether the client requires KIP-394 member ids (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// A group member.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    /// Protocols by preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the last completed rebalance.
    pub assignment: Bytes,
    pub(super) last_heartbeat: Instant,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// The metadata this member sent for `protocol` (empty if it does not support it).
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// Either an immediate answer or a channel the answer will arrive on.
pub enum Pending<T> {
    /// Answered now.
    Ready(T),
    /// Answered when the rebalance step completes.
    Wait(oneshot::Receiver<T>),
}
