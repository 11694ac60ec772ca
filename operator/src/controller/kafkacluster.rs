//! The `KafkaCluster` controller: children by server-side apply, then status.
//!
//! One pass, level-triggered and idempotent:
//!
//! 1. refuse a spec the operator cannot honour (status `Degraded/InvalidSpec`, no apply);
//!    a child the API server refuses (422/403) likewise ends the pass with
//!    `Degraded/RefusedByAPIServer` instead of a retry loop;
//! 2. read the StatefulSet: the metadata quorum's voters it passes are kept (they are
//!    fixed when the cluster is created, see [`resources::quorum`]), and a scale-down
//!    the brokers cannot survive is held;
//! 3. apply ConfigMap, Services, StatefulSet, PDB and the optional ServiceMonitor, all
//!    under the field manager `runnel-operator` with `force`;
//! 4. list the broker pods; take one step of the gated rolling restart (see
//!    [`restart`]: at most one pod is deleted per pass, and a ready broker only when the
//!    brokers say it is safe);
//! 5. ask the cluster (DescribeCluster through the bootstrap Service, once a broker is
//!    ready) for its controller and live brokers;
//! 6. derive the status (see [`status`]) and apply it through the status subresource,
//!    only when it changed; a `Degraded` condition that appears or changes (a failed
//!    broker, a held scale-down, a ServiceMonitor without its CRD) is also a Warning
//!    Event, once.
//!
//! Deleting a cluster needs no action here: every child carries an owner reference and
//! is garbage-collected, and volumes are retained by design. So there is no finalizer.
//!
//! Scaling down never removes a voter of the metadata quorum: the StatefulSet keeps its
//! size and `Degraded/ScaleDownRemovesVoters` says which. Otherwise it goes ahead only
//! when the brokers that would go hold no partition replicas (each is asked for its
//! Metadata); else the StatefulSet keeps its size and `Degraded/ScaleDownBlocked` names
//! them. Extension point: a partition-moving scale-down replaces that refusal.

pub mod restart;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, info_span, warn, Instrument};

pub use status::Findings;

use super::{apply_status, object_key, retry_after, run_scoped, scoped_api, RunOptions};
use crate::context::FIELD_MANAGER;
use crate::crd::{newly, ConditionStatus, KafkaCluster, KafkaClusterStatus};
use crate::kafka::ClusterDescription;
use crate::resources::quorum::{self, Voters};
use crate::resources::{self, configmap, pdb, service, servicemonitor, statefulset};
use crate::{Context, Error};

/// How often a healthy cluster is looked at without any event.
const HEALTHY_RESYNC: Duration = Duration::from_secs(300);
/// How often a rolling restart is looked at (broker catch-up is not a watch event).
const RESTART_RESYNC: Duration = Duration::from_secs(10);
/// How often a cluster that is still converging is looked at.
const CONVERGING_RESYNC: Duration = Duration::from_secs(30);
/// How soon a cluster with ready brokers that none of them could describe is asked again
/// (the bootstrap name may not resolve yet): status lacks the controller until then.
const DESCRIBE_RETRY: Duration = Duration::from_secs(5);

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
            let holders = replica_holders(kc, ctx, kc.spec.replicas..running).await;
            if holders.is_empty() {
                info!(
                    running,
                    desired = kc.spec.replicas,
                    "scaling down: the brokers that go hold no replicas"
                );
            } else {
                warn!(
                    running,
                    desired = kc.spec.replicas,
                    holders = %holders.join("; "),
                    "scale-down held: brokers that would go still hold replicas"
                );
                findings.scale_down_blocked_at = Some(running);
                findings.scale_down_holders = holders;
                desired_sts.spec.replicas = Some(running);
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

    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = label_selector(&resources::selector_labels(kc));
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(format!("list pods of {}", kc.name_any())))?;

    let brokers = restart::broker_pods(kc, &sts, &pods.items);
    let plan = restart::plan(&sts, &brokers);
    let (delete, step) = restart::decide(kc, &brokers, plan, ctx.broker_admin.as_ref()).await;
    if let Some(broker) = delete {
        info!(pod = %broker.pod, "restarting the broker on the current pod template");
        delete_pod(client, namespace, &broker).await?;
    }
    let restarting = step != restart::Step::Done;
    findings.restart = step;
    let ready_brokers = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if ready_brokers > 0 {
        findings.cluster = describe_cluster(kc, ctx).await;
    }
    let undescribed = ready_brokers > 0 && findings.cluster.is_none();

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
    Ok(Action::requeue(if restarting {
        RESTART_RESYNC
    } else if undescribed {
        DESCRIBE_RETRY
    } else if ready {
        HEALTHY_RESYNC
    } else {
        CONVERGING_RESYNC
    }))
}

/// The cluster as a broker behind the bootstrap Service describes it; `None` (logged)
/// when none answers: status then leaves the controller and liveness out.
async fn describe_cluster(kc: &KafkaCluster, ctx: &Context) -> Option<ClusterDescription> {
    let address = resources::names::bootstrap_servers(kc);
    let described = match ctx.kafka_admin(&address).await {
        Ok(admin) => admin
            .describe_cluster()
            .await
            .map_err(Error::kafka(format!("DescribeCluster from {address}"))),
        Err(e) => Err(e),
    };
    match described {
        Ok(cluster) => Some(cluster),
        Err(e) => {
            info!(error = %e.report(), "the cluster cannot be described now");
            None
        }
    }
}

/// Which of the brokers `ids` still hold partition replicas, one line each
/// (`demo-2 holds 3 partition replicas`); a broker that cannot be asked counts as
/// holding, with the reason, unless the status says it has never been ready (it never
/// ran, e.g. a scale-up whose pods were never scheduled: it holds nothing). Each is
/// asked for its Metadata at its own address.
async fn replica_holders(
    kc: &KafkaCluster,
    ctx: &Context,
    ids: std::ops::Range<i32>,
) -> Vec<String> {
    let mut holders = Vec::new();
    for id in ids {
        let pod = resources::names::pod(kc, id);
        let address = format!(
            "{}:{}",
            resources::names::broker_host(kc, id),
            kc.spec.listeners.kafka_port
        );
        let topics = match ctx.kafka_admin(&address).await {
            Ok(admin) => admin
                .metadata(None)
                .await
                .map_err(Error::kafka(format!("Metadata from {address}"))),
            Err(e) => Err(e),
        };
        match topics {
            Ok(topics) => {
                let held = topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.leader == id || p.replicas.contains(&id))
                    .count();
                if held > 0 {
                    holders.push(format!("{pod} holds {held} partition replicas"));
                }
            }
            Err(e) if never_ready(kc, id) => {
                info!(%pod, error = %e.report(), "cannot be asked, but never ran: holds nothing");
            }
            Err(e) => holders.push(format!("{pod} cannot be asked: {}", e.report())),
        }
    }
    holders
}

/// Whether the last status says broker `id` has never been ready.
fn never_ready(kc: &KafkaCluster, id: i32) -> bool {
    kc.status
        .as_ref()
        .and_then(|s| s.brokers.iter().find(|b| b.id == id))
        .is_some_and(|b| b.never_ready)
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
pub async fn run(ctx: Arc<Context>, options: &RunOptions) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let make = |namespace: Option<&str>| {
        Controller::new(
            scoped_api::<KafkaCluster>(&client, namespace),
            watcher::Config::default().any_semantic(),
        )
        .owns(scoped_api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(scoped_api::<Service>(&client, namespace), owned.clone())
        .owns(scoped_api::<ConfigMap>(&client, namespace), owned.clone())
        .owns(
            scoped_api::<PodDisruptionBudget>(&client, namespace),
            owned.clone(),
        )
    };
    run_scoped(CONTROLLER, make, reconcile, error_policy, ctx, options).await;
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
