//! The gated rolling restart: the StatefulSet uses `OnDelete`, so a changed pod template
//! (image, config hash, resources) reaches a broker only when the operator deletes its
//! pod. This module decides which pod, if any, may go now.
//!
//! Rules, one step per reconcile pass:
//!
//! 1. nothing happens while the StatefulSet controller has not observed the latest
//!    spec, while a pod is terminating or missing;
//! 2. a stale pod that is not ready serves nobody: it goes first, without asking;
//! 3. otherwise, while a pod that already runs the new template is not ready, wait:
//!    the broker restarted last has not rejoined yet;
//! 4. otherwise the stale pod with the highest ordinal is the candidate — except the
//!    active controller (DescribeCluster's `controller_id`), which goes last so that the
//!    metadata quorum elects a new leader once, not once per restarted voter — and it
//!    goes only when every other broker reports `CaughtUp` (back in the ISR of every
//!    partition it hosts) and the candidate itself answers `CanRestart` with safe (no
//!    partition it hosts would fall below `min.insync.replicas` without it). Both are
//!    computed by the brokers from the real ISR, so readiness alone never lets a broker
//!    go while a partition would lose its last in-sync copies.
//!
//! [`plan`] is pure; [`decide`] asks the brokers through [`BrokerAdmin`].

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::broker_admin::BrokerAdmin;
use crate::crd::{BrokerState, KafkaCluster};
use crate::resources::names;

use super::status::observe_brokers;

/// Pod label the StatefulSet controller sets to the revision the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// One broker pod as the restart sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerPod {
    /// Broker id (the pod ordinal).
    pub id: i32,
    /// Pod name.
    pub pod: String,
    /// Pod uid, the precondition of its deletion (`None` for a missing pod).
    pub uid: Option<String>,
    /// Observed state.
    pub state: BrokerState,
    /// Whether it runs the StatefulSet's update revision.
    pub current: bool,
}

impl BrokerPod {
    /// An existing pod made from an older revision (a missing pod will be created
    /// from the current one).
    pub fn stale(&self) -> bool {
        !self.current && self.state != BrokerState::Missing
    }
}

/// What the restart wants this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every broker runs the current pod template.
    Done,
    /// Something must settle first; says what.
    Wait(String),
    /// Delete this stale pod now: it is not ready, so it serves nobody.
    DeleteUnready(BrokerPod),
    /// Delete this stale, ready pod if the brokers agree: `others` must have caught up
    /// and the candidate must be safe to stop.
    Ask {
        /// The pod to restart.
        candidate: BrokerPod,
        /// Every other broker.
        others: Vec<BrokerPod>,
    },
}

/// The outcome of a pass, reported in the `Progressing` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Step {
    /// Nothing to restart.
    #[default]
    Done,
    /// `stale` brokers run an older template; this pass restarts `pod`.
    Restarting {
        /// The pod deleted this pass.
        pod: String,
        /// Brokers on an older template, `pod` included.
        stale: usize,
    },
    /// `stale` brokers run an older template and the restart waits, for `reason`.
    Waiting {
        /// Brokers on an older template.
        stale: usize,
        /// Why no pod goes now.
        reason: String,
    },
}

/// The broker pods `0..max(replicas, pods)` with their revision.
pub fn broker_pods(kc: &KafkaCluster, sts: &StatefulSet, pods: &[Pod]) -> Vec<BrokerPod> {
    let update_revision = sts
        .status
        .as_ref()
        .and_then(|s| s.update_revision.as_deref());
    let replicas = sts.spec.replicas.unwrap_or(0);
    observe_brokers(kc, replicas, pods)
        .into_iter()
        .map(|broker| {
            let pod = pods.iter().find(|p| p.name_any() == broker.pod);
            let revision = pod.and_then(|p| p.labels().get(REVISION_LABEL).cloned());
            BrokerPod {
                id: broker.id,
                uid: pod.and_then(|p| p.uid()),
                state: broker.state,
                current: revision.is_some() && revision.as_deref() == update_revision,
                pod: broker.pod,
            }
        })
        .collect()
}

/// Decides the next step from the StatefulSet, its pods and the active controller
/// (`None` when unknown), which restarts last (pure).
pub fn plan(sts: &StatefulSet, brokers: &[BrokerPod], controller: Option<i32>) -> Plan {
    let status = sts.status.clone().unwrap_or_default();
    if status.update_revision.is_none() || status.observed_generation < sts.metadata.generation {
        return Plan::Wait("the StatefulSet controller has not observed the latest spec".into());
    }
    if !brokers.iter().any(BrokerPod::stale) {
        return Plan::Done;
    }
    if let Some(b) = brokers.iter().find(|b| b.state == BrokerState::Terminating) {
        return Plan::Wait(format!("{} is terminating", b.pod));
    }
    if let Some(b) = brokers.iter().find(|b| b.state == BrokerState::Missing) {
        return Plan::Wait(format!("{} does not exist yet", b.pod));
    }
    let stale = brokers.iter().filter(|b| b.stale());
    if let Some(unready) = stale.clone().find(|b| b.state != BrokerState::Ready) {
        return Plan::DeleteUnready(unready.clone());
    }
    if let Some(b) = brokers
        .iter()
        .find(|b| b.current && b.state != BrokerState::Ready)
    {
        return Plan::Wait(format!("{} has restarted and is not ready yet", b.pod));
    }
    let Some(candidate) = stale.max_by_key(|b| (Some(b.id) != controller, b.id)) else {
        return Plan::Done;
    };
    Plan::Ask {
        candidate: candidate.clone(),
        others: brokers
            .iter()
            .filter(|b| b.id != candidate.id)
            .cloned()
            .collect(),
    }
}

/// Address of broker `id`'s admin service: `<pod>.<headless service>.<ns>.svc:<port>`.
pub fn admin_address(kc: &KafkaCluster, id: i32) -> String {
    format!(
        "{}:{}",
        names::broker_host(kc, id),
        kc.spec.listeners.health_port
    )
}

/// Turns a [`Plan`] into the pod to delete now (if any) and the [`Step`] to report,
/// asking the brokers when the plan says so. A broker that cannot be asked makes the
/// restart wait (it says which and why), never proceed.
pub async fn decide(
    kc: &KafkaCluster,
    brokers: &[BrokerPod],
    plan: Plan,
    admin: &dyn BrokerAdmin,
) -> (Option<BrokerPod>, Step) {
    let stale = brokers.iter().filter(|b| b.stale()).count();
    let waiting = |reason: String| (None, Step::Waiting { stale, reason });
    match plan {
        Plan::Done => (None, Step::Done),
        Plan::Wait(reason) => waiting(reason),
        Plan::DeleteUnready(pod) => {
            let step = Step::Restarting {
                pod: pod.pod.clone(),
                stale,
            };
            (Some(pod), step)
        }
        Plan::Ask { candidate, others } => {
            for other in &others {
                match admin.caught_up(&admin_address(kc, other.id)).await {
                    Ok(c) if c.caught_up => {}
                    Ok(c) => {
                        return waiting(format!(
                            "{} has not caught up: {}",
                            other.pod,
                            c.lagging.join(", ")
                        ))
                    }
                    Err(e) => return waiting(format!("cannot ask {}: {e}", other.pod)),
                }
            }
            match admin.can_restart(&admin_address(kc, candidate.id)).await {
                Ok(check) if check.safe => {
                    let step = Step::Restarting {
                        pod: candidate.pod.clone(),
                        stale,
                    };
                    (Some(candidate), step)
                }
                Ok(check) => waiting(format!(
                    "restarting {} now is unsafe: {}",
                    candidate.pod,
                    check.reasons.join("; ")
                )),
                Err(e) => waiting(format!("cannot ask {}: {e}", candidate.pod)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker_admin::FakeBrokerAdmin;
    use crate::resources::test_cluster::demo;

    fn broker(id: i32, state: BrokerState, current: bool) -> BrokerPod {
        BrokerPod {
            id,
            pod: format!("demo-{id}"),
            uid: Some(format!("uid-{id}")),
            state,
            current,
        }
    }

    fn sts(observed: i64, generation: i64) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": {"replicas": 3, "observedGeneration": observed,
                "currentRevision": "demo-old", "updateRevision": "demo-new"}
        }))
        .unwrap()
    }

    use BrokerState::{Failed, Missing, Ready, Starting, Terminating};

    #[test]
    fn nothing_to_do_when_every_pod_is_current() {
        let brokers = [
            broker(0, Ready, true),
            broker(1, Starting, true),
            broker(2, Missing, false),
        ];
        assert_eq!(plan(&sts(2, 2), &brokers, None), Plan::Done);
    }

    #[test]
    fn waits_for_the_statefulset_controller_and_for_settling_pods() {
        let brokers = [broker(0, Ready, false), broker(1, Ready, false)];
        assert!(
            matches!(plan(&sts(1, 2), &brokers, None), Plan::Wait(r) if r.contains("not observed"))
        );
        let brokers = [broker(0, Ready, false), broker(1, Terminating, false)];
        assert_eq!(
            plan(&sts(2, 2), &brokers, None),
            Plan::Wait("demo-1 is terminating".into())
        );
        let brokers = [broker(0, Ready, false), broker(1, Missing, false)];
        assert_eq!(
            plan(&sts(2, 2), &brokers, None),
            Plan::Wait("demo-1 does not exist yet".into())
        );
    }

    #[test]
    fn unready_stale_pods_go_first_without_asking() {
        let brokers = [
            broker(0, Ready, false),
            broker(1, Failed, false),
            broker(2, Starting, true),
        ];
        assert_eq!(
            plan(&sts(2, 2), &brokers, None),
            Plan::DeleteUnready(broker(1, Failed, false))
        );
    }

    #[test]
    fn the_last_restarted_broker_must_be_ready_before_the_next() {
        let brokers = [
            broker(0, Ready, false),
            broker(1, Ready, false),
            broker(2, Starting, true),
        ];
        assert_eq!(
            plan(&sts(2, 2), &brokers, None),
            Plan::Wait("demo-2 has restarted and is not ready yet".into())
        );
    }

    #[test]
    fn highest_stale_ordinal_is_the_candidate() {
        let brokers = [
            broker(0, Ready, false),
            broker(1, Ready, false),
            broker(2, Ready, true),
        ];
        assert_eq!(
            plan(&sts(2, 2), &brokers, None),
            Plan::Ask {
                candidate: broker(1, Ready, false),
                others: vec![broker(0, Ready, false), broker(2, Ready, true)],
            }
        );
    }

    #[test]
    fn the_active_controller_restarts_last() {
        let brokers = [
            broker(0, Ready, false),
            broker(1, Ready, false),
            broker(2, Ready, false),
        ];
        let candidate = |controller| match plan(&sts(2, 2), &brokers, controller) {
            Plan::Ask { candidate, .. } => candidate.id,
            other => panic!("{other:?}"),
        };
        assert_eq!(candidate(Some(2)), 1);
        assert_eq!(candidate(Some(0)), 2);
        assert_eq!(candidate(None), 2);
        let only_the_controller = [
            broker(0, Ready, true),
            broker(1, Ready, false),
            broker(2, Ready, true),
        ];
        assert!(matches!(
            plan(&sts(2, 2), &only_the_controller, Some(1)),
            Plan::Ask { candidate, .. } if candidate.id == 1
        ));
    }

    #[tokio::test]
    async fn brokers_gate_the_candidate() {
        let kc = demo();
        let brokers = [
            broker(0, Ready, false),
            broker(1, Ready, false),
            broker(2, Ready, true),
        ];
        let address = |id| admin_address(&kc, id);
        let admin = FakeBrokerAdmin::default();
        let ask = plan(&sts(2, 2), &brokers, None);

        admin.lag(&address(2), &["orders-0"]);
        let (delete, step) = decide(&kc, &brokers, ask.clone(), &admin).await;
        assert_eq!(delete, None);
        assert_eq!(
            step,
            Step::Waiting {
                stale: 2,
                reason: "demo-2 has not caught up: orders-0".into()
            }
        );
        assert_eq!(
            admin.take_calls(),
            [
                format!("CaughtUp {}", address(0)),
                format!("CaughtUp {}", address(2))
            ]
        );

        admin.heal().refuse_restart(
            &address(1),
            &["orders-0 would have 1 of 2 in-sync replicas"],
        );
        let (delete, step) = decide(&kc, &brokers, ask.clone(), &admin).await;
        assert_eq!(delete, None);
        assert!(
            matches!(&step, Step::Waiting { reason, .. } if reason == "restarting demo-1 now is unsafe: orders-0 would have 1 of 2 in-sync replicas"),
            "{step:?}"
        );

        admin.heal();
        let (delete, step) = decide(&kc, &brokers, ask, &admin).await;
        assert_eq!(delete, Some(broker(1, Ready, false)));
        assert_eq!(
            step,
            Step::Restarting {
                pod: "demo-1".into(),
                stale: 2
            }
        );
    }

    #[test]
    fn admin_address_uses_the_per_broker_dns_name() {
        let kc = demo();
        assert_eq!(
            admin_address(&kc, 2),
            format!(
                "demo-2.demo-brokers.{}.svc:{}",
                kc.namespace().unwrap(),
                kc.spec.listeners.health_port
            )
        );
    }
}
