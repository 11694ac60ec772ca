//! The `ConsumerGroup` controller: the group's state and lag in status, and declared
//! offset resets applied once.
//!
//! One pass:
//! 1. find the `KafkaCluster` (gone or deleting: `Ready=False`, state, members and lag
//!    cleared, nothing else);
//! 2. describe the group (state, members);
//! 3. when `spec.offsetReset` carries a `requestId` other than
//!    `status.lastAppliedResetRequestId`: apply it if the group has no members (its
//!    targets from ListOffsets or the spec, committed by a standalone OffsetCommit) and
//!    record the id; else `OffsetReset=False/WaitingForEmptyGroup` says why it waits;
//! 4. fetch the committed offsets and the high watermarks; lag per partition is
//!    `highWatermark - committed` (never below 0);
//! 5. apply the status when it changed, and requeue after [`REFRESH`] (lag changes
//!    without any Kubernetes event). The status write itself triggers nothing (see
//!    [`run`]), so lag is written at most once per [`REFRESH`].
//!
//! When Kafka does not answer (a transient Kafka error), `Ready=False/KafkaUnavailable`
//! says why, state and lag stay as last observed, and the pass backs off.
//!
//! Nothing is left on the cluster when the object goes, so there is no finalizer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::{Action, Controller};
use kube::runtime::{predicates, PredicateConfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use tracing::{debug, info, info_span, warn, Instrument};

use super::{apply_status, object_key, retry_after, run_scoped, scoped_api, RunOptions};
use crate::context::ClusterAddress;
use crate::crd::{
    upsert_condition, ConditionStatus, ConsumerGroup, ConsumerGroupStatus, GroupMember,
    OffsetReset, OffsetResetStrategy, PartitionLag,
};
use crate::kafka::{GroupDescription, KafkaAdmin, OffsetSpec, TopicPartition};
use crate::{Context, Error};

/// Condition type: the group could be observed.
pub const READY: &str = "Ready";
/// Condition type: the declared offset reset has been applied.
pub const OFFSET_RESET: &str = "OffsetReset";
/// How often state and lag are refreshed.
pub const REFRESH: Duration = Duration::from_secs(30);
/// `Ready=False` reason: the cluster did not answer; state and lag are as last observed.
pub const KAFKA_UNAVAILABLE: &str = "KafkaUnavailable";
/// How often a group whose cluster is missing is looked at.
const CLUSTER_MISSING_RESYNC: Duration = Duration::from_secs(60);

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "consumergroup";

/// Reconciles one `ConsumerGroup`.
pub async fn reconcile(cg: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cg.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "ConsumerGroup",
        name: cg.name_any(),
    })?;
    let span = info_span!("reconcile", kind = "ConsumerGroup", name = %cg.name_any(), namespace = %namespace);
    async {
        match reconcile_in(&cg, &ctx, &namespace).await {
            Ok(action) => {
                ctx.record_success(&object_key(cg.as_ref()));
                Ok(action)
            }
            // Kafka did not answer: say so in status (the reason is not only in the
            // logs), keep the last observation, and back off as for any transient error.
            Err(error @ Error::Kafka { .. }) if error.is_transient() => {
                let mut status = cg.status.clone().unwrap_or_default();
                status.observed_generation = cg.metadata.generation;
                upsert_condition(
                    &mut status.conditions,
                    READY,
                    ConditionStatus::False,
                    KAFKA_UNAVAILABLE,
                    format!("the group could not be observed: {}", error.report()),
                    cg.metadata.generation,
                    &(ctx.clock)(),
                );
                write_status(&cg, &ctx, &namespace, status).await?;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }
    .instrument(span)
    .await
}

/// Backs off transient errors per object; see [`retry_after`].
pub fn error_policy(cg: Arc<ConsumerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_after("ConsumerGroup", cg.as_ref(), error, &ctx)
}

/// Runs the controller until `options.shutdown` is cancelled: one kube `Controller` per
/// watched namespace, or one over all namespaces.
///
/// Only a new `metadata.generation` (a spec change) or the first sight of an object
/// triggers a reconcile, not every change: the controller's own status writes (lag moves
/// with every record produced) would otherwise trigger the next pass at once and, under
/// steady traffic, reconcile continuously. Lag reaches status at most once per
/// [`REFRESH`], the requeue of every pass.
pub async fn run(ctx: Arc<Context>, options: &RunOptions) {
    let client = ctx.client.clone();
    let make = |namespace: Option<&str>| {
        let api = scoped_api::<ConsumerGroup>(&client, namespace);
        let (reader, writer) = reflector::store();
        let spec_changes = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(predicates::generation, PredicateConfig::default());
        Controller::for_stream(spec_changes, reader)
    };
    run_scoped(CONTROLLER, make, reconcile, error_policy, ctx, options).await;
}

async fn reconcile_in(cg: &ConsumerGroup, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let now = (ctx.clock)();
    let generation = cg.metadata.generation;
    let cluster = &cg.spec.cluster_ref.name;
    let mut status = cg.status.clone().unwrap_or_default();
    status.observed_generation = generation;

    let bootstrap = match ctx.cluster_address(namespace, cluster).await? {
        ClusterAddress::Bootstrap { address, .. } => address,
        gone => {
            let (reason, message) = match gone {
                ClusterAddress::Deleting => ("ClusterDeleting", "is being deleted"),
                _ => ("ClusterNotFound", "does not exist"),
            };
            let message = format!("KafkaCluster {cluster} {message}");
            // Nothing to observe: no state, members or lag from a cluster that is gone.
            clear_observations(&mut status);
            upsert_condition(
                &mut status.conditions,
                READY,
                ConditionStatus::False,
                reason,
                message,
                generation,
                &now,
            );
            write_status(cg, ctx, namespace, status).await?;
            return Ok(Action::requeue(CLUSTER_MISSING_RESYNC));
        }
    };
    let admin = ctx.kafka_admin(&bootstrap).await?;
    let group_id = &cg.spec.group_id;
    let group = admin
        .describe_group(group_id)
        .await
        .map_err(Error::kafka(format!("describe group {group_id}")))?;

    if let Some(reset) = &cg.spec.offset_reset {
        if status.last_applied_reset_request_id.as_deref() != Some(reset.request_id.as_str()) {
            let (applied, reason, message) = if group.is_inactive() {
                apply_reset(admin.as_ref(), group_id, reset).await?
            } else {
                let message = format!(
                    "reset {} waits until group {group_id} is empty: it has {} members (state {})",
                    reset.request_id,
                    group.members.len(),
                    group.state
                );
                info!(%message, "offset reset waiting");
                (false, "WaitingForEmptyGroup", message)
            };
            if applied {
                status.last_applied_reset_request_id = Some(reset.request_id.clone());
            }
            upsert_condition(
                &mut status.conditions,
                OFFSET_RESET,
                ConditionStatus::from_bool(applied),
                reason,
                message,
                generation,
                &now,
            );
        }
    }

    let lag = observe_lag(admin.as_ref(), group_id).await?;
    fill_group_status(&mut status, &group, lag);
    let message = format!(
        "group {group_id} is {} with {} members, total lag {}",
        group.state, status.member_count, status.total_lag
    );
    upsert_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::True,
        "Observed",
        message,
        generation,
        &now,
    );
    write_status(cg, ctx, namespace, status).await?;
    Ok(Action::requeue(REFRESH))
}

/// Applies `reset` to the (empty) group: `(applied, reason, message)`.
async fn apply_reset(
    admin: &dyn KafkaAdmin,
    group_id: &str,
    reset: &OffsetReset,
) -> Result<(bool, &'static str, String), Error> {
    let targets: BTreeMap<TopicPartition, i64> = match reset.strategy {
        OffsetResetStrategy::Explicit => reset
            .offsets
            .iter()
            .map(|o| (TopicPartition::new(&o.topic, o.partition), o.offset))
            .collect(),
        strategy => {
            let topics: Vec<String> = if reset.topics.is_empty() {
                let committed = admin
                    .fetch_offsets(group_id)
                    .await
                    .map_err(Error::kafka(format!("fetch offsets of group {group_id}")))?;
                let names: BTreeSet<String> = committed.into_keys().map(|tp| tp.topic).collect();
                names.into_iter().collect()
            } else {
                reset.topics.clone()
            };
            let partitions = existing_partitions(admin, &topics).await?;
            let missing: Vec<&String> = topics
                .iter()
                .filter(|t| !partitions.iter().any(|tp| &tp.topic == *t))
                .collect();
            if !missing.is_empty() {
                let message = format!(
                    "reset {} names topics that do not exist: {missing:?}",
                    reset.request_id
                );
                warn!(%message, "offset reset refused");
                return Ok((false, "UnknownTopic", message));
            }
            reset_targets(admin, &partitions, strategy, reset.timestamp_ms).await?
        }
    };
    if !targets.is_empty() {
        admin
            .commit_offsets(group_id, &targets)
            .await
            .map_err(Error::kafka(format!("commit offsets of group {group_id}")))?;
    }
    let message = format!(
        "reset {} ({:?}) moved {} partitions",
        reset.request_id,
        reset.strategy,
        targets.len()
    );
    info!(%message, "offset reset applied");
    Ok((true, "Applied", message))
}

/// The offsets a non-explicit reset moves `partitions` to.
async fn reset_targets(
    admin: &dyn KafkaAdmin,
    partitions: &[TopicPartition],
    strategy: OffsetResetStrategy,
    timestamp_ms: Option<i64>,
) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    let spec = match strategy {
        OffsetResetStrategy::Earliest => OffsetSpec::Earliest,
        OffsetResetStrategy::Timestamp => OffsetSpec::Timestamp(timestamp_ms.unwrap_or(0)),
        OffsetResetStrategy::Latest | OffsetResetStrategy::Explicit => OffsetSpec::Latest,
    };
    let mut targets = admin
        .list_offsets(partitions, spec)
        .await
        .map_err(Error::kafka("list offsets for a reset"))?;
    // No record at or after the timestamp: the end of the log, as Kafka's tools do.
    let past_the_end: Vec<TopicPartition> = targets
        .iter()
        .filter(|(_, offset)| **offset < 0)
        .map(|(tp, _)| tp.clone())
        .collect();
    if !past_the_end.is_empty() {
        let ends = admin
            .list_offsets(&past_the_end, OffsetSpec::Latest)
            .await
            .map_err(Error::kafka("list end offsets for a reset"))?;
        targets.extend(ends);
    }
    Ok(targets)
}

/// Every partition of the `topics` that exist.
async fn existing_partitions(
    admin: &dyn KafkaAdmin,
    topics: &[String],
) -> Result<Vec<TopicPartition>, Error> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let metadata = admin
        .metadata(Some(topics))
        .await
        .map_err(Error::kafka("describe the group's topics"))?;
    Ok(metadata
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(&t.name, p.partition))
        })
        .collect())
}

/// Lag of every partition the group has a committed offset for (on existing topics).
async fn observe_lag(admin: &dyn KafkaAdmin, group_id: &str) -> Result<Vec<PartitionLag>, Error> {
    let committed = admin
        .fetch_offsets(group_id)
        .await
        .map_err(Error::kafka(format!("fetch offsets of group {group_id}")))?;
    let topics: BTreeSet<String> = committed.keys().map(|tp| tp.topic.clone()).collect();
    let topics: Vec<String> = topics.into_iter().collect();
    let existing = existing_partitions(admin, &topics).await?;
    let partitions: Vec<TopicPartition> = committed
        .keys()
        .filter(|tp| existing.contains(tp))
        .cloned()
        .collect();
    let high_watermarks = admin
        .list_offsets(&partitions, OffsetSpec::Latest)
        .await
        .map_err(Error::kafka(format!(
            "list end offsets for group {group_id}"
        )))?;
    Ok(lag(&committed, &high_watermarks))
}

/// Lag per partition present in both maps, sorted by topic and partition.
pub fn lag(
    committed: &BTreeMap<TopicPartition, i64>,
    high_watermarks: &BTreeMap<TopicPartition, i64>,
) -> Vec<PartitionLag> {
    committed
        .iter()
        .filter_map(|(tp, &committed_offset)| {
            let high_watermark = *high_watermarks.get(tp)?;
            Some(PartitionLag {
                topic: tp.topic.clone(),
                partition: tp.partition,
                committed_offset,
                high_watermark,
                lag: high_watermark.saturating_sub(committed_offset).max(0),
            })
        })
        .collect()
}

/// Forgets state, members and lag (the last applied reset is kept: it was applied).
fn clear_observations(status: &mut ConsumerGroupStatus) {
    status.state = None;
    status.member_count = 0;
    status.members.clear();
    status.lag.clear();
    status.total_lag = 0;
}

/// Sets state, members and lag from what the coordinator reported.
fn fill_group_status(
    status: &mut ConsumerGroupStatus,
    group: &GroupDescription,
    lag: Vec<PartitionLag>,
) {
    status.state = Some(group.state.clone());
    status.member_count = i32::try_from(group.members.len()).unwrap_or(i32::MAX);
    let mut members: Vec<GroupMember> = group
        .members
        .iter()
        .map(|m| GroupMember {
            member_id: m.member_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    status.members = members;
    status.total_lag = lag.iter().fold(0i64, |sum, p| sum.saturating_add(p.lag));
    status.lag = lag;
}

async fn write_status(
    cg: &ConsumerGroup,
    ctx: &Context,
    namespace: &str,
    status: ConsumerGroupStatus,
) -> Result<(), Error> {
    if cg.status.as_ref() == Some(&status) {
        debug!("status unchanged");
        return Ok(());
    }
    apply_status::<ConsumerGroup, _>(ctx, namespace, &cg.name_any(), &status).await
}

#[cfg(test)]
mod tests;
