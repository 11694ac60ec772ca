//! Starting a broker's part of the metadata quorum and writing to it.
//!
//! Every voter, once it is part of the quorum with its storage, writes a `QuorumMember`
//! record. A voter that starts with empty Raft storage cannot tell on its own whether the
//! cluster is new or it lost its volume, so it does not vote until it knows, and asks a
//! majority of the voters (`Probe`):
//! - one of them has applied its `QuorumMember` record: it lost its volume. Voting now
//!   could elect a leader that lacks entries it once acknowledged, so it asks the leader
//!   to `Join`: the leader makes it a learner, catches it up, and makes it a voter again;
//!   it votes from then on;
//! - otherwise (a new cluster, or one formed moments ago without it) it initializes Raft
//!   with every voter, as each voter may (the configuration is the same everywhere, which
//!   openraft allows), votes from then on, and writes its `QuorumMember` record once a
//!   leader is known. (A voter that acknowledged entries and lost its volume before its
//!   record was committed is not recognised: a window of one write after its first start.)
//!
//! A broker that is not a voter joins as a learner and follows the log. A broker whose
//! storage is not empty simply resumes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::log_store::LogStore;
use super::membership::{self, Liveness, Sessions};
use super::network::{self, decode, encode, Network, MAX_MESSAGE};
use super::proto::quorum_server::QuorumServer;
use super::proto::{JoinRequest, ProbeRequest};
use super::service::QuorumService;
use super::state_machine::StateMachine;
use super::{Applied, Command, NodeId, Raft};
use crate::metadata::{MetadataImage, MetadataRecord};

/// How a broker takes part in the metadata quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This broker's node id.
    pub node_id: NodeId,
    /// Where the quorum's gRPC service listens.
    pub listen: SocketAddr,
    /// The address other brokers reach this one's quorum service at (for a voter, its
    /// entry in `voters`).
    pub advertised: String,
    /// The voters and their controller addresses.
    pub voters: BTreeMap<NodeId, String>,
    /// Where the Raft log, vote and snapshot live.
    pub dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Followers start an election after a random time in `[election, 2 × election)`
    /// without a heartbeat.
    pub election: Duration,
    /// A snapshot is taken (and the log before it dropped) every this many entries.
    pub snapshot_every: u64,
    /// How long a write may wait for a majority before it fails.
    pub write_timeout: Duration,
    /// Broker heartbeats and sessions.
    pub sessions: Sessions,
    /// Automatic preferred-leader balancing; `None` when `auto.leader.rebalance.enable`
    /// is off.
    pub leader_balance: Option<super::LeaderBalance>,
}

impl QuorumConfig {
    /// A configuration with the timings used in production.
    pub fn new(
        node_id: NodeId,
        listen: SocketAddr,
        advertised: String,
        voters: BTreeMap<NodeId, String>,
        dir: PathBuf,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            listen,
            advertised,
            voters,
            dir,
            heartbeat: Duration::from_millis(100),
            election: Duration::from_millis(500),
            snapshot_every: 1000,
            write_timeout: Duration::from_secs(10),
            sessions: Sessions {
                heartbeat: Duration::from_secs(2),
                timeout: Duration::from_secs(9),
            },
            leader_balance: None,
        }
    }

    fn is_voter(&self) -> bool {
        self.voters.contains_key(&self.node_id)
    }
}

/// Why the quorum could not start or a write failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The Raft storage could not be opened.
    #[error("metadata quorum storage in {path}: {source}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The controller listener could not be bound.
    #[error("cannot listen for the metadata quorum on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Raft engine refused to start (bad timings).
    #[error("metadata quorum: {0}")]
    Raft(String),
    /// No leader is known (no majority, or an election is under way).
    #[error("the metadata quorum has no leader")]
    NoLeader,
    /// The write was not committed in time (no majority of voters answered).
    #[error(
        "the metadata change was not committed within {0:?}: a majority of the voters may be down"
    )]
    Timeout(Duration),
    /// The leader could not be reached or refused the write.
    #[error("the metadata change failed: {0}")]
    Write(String),
    /// The quorum is shutting down.
    #[error("the metadata quorum is shutting down")]
    ShuttingDown,
}

/// A snapshot of this broker's view of the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// The leader (the active controller), if one is known.
    pub leader: Option<NodeId>,
    /// The current voters.
    pub voters: BTreeSet<NodeId>,
    /// Brokers that follow the log without voting.
    pub learners: BTreeSet<NodeId>,
    /// The Raft term.
    pub term: u64,
    /// Index of the last entry applied here.
    pub applied: Option<u64>,
    /// Whether this broker is waiting to be brought back after losing its storage.
    pub rejoining: bool,
    /// Log index of the membership in effect (it grows with every membership change).
    pub membership_index: Option<u64>,
}

/// This broker's member of the metadata quorum.
pub struct Quorum {
    /// Stops the heartbeats; a child of `shutdown`.
    heartbeats: CancellationToken,
    raft: Raft,
    config: QuorumConfig,
    image: watch::Receiver<Arc<MetadataImage>>,
    pub(super) rejoining: Arc<AtomicBool>,
    shutdown: CancellationToken,
    tasks: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl Quorum {
    /// Opens the storage, serves the quorum service on `config.listen` and starts forming
    /// or rejoining the cluster in the background.
    pub async fn start(config: QuorumConfig) -> Result<Quorum, QuorumError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| QuorumError::Listen {
                addr: config.listen,
                source,
            })?;
        Quorum::start_on(config, listener).await
    }

    /// [`Quorum::start`] on a listener bound already (`config.listen` is not used).
    pub async fn start_on(
        config: QuorumConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<Quorum, QuorumError> {
        let storage = |source| QuorumError::Storage {
            path: config.dir.clone(),
            source,
        };
        let log_store = LogStore::open(&config.dir).map_err(storage)?;
        let pristine = log_store.is_pristine();
        let (publish, image) = watch::channel(Arc::new(MetadataImage::default()));
        let state_machine = StateMachine::open(&config.dir, publish).map_err(storage)?;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let raft_config = openraft::Config {
            cluster_name: "runnel".to_string(),
            heartbeat_interval: millis(config.heartbeat),
            election_timeout_min: millis(config.election),
            election_timeout_max: millis(config.election) * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;

        let liveness = Arc::new(Liveness::default());
        // A voter with empty storage does not vote until it knows it may (module docs).
        let rejoining = Arc::new(AtomicBool::new(pristine && config.is_voter()));
        let service = QuorumService {
            raft: raft.clone(),
            node_id: config.node_id,
            rejoining: Arc::clone(&rejoining),
            joins: tokio::sync::Mutex::new(()),
            image: image.clone(),
            liveness: Arc::clone(&liveness),
        };
        let shutdown = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let server = tonic::transport::Server::builder()
            .add_service(
                QuorumServer::new(service)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown.clone().cancelled_owned(),
            );
        tasks.spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the metadata quorum service stopped");
            }
        });
        {
            let (raft, config, rejoining, shutdown, image) = (
                raft.clone(),
                config.clone(),
                Arc::clone(&rejoining),
                shutdown.clone(),
                image.clone(),
            );
            tasks.spawn(async move {
                tokio::select! {
                    () = async {
                        if pristine {
                            form_or_join(&raft, &config, &rejoining).await;
                        }
                        if config.is_voter() {
                            register(&raft, &config, image).await;
                        }
                    } => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        if config.is_voter() {
            let fencing = membership::fence(
                raft.clone(),
                config.clone(),
                image.clone(),
                Arc::clone(&liveness),
                config.sessions,
            );
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = fencing => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        if let (true, Some(balance)) = (config.is_voter(), config.leader_balance) {
            let balancing =
                super::leader_balance::run(raft.clone(), config.clone(), image.clone(), balance);
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = balancing => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        Ok(Quorum {
            heartbeats: shutdown.child_token(),
            raft,
            config,
            image,
            rejoining,
            shutdown,
            tasks: tokio::sync::Mutex::new(tasks),
        })
    }

    /// Starts heartbeating for broker `node_id` (the run registered as `incarnation`) to
    /// the leader, until the quorum shuts down.
    pub async fn start_heartbeats(&self, node_id: i32, incarnation: uuid::Uuid) {
        let beat = membership::heartbeat(
            self.raft.clone(),
            self.config.voters.clone(),
            node_id,
            incarnation,
            self.config.sessions.heartbeat,
        );
        let stop = self.heartbeats.clone();
        self.tasks.lock().await.spawn(async move {
            tokio::select! {
                () = beat => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Stops this broker's heartbeats: a broker stopping fences itself, and a heartbeat
    /// after that would have the leader unfence it again.
    pub fn stop_heartbeats(&self) {
        self.heartbeats.cancel();
    }

    /// The metadata image, updated on every apply.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// Commits `records` through the leader and waits until this broker has applied them.
    pub async fn write(&self, records: Vec<MetadataRecord>) -> Result<Applied, QuorumError> {
        write(&self.raft, &self.config, records).await
    }

    /// This broker's view of the quorum.
    pub fn status(&self) -> QuorumStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains(id))
            .collect();
        QuorumStatus {
            leader: metrics.current_leader,
            voters,
            learners,
            term: metrics.current_term,
            applied: metrics.last_applied.map(|l| l.index),
            rejoining: self.rejoining.load(Ordering::Acquire),
            membership_index: metrics.membership_config.log_id().map(|l| l.index),
        }
    }

    /// Whether this broker is the leader (the active controller).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Waits until a leader is known, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, QuorumError> {
        let mut metrics = self.raft.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(leader) = metrics.borrow_and_update().current_leader {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(QuorumError::ShuttingDown);
                }
            }
        })
        .await;
        found.map_err(|_| QuorumError::NoLeader)?
    }

    /// Test aid: this member never starts an election from now on.
    #[cfg(test)]
    pub(super) fn hold_elections(&self) {
        self.raft.runtime_config().elect(false);
    }

    /// Stops the service and the Raft engine. A leader first tells the followers what it
    /// committed last: they learn a commit from the leader's next message, and after the
    /// leader stopped only from the next leader, an election later. Its own fence, written
    /// as the broker stops, is such a commit; until the others apply it, they keep
    /// offering the stopped broker to clients.
    pub async fn shutdown(&self) {
        if self.raft.metrics().borrow().current_leader == Some(self.config.node_id) {
            // A majority acknowledges a heartbeat that carries the commit index; no longer
            // than a follower would wait before it starts an election anyway.
            let handover =
                tokio::time::timeout(self.config.election, self.raft.ensure_linearizable());
            match handover.await {
                Ok(Ok(_)) => tracing::debug!("the followers know this leader's last commit"),
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "could not hand the last commit to the followers")
                }
                Err(_) => tracing::info!("handing the last commit to the followers timed out"),
            }
        }
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "the metadata quorum did not stop cleanly");
        }
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }
}

/// What a broker with empty storage learns from the voters.
struct Survey {
    /// Voters that answered, this broker included when it is a voter.
    answered: usize,
    /// Of those, the ones with no membership yet.
    empty: usize,
    /// Voters known (by any that answered) to have taken part with their storage.
    members: BTreeSet<NodeId>,
    /// A leader one of them knows.
    leader: Option<NodeId>,
}

async fn survey(config: &QuorumConfig) -> Survey {
    let me = usize::from(config.is_voter());
    let mut survey = Survey {
        answered: me,
        empty: me,
        members: BTreeSet::new(),
        leader: None,
    };
    for (&id, addr) in &config.voters {
        if id == config.node_id {
            continue;
        }
        let Ok(mut client) = network::client(addr) else {
            continue;
        };
        let mut request = tonic::Request::new(ProbeRequest {});
        request.set_timeout(Duration::from_secs(1));
        match client.probe(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                survey.answered += 1;
                survey.empty += usize::from(!answer.formed);
                survey.members.extend(answer.members);
                // Peers may still name this broker as leader from before it went down.
                let leader = answer.leader_id.filter(|&l| l != config.node_id);
                survey.leader = survey.leader.or(leader);
            }
            Err(status) => {
                tracing::debug!(peer = id, %addr, error = %status, "voter did not answer the probe")
            }
        }
    }
    survey
}

/// Forms the cluster, or joins it, retrying until one succeeds (module docs).
async fn form_or_join(raft: &Raft, config: &QuorumConfig, rejoining: &AtomicBool) {
    let majority = config.voters.len() / 2 + 1;
    let mut announced = false;
    loop {
        let survey = survey(config).await;
        let lost_volume = survey.members.contains(&config.node_id);
        if lost_volume || !config.is_voter() {
            if lost_volume && !announced {
                tracing::warn!(
                    node_id = config.node_id,
                    "this voter's metadata log is empty but it has taken part in the quorum: its \
                     volume was lost; rejoining as a learner first, and not voting until caught up"
                );
                announced = true;
            }
            if let Some(leader) = survey.leader {
                match join(config, leader).await {
                    Ok(()) => {
                        rejoining.store(false, Ordering::Release);
                        tracing::info!(
                            node_id = config.node_id,
                            leader,
                            "joined the metadata quorum"
                        );
                        return;
                    }
                    Err(status) => {
                        tracing::info!(leader, error = %status.message(), "join refused; asking again")
                    }
                }
            }
        } else if survey.answered >= majority {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(&id, addr)| (id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    voters = ?config.voters.keys().collect::<Vec<_>>(),
                    already_formed = survey.empty < survey.answered,
                    "initialized the metadata quorum"
                ),
                Err(e) => tracing::debug!(error = %e, "quorum already initialized"),
            }
            rejoining.store(false, Ordering::Release);
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Writes this voter's `QuorumMember` record once, when it is not in the image yet.
async fn register(
    raft: &Raft,
    config: &QuorumConfig,
    mut image: watch::Receiver<Arc<MetadataImage>>,
) {
    loop {
        if image
            .borrow_and_update()
            .quorum_members
            .contains(&config.node_id)
        {
            return;
        }
        let record = MetadataRecord::QuorumMember {
            node_id: config.node_id,
        };
        match write(raft, config, vec![record]).await {
            Ok(_) => return,
            Err(QuorumError::ShuttingDown) => return,
            Err(e) => {
                tracing::debug!(error = %e, "could not record this voter as a quorum member yet")
            }
        }
    }
}

async fn join(config: &QuorumConfig, leader: NodeId) -> Result<(), tonic::Status> {
    let addr = config
        .voters
        .get(&leader)
        .ok_or_else(|| tonic::Status::not_found(format!("leader {leader} is not a known voter")))?;
    let mut client =
        network::client(addr).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client
        .join(JoinRequest {
            node_id: config.node_id,
            addr: config.advertised.clone(),
            voter: config.is_voter(),
        })
        .await
        .map(|_| ())
}

/// Commits `records` through the leader (retrying while there is none, up to the write
/// timeout) and waits until this broker has applied them.
pub(super) async fn write(
    raft: &Raft,
    config: &QuorumConfig,
    records: Vec<MetadataRecord>,
) -> Result<Applied, QuorumError> {
    let timeout = config.write_timeout;
    let command = Command { records };
    // During an election there is no leader for a moment: try again until the deadline.
    let attempts = async {
        loop {
            match write_through_leader(raft, command.clone()).await {
                Err(QuorumError::NoLeader | QuorumError::Write(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    };
    let applied = tokio::time::timeout(timeout, attempts)
        .await
        .map_err(|_| QuorumError::Timeout(timeout))??;
    // Read your writes: what a client changed through this broker is visible here.
    raft.wait(Some(timeout))
        .applied_index_at_least(Some(applied.index), "metadata write applied")
        .await
        .map_err(|_| QuorumError::Timeout(timeout))?;
    Ok(applied)
}

/// Commits `records` only if this voter is the leader, never forwarding them: for decisions
/// that only the leader may take from what it alone has seen (broker liveness). A voter
/// that has been deposed without knowing it yet (paused, or cut off) appends the entry to
/// its own log at most, where no majority accepts it, and the entry is dropped.
pub(super) async fn write_as_leader(
    raft: &Raft,
    config: &QuorumConfig,
    records: Vec<MetadataRecord>,
) -> Result<Applied, QuorumError> {
    let timeout = config.write_timeout;
    let written = tokio::time::timeout(timeout, raft.client_write(Command { records }))
        .await
        .map_err(|_| QuorumError::Timeout(timeout))?;
    match written {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(QuorumError::NoLeader)
        }
        Err(RaftError::Fatal(openraft::error::Fatal::Stopped)) => Err(QuorumError::ShuttingDown),
        Err(e) => Err(QuorumError::Write(e.to_string())),
    }
}

async fn write_through_leader(raft: &Raft, command: Command) -> Result<Applied, QuorumError> {
    let leader = match raft.client_write(command.clone()).await {
        Ok(response) => return Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => forward,
        Err(RaftError::Fatal(openraft::error::Fatal::Stopped)) => {
            return Err(QuorumError::ShuttingDown)
        }
        Err(e) => return Err(QuorumError::Write(e.to_string())),
    };
    let Some(node) = leader.leader_node else {
        return Err(QuorumError::NoLeader);
    };
    let message = encode(&command).map_err(|e| QuorumError::Write(e.to_string()))?;
    let mut client = network::client(&node.addr).map_err(|e| QuorumError::Write(e.to_string()))?;
    let answer = client.write(message).await.map_err(|status| {
        QuorumError::Write(format!("leader at {}: {}", node.addr, status.message()))
    })?;
    let result: Result<
        openraft::raft::ClientWriteResponse<super::TypeConfig>,
        RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    > = decode(answer.get_ref()).map_err(|e| QuorumError::Write(e.to_string()))?;
    match result {
        Ok(response) => Ok(response.data),
        // The leader changed on the way: the caller's retry finds the new one.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(QuorumError::NoLeader)
        }
        Err(e) => Err(QuorumError::Write(e.to_string())),
    }
}
