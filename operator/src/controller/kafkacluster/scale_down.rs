//! The scale-down: whether the StatefulSet may shrink now, and what is left to do after
//! it has.
//!
//! The brokers that go are the highest ordinals, `spec.replicas..running`. The
//! StatefulSet keeps its size while any partition has (or will have, once the moves in
//! flight finish) a replica on one of them: [`super::rebalance`] drains them meanwhile.
//! It keeps its size for good, with a reason, when a partition needs more replicas than
//! would remain. Once their pods are gone, their registrations are removed from the
//! cluster's metadata with UnregisterBroker, which the brokers accept only for a broker
//! that is fenced and holds nothing.
//!
//! Voters of the metadata quorum are never removed; that refusal is decided before this
//! module is asked (see the controller's module doc).

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tracing::info;

use super::rebalance::{projected, replicas_of};
use crate::crd::KafkaCluster;
use crate::kafka::{ClusterDescription, KafkaAdmin};
use crate::resources::names;
use crate::{Context, Error};

/// Whether the StatefulSet may shrink to `spec.replicas` now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The brokers that go hold nothing: shrink.
    Shrink,
    /// Keep the current size, for these reasons.
    Hold(Hold),
}

/// Why a scale-down waits or cannot happen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hold {
    /// A partition needs more replicas than would remain (a sentence): refused until the
    /// spec or the topics change.
    pub impossible: Option<String>,
    /// The brokers that go and still hold replicas: they are being drained.
    pub draining: Vec<i32>,
    /// Why the cluster could not be asked.
    pub unreachable: Vec<String>,
}

/// Judges a scale-down from `running` to `spec.replicas` brokers by what the cluster
/// says (Metadata and ListPartitionReassignments through the bootstrap Service). When
/// it cannot be asked, the scale-down goes ahead only if every broker that goes has
/// never been ready (it never ran, so holds nothing).
pub async fn assess(kc: &KafkaCluster, ctx: &Context, running: i32) -> Verdict {
    let desired = kc.spec.replicas;
    let address = names::bootstrap_servers(kc);
    let asked = async {
        let admin = ctx.kafka_admin(&address).await?;
        let topics = admin
            .metadata(None)
            .await
            .map_err(Error::kafka(format!("Metadata from {address}")))?;
        let ongoing = admin
            .list_partition_reassignments()
            .await
            .map_err(Error::kafka(format!(
                "ListPartitionReassignments from {address}"
            )))?;
        Ok::<_, Error>((topics, ongoing))
    }
    .await;
    let (topics, ongoing) = match asked {
        Ok(answer) => answer,
        Err(e) if (desired..running).all(|id| never_ready(kc, id)) => {
            info!(error = %e.report(), "the cluster cannot be asked, but the brokers that go never ran");
            return Verdict::Shrink;
        }
        Err(e) => {
            return Verdict::Hold(Hold {
                unreachable: vec![format!(
                    "which brokers hold replicas cannot be asked: {}",
                    e.report()
                )],
                ..Hold::default()
            })
        }
    };
    let now = replicas_of(&topics);
    let future = projected(now.clone(), &ongoing);
    let widest = future
        .iter()
        .filter(|(_, r)| i32::try_from(r.len()).unwrap_or(i32::MAX) > desired)
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
    if let Some((tp, replicas)) = widest {
        return Verdict::Hold(Hold {
            impossible: Some(format!(
                "partition {tp} has {} replicas but only {desired} brokers would remain",
                replicas.len()
            )),
            ..Hold::default()
        });
    }
    let mut draining: Vec<i32> = now
        .values()
        .chain(future.values())
        .flatten()
        .copied()
        .filter(|id| (desired..running).contains(id))
        .collect();
    draining.sort_unstable();
    draining.dedup();
    if draining.is_empty() {
        Verdict::Shrink
    } else {
        Verdict::Hold(Hold {
            draining,
            ..Hold::default()
        })
    }
}

/// Whether the last status says broker `id` has never been ready.
fn never_ready(kc: &KafkaCluster, id: i32) -> bool {
    kc.status
        .as_ref()
        .and_then(|s| s.brokers.iter().find(|b| b.id == id))
        .is_some_and(|b| b.never_ready)
}

/// Unregisters every broker the cluster still lists whose id is `kept` or more and
/// whose pod is gone; returns those still registered (refused now: the broker has not
/// been fenced yet; asked again next pass).
pub async fn unregister_removed(
    kc: &KafkaCluster,
    admin: &dyn KafkaAdmin,
    cluster: &ClusterDescription,
    kept: i32,
    pods: &[Pod],
) -> Vec<i32> {
    let mut remaining = Vec::new();
    for broker in cluster.brokers.iter().filter(|b| b.id >= kept) {
        let pod = names::pod(kc, broker.id);
        if pods.iter().any(|p| p.name_any() == pod) {
            remaining.push(broker.id);
            continue;
        }
        match admin.unregister_broker(broker.id).await {
            Ok(()) => info!(broker = broker.id, "unregistered the removed broker"),
            Err(error) => {
                info!(broker = broker.id, %error, "the removed broker cannot be unregistered yet");
                remaining.push(broker.id);
            }
        }
    }
    remaining
}
