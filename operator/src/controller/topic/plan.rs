//! Pure decisions of the Topic controller: who owns a topic name, what an existing topic
//! must change, whether a pre-existing topic may be adopted, and the status that
//! describes the result. No I/O and no clock: the same inputs give the same answer.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{newly, upsert_condition, ConditionStatus, Topic, TopicStatus};
use crate::kafka::{AlterConfigOp, ConfigEntry, ConfigSource, TopicMetadata};

use super::replication::Change;

/// Condition type: the topic on the cluster is managed by this object and matches it.
pub const READY: &str = "Ready";
/// Condition type: an older `Topic` claims the same topic on the same cluster.
pub const RESOURCE_CONFLICT: &str = "ResourceConflict";

/// `Ready=False` reasons that only an edit clears (of this object, or of the topic on
/// the cluster): each is announced by one Warning Event when it appears or changes.
pub const NEEDS_AN_EDIT: [&str; 5] = [
    "KafkaRejected",
    "AdoptionRefused",
    "ResourceConflict",
    "PartitionsNotShrunk",
    REPLICATION_FACTOR_IMPOSSIBLE,
];

/// Condition type (and `Ready=False` reason): partitions are being reassigned to reach
/// the declared replication factor.
pub const REASSIGNING: &str = "Reassigning";
/// `Ready=False` reason: the declared replication factor cannot be reached.
pub const REPLICATION_FACTOR_IMPOSSIBLE: &str = "ReplicationFactorImpossible";

/// The Warning Event (reason, note) that going from `old` to `new` calls for: the
/// `Ready=False` condition when its reason is one of [`NEEDS_AN_EDIT`] and it was not
/// already there with the same message.
pub fn warning(old: Option<&TopicStatus>, new: &TopicStatus) -> Option<(String, String)> {
    let old = old.map_or(&[][..], |s| &s.conditions[..]);
    newly(old, &new.conditions, READY, ConditionStatus::False)
        .filter(|c| NEEDS_AN_EDIT.contains(&c.reason.as_str()))
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// A topic as the cluster has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Metadata: id, partitions, replicas.
    pub metadata: TopicMetadata,
    /// Configs set on the topic itself (overrides), by name.
    pub overrides: BTreeMap<String, String>,
}

/// The overrides among described configs: those whose source is the topic.
pub fn overrides(configs: &BTreeMap<String, ConfigEntry>) -> BTreeMap<String, String> {
    configs
        .iter()
        .filter(|(_, entry)| entry.source == ConfigSource::Topic)
        .filter_map(|(name, entry)| Some((name.clone(), entry.value.clone()?)))
        .collect()
}

/// The older `Topic` that owns the same topic name on the same cluster, if any.
///
/// Claimants are the objects of the namespace naming the same cluster and topic and not
/// being deleted; the oldest (`creationTimestamp`, then name) wins.
pub fn owner_other_than<'a>(me: &'a Topic, all: &'a [Topic]) -> Option<&'a Topic> {
    let my_topic = me
        .spec
        .effective_name(me.metadata.name.as_deref().unwrap_or_default());
    let mut claimants: Vec<&Topic> = all
        .iter()
        .filter(|t| t.metadata.deletion_timestamp.is_none() || t.name_any() == me.name_any())
        .filter(|t| t.spec.cluster_ref == me.spec.cluster_ref)
        .filter(|t| {
            t.spec
                .effective_name(t.metadata.name.as_deref().unwrap_or_default())
                == my_topic
        })
        .collect();
    if !claimants.iter().any(|t| t.name_any() == me.name_any()) {
        claimants.push(me);
    }
    let winner = claimants
        .into_iter()
        .min_by(|a, b| claim_key(a).cmp(&claim_key(b)))?;
    (winner.name_any() != me.name_any()).then_some(winner)
}

fn claim_key(topic: &Topic) -> (Option<&Time>, String) {
    (topic.metadata.creation_timestamp.as_ref(), topic.name_any())
}

/// Another `Topic` that still claims the same topic (so deleting this object must not
/// delete the topic).
pub fn other_claimant<'a>(me: &Topic, all: &'a [Topic]) -> Option<&'a Topic> {
    let my_topic = me
        .spec
        .effective_name(me.metadata.name.as_deref().unwrap_or_default());
    all.iter().find(|t| {
        t.name_any() != me.name_any()
            && t.metadata.deletion_timestamp.is_none()
            && t.spec.cluster_ref == me.spec.cluster_ref
            && t.spec
                .effective_name(t.metadata.name.as_deref().unwrap_or_default())
                == my_topic
    })
}

/// The IncrementalAlterConfigs operations that make the overrides equal `desired`:
/// keys of the spec are set to its values, overrides not in the spec are removed.
pub fn config_ops(
    desired: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<AlterConfigOp> {
    let mut ops: Vec<AlterConfigOp> = desired
        .iter()
        .filter(|(name, value)| overrides.get(*name) != Some(*value))
        .map(|(name, value)| AlterConfigOp::Set {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    ops.extend(
        overrides
            .keys()
            .filter(|name| !desired.contains_key(*name))
            .map(|name| AlterConfigOp::Delete { name: name.clone() }),
    );
    ops
}

/// How a pre-existing topic differs from the spec, one sentence each; empty when it
/// may be adopted.
pub fn adoption_differences(topic: &Topic, observed: &Observed) -> Vec<String> {
    let spec = &topic.spec;
    let mut differences = Vec::new();
    let partitions = observed.metadata.partition_count();
    if partitions != spec.partitions {
        differences.push(format!(
            "it has {partitions} partitions, the spec asks for {}",
            spec.partitions
        ));
    }
    if let (Some(want), Some(have)) = (
        spec.replication_factor,
        observed.metadata.replication_factor(),
    ) {
        if want != have {
            differences.push(format!(
                "its replication factor is {have}, the spec asks for {want}"
            ));
        }
    }
    for op in config_ops(&spec.config, &observed.overrides) {
        differences.push(match op {
            AlterConfigOp::Set { name, value } => match observed.overrides.get(&name) {
                Some(have) => format!("config {name} is {have:?}, the spec asks for {value:?}"),
                None => format!("config {name} is not set, the spec asks for {value:?}"),
            },
            AlterConfigOp::Delete { name } => format!(
                "config {name} is set to {:?}, the spec does not set it",
                observed.overrides.get(&name).cloned().unwrap_or_default()
            ),
        });
    }
    differences
}

/// Why a pass ended the way it did: the `Ready` condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the topic matches the spec.
    pub ready: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl Outcome {
    /// A `Ready=False` outcome.
    pub fn not_ready(reason: &'static str, message: String) -> Self {
        Self {
            ready: false,
            reason,
            message,
        }
    }
}

/// The outcome for a topic this object manages, after the changes were made, and where
/// a replication-factor change stands (`None`: the spec declares no factor).
pub fn managed_outcome(topic: &Topic, observed: &Observed, change: Option<&Change>) -> Outcome {
    let spec = &topic.spec;
    let name = &observed.metadata.name;
    let partitions = observed.metadata.partition_count();
    if partitions > spec.partitions {
        return Outcome::not_ready(
            "PartitionsNotShrunk",
            format!(
                "the spec asks for {} partitions but topic {name} has {partitions}; partitions are never removed",
                spec.partitions
            ),
        );
    }
    let want = spec.replication_factor.unwrap_or_default();
    match change {
        Some(Change::Moving { moving, pending }) => {
            return Outcome::not_ready(
                REASSIGNING,
                format!(
                    "changing the replication factor of topic {name} to {want}: {moving} \
                     partitions moving, {pending} more to go"
                ),
            )
        }
        Some(Change::Impossible(why)) => {
            return Outcome::not_ready(
                REPLICATION_FACTOR_IMPOSSIBLE,
                format!("topic {name} cannot get replication factor {want}: {why}"),
            )
        }
        Some(Change::Done) | None => {}
    }
    Outcome {
        ready: true,
        reason: "InSync",
        message: format!("topic {name} has {partitions} partitions and the declared configs"),
    }
}

/// Records a replication-factor change in `status`: the `Reassigning` condition and
/// `reassigningPartitions` while partitions move; once done the condition turns `False`
/// (it is only added by a change, so topics that never changed have none).
pub fn record_reassignment(
    status: &mut TopicStatus,
    topic: &Topic,
    change: Option<&Change>,
    now: &Time,
) {
    let generation = topic.metadata.generation;
    let had = status.conditions.iter().any(|c| c.type_ == REASSIGNING);
    match change {
        Some(Change::Moving { moving, pending }) => {
            let total = moving.saturating_add(*pending);
            status.reassigning_partitions = Some(i32::try_from(total).unwrap_or(i32::MAX));
            upsert_condition(
                &mut status.conditions,
                REASSIGNING,
                ConditionStatus::True,
                "ReplicationFactorChange",
                format!("{moving} partitions moving, {pending} more to go"),
                generation,
                now,
            );
        }
        _ if had => {
            status.reassigning_partitions = None;
            upsert_condition(
                &mut status.conditions,
                REASSIGNING,
                ConditionStatus::False,
                "Done",
                "every partition has the declared replication factor".to_string(),
                generation,
                now,
            );
        }
        _ => status.reassigning_partitions = None,
    }
}

/// `Ready=False` reason: the cluster did not answer.
pub const KAFKA_UNAVAILABLE: &str = "KafkaUnavailable";

/// The status when the cluster did not answer: the previous status (what the cluster
/// had, and `topicId`, which the finalizer relies on) with `Ready=False` saying why.
pub fn unavailable_status(topic: &Topic, message: String, now: &Time) -> TopicStatus {
    let generation = topic.metadata.generation;
    let mut status = topic.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    upsert_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::False,
        KAFKA_UNAVAILABLE,
        message,
        generation,
        now,
    );
    status
}

/// The status after a pass. `observed` is what the cluster has (when it was looked
/// at); `owned` says whether this object manages it (only then is `topicId` set, which
/// is what later allows the finalizer to delete the topic).
pub fn topic_status(
    topic: &Topic,
    observed: Option<&Observed>,
    owned: bool,
    outcome: &Outcome,
    conflict_with: Option<&str>,
    now: &Time,
) -> TopicStatus {
    let generation = topic.metadata.generation;
    let mut status = topic.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.partitions = observed.map(|o| o.metadata.partition_count());
    status.replication_factor = observed.and_then(|o| o.metadata.replication_factor());
    status.config = observed.map(|o| o.overrides.clone()).unwrap_or_default();
    status.topic_id = observed
        .filter(|_| owned)
        .and_then(|o| o.metadata.topic_id.clone());
    upsert_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::from_bool(outcome.ready),
        outcome.reason,
        outcome.message.clone(),
        generation,
        now,
    );
    let (conflict, reason, message) = match conflict_with {
        Some(owner) => (
            true,
            "OlderTopicOwnsName",
            format!("Topic {owner} (older) already manages this topic on the cluster"),
        ),
        None => (false, "NoConflict", String::new()),
    };
    upsert_condition(
        &mut status.conditions,
        RESOURCE_CONFLICT,
        ConditionStatus::from_bool(conflict),
        reason,
        message,
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::PartitionMetadata;
    use serde_json::json;

    fn topic(name: &str, created: i64, topic_name: &str) -> Topic {
        serde_json::from_value(json!({
            "apiVersion": "runnel.dev/v1alpha1", "kind": "Topic",
            "metadata": {"name": name, "namespace": "streaming",
                "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"clusterRef": {"name": "demo"}, "topicName": topic_name, "partitions": 3,
                "replicationFactor": 1, "config": {"retention.ms": "1000"}}
        }))
        .unwrap()
    }

    fn observed(partitions: i32, overrides: &[(&str, &str)]) -> Observed {
        Observed {
            metadata: TopicMetadata {
                name: "orders".into(),
                topic_id: Some("id".into()),
                partitions: (0..partitions)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        leader: 0,
                        replicas: vec![0],
                    })
                    .collect(),
            },
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_oldest_claimant_wins_then_the_first_name() {
        let a = topic("a", 200, "orders");
        let b = topic("b", 100, "orders");
        let c = topic("c", 100, "orders");
        let other = topic("z", 1, "payments");
        let all = [a.clone(), b.clone(), c.clone(), other];
        assert_eq!(
            owner_other_than(&a, &all).map(|t| t.name_any()),
            Some("b".into())
        );
        assert_eq!(
            owner_other_than(&c, &all).map(|t| t.name_any()),
            Some("b".into())
        );
        assert_eq!(owner_other_than(&b, &all), None);
    }

    #[test]
    fn config_ops_set_declared_keys_and_remove_the_rest() {
        let desired = BTreeMap::from([
            ("retention.ms".to_string(), "1000".to_string()),
            ("cleanup.policy".to_string(), "compact".to_string()),
        ]);
        let overrides = BTreeMap::from([
            ("retention.ms".to_string(), "5".to_string()),
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), "1024".to_string()),
        ]);
        assert_eq!(
            config_ops(&desired, &overrides),
            [
                AlterConfigOp::Set {
                    name: "retention.ms".into(),
                    value: "1000".into()
                },
                AlterConfigOp::Delete {
                    name: "segment.bytes".into()
                }
            ]
        );
        assert!(config_ops(&desired, &desired).is_empty());
    }

    #[test]
    fn adoption_lists_every_difference() {
        let t = topic("a", 1, "orders");
        assert!(adoption_differences(&t, &observed(3, &[("retention.ms", "1000")])).is_empty());
        assert_eq!(
            adoption_differences(&t, &observed(5, &[("segment.bytes", "1")])),
            [
                "it has 5 partitions, the spec asks for 3",
                "config retention.ms is not set, the spec asks for \"1000\"",
                "config segment.bytes is set to \"1\", the spec does not set it",
            ]
        );
    }

    #[test]
    fn a_larger_topic_is_reported_not_shrunk() {
        let t = topic("a", 1, "orders");
        let outcome = managed_outcome(&t, &observed(6, &[]), None);
        assert!(!outcome.ready);
        assert_eq!(outcome.reason, "PartitionsNotShrunk");
        assert!(managed_outcome(&t, &observed(3, &[]), Some(&Change::Done)).ready);
    }

    #[test]
    fn a_replication_factor_change_is_reported_until_done() {
        let t = topic("a", 1, "orders");
        let moving = Change::Moving {
            moving: 2,
            pending: 1,
        };
        let outcome = managed_outcome(&t, &observed(3, &[]), Some(&moving));
        assert_eq!(outcome.reason, REASSIGNING);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let mut status = TopicStatus::default();
        record_reassignment(&mut status, &t, Some(&moving), &now);
        assert_eq!(status.reassigning_partitions, Some(3));
        let reassigning = status.conditions.iter().find(|c| c.type_ == REASSIGNING);
        assert_eq!(reassigning.map(|c| c.status.as_str()), Some("True"));
        record_reassignment(&mut status, &t, Some(&Change::Done), &now);
        assert_eq!(status.reassigning_partitions, None);
        let reassigning = status.conditions.iter().find(|c| c.type_ == REASSIGNING);
        assert_eq!(reassigning.map(|c| c.status.as_str()), Some("False"));
        let mut untouched = TopicStatus::default();
        record_reassignment(&mut untouched, &t, Some(&Change::Done), &now);
        assert!(untouched.conditions.is_empty());
    }
}
