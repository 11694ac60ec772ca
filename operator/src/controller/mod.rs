//! Controllers, one file per custom resource: `reconcile`, `error_policy` and `run`.
//!
//! | controller | reconciles | talks to |
//! |---|---|---|
//! | [`kafkacluster`] | `KafkaCluster` → StatefulSet, Services, ConfigMap, PDB | Kubernetes |
//! | [`topic`] | `Topic` → a topic on the cluster (finalizer: deletes it) | Kubernetes, Kafka admin |
//! | [`consumergroup`] | `ConsumerGroup` → status (state, lag), offset resets | Kubernetes, Kafka admin |

pub mod consumergroup;
pub mod kafkacluster;
pub mod topic;

#[cfg(test)]
mod broker_tests;

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::FIELD_MANAGER;
use crate::{Context, Error};

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
