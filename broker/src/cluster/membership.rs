//! Broker liveness: every broker heartbeats to the leader of the metadata quorum (the
//! active controller); the leader fences a broker that misses its session and unfences it
//! when it is heard from again, by writing `FenceBroker` / `UnfenceBroker` records, so every
//! broker's metadata says which brokers clients may use and which partitions are offline.
//!
//! A session is long (`broker.session.timeout.ms`, 9 s by default, as in Kafka) so that a
//! broker stalled for a moment or cut off briefly keeps its partitions. A broker that has
//! died needs no such patience, and waiting for its session is most of a failover: once a
//! broker has missed two heartbeats (and, on becoming leader, every broker at once) the
//! leader connects to its Kafka listener, and a refused connection (nothing listens on the
//! port: the process is gone, or stopping) fences it at once. Anything else — the
//! connection accepted (a stalled process: its kernel still accepts), a timeout or an
//! unreachable host (a network cut or a lost machine, which a probe cannot tell from a slow
//! one) — leaves the decision to the session. Fencing early is safe in any case: it is what
//! an expired session does, and leadership only ever moves to a member of the ISR.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use tokio::net::TcpStream;

use super::network;
use super::proto::HeartbeatRequest;
use super::quorum::{write_as_leader, QuorumConfig};
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
    let overdue = sessions.heartbeat * 2;
    let mut leading_since: Option<Instant> = None;
    let mut last_round = Instant::now();
    // When this leader first saw each fenced broker (run) fenced: only a heartbeat heard
    // after that brings it back. One sent just before a broker fenced itself on its way
    // out does not.
    let mut fenced_since: HashMap<(i32, Uuid), Instant> = HashMap::new();
    // When this leader first saw each run registered: a broker that registered after this
    // leader took over has its session counted from then, not from the takeover, until
    // its first heartbeat is heard.
    let mut registered_since: HashMap<(i32, Uuid), Instant> = HashMap::new();
    loop {
        tokio::time::sleep(sessions.heartbeat).await;
        let leader = raft.metrics().borrow().current_leader;
        // A round far behind its time means this process was paused (SIGSTOP, a stalled
        // VM): what it knows of other brokers' heartbeats is stale, and it may have been
        // deposed meanwhile. It judges nobody before a fresh session has passed.
        let paused = last_round.elapsed() > sessions.heartbeat + sessions.timeout / 2;
        last_round = Instant::now();
        if leader != Some(node_id) || paused {
            leading_since = None;
            fenced_since.clear();
            registered_since.clear();
            continue;
        }
        // A new leader probes every broker at once: the old leader may have died with its
        // broker, and no heartbeat has had time to reach this one yet.
        let first_round = leading_since.is_none();
        leading_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        let brokers: Vec<_> = image.borrow().brokers.values().cloned().collect();
        fenced_since.retain(|run, _| {
            brokers
                .iter()
                .any(|b| b.fenced && (b.node_id, b.incarnation) == *run)
        });
        registered_since
            .retain(|run, _| brokers.iter().any(|b| (b.node_id, b.incarnation) == *run));
        let mut changes = Vec::new();
        let mut silent = Vec::new();
        for broker in brokers {
            let heard = liveness.last(broker.node_id, broker.incarnation);
            let registered = *registered_since
                .entry((broker.node_id, broker.incarnation))
                .or_insert(now);
            // Never before this leader took over: `registered` is first seen since then.
            let last = heard.unwrap_or(registered).max(registered);
            let quiet = now.duration_since(last);
            let expired = quiet > sessions.timeout;
            let back = broker.fenced && {
                let fenced_at = *fenced_since
                    .entry((broker.node_id, broker.incarnation))
                    .or_insert(now);
                heard.is_some_and(|at| at > fenced_at)
            };
            if expired && !broker.fenced {
                tracing::warn!(
                    node_id = broker.node_id,
                    "broker missed its session; fencing it"
                );
                changes.push(MetadataRecord::FenceBroker {
                    node_id: broker.node_id,
                    incarnation: broker.incarnation,
                });
            } else if !expired && back {
                tracing::info!(
                    node_id = broker.node_id,
                    "fenced broker is back; unfencing it"
                );
                changes.push(MetadataRecord::UnfenceBroker {
                    node_id: broker.node_id,
                    incarnation: broker.incarnation,
                });
            } else if (quiet > overdue || first_round)
                && !broker.fenced
                && u64::try_from(broker.node_id).ok() != Some(node_id)
            {
                silent.push(broker);
            }
        }
        let mut probes = tokio::task::JoinSet::new();
        for broker in silent {
            probes.spawn(async move {
                let refused = refuses_connections(&broker.host, broker.port).await;
                (broker, refused)
            });
        }
        while let Some(probed) = probes.join_next().await {
            if let Ok((broker, true)) = probed {
                tracing::warn!(
                    node_id = broker.node_id,
                    "broker missed its heartbeats and its listener refuses connections; fencing it"
                );
                changes.push(MetadataRecord::FenceBroker {
                    node_id: broker.node_id,
                    incarnation: broker.incarnation,
                });
            }
        }
        if !changes.is_empty() {
            if let Err(e) = write_as_leader(&raft, &config, changes).await {
                tracing::warn!(error = %e, "could not record broker liveness");
            }
        }
    }
}

/// How long a liveness probe may take; one that takes longer proves nothing.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a connection to `host:port` is refused: nothing listens there. Every other
/// outcome (accepted, timed out, unreachable, unresolvable) is `false`.
async fn refuses_connections(host: &str, port: i32) -> bool {
    let Ok(port) = u16::try_from(port) else {
        return false;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_refused_connection_counts_as_dead() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok();
        let Some(addr) = listener.as_ref().and_then(|l| l.local_addr().ok()) else {
            panic!("could not bind a loopback port");
        };
        let port = i32::from(addr.port());
        assert!(!refuses_connections("127.0.0.1", port).await);
        drop(listener);
        assert!(refuses_connections("127.0.0.1", port).await);
        assert!(!refuses_connections("no-such-host.invalid", port).await);
        assert!(!refuses_connections("127.0.0.1", -1).await);
    }
}
