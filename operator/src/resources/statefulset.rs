//! The broker StatefulSet: one pod and one volume per broker, broker id = pod ordinal.
//!
//! Updates are `OnDelete`: the StatefulSet controller never restarts a broker by itself;
//! the operator's rolling restart (which asks each broker whether stopping it is safe;
//! without replication, today, the answer is yes once it runs) deletes pods one at a
//! time. Pods start in parallel (`podManagementPolicy: Parallel`): a voter of the metadata
//! quorum is not ready until a majority of voters is up, so with `OrderedReady` pod 1
//! would wait for pod 0 to be ready and pod 0 for pod 1 to exist.
//!
//! Every broker serves the quorum on the `controller` port and is told the voters (see
//! [`super::quorum`]) and the cluster id.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, GRPCAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::configmap::{broker_toml, config_hash};
use super::quorum::{self, Voters, CONTROLLER_PORT, VOTERS_FLAG};
use super::{
    child_meta, names, selector_labels, standard_labels, CONFIG_FILE, CONFIG_HASH_ANNOTATION,
    CONFIG_MOUNT, DATA_DIR, DATA_MOUNT, POD_INDEX_LABEL,
};
use crate::crd::KafkaCluster;

/// User and group the broker runs as (the distroless `nonroot` user).
const RUN_AS: i64 = 65532;
/// Seconds a broker gets to finish in-flight requests and close its logs cleanly.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// The desired StatefulSet `<name>` for `kc`, whose metadata quorum has `voters`.
pub fn desired_statefulset(kc: &KafkaCluster, voters: Voters) -> StatefulSet {
    let overrides = kc.spec.pod_template.clone().unwrap_or_default();

    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(standard_labels(kc));
    let mut pod_annotations = overrides.annotations.clone();
    pod_annotations.insert(
        CONFIG_HASH_ANNOTATION.to_string(),
        config_hash(&broker_toml(kc)),
    );

    let pod_spec = PodSpec {
        containers: vec![broker_container(kc, voters)],
        affinity: Some(
            overrides
                .affinity
                .clone()
                .unwrap_or_else(|| default_affinity(kc)),
        ),
        tolerations: non_empty(overrides.tolerations.clone()),
        node_selector: non_empty_map(overrides.node_selector.clone()),
        priority_class_name: overrides.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            fs_group_change_policy: Some("OnRootMismatch".to_string()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        volumes: Some(vec![
            Volume {
                name: "config".to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::configmap(kc),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };

    StatefulSet {
        metadata: child_meta(kc, names::statefulset(kc)),
        spec: StatefulSetSpec {
            replicas: Some(kc.spec.replicas),
            service_name: Some(names::headless_service(kc)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(kc)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Data outlives a scale-down or a deleted cluster; removing it is a human decision.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_string()),
                    when_scaled: Some("Retain".to_string()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: Some(vec![data_claim(kc)]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// The broker container: flags for everything the operator owns, the rest in the file.
fn broker_container(kc: &KafkaCluster, voters: Voters) -> Container {
    let listeners = &kc.spec.listeners;
    let advertised = format!(
        "$(POD_NAME).{}.$(POD_NAMESPACE).svc:{}",
        names::headless_service(kc),
        listeners.kafka_port
    );
    let args = [
        ("--listen", format!("0.0.0.0:{}", listeners.kafka_port)),
        ("--advertised-listener", advertised),
        ("--data-dir", DATA_DIR.to_string()),
        ("--node-id", "$(NODE_ID)".to_string()),
        (
            "--health-listen",
            format!("0.0.0.0:{}", listeners.health_port),
        ),
        (
            "--metrics-listen",
            format!("0.0.0.0:{}", listeners.metrics_port),
        ),
        ("--config", format!("{CONFIG_MOUNT}/{CONFIG_FILE}")),
    ]
    .into_iter()
    .chain(quorum_flags(kc, voters))
    .flat_map(|(flag, value)| flag_args(flag, value))
    .chain(std::iter::once("--log-json".to_string()))
    .collect();

    let grpc_probe = |period, failures| Probe {
        grpc: Some(GRPCAction {
            port: listeners.health_port,
            ..GRPCAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    };

    Container {
        name: "broker".to_string(),
        image: Some(kc.spec.image.clone()),
        image_pull_policy: kc.spec.image_pull_policy.clone(),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("NODE_ID", &format!("metadata.labels['{POD_INDEX_LABEL}']")),
        ]),
        ports: Some(vec![
            container_port("kafka", listeners.kafka_port),
            container_port("controller", CONTROLLER_PORT),
            container_port("health", listeners.health_port),
            container_port("metrics", listeners.metrics_port),
        ]),
        // Log recovery after an unclean stop can take minutes: allow 10 before liveness.
        startup_probe: Some(grpc_probe(5, 120)),
        readiness_probe: Some(grpc_probe(5, 3)),
        liveness_probe: Some(grpc_probe(10, 6)),
        resources: kc.spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_string(),
                mount_path: DATA_MOUNT.to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".to_string(),
                mount_path: CONFIG_MOUNT.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_string(),
                mount_path: "/tmp".to_string(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// `flag value` as arguments; one `flag=value` argument when the value starts with `-`
/// (a cluster id may: it is URL-safe base64), which the broker's parser would otherwise
/// read as another flag and refuse to start.
fn flag_args(flag: &str, value: String) -> Vec<String> {
    if value.starts_with('-') {
        vec![format!("{flag}={value}")]
    } else {
        vec![flag.to_string(), value]
    }
}

/// The flags joining the broker to its cluster's metadata quorum: where it serves the
/// quorum, the voters, and the cluster id (when there is one, see [`quorum::cluster_id`]).
pub fn quorum_flags(kc: &KafkaCluster, voters: Voters) -> Vec<(&'static str, String)> {
    let mut flags = vec![
        ("--controller-listen", format!("0.0.0.0:{CONTROLLER_PORT}")),
        (VOTERS_FLAG, voters.flag(kc)),
    ];
    if let Some(id) = quorum::cluster_id(kc) {
        flags.push(("--cluster-id", id));
    }
    flags
}

/// The per-broker volume claim `data-<name>-<ordinal>`.
fn data_claim(kc: &KafkaCluster) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_string()),
            labels: Some(selector_labels(kc)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: kc.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    kc.spec.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Prefer spreading brokers over nodes; preferred, not required, so a small cluster
/// still schedules (replace it through `spec.podTemplate.affinity` to make it strict).
fn default_affinity(kc: &KafkaCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".to_string(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(kc)),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster::{demo, demo_customised};

    #[test]
    fn default_cluster_statefulset() {
        insta::assert_yaml_snapshot!(desired_statefulset(&demo(), Voters::initial(3)));
    }

    #[test]
    fn customised_cluster_statefulset() {
        insta::assert_yaml_snapshot!(desired_statefulset(&demo_customised(), Voters::initial(3)));
    }

    #[test]
    fn every_broker_joins_the_quorum_and_the_pods_start_together() {
        let mut kc = demo();
        kc.spec.replicas = 5;
        // Created with one broker: one voter, whatever replicas says now.
        let spec = desired_statefulset(&kc, Voters::initial(1)).spec;
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let container = &spec.template.spec.unwrap().containers[0];
        let args = container.args.clone().unwrap();
        let value = |flag: &str| {
            let at = args.iter().position(|a| a == flag)?;
            args.get(at + 1).map(String::as_str)
        };
        assert_eq!(value("--node-id"), Some("$(NODE_ID)"));
        assert_eq!(value("--controller-listen"), Some("0.0.0.0:9093"));
        assert_eq!(
            value("--controller-quorum-voters"),
            Some("0@demo-0.demo-brokers.streaming.svc:9093")
        );
        assert_eq!(value("--cluster-id"), Some("C25bjl88S46dbB0vOktcbQ"));

        // A cluster id starting with `-` (1 in 64 of those derived from a uid) stays
        // one argument, or the broker would read it as a flag.
        kc.spec.cluster_id = Some("-iZ9".into());
        let spec = desired_statefulset(&kc, Voters::initial(1)).spec;
        let args = spec.template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(args.contains(&"--cluster-id=-iZ9".to_string()), "{args:?}");
        assert!(!args.contains(&"--cluster-id".to_string()), "{args:?}");
        let ports = container.ports.clone().unwrap();
        assert!(
            ports
                .iter()
                .any(|p| p.name.as_deref() == Some("controller") && p.container_port == 9093),
            "{ports:?}"
        );
    }

    #[test]
    fn operator_labels_win_over_pod_template_labels() {
        let sts = desired_statefulset(&demo_customised(), Voters::initial(3));
        let labels = sts.spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "runnel");
        assert_eq!(labels["team"], "data");
    }

    #[test]
    fn config_change_changes_the_pod_template() {
        let before = desired_statefulset(&demo(), Voters::initial(3));
        let mut kc = demo();
        kc.spec.config.insert("num.partitions".into(), "12".into());
        let after = desired_statefulset(&kc, Voters::initial(3));
        let hash = |sts: &StatefulSet| {
            sts.spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        };
        assert_ne!(hash(&before), hash(&after));
    }
}
