//! Broker liveness: every broker heartbeats to the leader of the metadata quorum (the
//! active controller); the leader fences a broker that misses its session and unfences it
//! when it is heard from again, by writing `FenceBroker` / `UnfenceBroker` records, so every
//! broker's metadata says which brokers clients may use and which partitions are offline.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::network;
use super::proto::HeartbeatRequest;
use super::quorum::{write, QuorumConfig};
use super::{NodeId, Raft};
use crate::metadata::{MetadataImage, MetadataRecord};

/// How often brokers heartbeat and how long the leader waits before fencing.
#[derive(Debug, Clone, Copy)]
pub struct Sessions {
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat: Duration,
    /// `broker.session.timeout.ms`.
    pub timeout: Duration,
}

/// When the leader last heard from each broker (and which run of it).
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<i32, (Uuid, Instant)>>,
}

impl Liveness {
    /// Records a heartbeat.
    pub fn heard(&self, node_id: i32, incarnation: Uuid) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(node_id, (incarnation, Instant::now()));
    }

    fn last(&self, node_id: i32, incarnation: Uuid) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&node_id)
            .filter(|(run, _)| *run == incarnation)
            .map(|(_, at)| *at)
    }
}

/// Sends this broker's heartbeats to whichever voter leads, for as long as it runs.
pub async fn heartbeat(
    raft: Raft,
    voters: BTreeMap<NodeId, String>,
    node_id: i32,
    incarnation: Uuid,
    every: Duration,
) {
    let mut clients = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        let Some(leader) = raft.metrics().borrow().current_leader else {
            continue;
        };
        let Some(addr) = voters.get(&leader) else {
            continue;
        };
        let client = match clients.get(&leader) {
            Some(c) => c,
            None => match network::client(addr) {
                Ok(c) => clients.entry(leader).or_insert(c),
                Err(_) => continue,
            },
        };
        let mut request = tonic::Request::new(HeartbeatRequest {
            node_id,
            incarnation: incarnation.to_string(),
        });
        request.set_timeout(every);
        if let Err(status) = client.clone().heartbeat(request).await {
            tracing::debug!(leader, error = %status.message(), "heartbeat not accepted");
        }
    }
}

/// On the leader: fences brokers whose session ran out and unfences those heard from again.
/// Leadership is checked on every round; a new leader gives every broker a full session
/// before fencing it.
pub async fn fence(
    raft: Raft,
    config: QuorumConfig,
    image: watch::Receiver<Arc<MetadataImage>>,
    liveness: Arc<Liveness>,
    sessions: Sessions,
) {
    let node_id = config.node_id;
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(sessions.heartbeat).await;
        let leader = raft.metrics().borrow().current_leader;
        if leader != Some(node_id) {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        let brokers: Vec<_> = image.borrow().brokers.values().cloned().collect();
        let mut changes = Vec::new();
        for broker in brokers {
            let heard = liveness.last(broker.node_id, broker.incarnation);
            let last = heard.unwrap_or(since).max(since);
            let expired = now.duration_since(last) > sessions.timeout;
            if expired && !broker.fenced {
                tracing::warn!(
                    node_id = broker.node_id,
                    "broker missed its session; fencing it"
                );
                changes.push(MetadataRecord::FenceBroker {
                    node_id: broker.node_id,
                    incarnation: broker.incarnation,
                });
            } else if !expired && broker.fenced && heard.is_some() {
                tracing::info!(
                    node_id = broker.node_id,
                    "fenced broker is back; unfencing it"
                );
                changes.push(MetadataRecord::UnfenceBroker {
                    node_id: broker.node_id,
                    incarnation: broker.incarnation,
                });
            }
        }
        if !changes.is_empty() {
            if let Err(e) = write(&raft, &config, changes).await {
                tracing::warn!(error = %e, "could not record broker liveness");
            }
        }
    }
}
