//! A changed `spec.replicationFactor` becomes partition reassignments: replicas added
//! on the least loaded live brokers or removed from the most loaded ones, loads weighed
//! by bytes as the rebalance weighs them (see [`placement::replication_factor`]; sizes
//! from DescribeLogDirs through [`rebalance::sizes`], racks kept spread), a batch of the
//! cluster's `spec.rebalance.maxPartitionsMoving` at a time, the next once the broker
//! lists none of the topic's moves in flight.

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::controller::kafkacluster::rebalance::{self, replicas_of};
use crate::crd::KafkaCluster;
use crate::kafka::{KafkaAdmin, TopicMetadata, TopicPartition};
use crate::placement::{self, Broker};
use crate::{Context, Error};

/// Where a replication-factor change stands after a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Every partition has the declared replica count and nothing moves.
    Done,
    /// Partitions of the topic are moving (in flight, this pass's batch included).
    Moving {
        /// Partitions being moved now.
        moving: usize,
        /// Partitions still to change after those.
        pending: usize,
    },
    /// The change cannot be made: why (a sentence; only an edit helps).
    Impossible(String),
}

/// One step of making every partition of `metadata` (topic `name`, on the cluster `kc`)
/// have `want` replicas.
pub async fn step(
    ctx: &Context,
    kc: &KafkaCluster,
    admin: &dyn KafkaAdmin,
    metadata: &TopicMetadata,
    want: i32,
) -> Result<Change, Error> {
    let name = metadata.name.as_str();
    // Asked even when every partition has the declared count: a replica being added is
    // listed with the old ones, so the count is reached before the move completes.
    let ongoing: BTreeMap<TopicPartition, _> = admin
        .list_partition_reassignments()
        .await
        .map_err(Error::kafka("ListPartitionReassignments"))?
        .into_iter()
        .filter(|(tp, _)| tp.topic == name)
        .collect();
    let wrong = metadata
        .partitions
        .iter()
        .filter(|p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX) != want)
        .count();
    if !ongoing.is_empty() {
        return Ok(Change::Moving {
            moving: ongoing.len(),
            pending: wrong.saturating_sub(ongoing.len()),
        });
    }
    if wrong == 0 {
        return Ok(Change::Done);
    }
    let cluster = admin
        .describe_cluster()
        .await
        .map_err(Error::kafka("DescribeCluster"))?;
    let brokers: Vec<Broker> = cluster
        .brokers
        .iter()
        .filter(|b| !b.fenced)
        .map(|b| Broker {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect();
    let everything = admin
        .metadata(None)
        .await
        .map_err(Error::kafka("Metadata of every topic"))?;
    let replicas = replicas_of(&everything);
    let sizes = rebalance::partition_sizes(&rebalance::sizes(kc, ctx, &cluster).await);
    let want_count = usize::try_from(want).unwrap_or(0);
    let plan = match placement::replication_factor(&brokers, &replicas, &sizes, name, want_count) {
        Ok(plan) => plan,
        Err(error) => return Ok(Change::Impossible(error.to_string())),
    };
    let batch: BTreeMap<TopicPartition, Option<Vec<i32>>> = plan
        .targets
        .iter()
        .take(rebalance::batch_size(kc))
        .map(|(tp, r)| (tp.clone(), Some(r.clone())))
        .collect();
    info!(
        topic = name,
        replication_factor = want,
        partitions = batch.len(),
        "changing the replication factor"
    );
    let refusals = admin
        .alter_partition_reassignments(&batch)
        .await
        .map_err(Error::kafka(format!(
            "AlterPartitionReassignments for topic {name}"
        )))?;
    if let Some((tp, error)) = refusals.first() {
        if error.is_invalid_request() {
            return Ok(Change::Impossible(format!("moving {tp}: {error}")));
        }
        warn!(partition = %tp, %error, "the broker refused a partition move");
    }
    let started = batch.len().saturating_sub(refusals.len());
    Ok(Change::Moving {
        moving: started,
        pending: plan.targets.len().saturating_sub(started),
    })
}
