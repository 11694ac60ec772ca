//! Controllers, one file per custom resource: `reconcile`, `error_policy` and `run`.
//!
//! | controller | reconciles | talks to |
//! |---|---|---|
//! | [`kafkacluster`] | `KafkaCluster` → StatefulSet, Services, ConfigMap, PDB | Kubernetes |
//! | [`topic`] | `Topic` → a topic on the cluster (finalizer: deletes it) | Kubernetes, Kafka admin |
//! | [`consumergroup`] | `ConsumerGroup` → status (state, lag), offset resets | Kubernetes, Kafka admin |
//!
//! Each `run` drives one kube `Controller` per watched namespace (or one over all
//! namespaces) through [`drive`], and every reconcile through [`observed`]: counted in
//! [`Metrics`], and an error only a spec edit can fix published as a Warning Event.

pub mod consumergroup;
pub mod kafkacluster;
pub mod topic;

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod observed_tests;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::context::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::{Context, Error};

/// The controllers' names, as the `controller` label of the metrics carries them.
pub const CONTROLLERS: [&str; 3] = [
    kafkacluster::CONTROLLER,
    topic::CONTROLLER,
    consumergroup::CONTROLLER,
];

/// How the controllers run: which namespaces they watch, where they count, and when
/// they stop.
#[derive(Clone)]
pub struct RunOptions {
    /// Watched namespaces; empty: every namespace.
    pub namespaces: Vec<String>,
    /// Where reconciles are counted.
    pub metrics: Arc<Metrics>,
    /// Cancelled to stop: running reconciles finish, no new ones start.
    pub shutdown: CancellationToken,
}

impl RunOptions {
    /// One entry per kube `Controller` to run: `Some(namespace)` per watched namespace,
    /// or a single `None` for all namespaces.
    pub(crate) fn scopes(&self) -> Vec<Option<&str>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().map(|n| Some(n.as_str())).collect()
        }
    }
}

/// An `Api` over `namespace`, or over all namespaces for `None`.
pub(crate) fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs `reconcile` on `object` as the controller `controller`: counts it (and its
/// error, by label) and its duration in `metrics`, and publishes a Warning Event on the
/// object when the error is one only a spec edit can fix ([`Error::is_transient`] is
/// false). Transient errors only back off (see [`retry_after`]).
pub async fn observed<K, R, Fut>(
    controller: &'static str,
    metrics: Arc<Metrics>,
    reconcile: R,
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    R: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let started = Instant::now();
    let result = reconcile(Arc::clone(&object), Arc::clone(&ctx)).await;
    metrics.reconciled(controller, started.elapsed(), result.as_ref().err());
    if let Err(error) = &result {
        if !error.is_transient() {
            ctx.publish_warning(object.as_ref(), error).await;
        }
    }
    result
}

/// Runs one kube `Controller` per scope of `options` (each watched namespace, or all
/// namespaces), each made by `make` for its scope, with `reconcile` (through
/// [`observed`]) and `error_policy`, until `options.shutdown` is cancelled and the
/// running reconciles have finished.
pub(crate) async fn run_scoped<K, R, Fut>(
    name: &'static str,
    make: impl Fn(Option<&str>) -> Controller<K>,
    reconcile: R,
    error_policy: fn(Arc<K>, &Error, Arc<Context>) -> Action,
    ctx: Arc<Context>,
    options: &RunOptions,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let nothing = |_: Option<&str>, _: &Store<K>| {};
    run_scoped_with(name, make, reconcile, error_policy, nothing, ctx, options).await;
}

/// [`run_scoped`], calling `after_each` with the scope and the controller's store once
/// each reconcile has ended, failed or not.
pub(crate) async fn run_scoped_with<K, R, Fut>(
    name: &'static str,
    make: impl Fn(Option<&str>) -> Controller<K>,
    reconcile: R,
    error_policy: fn(Arc<K>, &Error, Arc<Context>) -> Action,
    after_each: impl Fn(Option<&str>, &Store<K>),
    ctx: Arc<Context>,
    options: &RunOptions,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let after_each = &after_each;
    let controllers = options.scopes().into_iter().map(|namespace| {
        let metrics = Arc::clone(&options.metrics);
        let controller = make(namespace);
        let store = controller.store();
        controller
            .graceful_shutdown_on(options.shutdown.clone().cancelled_owned())
            .run(
                move |object, ctx| observed(name, Arc::clone(&metrics), reconcile, object, ctx),
                error_policy,
                Arc::clone(&ctx),
            )
            .for_each(move |result| {
                after_each(namespace, &store);
                async move {
                    match result {
                        Ok((object, action)) => {
                            debug!(controller = name, %object, ?action, "reconciled")
                        }
                        // Logged once already, by the error policy.
                        Err(ControllerError::ReconcilerFailed(..)) => {}
                        // A deleted object whose retry was still queued: expected.
                        Err(error @ ControllerError::ObjectNotFound(_)) => {
                            debug!(controller = name, error = %error, "skipped");
                        }
                        Err(error) => warn!(controller = name, error = %error, "controller error"),
                    }
                }
            })
    });
    futures::future::join_all(controllers).await;
}

/// Applies `status` to the status subresource of the `K` named `name`, by server-side
/// apply under the operator's field manager.
pub(crate) async fn apply_status<K, S>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &S,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(Error::kube(format!(
        "apply status of {} {name}",
        K::kind(&())
    )))?;
    Ok(())
}

/// `namespace/name`, the key of per-object bookkeeping.
pub(crate) fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Retry delay after an error that only a spec edit can fix.
const INVALID_SPEC_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// The shared `error_policy`: transient errors back off (5 s doubling to 5 min per
/// object), others wait for an edit or the slow retry. Every error is logged once with
/// its label.
pub(crate) fn retry_after<K: Resource>(
    kind: &'static str,
    object: &K,
    error: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    let delay = if error.is_transient() {
        ctx.record_failure(&object_key(object))
    } else {
        INVALID_SPEC_RETRY
    };
    tracing::warn!(
        kind,
        name = object.meta().name.as_deref().unwrap_or_default(),
        namespace = object.meta().namespace.as_deref().unwrap_or_default(),
        error = %error.report(),
        label = error.label(),
        retry_in_s = delay.as_secs(),
        "reconcile failed"
    );
    kube::runtime::controller::Action::requeue(delay)
}
