//! The `runnel.quorum.v1.Quorum` gRPC service that a voter serves on its controller
//! listener: openraft's RPCs from the leader, writes forwarded by other brokers, and the
//! probe and join calls that starting brokers make.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::BasicNode;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::network::{decode, encode};
use super::proto::quorum_server::Quorum as QuorumRpc;
use super::proto::{
    HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, Message, ProbeRequest,
    ProbeResponse,
};
use super::{Command, NodeId, Raft, TypeConfig};

/// The service of one broker.
pub struct QuorumService {
    pub(super) raft: Raft,
    pub(super) node_id: NodeId,
    /// Set while this voter rejoins after losing its storage: it must not vote until
    /// the leader has caught it up, or it could elect a leader that lacks entries it
    /// once acknowledged.
    pub(super) rejoining: Arc<AtomicBool>,
    /// Serializes the membership changes that joins make.
    pub(super) joins: tokio::sync::Mutex<()>,
    /// The applied metadata (for the voters that have taken part).
    pub(super) image: tokio::sync::watch::Receiver<Arc<crate::metadata::MetadataImage>>,
    /// Heartbeats received, for fencing (used while this broker leads).
    pub(super) liveness: Arc<super::membership::Liveness>,
}

fn bad_message(e: serde_json::Error) -> Status {
    Status::invalid_argument(format!("undecodable quorum message: {e}"))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Message>, Status> {
    encode(value)
        .map(Response::new)
        .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))
}

impl QuorumService {
    /// Adds `node_id` as a learner and, for a voter, makes it a voter again once it has
    /// caught up. Only the leader does this.
    async fn join(&self, node_id: NodeId, addr: String, voter: bool) -> Result<(), Status> {
        let _one_at_a_time = self.joins.lock().await;
        let refuse =
            |e: &dyn std::fmt::Display| Status::unavailable(format!("join of node {node_id}: {e}"));
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|e| refuse(&e))?;
        let voters = |raft: &Raft| -> BTreeSet<NodeId> {
            raft.metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect()
        };
        let current = voters(&self.raft);
        if voter && current.contains(&node_id) {
            // Its old log is gone: it stops counting as a voter before it is caught up.
            let without: BTreeSet<NodeId> =
                current.iter().copied().filter(|&v| v != node_id).collect();
            self.raft
                .change_membership(without, true)
                .await
                .map_err(|e| refuse(&e))?;
        }
        tracing::info!(node_id, %addr, voter, "adding a broker to the metadata quorum as a learner");
        self.raft
            .add_learner(node_id, BasicNode { addr }, true)
            .await
            .map_err(|e| refuse(&e))?;
        if voter {
            let mut with = voters(&self.raft);
            with.insert(node_id);
            self.raft
                .change_membership(with, false)
                .await
                .map_err(|e| refuse(&e))?;
            tracing::info!(node_id, "broker is a voter of the metadata quorum again");
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl QuorumRpc for QuorumService {
    async fn append_entries(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_message)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        if self.rejoining.load(Ordering::Acquire) {
            return Err(Status::unavailable(format!(
                "node {} lost its metadata log and does not vote until it has caught up",
                self.node_id
            )));
        }
        let rpc: VoteRequest<NodeId> = decode(request.get_ref()).map_err(bad_message)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Message>,
    ) -> Result<Response<Message>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_message)?;
        let result: Result<_, RaftError<NodeId, InstallSnapshotError>> =
            self.raft.install_snapshot(rpc).await;
        reply(&result)
    }

    async fn write(&self, request: Request<Message>) -> Result<Response<Message>, Status> {
        let command: Command = decode(request.get_ref()).map_err(bad_message)?;
        let result: Result<_, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> =
            self.raft.client_write(command).await;
        reply(&result)
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let metrics = self.raft.metrics().borrow().clone();
        let formed = metrics
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some();
        let members = self.image.borrow().quorum_members.iter().copied().collect();
        Ok(Response::new(ProbeResponse {
            node_id: self.node_id,
            formed,
            leader_id: metrics.current_leader,
            members,
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let JoinRequest {
            node_id,
            addr,
            voter,
        } = request.into_inner();
        QuorumService::join(self, node_id, addr, voter).await?;
        Ok(Response::new(JoinResponse {}))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let HeartbeatRequest {
            node_id,
            incarnation,
        } = request.into_inner();
        let incarnation = uuid::Uuid::parse_str(&incarnation)
            .map_err(|e| Status::invalid_argument(format!("incarnation: {e}")))?;
        if self.raft.metrics().borrow().current_leader != Some(self.node_id) {
            return Err(Status::failed_precondition(
                "not the leader of the metadata quorum",
            ));
        }
        self.liveness.heard(node_id, incarnation);
        Ok(Response::new(HeartbeatResponse {}))
    }
}
