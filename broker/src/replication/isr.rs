//! The leader's side of the ISR (Kafka's maybeExpandIsr / maybeShrinkIsr): a follower
//! that has caught up with the high watermark joins the ISR, and one that has not caught
//! up with the leader's log end for `replica.lag.time.max.ms` leaves it. The leader only
//! proposes: an `AlterPartition` record through the metadata quorum, which refuses a
//! proposal made in an old leader or partition epoch, or naming a fenced or restarted
//! broker (KIP-841/903); the ISR in the metadata is the truth every broker applies.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Role;
use crate::cluster::alter_partition::alter_partition;
use crate::context::BrokerContext;
use crate::metadata::{IsrMember, MetadataImage};

/// How often the leader looks for followers to add or drop when nothing asks sooner.
const TICK: Duration = Duration::from_millis(500);
/// A follower whose last fetch is older than this is not added, whatever it said then.
const RECENT_FETCH: Duration = Duration::from_secs(2);

/// One ISR change to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The leader epoch it is made in.
    pub leader_epoch: i32,
    /// The partition epoch it is based on.
    pub partition_epoch: i32,
    /// The proposed ISR, with each member's broker epoch.
    pub isr: Vec<IsrMember>,
}

/// Runs on every broker of a cluster: proposes the ISR changes of the partitions it
/// leads, when a follower catches up (the fetch path asks) and every [`TICK`].
pub async fn maintain(ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    if ctx.quorum().is_none() {
        return;
    }
    let lag_max = Duration::from_millis(ctx.config.replica_lag_time_max_ms);
    loop {
        tokio::select! {
            () = ctx.partitions.isr_wanted.notified() => {}
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.cancelled() => return,
        }
        let image = ctx.image();
        for proposal in proposals(&ctx, &image, lag_max, Instant::now()) {
            let ctx2 = Arc::clone(&ctx);
            let wanted = proposal.clone();
            let altering = tokio::task::spawn_blocking(move || {
                alter_partition(
                    &ctx2,
                    &wanted.topic,
                    wanted.partition,
                    wanted.leader_epoch,
                    wanted.partition_epoch,
                    wanted.isr,
                )
            });
            // Without a majority the proposal waits for the write timeout; shutdown does
            // not (the write ends when the quorum stops).
            let result = tokio::select! {
                result = altering => result,
                () = shutdown.cancelled() => return,
            };
            let isr: Vec<i32> = proposal.isr.iter().map(|m| m.node_id).collect();
            match result {
                Ok(Ok(_)) => tracing::info!(
                    topic = %proposal.topic,
                    partition = proposal.partition,
                    ?isr,
                    "ISR changed"
                ),
                Ok(Err(e)) => tracing::debug!(
                    topic = %proposal.topic,
                    partition = proposal.partition,
                    ?isr,
                    error = %e,
                    "ISR change not accepted"
                ),
                Err(e) => tracing::warn!(error = %e, "proposing an ISR change failed"),
            }
        }
    }
}

/// The ISR changes due now on the partitions this broker leads.
pub fn proposals(
    ctx: &BrokerContext,
    image: &MetadataImage,
    lag_max: Duration,
    now: Instant,
) -> Vec<Proposal> {
    let me = ctx.node_id();
    let Some(my_epoch) = image.broker_epoch(me) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for partition in ctx.partitions.all() {
        let Role::Leader { epoch, isr, .. } = partition.replica.role() else {
            continue;
        };
        let Some(topic) = image.topic(&partition.tp.topic) else {
            continue;
        };
        let leadership = topic.leadership(partition.tp.partition, me);
        if leadership.leader != me || leadership.leader_epoch != epoch {
            continue; // the image moved on; the role follows shortly
        }
        let followers = partition.replica.followers();
        let since = partition.replica.since();
        let caught_up = |node: i32| followers.get(&node).map_or(since, |f| f.last_caught_up);
        let mut members: BTreeSet<i32> = isr
            .iter()
            .copied()
            .filter(|&m| m == me || now.saturating_duration_since(caught_up(m)) <= lag_max)
            .collect();
        for replica in topic.replicas(partition.tp.partition, me) {
            let joins = followers.get(&replica).is_some_and(|f| {
                f.at_high_watermark
                    && now.saturating_duration_since(f.last_fetch) <= RECENT_FETCH
                    && image.broker_epoch(replica) == Some(f.broker_epoch)
            });
            if joins && image.is_live(replica) {
                members.insert(replica);
            }
        }
        let current: BTreeSet<i32> = isr.iter().copied().collect();
        if members == current {
            continue;
        }
        let isr = members
            .iter()
            .map(|&node_id| IsrMember {
                node_id,
                broker_epoch: if node_id == me {
                    my_epoch
                } else {
                    followers
                        .get(&node_id)
                        .map(|f| f.broker_epoch)
                        .or_else(|| image.broker_epoch(node_id))
                        .unwrap_or(-1)
                },
            })
            .collect();
        out.push(Proposal {
            topic: partition.tp.topic.clone(),
            partition: partition.tp.partition,
            leader_epoch: epoch,
            partition_epoch: leadership.partition_epoch,
            isr,
        });
    }
    out
}
