//! The `KafkaCluster` controller: children by server-side apply, then status.
//!
//! One pass, level-triggered and idempotent:
//!
//! 1. refuse a spec the operator cannot honour (status `Degraded/InvalidSpec`, no apply);
//! 2. read the StatefulSet, to hold a scale-down the brokers cannot yet survive;
//! 3. apply ConfigMap, Services, StatefulSet, PDB and the optional ServiceMonitor, all
//!    under the field manager `runnel-operator` with `force`;
//! 4. list the broker pods and derive the status (see [`status`]);
//! 5. apply the status through the status subresource, only when it changed.
//!
//! Deleting a cluster needs no action here: every child carries an owner reference and
//! is garbage-collected, and volumes are retained by design. So there is no finalizer.
//!
//! Extension points (they need the broker admin API): the gated rolling restart acts on
//! `Progressing/RestartPending` (pods whose revision is behind); a partition-moving
//! scale-down replaces [`Findings::scale_down_blocked_at`].

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, info_span, warn, Instrument};

pub use status::Findings;

use crate::context::FIELD_MANAGER;
use crate::crd::{KafkaCluster, KafkaClusterStatus};
use crate::resources::{self, configmap, pdb, service, servicemonitor, statefulset};
use crate::{Context, Error};

/// How often a healthy cluster is looked at without any event.
const HEALTHY_RESYNC: Duration = Duration::from_secs(300);
/// How often a cluster that is still converging is looked at.
const CONVERGING_RESYNC: Duration = Duration::from_secs(30);
/// Retry delay after an error that only a spec edit can fix.
const INVALID_SPEC_RETRY: Duration = Duration::from_secs(300);

/// Reconciles one `KafkaCluster`.
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = kc.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "KafkaCluster",
        name: kc.name_any(),
    })?;
    let span = info_span!("reconcile", kind = "KafkaCluster", name = %kc.name_any(), namespace = %namespace);
    let action = reconcile_in(&kc, &ctx, &namespace).instrument(span).await?;
    ctx.record_success(&object_key(&kc));
    Ok(action)
}

async fn reconcile_in(kc: &KafkaCluster, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    if let Err(refusal) = configmap::validate_broker_config(&kc.spec.config) {
        warn!(error = %refusal, "spec refused");
        let status = status::invalid_spec_status(kc, refusal.to_string(), &(ctx.clock)());
        patch_status(kc, ctx, namespace, &status).await?;
        return Ok(Action::await_change());
    }

    let client = &ctx.client;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let sts_name = resources::names::statefulset(kc);
    let running = statefulsets
        .get_opt(&sts_name)
        .await
        .map_err(Error::kube(format!("get StatefulSet {sts_name}")))?
        .and_then(|sts| sts.spec.replicas);

    let mut findings = Findings::default();
    let mut desired_sts = statefulset::desired_statefulset(kc);
    if let Some(running) = running.filter(|running| *running > kc.spec.replicas) {
        warn!(
            running,
            desired = kc.spec.replicas,
            "scale-down held: partitions cannot be moved off brokers yet"
        );
        findings.scale_down_blocked_at = Some(running);
        desired_sts.spec.replicas = Some(running);
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

    let status = status::cluster_status(kc, &sts, &pods.items, &findings, &(ctx.clock)());
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    if kc.status.as_ref() == Some(&status) {
        debug!("status unchanged");
    } else {
        patch_status(kc, ctx, namespace, &status).await?;
    }
    Ok(Action::requeue(if ready {
        HEALTHY_RESYNC
    } else {
        CONVERGING_RESYNC
    }))
}

/// Decides when to retry a failed reconcile: API errors back off (5 s doubling to
/// 5 min per object), an invalid spec waits for an edit or the slow resync.
pub fn error_policy(kc: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = if error.is_transient() {
        ctx.record_failure(&object_key(&kc))
    } else {
        INVALID_SPEC_RETRY
    };
    warn!(
        name = %kc.name_any(),
        namespace = kc.namespace().unwrap_or_default(),
        error = %error.report(),
        label = error.label(),
        retry_in_s = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Runs the controller until SIGTERM/ctrl-c: watches every `KafkaCluster` and the
/// children it owns.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    Controller::new(
        Api::<KafkaCluster>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
    .owns(Api::<Service>::all(client.clone()), owned.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
    .owns(Api::<PodDisruptionBudget>::all(client), owned)
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((object, action)) => debug!(%object, ?action, "reconciled"),
            Err(error) => info!(error = %error, "controller event"),
        }
    })
    .await;
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
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            warn!("ServiceMonitor requested but monitoring.coreos.com/v1 is not served");
            Ok(false)
        }
        Err(source) => Err(Error::Kube {
            action: format!("apply ServiceMonitor {name}"),
            source,
        }),
    }
}

/// Applies `status` through the status subresource.
async fn patch_status(
    kc: &KafkaCluster,
    ctx: &Context,
    namespace: &str,
    status: &KafkaClusterStatus,
) -> Result<(), Error> {
    let body = serde_json::json!({
        "apiVersion": KafkaCluster::api_version(&()),
        "kind": KafkaCluster::kind(&()),
        "status": status,
    });
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &kc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(Error::kube(format!(
        "apply status of KafkaCluster {}",
        kc.name_any()
    )))?;
    Ok(())
}

fn label_selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn object_key(kc: &KafkaCluster) -> String {
    format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any())
}

#[cfg(test)]
mod tests;
