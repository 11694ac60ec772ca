//! The PodDisruptionBudget: voluntary disruptions (evictions, node drains) take at most
//! one broker at a time, and never the only broker of a one-broker cluster.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, names, selector_labels};
use crate::crd::KafkaCluster;

/// The desired PodDisruptionBudget `<name>`: `maxUnavailable: 1`, or `0` when the spec
/// asks for one broker. Evicting that broker would take the cluster and the only copy
/// of its data offline, so a drain waits until someone moves the pod on purpose
/// (deleting it is not an eviction and is not blocked).
pub fn desired_pdb(kc: &KafkaCluster) -> PodDisruptionBudget {
    let max_unavailable = if kc.spec.replicas > 1 { 1 } else { 0 };
    PodDisruptionBudget {
        metadata: child_meta(kc, names::statefulset(kc)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(kc)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster::demo;

    #[test]
    fn default_cluster_pdb() {
        insta::assert_yaml_snapshot!(desired_pdb(&demo()));
    }

    fn max_unavailable(replicas: i32) -> Option<IntOrString> {
        let mut kc = demo();
        kc.spec.replicas = replicas;
        desired_pdb(&kc).spec.and_then(|s| s.max_unavailable)
    }

    #[test]
    fn the_only_broker_is_never_evicted() {
        assert_eq!(max_unavailable(1), Some(IntOrString::Int(0)));
        assert_eq!(max_unavailable(2), Some(IntOrString::Int(1)));
        assert_eq!(max_unavailable(3), Some(IntOrString::Int(1)));
    }
}
