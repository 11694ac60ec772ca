//! The PodDisruptionBudget: voluntary disruptions take at most one broker at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, names, selector_labels};
use crate::crd::KafkaCluster;

/// The desired PodDisruptionBudget `<name>` with `maxUnavailable: 1`.
pub fn desired_pdb(kc: &KafkaCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(kc, names::statefulset(kc)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
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
}
