//! Pure derivation of `KafkaCluster.status` from what the API server reports.
//!
//! Deterministic by construction: the same observations and previous status give the
//! same status, and the clock is read only for a condition whose status flips.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{
    upsert_condition, BrokerState, BrokerStatus, ConditionStatus, KafkaCluster, KafkaClusterStatus,
    RebalanceStatus,
};
use crate::kafka::ClusterDescription;
use crate::resources::{names, quorum};
use crate::Error;

use super::rebalance::Report;
use super::restart::Step;

/// Condition type: every broker is ready.
pub const READY: &str = "Ready";
/// Condition type: the cluster is moving towards its spec.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs attention.
pub const DEGRADED: &str = "Degraded";
/// Condition type: partitions are being moved between brokers.
pub const REBALANCING: &str = "Rebalancing";
/// Condition reason: a scale-down would leave too few brokers for some partition.
pub const SCALE_DOWN_IMPOSSIBLE: &str = "ScaleDownImpossible";

/// What a reconcile pass saw besides the StatefulSet and pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// The spec asks for fewer brokers than run, and some of those that would go are
    /// voters of the metadata quorum or still hold replicas: kept at this many.
    pub scale_down_blocked_at: Option<i32>,
    /// Why, when voters would go: those voters (the voter set is fixed at creation).
    pub scale_down_voters: Vec<i32>,
    /// Why, when the remaining brokers could not hold every replica: the partition that
    /// needs more (a sentence).
    pub scale_down_impossible: Option<String>,
    /// Why, when the replicas of the brokers that go could not be looked at: one line
    /// per reason.
    pub scale_down_holders: Vec<String>,
    /// Why, otherwise: these brokers that go still hold replicas and are being drained.
    pub scale_down_draining: Vec<i32>,
    /// Where the partition moves stand; `None` when the cluster was not asked this pass.
    pub rebalance: Option<Report>,
    /// The metadata quorum's voters.
    pub quorum_voters: Vec<i32>,
    /// The cluster as a broker described it this pass; `None` when none answered.
    pub cluster: Option<ClusterDescription>,
    /// The ServiceMonitor is enabled but its CRD is not installed.
    pub service_monitor_unavailable: bool,
    /// Where the gated rolling restart stands.
    pub restart: Step,
}

/// The state of each broker id `0..max(replicas, pods)`, from the pods, and whether it
/// has never been ready (from the previous status in `kc`, see [`never_ready`]).
pub fn observe_brokers(kc: &KafkaCluster, replicas: i32, pods: &[Pod]) -> Vec<BrokerStatus> {
    let previous = kc.status.as_ref().map_or(&[][..], |s| &s.brokers[..]);
    let highest_pod = pods
        .iter()
        .filter_map(|pod| broker_id(kc, &pod.name_any()))
        .max()
        .map_or(0, |id| id.saturating_add(1));
    (0..replicas.max(highest_pod))
        .map(|id| {
            let pod_name = names::pod(kc, id);
            let state = pods
                .iter()
                .find(|p| p.name_any() == pod_name)
                .map_or(BrokerState::Missing, pod_state);
            let before = previous.iter().find(|b| b.id == id);
            BrokerStatus {
                id,
                pod: pod_name,
                state,
                never_ready: never_ready(before, state),
                live: None,
            }
        })
        .collect()
}

/// Whether a broker has never been ready, given its previous entry (`None`: listed for
/// the first time now, e.g. after a scale-up) and its state now. Once it has been ready
/// it is `false` for good; an entry from before the operator kept track is `false`.
pub fn never_ready(before: Option<&BrokerStatus>, now: BrokerState) -> bool {
    let not_ready = now != BrokerState::Ready;
    before.map_or(not_ready, |b| b.never_ready && not_ready)
}

fn broker_id(kc: &KafkaCluster, pod_name: &str) -> Option<i32> {
    pod_name
        .strip_prefix(&format!("{}-", kc.name_any()))?
        .parse()
        .ok()
}

fn pod_state(pod: &Pod) -> BrokerState {
    if pod.metadata.deletion_timestamp.is_some() {
        return BrokerState::Terminating;
    }
    let Some(status) = &pod.status else {
        return BrokerState::Pending;
    };
    let crash_looping = status.container_statuses.iter().flatten().any(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            == Some("CrashLoopBackOff")
    });
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    match status.phase.as_deref() {
        Some("Failed") => BrokerState::Failed,
        _ if crash_looping => BrokerState::Failed,
        Some("Running") if ready => BrokerState::Ready,
        Some("Running") => BrokerState::Starting,
        _ => BrokerState::Pending,
    }
}

/// The status after a successful pass: brokers from `pods`, counts from `sts`.
pub fn cluster_status(
    kc: &KafkaCluster,
    sts: &StatefulSet,
    pods: &[Pod],
    findings: &Findings,
    now: &Time,
) -> KafkaClusterStatus {
    let generation = kc.metadata.generation;
    let desired = kc.spec.replicas;
    let sts_status = sts.status.clone().unwrap_or_default();
    let ready_brokers = sts_status.ready_replicas.unwrap_or(0);
    // Every id the StatefulSet keeps stays listed, with a pod or not (a held scale-down
    // keeps more than `desired`): its `neverReady` must not be forgotten.
    let kept = sts.spec.replicas.unwrap_or(0);
    let mut brokers = observe_brokers(kc, desired.max(kept).max(sts_status.replicas), pods);
    let cluster = findings.cluster.as_ref();
    for broker in &mut brokers {
        broker.live = cluster.map(|c| c.brokers.iter().any(|b| b.id == broker.id && !b.fenced));
    }

    let mut status = kc.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.ready_brokers = ready_brokers;
    status.bootstrap_servers = Some(names::bootstrap_servers(kc));
    status.brokers = brokers;
    status.cluster_id = quorum::cluster_id(kc);
    status.quorum_voters = findings.quorum_voters.clone();
    status.controller_id = cluster.and_then(|c| c.controller_id);

    let all_ready = ready_brokers >= desired && findings.scale_down_blocked_at.is_none();
    let draining_only = findings.scale_down_voters.is_empty()
        && findings.scale_down_impossible.is_none()
        && findings.scale_down_holders.is_empty();
    let (reason, message) = if let (Some(kept), true) =
        (findings.scale_down_blocked_at, draining_only)
    {
        (
            "Draining",
            format!(
                "{ready_brokers}/{kept} brokers ready; moving partitions off {} before the \
                 scale-down to {desired}",
                pod_list(kc, &findings.scale_down_draining)
            ),
        )
    } else if let Some(kept) = findings.scale_down_blocked_at {
        (
            "ScaleDownBlocked",
            format!("{ready_brokers}/{kept} brokers ready; the scale-down to {desired} is held"),
        )
    } else if all_ready {
        (
            "AllBrokersReady",
            format!("{ready_brokers}/{desired} brokers ready"),
        )
    } else {
        (
            "BrokersNotReady",
            format!("{ready_brokers}/{desired} brokers ready"),
        )
    };
    let conditions = &mut status.conditions;
    upsert_condition(
        conditions,
        READY,
        ConditionStatus::from_bool(all_ready),
        reason,
        message,
        generation,
        now,
    );

    let sts_current = sts_status.observed_generation >= sts.metadata.generation;
    let (progressing, reason, message) = if let Step::Restarting { pod, stale } = &findings.restart
    {
        (
            true,
            "Restarting",
            format!("restarting {pod}; {stale} brokers run an older pod template"),
        )
    } else if let Step::Waiting { stale, reason } = &findings.restart {
        (
            true,
            "RestartWaiting",
            format!("{stale} brokers run an older pod template; the restart waits: {reason}"),
        )
    } else if let (Some(_), true) = (findings.scale_down_blocked_at, draining_only) {
        (
            true,
            "Draining",
            format!(
                "moving partitions off {} before the scale-down to {desired}",
                pod_list(kc, &findings.scale_down_draining)
            ),
        )
    } else if !sts_current || ready_brokers < desired {
        (
            true,
            "RollingOut",
            format!(
                "waiting for {} of {desired} brokers",
                desired - ready_brokers.min(desired)
            ),
        )
    } else {
        (
            false,
            "Stable",
            "every broker runs the current pod template".to_string(),
        )
    };
    let progressing = ConditionStatus::from_bool(progressing);
    upsert_condition(
        conditions,
        PROGRESSING,
        progressing,
        reason,
        message,
        generation,
        now,
    );

    let failed: Vec<String> = status
        .brokers
        .iter()
        .filter(|b| b.state == BrokerState::Failed)
        .map(|b| b.pod.clone())
        .collect();
    let (degraded, reason, message) = if let (Some(kept), false) = (
        findings.scale_down_blocked_at,
        findings.scale_down_voters.is_empty(),
    ) {
        let pods: Vec<String> = findings
            .scale_down_voters
            .iter()
            .map(|id| names::pod(kc, *id))
            .collect();
        let voters: Vec<String> = findings
            .quorum_voters
            .iter()
            .map(ToString::to_string)
            .collect();
        let message = format!(
            "keeping {kept} brokers, not {desired}: {} would leave the metadata quorum, whose \
             voters ({}) are fixed when the cluster is created; only brokers from {} on can be \
             removed",
            pods.join(", "),
            voters.join(", "),
            findings.quorum_voters.len()
        );
        (true, SCALE_DOWN_REMOVES_VOTERS, message)
    } else if let (Some(kept), Some(why)) = (
        findings.scale_down_blocked_at,
        findings.scale_down_impossible.as_ref(),
    ) {
        let message = format!(
            "keeping {kept} brokers, not {desired}: {why}; lower that replication factor (or \
             delete the topic) first"
        );
        (true, SCALE_DOWN_IMPOSSIBLE, message)
    } else if let (Some(kept), false) = (
        findings.scale_down_blocked_at,
        findings.scale_down_holders.is_empty(),
    ) {
        let message = format!(
            "keeping {kept} brokers, not {desired}: {}",
            findings.scale_down_holders.join("; ")
        );
        (true, "ScaleDownBlocked", message)
    } else if !failed.is_empty() {
        (
            true,
            "BrokerFailed",
            format!("failed brokers: {}", failed.join(", ")),
        )
    } else if findings.service_monitor_unavailable {
        (
            true,
            "ServiceMonitorUnavailable",
            "spec.metrics.serviceMonitor is enabled but the API server does not serve \
             monitoring.coreos.com/v1 ServiceMonitor: install the Prometheus Operator's CRDs \
             or disable it"
                .into(),
        )
    } else {
        (false, "AsExpected", String::new())
    };
    upsert_condition(
        conditions,
        DEGRADED,
        ConditionStatus::from_bool(degraded),
        reason,
        message,
        generation,
        now,
    );
    if let Some(report) = &findings.rebalance {
        let (rebalancing, reason, message) = rebalancing(report);
        upsert_condition(
            &mut status.conditions,
            REBALANCING,
            ConditionStatus::from_bool(rebalancing),
            reason,
            message,
            generation,
            now,
        );
        status.rebalance = report.active().then(|| RebalanceStatus {
            partitions_moving: i32::try_from(report.moving).unwrap_or(i32::MAX),
            partitions_pending: i32::try_from(report.pending).unwrap_or(i32::MAX),
            bytes_left: report.bytes_left,
            draining_brokers: report.draining.clone(),
        });
    }
    status
}

/// The `Rebalancing` condition for `report`: status, reason, message.
fn rebalancing(report: &Report) -> (bool, &'static str, String) {
    if report.active() {
        let reason = if report.draining.is_empty() {
            "Balancing"
        } else {
            "Draining"
        };
        let message = format!(
            "{} partitions moving, {} more planned, {} bytes left to copy",
            report.moving, report.pending, report.bytes_left
        );
        (true, reason, message)
    } else if let Some(blocked) = &report.blocked {
        (false, "CannotPlan", blocked.clone())
    } else {
        (
            false,
            "Balanced",
            "replicas and leaders are spread over the brokers".to_string(),
        )
    }
}

/// `demo-3, demo-4` for broker ids 3 and 4.
fn pod_list(kc: &KafkaCluster, ids: &[i32]) -> String {
    ids.iter()
        .map(|id| names::pod(kc, *id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Condition reason: a scale-down would remove voters of the metadata quorum.
pub const SCALE_DOWN_REMOVES_VOTERS: &str = "ScaleDownRemovesVoters";

/// Condition reason: the operator refused the spec (see [`crate::Error::InvalidSpec`]).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Condition reason: the API server refused a child the spec asks for (422/403).
pub const REFUSED_BY_API: &str = "RefusedByAPIServer";

/// The status when a pass ended in `error`, which retrying cannot fix: `Degraded` says
/// why, `Ready` is `False` for the same reason (so `kubectl wait --for=condition=Ready`
/// ends), `Progressing` says nothing moves until the spec changes; the rest is kept.
pub fn refused_status(kc: &KafkaCluster, error: &Error, now: &Time) -> KafkaClusterStatus {
    let reason = match error {
        Error::InvalidSpec { .. } => INVALID_SPEC,
        _ if error.is_refused_by_api() => REFUSED_BY_API,
        _ => "ReconcileFailed",
    };
    let generation = kc.metadata.generation;
    let mut status = kc.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let conditions = &mut status.conditions;
    let message = error.report();
    upsert_condition(
        conditions,
        READY,
        ConditionStatus::False,
        reason,
        message.clone(),
        generation,
        now,
    );
    upsert_condition(
        conditions,
        DEGRADED,
        ConditionStatus::True,
        reason,
        message,
        generation,
        now,
    );
    upsert_condition(
        conditions,
        PROGRESSING,
        ConditionStatus::False,
        reason,
        "nothing changes until the spec is fixed".to_string(),
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster::demo;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_new_broker_is_never_ready_until_it_is_once() {
        use BrokerState::*;
        let entry = |never_ready| BrokerStatus {
            id: 1,
            pod: "demo-1".into(),
            state: Pending,
            never_ready,
            live: None,
        };
        assert!(never_ready(None, Pending), "new after a scale-up");
        assert!(!never_ready(None, Ready));
        assert!(never_ready(Some(&entry(true)), Missing));
        assert!(!never_ready(Some(&entry(true)), Ready));
        assert!(
            !never_ready(Some(&entry(false)), Failed),
            "has run (or is from before the operator kept track): for good"
        );
    }

    #[test]
    fn broker_states_follow_pod_phase_and_readiness() {
        let kc = demo();
        let pods = [
            pod(
                json!({"metadata": {"name": "demo-0"}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
            pod(
                json!({"metadata": {"name": "demo-1"}, "status": {"phase": "Running",
                "containerStatuses": [{"name": "broker", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
            ),
            pod(json!({"metadata": {"name": "demo-4"}, "status": {"phase": "Pending"}})),
        ];
        let states: Vec<_> = observe_brokers(&kc, 3, &pods)
            .into_iter()
            .map(|b| (b.id, b.state))
            .collect();
        assert_eq!(
            states,
            [
                (0, BrokerState::Ready),
                (1, BrokerState::Failed),
                (2, BrokerState::Missing),
                (3, BrokerState::Missing),
                (4, BrokerState::Pending)
            ]
        );
    }
}
