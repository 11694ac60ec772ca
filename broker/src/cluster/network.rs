//! openraft's RPCs to other voters over tonic: each message is openraft's own serde type
//! as JSON in a `runnel.quorum.v1.Message`; the answer is the JSON of the peer's
//! `Result<response, RaftError>`.

use std::future::Future;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::proto::quorum_client::QuorumClient;
use super::proto::Message;
use super::{NodeId, TypeConfig};

/// Largest quorum message either side accepts (a batch of log entries or a snapshot
/// chunk; openraft sends snapshots in chunks of a few MiB).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on every peer connection, and how long one may go unanswered before the
/// connection is dropped and made anew: a peer cut off silently (packets lost, no reset)
/// would otherwise keep a dead connection until TCP's backed-off retransmissions give up.
const KEEPALIVE: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(1));

/// A client of `addr`'s quorum service. Connects on first use and reconnects after a
/// failure by itself.
pub fn client(addr: &str) -> Result<QuorumClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE.0)
        .keep_alive_timeout(KEEPALIVE.1)
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(QuorumClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// Encodes an openraft value as a quorum message.
pub fn encode<T: Serialize>(value: &T) -> Result<Message, serde_json::Error> {
    Ok(Message {
        json: serde_json::to_vec(value)?,
    })
}

/// Decodes a quorum message into an openraft value.
pub fn decode<T: DeserializeOwned>(message: &Message) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&message.json)
}

/// Makes connections to the voters openraft replicates to.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            client: client(&node.addr).map_err(|e| e.to_string()),
        }
    }
}

/// The connection to one peer.
pub struct Peer {
    target: NodeId,
    /// The client, or why the peer's address cannot be used.
    client: Result<QuorumClient<Channel>, String>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<Req, Resp, E, F, Fut>(
        &self,
        req: &Req,
        ttl: Duration,
        send: F,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(QuorumClient<Channel>, tonic::Request<Message>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Message>, tonic::Status>>,
    {
        let client = self
            .client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&AnyText(e))))?;
        let message = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(ttl);
        let response = send(client, request).await.map_err(|status| {
            // A peer that cannot be reached (or refuses, e.g. a voter rejoining after a
            // lost volume) is backed off; anything else is retried at once.
            match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                    RPCError::Unreachable(Unreachable::new(&status))
                }
                _ => RPCError::Network(NetworkError::new(&status)),
            }
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(response.get_ref()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A plain message as an error (openraft's error constructors take an `Error`).
#[derive(Debug)]
struct AnyText(String);

impl std::fmt::Display for AnyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AnyText {}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.install_snapshot(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }
}
