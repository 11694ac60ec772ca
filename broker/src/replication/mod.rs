//! Replication of partition data among the brokers of a cluster, Kafka's way: followers
//! fetch from the leader with the Fetch API (as replicas), append the leader's batches
//! byte for byte, and fsync before they fetch again; the leader tracks each follower's
//! fetch offset and keeps the high watermark at the smallest durable end of the ISR.
//!
//! | file        | what                                                            |
//! |-------------|-----------------------------------------------------------------|
//! | `state.rs`  | one partition's role, high watermark and followers' progress    |
//! | `fetcher.rs`| the follower side: one fetcher task per leader broker           |
//! | `isr.rs`    | the leader side of the ISR: proposals through the metadata quorum|
//! | `throttle.rs`| replication throttles (KIP-73): which replicas, and the byte rate |
//! | `mod.rs`    | roles from the metadata image                                   |

pub mod fetcher;
pub mod isr;
pub mod state;
pub mod throttle;

use crate::context::BrokerContext;
use crate::metadata::{MetadataImage, TopicImage};
pub use state::{ReplicaState, Role};

/// `min.insync.replicas` of `topic` (its override, else the broker default).
pub fn min_insync_replicas(ctx: &BrokerContext, topic: &TopicImage) -> usize {
    topic
        .configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(ctx.config.min_insync_replicas)
        .max(1)
        .try_into()
        .unwrap_or(1)
}

/// The role `image` gives this broker for `partition` of `topic`.
pub fn role_in(
    ctx: &BrokerContext,
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
) -> Role {
    let me = ctx.node_id();
    let leadership = topic.leadership(partition, me);
    if leadership.leader == me {
        Role::Leader {
            epoch: leadership.leader_epoch,
            isr: leadership.isr,
            min_isr: min_insync_replicas(ctx, topic),
        }
    } else if leadership.leader >= 0 && image.is_live(leadership.leader) {
        Role::Follower {
            leader: leadership.leader,
            epoch: leadership.leader_epoch,
        }
    } else {
        Role::None
    }
}

/// Gives every hosted partition its role from `image` (in a cluster; a single broker
/// leads everything alone and never changes roles).
pub fn assign_roles(ctx: &BrokerContext, image: &MetadataImage) {
    if ctx.quorum().is_none() {
        return;
    }
    let me = ctx.node_id();
    for partition in ctx.partitions.all() {
        let Some(topic) = image.topic(&partition.tp.topic) else {
            continue;
        };
        let role = role_in(ctx, image, topic, partition.tp.partition);
        let log_end = partition.log().log_end_offset();
        partition.replica.set_role(me, role, log_end);
    }
}
