//! Three voters in one process, each with its own storage and gRPC listener on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::network::{self, decode, encode};
use super::*;
use crate::metadata::MetadataRecord;

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    addr: SocketAddr,
    dir: PathBuf,
    quorum: Option<Quorum>,
}

struct Cluster {
    _root: tempfile::TempDir,
    voters: BTreeMap<NodeId, String>,
    nodes: Vec<Node>,
    snapshot_every: u64,
}

impl Cluster {
    async fn start(n: u64, snapshot_every: u64) -> anyhow::Result<Cluster> {
        Cluster::start_some(n, n, snapshot_every).await
    }

    /// `n` voters of which the first `running` are started.
    async fn start_some(n: u64, running: u64, snapshot_every: u64) -> anyhow::Result<Cluster> {
        let root = tempfile::tempdir()?;
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
        }
        let mut voters = BTreeMap::new();
        let mut nodes = Vec::new();
        for (id, listener) in (0..n).zip(&listeners) {
            let addr = listener.local_addr()?;
            voters.insert(id, addr.to_string());
            nodes.push(Node {
                addr,
                dir: root.path().join(format!("node-{id}")),
                quorum: None,
            });
        }
        let mut cluster = Cluster {
            _root: root,
            voters,
            nodes,
            snapshot_every,
        };
        for (id, listener) in (0..running).zip(listeners) {
            cluster.start_node_on(id, listener).await?;
        }
        Ok(cluster)
    }

    fn config(&self, id: NodeId) -> QuorumConfig {
        let node = &self.nodes[id as usize];
        let mut config = QuorumConfig::new(
            id,
            node.addr,
            node.addr.to_string(),
            self.voters.clone(),
            node.dir.clone(),
        );
        config.heartbeat = Duration::from_millis(50);
        config.election = Duration::from_millis(300);
        config.snapshot_every = self.snapshot_every;
        config.write_timeout = Duration::from_secs(5);
        config
    }

    async fn start_node_on(
        &mut self,
        id: NodeId,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        let quorum = Quorum::start_on(self.config(id), listener).await?;
        self.nodes[id as usize].quorum = Some(quorum);
        Ok(())
    }

    async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.nodes[id as usize].addr).await?;
        self.start_node_on(id, listener).await
    }

    async fn stop(&mut self, id: NodeId) {
        if let Some(quorum) = self.nodes[id as usize].quorum.take() {
            quorum.shutdown().await;
        }
    }

    fn quorum(&self, id: NodeId) -> anyhow::Result<&Quorum> {
        self.nodes[id as usize]
            .quorum
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("node {id} is stopped"))
    }

    fn running(&self) -> impl Iterator<Item = &Quorum> {
        self.nodes.iter().filter_map(|n| n.quorum.as_ref())
    }

    /// The leader every running node agrees on, which must be running itself.
    async fn agreed_leader(&self) -> anyhow::Result<NodeId> {
        wait_until("one running leader agreed by every running node", || {
            let leaders: Vec<_> = self.running().map(|q| q.status().leader).collect();
            match leaders.first() {
                Some(Some(l))
                    if leaders.iter().all(|x| *x == Some(*l))
                        && self.nodes[*l as usize].quorum.is_some() =>
                {
                    Some(*l)
                }
                _ => None,
            }
        })
        .await
    }

    async fn shutdown(mut self) {
        for id in 0..self.nodes.len() as u64 {
            self.stop(id).await;
        }
    }
}

async fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn producer_ids(next: i64) -> Vec<MetadataRecord> {
    vec![MetadataRecord::ProducerIds { next }]
}

/// Waits until every running node's image has `next_producer_id == next`.
async fn all_see(cluster: &Cluster, next: i64) -> anyhow::Result<()> {
    wait_until(&format!("next_producer_id {next} everywhere"), || {
        cluster
            .running()
            .all(|q| q.image().borrow().next_producer_id == next)
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_elect_replicate_fail_over_and_catch_up() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, 1000).await?;
    let leader = cluster.agreed_leader().await?;
    assert_eq!(cluster.quorum(leader)?.status().voters, [0, 1, 2].into());

    // A write through a follower is forwarded to the leader and visible on the follower
    // when the write returns.
    let follower = (leader + 1) % 3;
    let applied = cluster.quorum(follower)?.write(producer_ids(1000)).await?;
    assert_eq!(
        cluster.quorum(follower)?.image().borrow().next_producer_id,
        1000
    );
    assert!(cluster.quorum(follower)?.status().applied >= Some(applied.index));
    all_see(&cluster, 1000).await?;

    // The leader dies: the other two elect a new one and keep accepting writes.
    cluster.stop(leader).await;
    let started = Instant::now();
    let new_leader = cluster.agreed_leader().await?;
    let failover = started.elapsed();
    assert_ne!(new_leader, leader);
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    cluster.quorum(follower)?.write(producer_ids(2000)).await?;
    all_see(&cluster, 2000).await?;

    // The old leader comes back from its log and catches up on what it missed, still a
    // voter: no membership change.
    let membership = cluster.quorum(new_leader)?.status().membership_index;
    cluster.restart(leader).await?;
    all_see(&cluster, 2000).await?;
    assert_eq!(
        cluster.quorum(leader)?.status().membership_index,
        membership
    );
    assert_eq!(cluster.quorum(leader)?.status().voters, [0, 1, 2].into());
    assert!(!cluster.quorum(leader)?.status().rejoining);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_majority_writes_fail_and_nothing_is_applied() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, 1000).await?;
    let leader = cluster.agreed_leader().await?;
    cluster.quorum(leader)?.write(producer_ids(1000)).await?;
    all_see(&cluster, 1000).await?;
    let others: Vec<NodeId> = (0..3).filter(|&id| id != leader).collect();
    for &id in &others {
        cluster.stop(id).await;
    }
    let result = cluster.quorum(leader)?.write(producer_ids(5000)).await;
    assert!(
        matches!(result, Err(QuorumError::Timeout(_))),
        "a write without a majority must fail, got {result:?}"
    );
    assert_eq!(
        cluster.quorum(leader)?.image().borrow().next_producer_id,
        1000
    );
    // A majority back: the cluster works again, and the uncommitted entry does not
    // resurface as committed on its own.
    cluster.restart(others[0]).await?;
    cluster.agreed_leader().await?;
    cluster.quorum(others[0])?.write(producer_ids(3000)).await?;
    wait_until(
        "next_producer_id 3000 or 5000 on the restarted node",
        || {
            let next = cluster
                .quorum(others[0])
                .ok()?
                .image()
                .borrow()
                .next_producer_id;
            (next >= 3000).then_some(())
        },
    )
    .await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_that_lost_its_volume_rejoins_as_a_learner_first() -> anyhow::Result<()> {
    // Snapshots every 5 entries: the rejoining voter is caught up from a snapshot.
    let mut cluster = Cluster::start(3, 5).await?;
    let leader = cluster.agreed_leader().await?;
    for next in 1..=20 {
        cluster
            .quorum(leader)?
            .write(producer_ids(next * 100))
            .await?;
    }
    all_see(&cluster, 2000).await?;
    let lost = (leader + 2) % 3;
    let membership_before = cluster.quorum(leader)?.status().membership_index;
    cluster.stop(lost).await;
    std::fs::remove_dir_all(&cluster.nodes[lost as usize].dir)?;
    cluster.restart(lost).await?;
    all_see(&cluster, 2000).await?;
    wait_until(
        "the lost voter to be a voter again and done rejoining",
        || {
            let status = cluster.quorum(lost).ok()?.status();
            (!status.rejoining && status.voters == [0, 1, 2].into()).then_some(())
        },
    )
    .await?;
    let leader = cluster.agreed_leader().await?;
    // It went through two membership changes: out as a voter, and back in.
    let membership_after = cluster.quorum(leader)?.status().membership_index;
    assert!(
        membership_after > membership_before,
        "{membership_after:?} after, {membership_before:?} before"
    );
    cluster.quorum(leader)?.write(producer_ids(2100)).await?;
    all_see(&cluster, 2100).await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejoining_voter_refuses_to_vote() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, 1000).await?;
    let leader = cluster.agreed_leader().await?;
    let target = (leader + 1) % 3;
    let quorum = cluster.quorum(target)?;
    quorum.rejoining.store(true, Ordering::Release);
    let mut client = network::client(&cluster.voters[&target])?;
    let request = openraft::raft::VoteRequest::<NodeId>::new(openraft::Vote::new(99, leader), None);
    let refused = client.vote(encode(&request)?).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::Unavailable)
    );
    quorum.rejoining.store(false, Ordering::Release);
    let answered = client.vote(encode(&request)?).await?;
    let vote: Result<openraft::raft::VoteResponse<NodeId>, openraft::error::RaftError<NodeId>> =
        decode(answered.get_ref())?;
    assert!(vote.is_ok(), "{vote:?}");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_voter_is_a_cluster_of_itself() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1, 1000).await?;
    assert_eq!(cluster.agreed_leader().await?, 0);
    cluster.quorum(0)?.write(producer_ids(7000)).await?;
    cluster.stop(0).await;
    cluster.restart(0).await?;
    all_see(&cluster, 7000).await?;
    cluster.quorum(0)?.write(producer_ids(8000)).await?;
    assert_eq!(cluster.quorum(0)?.image().borrow().next_producer_id, 8000);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn voters_started_one_by_one_form_one_quorum_that_survives_its_first_leader(
) -> anyhow::Result<()> {
    let mut cluster = Cluster::start_some(3, 1, 1000).await?;
    // One voter of three cannot form a quorum on its own, nor accept writes.
    let alone = cluster.quorum(0)?.write(producer_ids(1)).await;
    assert!(matches!(alone, Err(QuorumError::Timeout(_))), "{alone:?}");
    cluster.restart(1).await?;
    let leader = cluster.agreed_leader().await?;
    cluster.quorum(leader)?.write(producer_ids(1000)).await?;
    cluster.restart(2).await?;
    all_see(&cluster, 1000).await?;
    wait_until("every voter recorded as a quorum member", || {
        let image = cluster.quorum(2).ok()?.image().borrow().clone();
        (image.quorum_members == [0, 1, 2].into()).then_some(())
    })
    .await?;
    // The late voter is a voter like the others: the first leader can die at once.
    cluster.stop(leader).await;
    let survivor = (0..3).find(|&id| id != leader).unwrap_or(0);
    cluster.quorum(survivor)?.write(producer_ids(2000)).await?;
    all_see(&cluster, 2000).await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_stops_cleanly_hands_its_last_commit_to_the_followers() -> anyhow::Result<()>
{
    let mut cluster = Cluster::start(3, 1000).await?;
    let leader = cluster.agreed_leader().await?;
    cluster.quorum(leader)?.write(producer_ids(1000)).await?;
    all_see(&cluster, 1000).await?;
    // No election from here on: what the followers apply after the leader stopped, the
    // stopped leader told them. (A broker's own fence, written as it stops, is such a
    // write: until the others apply it, they send clients to the stopped broker.)
    for quorum in cluster.running() {
        quorum.hold_elections();
    }
    cluster.quorum(leader)?.write(producer_ids(2000)).await?;
    cluster.stop(leader).await;
    all_see(&cluster, 2000).await?;
    for quorum in cluster.running() {
        assert_eq!(quorum.status().leader, Some(leader), "no new leader");
    }
    cluster.shutdown().await;
    Ok(())
}
