//! The `Topic` controller: a topic on the cluster, kept as the object declares it.
//!
//! `reconcile` runs inside kube's `finalizer()` helper (finalizer [`FINALIZER`]):
//!
//! **Apply**, level-triggered and idempotent:
//! 1. list the namespace's `Topic`s; when an older one names the same topic on the same
//!    cluster, this one only reports `ResourceConflict` and touches nothing;
//! 2. find the `KafkaCluster` (gone or deleting: `Ready=False`, nothing else);
//! 3. look at the topic (Metadata + DescribeConfigs):
//!    - missing: create it;
//!    - present but never managed by this object (`status.topicId` differs): adopt it
//!      only when it matches the spec, else `Ready=False/AdoptionRefused` lists what
//!      differs;
//!    - managed: grow partitions (never shrink: `Ready=False/PartitionsNotShrunk`),
//!      revert config drift with IncrementalAlterConfigs (declared keys set, other
//!      overrides removed), and move to a changed replication factor with partition
//!      reassignments (see [`replication`], a batch of the cluster's
//!      `spec.rebalance.maxPartitionsMoving` at a time; `Ready=False/Reassigning` and the
//!      `Reassigning` condition with `status.reassigningPartitions` until done);
//! 4. apply the status (what the cluster has) when it changed; requeue to catch drift.
//!    When Kafka does not answer, `Ready=False/KafkaUnavailable` says why and the rest of
//!    the status (what the cluster had, `topicId`) is kept.
//!    A `Ready=False` that only an edit clears (`KafkaRejected`, `AdoptionRefused`,
//!    `ResourceConflict`, ...: [`plan::NEEDS_AN_EDIT`]) is also one Warning Event when it
//!    appears or changes.
//!
//! **Cleanup** (the object is being deleted) deletes the topic only when
//! `deletionPolicy` is `Delete`, this object managed it (`status.topicId` equals the
//! topic's id) and no other `Topic` still claims it. When the `KafkaCluster` is gone or
//! being deleted the finalizer is released without touching anything, so it never
//! blocks deletion forever.

pub mod plan;
pub mod replication;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::watcher;
use kube::ResourceExt;
use tracing::{debug, info, info_span, warn, Instrument};

use self::plan::{Observed, Outcome};
use super::{apply_status, object_key, retry_after, run_scoped, scoped_api, RunOptions};
use crate::context::ClusterAddress;
use crate::crd::{DeletionPolicy, KafkaCluster, Topic, TopicStatus};
use crate::kafka::{KafkaAdmin, KafkaError, NewTopic};
use crate::{Context, Error};

/// The finalizer this controller puts on every `Topic`.
pub const FINALIZER: &str = "topics.runnel.dev/finalizer";
/// How often a topic in sync is checked for drift made behind the operator's back.
const IN_SYNC_RESYNC: Duration = Duration::from_secs(120);
/// How often a topic that is not (yet) in sync is looked at.
const NOT_READY_RESYNC: Duration = Duration::from_secs(30);
/// How often a topic the broker refused, or whose cluster is missing, is retried.
const BLOCKED_RESYNC: Duration = Duration::from_secs(60);
/// How often a replication-factor change in progress is looked at.
const REASSIGNING_RESYNC: Duration = Duration::from_secs(3);

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "topic";

/// Reconciles one `Topic`.
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = topic.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "Topic",
        name: topic.name_any(),
    })?;
    let span =
        info_span!("reconcile", kind = "Topic", name = %topic.name_any(), namespace = %namespace);
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = object_key(topic.as_ref());
    let (context, ns) = (ctx.as_ref(), namespace.as_str());
    let action = finalizer(&api, FINALIZER, topic, |event| async move {
        match event {
            Event::Apply(topic) => apply(&topic, context, ns).await,
            Event::Cleanup(topic) => cleanup(&topic, context, ns).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.record_success(&key);
    Ok(action)
}

/// Backs off transient errors per object; see [`retry_after`].
pub fn error_policy(topic: Arc<Topic>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_after("Topic", topic.as_ref(), error, &ctx)
}

/// Runs the controller until `options.shutdown` is cancelled: one kube `Controller` per
/// watched namespace, or one over all namespaces.
pub async fn run(ctx: Arc<Context>, options: &RunOptions) {
    let client = ctx.client.clone();
    let make = |namespace: Option<&str>| {
        let api = scoped_api::<Topic>(&client, namespace);
        Controller::new(api, watcher::Config::default().any_semantic())
    };
    run_scoped(CONTROLLER, make, reconcile, error_policy, ctx, options).await;
}

fn topic_name(topic: &Topic) -> String {
    let object_name = topic.name_any();
    topic.spec.effective_name(&object_name).to_string()
}

async fn list_topics(ctx: &Context, namespace: &str) -> Result<Vec<Topic>, Error> {
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list Topics"))?
        .items)
}

/// [`apply_in`], and when Kafka does not answer (a transient Kafka error), the Ready
/// condition says so before the error backs off: the reason is not only in the logs.
async fn apply(topic: &Topic, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    match apply_in(topic, ctx, namespace).await {
        Err(error @ Error::Kafka { .. }) if error.is_transient() => {
            let reason = format!("the topic could not be observed: {}", error.report());
            let status = plan::unavailable_status(topic, reason, &(ctx.clock)());
            write_status(topic, ctx, namespace, status).await?;
            Err(error)
        }
        result => result,
    }
}

async fn apply_in(topic: &Topic, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let name = topic_name(topic);
    let cluster = &topic.spec.cluster_ref.name;
    let now = (ctx.clock)();

    let all = list_topics(ctx, namespace).await?;
    if let Some(owner) = plan::owner_other_than(topic, &all) {
        let owner = owner.name_any();
        warn!(topic = %name, %owner, "an older Topic manages this topic");
        let outcome = Outcome::not_ready(
            "ResourceConflict",
            format!("Topic {owner} manages topic {name} on cluster {cluster}"),
        );
        let status = plan::topic_status(topic, None, false, &outcome, Some(&owner), &now);
        write_status(topic, ctx, namespace, status).await?;
        return Ok(Action::requeue(BLOCKED_RESYNC));
    }

    let (bootstrap, kc) = match ctx.cluster_address(namespace, cluster).await? {
        ClusterAddress::Bootstrap { address, cluster } => (address, cluster),
        gone => {
            let (reason, message) = match gone {
                ClusterAddress::Deleting => ("ClusterDeleting", "is being deleted"),
                _ => ("ClusterNotFound", "does not exist"),
            };
            let outcome = Outcome::not_ready(reason, format!("KafkaCluster {cluster} {message}"));
            let status = plan::topic_status(topic, None, false, &outcome, None, &now);
            write_status(topic, ctx, namespace, status).await?;
            return Ok(Action::requeue(BLOCKED_RESYNC));
        }
    };
    let admin = ctx.kafka_admin(&bootstrap).await?;
    let (observed, owned, outcome, change) = sync(topic, ctx, &kc, admin.as_ref(), &name).await?;
    let mut status = plan::topic_status(topic, observed.as_ref(), owned, &outcome, None, &now);
    plan::record_reassignment(&mut status, topic, change.as_ref(), &now);
    write_status(topic, ctx, namespace, status).await?;
    Ok(Action::requeue(match outcome.reason {
        _ if outcome.ready => IN_SYNC_RESYNC,
        plan::REASSIGNING => REASSIGNING_RESYNC,
        "KafkaRejected" | "AdoptionRefused" => BLOCKED_RESYNC,
        _ => NOT_READY_RESYNC,
    }))
}

/// What [`sync`] found: the topic on the cluster, whether this object manages it, the
/// outcome, and where a replication-factor change stands (`None`: none was looked at).
type Synced = (Option<Observed>, bool, Outcome, Option<replication::Change>);

/// Makes the topic on the cluster `kc` match the spec, as far as allowed.
async fn sync(
    topic: &Topic,
    ctx: &Context,
    kc: &KafkaCluster,
    admin: &dyn KafkaAdmin,
    name: &str,
) -> Result<Synced, Error> {
    let spec = &topic.spec;
    let before = observe(admin, name).await?;
    let Some(existing) = &before else {
        info!(topic = %name, partitions = spec.partitions, "creating the topic");
        let new_topic = NewTopic {
            name: name.to_string(),
            partitions: spec.partitions,
            replication_factor: spec
                .replication_factor
                .and_then(|rf| i16::try_from(rf).ok()),
            config: spec.config.clone(),
        };
        let created = admin.create_topic(&new_topic).await;
        if let Some(refused) = refusal(created.map(|_| ()), format!("create topic {name}"))? {
            return Ok((None, false, refused, None));
        }
        let observed = observe_after_change(admin, name).await?;
        let outcome = plan::managed_outcome(topic, &observed, None);
        return Ok((Some(observed), true, outcome, None));
    };

    let previous_id = topic.status.as_ref().and_then(|s| s.topic_id.as_deref());
    let managed = previous_id.is_some() && previous_id == existing.metadata.topic_id.as_deref();
    if !managed {
        let differences = plan::adoption_differences(topic, existing);
        if !differences.is_empty() {
            warn!(topic = %name, ?differences, "not adopting a topic that differs from the spec");
            let outcome = Outcome::not_ready(
                "AdoptionRefused",
                format!(
                    "topic {name} existed before this object and differs from it: {}",
                    differences.join("; ")
                ),
            );
            return Ok((before, false, outcome, None));
        }
        info!(topic = %name, "adopting the existing topic, which matches the spec");
    }

    let mut changed = false;
    let partitions = existing.metadata.partition_count();
    if partitions < spec.partitions {
        info!(topic = %name, from = partitions, to = spec.partitions, "growing partitions");
        let grown = admin.create_partitions(name, spec.partitions).await;
        if let Some(refused) = refusal(grown, format!("grow topic {name}"))? {
            return Ok((before, true, refused, None));
        }
        changed = true;
    }
    let ops = plan::config_ops(&spec.config, &existing.overrides);
    if !ops.is_empty() {
        info!(topic = %name, ?ops, "applying config changes");
        let altered = admin.alter_topic_config(name, &ops).await;
        if let Some(refused) = refusal(altered, format!("alter configs of topic {name}"))? {
            return Ok((before, true, refused, None));
        }
        changed = true;
    }
    let mut observed = if changed {
        observe_after_change(admin, name).await?
    } else {
        existing.clone()
    };
    let change = match spec.replication_factor {
        Some(want) => {
            let change = replication::step(ctx, kc, admin, &observed.metadata, want).await?;
            if matches!(change, replication::Change::Moving { .. }) {
                // What the metadata lists now: old and new replicas of the moves.
                observed = observe_after_change(admin, name).await?;
            }
            Some(change)
        }
        None => None,
    };
    let outcome = plan::managed_outcome(topic, &observed, change.as_ref());
    Ok((Some(observed), true, outcome, change))
}

/// `Ok(Some(outcome))` when the broker refused the request's content (a spec problem,
/// reported as `KafkaRejected`), `Ok(None)` on success, `Err` for transient failures.
fn refusal(result: Result<(), KafkaError>, action: String) -> Result<Option<Outcome>, Error> {
    match result {
        Ok(()) => Ok(None),
        Err(source) if source.is_invalid_request() => {
            warn!(error = %source, "the broker refused the request");
            Ok(Some(Outcome::not_ready(
                "KafkaRejected",
                format!("{action}: {source}"),
            )))
        }
        Err(source) => Err(Error::Kafka { action, source }),
    }
}

/// The topic as the cluster has it; `None` when it does not exist.
async fn observe(admin: &dyn KafkaAdmin, name: &str) -> Result<Option<Observed>, Error> {
    let names = [name.to_string()];
    let metadata = admin
        .metadata(Some(&names))
        .await
        .map_err(Error::kafka(format!("describe topic {name}")))?
        .into_iter()
        .find(|t| t.name == name);
    let Some(metadata) = metadata else {
        return Ok(None);
    };
    let configs = admin
        .describe_topic_config(name)
        .await
        .map_err(Error::kafka(format!("describe configs of topic {name}")))?;
    Ok(Some(Observed {
        metadata,
        overrides: plan::overrides(&configs),
    }))
}

async fn observe_after_change(admin: &dyn KafkaAdmin, name: &str) -> Result<Observed, Error> {
    observe(admin, name).await?.ok_or_else(|| Error::Kafka {
        action: format!("describe topic {name} after changing it"),
        source: KafkaError::MissingInResponse {
            api: "Metadata",
            resource: name.to_string(),
        },
    })
}

async fn write_status(
    topic: &Topic,
    ctx: &Context,
    namespace: &str,
    status: TopicStatus,
) -> Result<(), Error> {
    if topic.status.as_ref() == Some(&status) {
        debug!("status unchanged");
        return Ok(());
    }
    apply_status::<Topic, _>(ctx, namespace, &topic.name_any(), &status).await?;
    if let Some((reason, note)) = plan::warning(topic.status.as_ref(), &status) {
        ctx.publish_warning_note(topic, &reason, note).await;
    }
    Ok(())
}

async fn cleanup(topic: &Topic, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let name = topic_name(topic);
    if topic.spec.deletion_policy == DeletionPolicy::Retain {
        info!(topic = %name, "deletionPolicy Retain: the topic stays");
        return Ok(Action::await_change());
    }
    let Some(topic_id) = topic.status.as_ref().and_then(|s| s.topic_id.clone()) else {
        info!(topic = %name, "this object never managed the topic: it stays");
        return Ok(Action::await_change());
    };
    let all = list_topics(ctx, namespace).await?;
    if let Some(other) = plan::other_claimant(topic, &all) {
        info!(topic = %name, other = %other.name_any(), "another Topic still claims the topic: it stays");
        return Ok(Action::await_change());
    }
    let cluster = &topic.spec.cluster_ref.name;
    let bootstrap = match ctx.cluster_address(namespace, cluster).await? {
        ClusterAddress::Bootstrap { address, .. } => address,
        ClusterAddress::Missing | ClusterAddress::Deleting => {
            info!(topic = %name, %cluster, "the cluster is gone: releasing the finalizer");
            return Ok(Action::await_change());
        }
    };
    let admin = ctx.kafka_admin(&bootstrap).await?;
    let names = [name.clone()];
    let current = admin
        .metadata(Some(&names))
        .await
        .map_err(Error::kafka(format!("describe topic {name}")))?
        .into_iter()
        .find(|t| t.name == name);
    match current {
        None => info!(topic = %name, "the topic is already gone"),
        Some(found) if found.topic_id.as_deref() != Some(topic_id.as_str()) => {
            info!(topic = %name, "the topic was recreated by someone else: it stays");
        }
        Some(_) => match admin.delete_topic(&name).await {
            Ok(()) => info!(topic = %name, "deleted the topic"),
            Err(e) if e.is_unknown_topic() => info!(topic = %name, "the topic is already gone"),
            Err(source) => {
                return Err(Error::Kafka {
                    action: format!("delete topic {name}"),
                    source,
                })
            }
        },
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
