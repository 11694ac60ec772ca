//! The `KafkaCluster` controller: children by server-side apply, partition moves, then
//! status.
//!
//! One pass, level-triggered and idempotent:
//!
//! 1. refuse a spec the operator cannot honour (status `Degraded/InvalidSpec`, no apply);
//!    a child the API server refuses (422/403) likewise ends the pass with
//!    `Degraded/RefusedByAPIServer` instead of a retry loop;
//! 2. read the StatefulSet: the metadata quorum's voters it passes are kept (they are
//!    fixed when the cluster is created, see [`resources::quorum`]), and a scale-down is
//!    judged (see [`scale_down`]);
//! 3. apply ConfigMap, Services, StatefulSet, PDB and the optional ServiceMonitor, all
//!    under the field manager `runnel-operator` with `force`;
//! 4. ask the cluster (DescribeCluster through the bootstrap Service, once a broker is
//!    ready) for its controller and live brokers;
//! 5. list the broker pods; take one step of the gated rolling restart (see
//!    [`restart`]: at most one pod is deleted per pass, a ready broker only when the
//!    brokers say it is safe, the active controller last);
//! 6. take one step of the partition moves (see [`rebalance`]: the balance after a
//!    scale-up, the drain before a scale-down, at most `spec.rebalance.maxPartitionsMoving`
//!    at a time; none is started while a restart runs);
//!    unregister the brokers a finished scale-down removed;
//! 7. derive the status (see [`status`]) and apply it through the status subresource,
//!    only when it changed; a `Degraded` condition that appears or changes (a failed
//!    broker, a refused scale-down, a ServiceMonitor without its CRD) is also a Warning
//!    Event, once.
//!
//! Deleting a cluster needs no action here: every child carries an owner reference and
//! is garbage-collected, and volumes are retained by design. So there is no finalizer.
//! Its metric series go when the watch no longer lists it (see [`forget_deleted`]).
//!
//! Scaling down never removes a voter of the metadata quorum: the StatefulSet keeps its
//! size and `Degraded/ScaleDownRemovesVoters` says which. Nor does it leave a partition
//! with fewer brokers than replicas: `Degraded/ScaleDownImpossible` names it. Otherwise
//! the brokers that go are drained first (`Ready=False/Draining`), then the StatefulSet
//! shrinks. Their PersistentVolumeClaims stay (the StatefulSet's
//! `persistentVolumeClaimRetentionPolicy` is `Retain` when scaled and when deleted):
//! scaling up again reuses them, and deleting them is left to the user.

pub mod rebalance;
pub mod restart;
pub mod scale_down;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{predicates, reflector, watcher, PredicateConfig, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, info_span, warn, Instrument};

pub use status::Findings;

use super::{apply_status, object_key, retry_after, run_scoped_with, scoped_api, RunOptions};
use crate::context::FIELD_MANAGER;
use crate::crd::{newly, ConditionStatus, KafkaCluster, KafkaClusterStatus};
use crate::kafka::{ClusterDescription, KafkaAdmin};
use crate::metrics::{ClusterWork, Metrics};
use crate::resources::quorum::{self, Voters};
use crate::resources::{self, configmap, pdb, service, servicemonitor, statefulset};
use crate::{Context, Error};

/// How often a healthy cluster is looked at without any event.
const HEALTHY_RESYNC: Duration = Duration::from_secs(300);
/// How often a rolling restart, or a scale-down refused for the topics' replication
/// factors, is looked at (broker catch-up and topic changes are no watch events).
const RESTART_RESYNC: Duration = Duration::from_secs(10);
/// How often a cluster that is still converging is looked at.
const CONVERGING_RESYNC: Duration = Duration::from_secs(30);
/// How soon a cluster with ready brokers that none of them could describe is asked again
/// (the bootstrap name may not resolve yet): status lacks the controller until then.
const DESCRIBE_RETRY: Duration = Duration::from_secs(5);
/// How often partition moves, a drain or the removal of brokers are looked at (their
/// progress is not a watch event).
const MOVES_RESYNC: Duration = Duration::from_secs(3);

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "kafkacluster";

/// Reconciles one `KafkaCluster`.
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = kc.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "KafkaCluster",
        name: kc.name_any(),
    })?;
    let span = info_span!("reconcile", kind = "KafkaCluster", name = %kc.name_any(), namespace = %namespace);
    async {
        match reconcile_in(&kc, &ctx, &namespace).await {
            Ok(action) => {
                ctx.record_success(&object_key(kc.as_ref()));
                Ok(action)
            }
            // Retrying cannot help: say so in status. The error itself becomes a Warning
            // Event (`observed`) and waits for an edit (`error_policy`).
            Err(refusal) if !refusal.is_transient() => {
                let status = status::refused_status(&kc, &refusal, &(ctx.clock)());
                if kc.status.as_ref() != Some(&status) {
                    patch_status(&kc, &ctx, &namespace, &status).await?;
                }
                Err(refusal)
            }
            Err(error) => Err(error),
        }
    }
    .instrument(span)
    .await
}

async fn reconcile_in(kc: &KafkaCluster, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    quorum::validate_listeners(&kc.spec.listeners)?;
    rebalance::validate(&kc.spec.rebalance)?;
    // The voter count does not change what the broker accepts; only that there is a quorum.
    let quorum_flags = statefulset::quorum_flags(kc, Voters::initial(kc.spec.replicas));
    configmap::validate_broker_config(&kc.spec.config, &quorum_flags)?;

    let client = &ctx.client;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let sts_name = resources::names::statefulset(kc);
    let existing = statefulsets
        .get_opt(&sts_name)
        .await
        .map_err(Error::kube(format!("get StatefulSet {sts_name}")))?;
    let running = existing.as_ref().and_then(|sts| sts.spec.replicas);
    let voters = Voters::of(kc, existing.as_ref());

    let mut findings = Findings {
        quorum_voters: voters.ids().collect(),
        ..Findings::default()
    };
    let mut desired_sts = statefulset::desired_statefulset(kc, voters);
    if let Some(running) = running.filter(|running| *running > kc.spec.replicas) {
        let removed_voters: Vec<i32> = voters.ids().filter(|id| *id >= kc.spec.replicas).collect();
        if !removed_voters.is_empty() {
            warn!(
                running,
                desired = kc.spec.replicas,
                voters = ?removed_voters,
                "scale-down refused: it would remove voters of the metadata quorum"
            );
            findings.scale_down_blocked_at = Some(running);
            findings.scale_down_voters = removed_voters;
            desired_sts.spec.replicas = Some(running);
        } else {
            match scale_down::assess(kc, ctx, running).await {
                scale_down::Verdict::Shrink => info!(
                    running,
                    desired = kc.spec.replicas,
                    "scaling down: the brokers that go hold no replicas"
                ),
                scale_down::Verdict::Hold(hold) => {
                    if let Some(why) = &hold.impossible {
                        warn!(running, desired = kc.spec.replicas, %why, "scale-down refused");
                    } else {
                        info!(
                            running,
                            desired = kc.spec.replicas,
                            draining = ?hold.draining,
                            unreachable = ?hold.unreachable,
                            "scale-down held: the brokers that go still hold replicas"
                        );
                    }
                    findings.scale_down_blocked_at = Some(running);
                    findings.scale_down_impossible = hold.impossible;
                    findings.scale_down_draining = hold.draining;
                    findings.scale_down_holders = hold.unreachable;
                    desired_sts.spec.replicas = Some(running);
                }
            }
        }
    }

    apply(client, namespace, &configmap::desired_configmap(kc)).await?;
    apply(client, namespace, &service::desired_headless_service(kc)).await?;
    apply(client, namespace, &service::desired_bootstrap_service(kc)).await?;
    let sts = apply(client, namespace, &desired_sts).await?;
    apply(client, namespace, &pdb::desired_pdb(kc)).await?;
    if let Some(monitor) = servicemonitor::desired_servicemonitor(kc) {
        findings.service_monitor_unavailable =
            !apply_servicemonitor(client, namespace, &monitor).await?;
    }

    let ready_brokers = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let admin = if ready_brokers > 0 {
        connect(kc, ctx).await
    } else {
        None
    };
    if let Some(admin) = &admin {
        findings.cluster = describe_cluster(kc, admin.as_ref()).await;
    }
    let undescribed = ready_brokers > 0 && findings.cluster.is_none();

    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = label_selector(&resources::selector_labels(kc));
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(format!("list pods of {}", kc.name_any())))?;

    let brokers = restart::broker_pods(kc, &sts, &pods.items);
    let controller = findings.cluster.as_ref().and_then(|c| c.controller_id);
    let plan = restart::plan(&sts, &brokers, controller);
    let (delete, step) = restart::decide(kc, &brokers, plan, ctx.broker_admin.as_ref()).await;
    if let Some(broker) = &delete {
        info!(pod = %broker.pod, "restarting the broker on the current pod template");
        delete_pod(client, namespace, broker).await?;
    }
    let restarting = step != restart::Step::Done;
    findings.restart = step;

    let mut unregistering = Vec::new();
    if let (Some(admin), Some(cluster)) = (&admin, &findings.cluster) {
        let was_active = kc.status.as_ref().is_some_and(|s| s.rebalance.is_some());
        let settled = !restarting
            && delete.is_none()
            && brokers
                .iter()
                .all(|b| b.state == crate::crd::BrokerState::Ready || b.id >= kc.spec.replicas);
        match rebalance::step(kc, ctx, admin.as_ref(), cluster, settled, was_active).await {
            Ok(report) => findings.rebalance = Some(report),
            Err(e) => info!(error = %e.report(), "partition moves cannot be looked at now"),
        }
        let kept = sts.spec.replicas.unwrap_or(0);
        unregistering =
            scale_down::unregister_removed(kc, admin.as_ref(), cluster, kept, &pods.items).await;
    }
    // A drain, a scale-down waiting to ask the cluster, moves or removals in progress:
    // none of their progress is a watch event.
    let scale_down_waits =
        !findings.scale_down_draining.is_empty() || !findings.scale_down_holders.is_empty();
    let moving = findings
        .rebalance
        .as_ref()
        .is_some_and(rebalance::Report::active)
        || scale_down_waits
        || !unregistering.is_empty();
    if let Some(metrics) = &ctx.metrics {
        let report = findings.rebalance.as_ref();
        metrics.cluster_work(
            namespace,
            &kc.name_any(),
            ClusterWork {
                reassignments_in_flight: report.map_or(0, |r| r.moving),
                bytes_left: report.map_or(0, |r| r.bytes_left),
                moves: report.map(|r| {
                    r.move_bytes
                        .iter()
                        .map(|(tp, bytes)| (tp.to_string(), *bytes))
                        .collect()
                }),
                rolling: restarting,
            },
        );
    }

    let status = status::cluster_status(kc, &sts, &pods.items, &findings, &(ctx.clock)());
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    if kc.status.as_ref() == Some(&status) {
        debug!("status unchanged");
    } else {
        patch_status(kc, ctx, namespace, &status).await?;
        let old = kc.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
        if let Some(degraded) = newly(
            old,
            &status.conditions,
            status::DEGRADED,
            ConditionStatus::True,
        ) {
            ctx.publish_warning_note(kc, &degraded.reason, degraded.message.clone())
                .await;
        }
    }
    Ok(Action::requeue(if moving {
        MOVES_RESYNC
    } else if restarting || findings.scale_down_impossible.is_some() {
        // A refused scale-down is lifted by a topic's change, which is no watch event.
        RESTART_RESYNC
    } else if undescribed {
        DESCRIBE_RETRY
    } else if ready {
        HEALTHY_RESYNC
    } else {
        CONVERGING_RESYNC
    }))
}

/// An admin client through the bootstrap Service; `None` (logged) when no broker
/// answers: status then leaves the controller and liveness out, and nothing moves.
async fn connect(kc: &KafkaCluster, ctx: &Context) -> Option<Arc<dyn KafkaAdmin>> {
    let address = resources::names::bootstrap_servers(kc);
    match ctx.kafka_admin(&address).await {
        Ok(admin) => Some(admin),
        Err(e) => {
            info!(error = %e.report(), "the cluster cannot be reached now");
            None
        }
    }
}

/// The cluster as a broker behind the bootstrap Service describes it; `None` (logged)
/// when it does not answer.
async fn describe_cluster(kc: &KafkaCluster, admin: &dyn KafkaAdmin) -> Option<ClusterDescription> {
    let address = resources::names::bootstrap_servers(kc);
    match admin
        .describe_cluster()
        .await
        .map_err(Error::kafka(format!("DescribeCluster from {address}")))
    {
        Ok(cluster) => Some(cluster),
        Err(e) => {
            info!(error = %e.report(), "the cluster cannot be described now");
            None
        }
    }
}

/// Deletes a broker pod so the StatefulSet recreates it from the current template;
/// the uid precondition makes sure it is the pod the decision was about.
async fn delete_pod(
    client: &kube::Client,
    namespace: &str,
    broker: &restart::BrokerPod,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        preconditions: broker.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&broker.pod, &params).await {
        Ok(_) => Ok(()),
        // Gone already: the StatefulSet recreates it either way.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::Kube {
            action: format!("delete pod {}", broker.pod),
            source,
        }),
    }
}

/// Decides when to retry a failed reconcile: API errors back off (5 s doubling to
/// 5 min per object), an invalid spec waits for an edit or the slow resync.
pub fn error_policy(kc: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_after("KafkaCluster", kc.as_ref(), error, &ctx)
}

/// Runs the controller until `options.shutdown` is cancelled: per watched namespace (or
/// over all namespaces) one kube `Controller` watching the `KafkaCluster`s and the
/// children they own, in the same scope.
///
/// A `KafkaCluster` triggers a reconcile when first seen and when its generation changes
/// (a spec edit), not on every change: the controller's own status writes (the bytes a
/// rebalance has left move with every record produced) would otherwise trigger the next
/// pass at once. Children's changes and the requeue of every pass cover the rest.
///
/// The series a deleted cluster had in the metrics are dropped when the watch reports
/// it deleted or lists again, and after every reconcile (one that was running when the
/// cluster went may have just set them): see [`forget_deleted`].
pub async fn run(ctx: Arc<Context>, options: &RunOptions) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let metrics = ctx.metrics.clone();
    let make = |namespace: Option<&str>| {
        let (reader, writer) = reflector::store();
        let (store, metrics) = (reader.clone(), metrics.clone());
        let scope = namespace.map(str::to_string);
        let spec_changes = watcher(
            scoped_api::<KafkaCluster>(&client, namespace),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let (Ok(watcher::Event::Delete(_) | watcher::Event::InitDone), Some(metrics)) =
                (event, &metrics)
            {
                forget_deleted(metrics, scope.as_deref(), &store);
            }
        })
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
        Controller::for_stream(spec_changes, reader)
            .owns(scoped_api::<StatefulSet>(&client, namespace), owned.clone())
            .owns(scoped_api::<Service>(&client, namespace), owned.clone())
            .owns(scoped_api::<ConfigMap>(&client, namespace), owned.clone())
            .owns(
                scoped_api::<PodDisruptionBudget>(&client, namespace),
                owned.clone(),
            )
    };
    let after_each = |scope: Option<&str>, store: &Store<KafkaCluster>| {
        if let Some(metrics) = &metrics {
            forget_deleted(metrics, scope, store);
        }
    };
    run_scoped_with(
        CONTROLLER,
        make,
        reconcile,
        error_policy,
        after_each,
        ctx,
        options,
    )
    .await;
}

/// Drops the metric series of the KafkaClusters of `scope` (a namespace; `None`: all)
/// that `store`, the controller's view of them, no longer holds: they were deleted, and
/// without a finalizer nothing else says so. Does nothing until the store has its first
/// full list (before that, every cluster would look deleted).
pub fn forget_deleted(metrics: &Metrics, scope: Option<&str>, store: &Store<KafkaCluster>) {
    if store.wait_until_ready().now_or_never().is_none() {
        return;
    }
    metrics.retain_clusters(|namespace, name| {
        scope.is_some_and(|scope| scope != namespace)
            || store.get(&ObjectRef::new(name).within(namespace)).is_some()
    });
}

/// Server-side applies `object` (namespaced, typed) and returns what the server stored.
async fn apply<K>(client: &kube::Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(Error::kube(format!("apply {} {name}", K::kind(&()))))
}

/// Applies the ServiceMonitor; `Ok(false)` when its CRD is not installed.
async fn apply_servicemonitor(
    client: &kube::Client,
    namespace: &str,
    monitor: &DynamicObject,
) -> Result<bool, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &servicemonitor::servicemonitor_resource(),
    );
    let name = monitor.name_any();
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(monitor),
        )
        .await
    {
        Ok(_) => Ok(true),
        // By the code, not the reason: a group the API server does not serve at all is
        // a plain-text `404 page not found`, which has no Status reason.
        Err(kube::Error::Api(status)) if status.code == 404 => {
            warn!("ServiceMonitor requested but monitoring.coreos.com/v1 is not served");
            Ok(false)
        }
        Err(source) => Err(Error::Kube {
            action: format!("apply ServiceMonitor {name}"),
            source,
        }),
    }
}

/// Applies `status` through the status subresource (see [`apply_status`]).
async fn patch_status(
    kc: &KafkaCluster,
    ctx: &Context,
    namespace: &str,
    status: &KafkaClusterStatus,
) -> Result<(), Error> {
    apply_status::<KafkaCluster, _>(ctx, namespace, &kc.name_any(), status).await
}

fn label_selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
