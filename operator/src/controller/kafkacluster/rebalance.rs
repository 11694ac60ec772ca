//! Moving partitions between the brokers of a cluster: the balance after a scale-up and
//! the drain before a scale-down, one bounded batch at a time.
//!
//! Level-triggered like the rest of the reconcile: every pass reads the cluster
//! (ListPartitionReassignments, Metadata, DescribeLogDirs of every broker) and plans
//! again with [`placement::plan`] from where the partitions *will* be once the moves in
//! flight finish. Then:
//!
//! - moves in flight: wait for them (the next batch starts only when the broker lists
//!   none); progress is reported, nothing is submitted;
//! - none in flight and the plan is not empty: up to [`batch_size`] partitions
//!   (`spec.rebalance.maxPartitionsMoving`) are submitted with
//!   AlterPartitionReassignments, those leaving brokers that go first;
//! - none in flight and the plan is empty: balanced. When a rebalance has just ended,
//!   partitions not led by their preferred replica are asked to move back (ElectLeaders).
//!
//! The brokers that stay are `0..spec.replicas`; a plan is made only when every one of
//! them is registered and live, so a broker restarting is never drained by mistake.

use std::collections::BTreeMap;

use tracing::{debug, info, warn};

use crate::crd::{KafkaCluster, RebalanceSpec, MAX_PARTITIONS_MOVING_LIMIT};
use crate::kafka::{ClusterDescription, KafkaAdmin, Reassignment, TopicMetadata, TopicPartition};
use crate::placement::{self, Broker, PlanError};
use crate::resources::names;
use crate::{Context, Error};

/// How many partitions `kc` moves at a time: `spec.rebalance.maxPartitionsMoving`, kept
/// within `1..=`[`MAX_PARTITIONS_MOVING_LIMIT`] (a value outside is refused by the schema
/// and by [`validate`]; this only makes sure no caller ever gets 0).
pub fn batch_size(kc: &KafkaCluster) -> usize {
    let limit = kc
        .spec
        .rebalance
        .max_partitions_moving
        .clamp(1, MAX_PARTITIONS_MOVING_LIMIT);
    usize::try_from(limit).unwrap_or(1)
}

/// Refuses a `spec.rebalance.maxPartitionsMoving` outside `1..=1000`. The CRD's schema
/// refuses it first; this holds where the schema is not enforced (a CRD applied without
/// validation, an object stored before the rule).
pub fn validate(spec: &RebalanceSpec) -> Result<(), Error> {
    let value = spec.max_partitions_moving;
    if (1..=MAX_PARTITIONS_MOVING_LIMIT).contains(&value) {
        return Ok(());
    }
    Err(Error::InvalidSpec {
        field: "spec.rebalance.maxPartitionsMoving",
        reason: format!(
            "{value} partitions moved at once: it must be at least 1 and at most {MAX_PARTITIONS_MOVING_LIMIT}"
        ),
    })
}

/// Where the partitions of a cluster stand, as one pass saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Reassignments in flight (submitted this pass included).
    pub moving: usize,
    /// Partitions the plan still wants to move after those.
    pub pending: usize,
    /// Bytes still to copy: what the new replicas in flight lack, plus what the rest of
    /// the plan copies.
    pub bytes_left: i64,
    /// The moves in flight (submitted this pass included) and the bytes each copies:
    /// the partition's size times the replicas it adds.
    pub move_bytes: BTreeMap<TopicPartition, i64>,
    /// Brokers that go (ids from `spec.replicas` on) and still hold replicas.
    pub draining: Vec<i32>,
    /// Why no plan could be made (`None`: it was made, or there was nothing to plan).
    pub blocked: Option<String>,
}

impl Report {
    /// Whether anything is moving or still to move.
    pub fn active(&self) -> bool {
        self.moving > 0 || self.pending > 0
    }
}

/// The partitions' replicas as the metadata lists them (moves in flight: the union).
pub fn replicas_of(topics: &[TopicMetadata]) -> BTreeMap<TopicPartition, Vec<i32>> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    TopicPartition::new(t.name.clone(), p.partition),
                    p.replicas.clone(),
                )
            })
        })
        .collect()
}

/// `replicas` as they will be once the moves in `ongoing` finish.
pub fn projected(
    mut replicas: BTreeMap<TopicPartition, Vec<i32>>,
    ongoing: &BTreeMap<TopicPartition, Reassignment>,
) -> BTreeMap<TopicPartition, Vec<i32>> {
    for (tp, move_) in ongoing {
        let target = move_
            .replicas
            .iter()
            .copied()
            .filter(|b| !move_.removing.contains(b))
            .collect();
        replicas.insert(tp.clone(), target);
    }
    replicas
}

/// The brokers of `0..staying` that the cluster lists as live, with their racks; `Err`
/// names one that is not.
pub fn staying_brokers(cluster: &ClusterDescription, staying: i32) -> Result<Vec<Broker>, i32> {
    (0..staying)
        .map(|id| {
            cluster
                .brokers
                .iter()
                .find(|b| b.id == id && !b.fenced)
                .map(|b| Broker {
                    id,
                    rack: b.rack.clone(),
                })
                .ok_or(id)
        })
        .collect()
}

/// The size of every partition on every live broker, asked of each at its own address
/// (DescribeLogDirs answers for the broker asked only). A broker that cannot tell (not
/// reachable, or not serving DescribeLogDirs) counts as reporting nothing: the plan then
/// weighs its partitions by replica count alone.
///
/// The one way the operator learns partition sizes: the rebalance and a Topic's
/// replication-factor change both plan from it.
pub(crate) async fn sizes(
    kc: &KafkaCluster,
    ctx: &Context,
    cluster: &ClusterDescription,
) -> BTreeMap<i32, BTreeMap<TopicPartition, i64>> {
    let mut sizes = BTreeMap::new();
    for broker in cluster.brokers.iter().filter(|b| !b.fenced) {
        let address = format!(
            "{}:{}",
            names::broker_host(kc, broker.id),
            kc.spec.listeners.kafka_port
        );
        let held = match ctx.kafka_admin(&address).await {
            Ok(admin) => admin
                .describe_log_dirs()
                .await
                .map_err(Error::kafka(format!("DescribeLogDirs from {address}"))),
            Err(e) => Err(e),
        };
        match held {
            Ok(held) => {
                sizes.insert(broker.id, held);
            }
            // Every pass asks again; an older broker would repeat this each time.
            Err(e) => debug!(broker = broker.id, error = %e.report(), "partition sizes unknown"),
        }
    }
    sizes
}

/// The size of each partition: the largest any of its replicas reports (a replica
/// still catching up holds less than the partition has).
pub fn partition_sizes(
    per_broker: &BTreeMap<i32, BTreeMap<TopicPartition, i64>>,
) -> BTreeMap<TopicPartition, i64> {
    let mut size: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for held in per_broker.values() {
        for (tp, bytes) in held {
            let entry = size.entry(tp.clone()).or_insert(0);
            *entry = (*entry).max(*bytes);
        }
    }
    size
}

/// One pass: observe, plan, and submit the next batch when none is in flight.
/// `allow_moves` is false while something else (a rolling restart) must settle first:
/// progress is still reported. `was_active` says the last status showed a rebalance.
pub async fn step(
    kc: &KafkaCluster,
    ctx: &Context,
    admin: &dyn KafkaAdmin,
    cluster: &ClusterDescription,
    allow_moves: bool,
    was_active: bool,
) -> Result<Report, Error> {
    let staying = kc.spec.replicas;
    let topics = admin
        .metadata(None)
        .await
        .map_err(Error::kafka("Metadata for the rebalance"))?;
    let replicas = replicas_of(&topics);
    if replicas.is_empty() {
        return Ok(Report::default());
    }
    let ongoing = admin
        .list_partition_reassignments()
        .await
        .map_err(Error::kafka("ListPartitionReassignments"))?;
    let per_broker = sizes(kc, ctx, cluster).await;
    let size = partition_sizes(&per_broker);
    let in_flight_bytes: i64 = ongoing
        .iter()
        .flat_map(|(tp, m)| m.adding.iter().map(move |b| (tp, *b)))
        .map(|(tp, b)| {
            let have = per_broker
                .get(&b)
                .and_then(|h| h.get(tp))
                .copied()
                .unwrap_or(0);
            (size.get(tp).copied().unwrap_or(0) - have).max(0)
        })
        .sum();
    let move_bytes = ongoing
        .iter()
        .map(|(tp, m)| (tp.clone(), copied(&size, tp, m.adding.len())))
        .collect();
    let future = projected(replicas, &ongoing);
    let draining: Vec<i32> = {
        let mut ids: Vec<i32> = future
            .values()
            .flatten()
            .copied()
            .filter(|b| *b >= staying)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut report = Report {
        moving: ongoing.len(),
        bytes_left: in_flight_bytes,
        move_bytes,
        draining,
        ..Report::default()
    };
    let brokers = match staying_brokers(cluster, staying) {
        Ok(brokers) => brokers,
        Err(id) => {
            report.blocked = Some(format!(
                "broker {id} is not live: no plan is made without it"
            ));
            return Ok(report);
        }
    };
    let plan = match placement::plan(&brokers, &future, &size) {
        Ok(plan) => plan,
        Err(error @ PlanError::NotEnoughBrokers { .. }) => {
            report.blocked = Some(error.to_string());
            return Ok(report);
        }
    };
    report.pending = plan.targets.len();
    report.bytes_left = report.bytes_left.saturating_add(plan.bytes_to_move);
    if !ongoing.is_empty() || !allow_moves {
        return Ok(report);
    }
    if plan.is_empty() {
        if was_active {
            elect_preferred(admin, &topics).await;
        }
        return Ok(report);
    }
    let batch = next_batch(&plan.targets, &future, staying, batch_size(kc));
    info!(
        partitions = ?batch.keys().map(ToString::to_string).collect::<Vec<_>>(),
        planned = plan.targets.len(),
        bytes = plan.bytes_to_move,
        "moving partitions"
    );
    let targets: BTreeMap<TopicPartition, Option<Vec<i32>>> = batch
        .iter()
        .map(|(tp, r)| (tp.clone(), Some(r.clone())))
        .collect();
    let refusals = admin
        .alter_partition_reassignments(&targets)
        .await
        .map_err(Error::kafka("AlterPartitionReassignments"))?;
    for (tp, error) in &refusals {
        warn!(partition = %tp, error = %error, "the broker refused a partition move");
    }
    for (tp, target) in batch
        .iter()
        .filter(|(tp, _)| !refusals.iter().any(|(refused, _)| refused == *tp))
    {
        let current = future.get(tp).map_or(&[][..], Vec::as_slice);
        let adding = target.iter().filter(|b| !current.contains(b)).count();
        report
            .move_bytes
            .insert(tp.clone(), copied(&size, tp, adding));
    }
    let started = batch.len().saturating_sub(refusals.len());
    if let Some(metrics) = &ctx.metrics {
        metrics.reassignments_started(started);
    }
    report.moving = started;
    report.pending = plan.targets.len().saturating_sub(started);
    Ok(report)
}

/// What a move of `tp` adding `adding` replicas copies.
fn copied(size: &BTreeMap<TopicPartition, i64>, tp: &TopicPartition, adding: usize) -> i64 {
    size.get(tp)
        .copied()
        .unwrap_or(0)
        .saturating_mul(i64::try_from(adding).unwrap_or(i64::MAX))
}

/// The first `limit` targets: partitions with a replica on a broker that goes first,
/// then by name.
pub fn next_batch(
    targets: &BTreeMap<TopicPartition, Vec<i32>>,
    current: &BTreeMap<TopicPartition, Vec<i32>>,
    staying: i32,
    limit: usize,
) -> BTreeMap<TopicPartition, Vec<i32>> {
    let mut order: Vec<(&TopicPartition, &Vec<i32>)> = targets.iter().collect();
    // Stable: within each group the map's order (by name) is kept.
    order.sort_by_key(|(tp, _)| {
        !current
            .get(*tp)
            .is_some_and(|r| r.iter().any(|b| *b >= staying))
    });
    order
        .into_iter()
        .take(limit)
        .map(|(tp, r)| (tp.clone(), r.clone()))
        .collect()
}

/// After a rebalance: leadership back to each partition's preferred replica, where it
/// is elsewhere. Advisory: a failure is logged, the brokers' own preferred-leader
/// balancing gets there too.
async fn elect_preferred(admin: &dyn KafkaAdmin, topics: &[TopicMetadata]) {
    let elsewhere: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.replicas.first().is_some_and(|first| *first != p.leader))
                .map(|p| TopicPartition::new(t.name.clone(), p.partition))
        })
        .collect();
    if elsewhere.is_empty() {
        return;
    }
    match admin.elect_preferred_leaders(&elsewhere).await {
        Ok(()) => info!(
            partitions = elsewhere.len(),
            "moved leaders back to preferred replicas"
        ),
        Err(error) => {
            info!(error = %error, "preferred leader election failed; the brokers' balancing will do it")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::ClusterBroker;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn the_future_placement_drops_the_replicas_being_removed() {
        let now = BTreeMap::from([(tp(0), vec![0, 1, 3]), (tp(1), vec![1, 2])]);
        let ongoing = BTreeMap::from([(
            tp(0),
            Reassignment {
                replicas: vec![0, 1, 3],
                adding: vec![3],
                removing: vec![0],
            },
        )]);
        assert_eq!(
            projected(now, &ongoing),
            BTreeMap::from([(tp(0), vec![1, 3]), (tp(1), vec![1, 2])])
        );
    }

    #[test]
    fn partitions_leaving_brokers_that_go_are_moved_first() {
        let targets: BTreeMap<_, _> = (0..10).map(|p| (tp(p), vec![0, 1])).collect();
        let current: BTreeMap<_, _> = (0..10)
            .map(|p| (tp(p), if p >= 7 { vec![3, 0] } else { vec![1, 0] }))
            .collect();
        let batch = next_batch(&targets, &current, 3, 4);
        assert_eq!(
            batch.keys().cloned().collect::<Vec<_>>(),
            [tp(0), tp(7), tp(8), tp(9)]
        );
    }

    /// Twelve single-replica partitions all on broker 0 of three live brokers, with
    /// `spec.rebalance.maxPartitionsMoving` = `max`; the partitions submitted in one pass.
    async fn first_batch(max: i32) -> Vec<TopicPartition> {
        let kafka = crate::kafka::fake::FakeKafka::default();
        kafka.with_topic("t", 12, &[]).with_state(|s| {
            for p in 0..12 {
                s.assignments.insert(tp(p), vec![0]);
            }
        });
        let (ctx, _server) = Context::test_with_admin(std::sync::Arc::new(kafka.clone()));
        let mut kc = crate::resources::test_cluster::demo();
        kc.spec.replicas = 3;
        kc.spec.rebalance.max_partitions_moving = max;
        let admin = ctx.kafka_admin("demo-bootstrap:9092").await.unwrap();
        let cluster = admin.describe_cluster().await.unwrap();
        let report = step(&kc, &ctx, admin.as_ref(), &cluster, true, false)
            .await
            .unwrap();
        let mut moving = Vec::new();
        kafka.with_state(|s| moving = s.moving.keys().cloned().collect());
        assert_eq!(report.moving, moving.len());
        moving
    }

    #[tokio::test]
    async fn a_batch_is_as_large_as_max_partitions_moving() {
        // Balanced, brokers 1 and 2 get four partitions each: eight to move.
        assert_eq!(first_batch(4).await.len(), 4, "the default");
        assert_eq!(first_batch(1).await.len(), 1);
        assert_eq!(first_batch(6).await.len(), 6);
        assert_eq!(first_batch(1000).await.len(), 8, "no more than the plan");
    }

    #[test]
    fn max_partitions_moving_outside_1_to_1000_is_refused() {
        let spec = |max| RebalanceSpec {
            max_partitions_moving: max,
        };
        for max in [1, 4, 999, 1000] {
            assert!(validate(&spec(max)).is_ok(), "{max}");
        }
        for max in [i32::MIN, -1, 0, 1001] {
            let error = validate(&spec(max)).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::InvalidSpec {
                        field: "spec.rebalance.maxPartitionsMoving",
                        ..
                    }
                ),
                "{error:?}"
            );
        }
        let mut kc = crate::resources::test_cluster::demo();
        assert_eq!(batch_size(&kc), 4, "the default");
        kc.spec.rebalance.max_partitions_moving = 0;
        assert_eq!(batch_size(&kc), 1, "never 0, even unvalidated");
    }

    #[test]
    fn a_plan_waits_for_every_staying_broker_to_be_live() {
        let cluster = ClusterDescription {
            cluster_id: "c".into(),
            controller_id: Some(0),
            brokers: [(0, false), (1, true), (2, false), (3, false)]
                .map(|(id, fenced)| ClusterBroker {
                    id,
                    fenced,
                    rack: Some(format!("r{}", id % 2)),
                })
                .to_vec(),
        };
        assert_eq!(staying_brokers(&cluster, 3), Err(1));
        let live = staying_brokers(&cluster, 1).unwrap();
        assert_eq!(
            live,
            [Broker {
                id: 0,
                rack: Some("r0".into())
            }]
        );
    }
}
