//! The in-memory state that the metadata log's records build up.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::MetadataRecord;

/// One topic as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Number of partitions (partition ids are `0..partitions`).
    pub partitions: i32,
    /// Topic-level configs that override the defaults.
    pub configs: BTreeMap<String, String>,
    /// Replica broker ids per partition, preferred leader first; empty for a topic made
    /// by a single broker before clusters existed (see [`TopicImage::replicas`]).
    #[serde(default)]
    pub replicas: Vec<Vec<i32>>,
}

impl TopicImage {
    /// The replicas of `partition`: its assignment, or `[single]` for a topic from before
    /// clusters (every partition on the one broker there was).
    pub fn replicas(&self, partition: i32, single: i32) -> Vec<i32> {
        self.replicas_of(partition).unwrap_or_else(|| vec![single])
    }

    /// The partitions with a replica on broker `node` (every partition of a topic from
    /// before clusters, which the one broker there was holds).
    pub fn partitions_on(&self, node: i32) -> impl Iterator<Item = i32> + '_ {
        (0..self.partitions).filter(move |&p| self.replicas_of(p).is_none_or(|r| r.contains(&node)))
    }

    fn replicas_of(&self, partition: i32) -> Option<Vec<i32>> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.replicas.get(p))
            .cloned()
    }
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Which run of the broker registered last.
    pub incarnation: Uuid,
    /// Missed its session: not offered to clients, leads nothing.
    #[serde(default)]
    pub fenced: bool,
}

/// The cluster metadata at one point of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// `cluster.id`; empty until the `Cluster` record is applied.
    pub cluster_id: String,
    topics: BTreeMap<String, TopicImage>,
    names_by_id: HashMap<Uuid, String>,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
    /// Voters that have taken part in the metadata quorum with their storage.
    #[serde(default)]
    pub quorum_members: BTreeSet<u64>,
    /// Registered brokers by node id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerImage>,
}

impl MetadataImage {
    /// Applies one record. Records are validated before they are written, so applying
    /// never fails; a record about an unknown topic is ignored.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            // The first cluster id written is the cluster's for good.
            MetadataRecord::Cluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id.clone_from(cluster_id);
                }
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
                replicas,
            } => {
                // A second CreateTopic for a live name (two brokers racing, or a write
                // retried after its answer was lost) changes nothing: the first one won.
                if self.topics.contains_key(name) {
                    return;
                }
                self.names_by_id.insert(*id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        partitions: *partitions,
                        configs: configs.clone(),
                        replicas: replicas.clone(),
                    },
                );
            }
            MetadataRecord::DeleteTopic { name } => {
                if let Some(topic) = self.topics.remove(name) {
                    self.names_by_id.remove(&topic.id);
                }
            }
            MetadataRecord::CreatePartitions {
                name,
                partitions,
                replicas,
            } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    if *partitions > topic.partitions {
                        // Assignments are kept only while they cover every partition.
                        if !topic.replicas.is_empty()
                            && topic.replicas.len() + replicas.len() == *partitions as usize
                        {
                            topic.replicas.extend(replicas.iter().cloned());
                        }
                        topic.partitions = *partitions;
                    }
                }
            }
            MetadataRecord::AlterTopicConfigs { name, changes } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    for (key, value) in changes {
                        match value {
                            Some(v) => topic.configs.insert(key.clone(), v.clone()),
                            None => topic.configs.remove(key),
                        };
                    }
                }
            }
            MetadataRecord::ProducerIds { next } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::QuorumMember { node_id } => {
                self.quorum_members.insert(*node_id);
            }
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                incarnation,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        incarnation: *incarnation,
                        fenced: false,
                    },
                );
            }
            MetadataRecord::FenceBroker {
                node_id,
                incarnation,
            }
            | MetadataRecord::UnfenceBroker {
                node_id,
                incarnation,
            } => {
                let fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                if let Some(broker) = self.brokers.get_mut(node_id) {
                    if broker.incarnation == *incarnation {
                        broker.fenced = fenced;
                    }
                }
            }
        }
    }

    /// Whether broker `node_id` is registered and not fenced.
    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.names_by_id.get(id).and_then(|n| self.topics.get(n))
    }

    /// All topics, by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_build_the_image() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id,
            partitions: 2,
            configs: BTreeMap::new(),
            replicas: vec![vec![1, 2], vec![2, 0]],
        });
        image.apply(&MetadataRecord::CreatePartitions {
            name: "t".into(),
            partitions: 5,
            replicas: vec![vec![0, 1], vec![1, 2], vec![2, 0]],
        });
        image.apply(&MetadataRecord::AlterTopicConfigs {
            name: "t".into(),
            changes: [("retention.ms".to_string(), Some("100".to_string()))].into(),
        });
        let topic = image.topic_by_id(&id).cloned();
        assert_eq!(topic.as_ref().map(|t| t.partitions), Some(5));
        assert_eq!(topic.as_ref().map(|t| t.replicas(4, 9)), Some(vec![2, 0]));
        // A second CreateTopic of a live name changes nothing.
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            replicas: Vec::new(),
        });
        assert_eq!(image.topic("t").map(|t| t.id), Some(id));
        assert_eq!(
            topic.and_then(|t| t.configs.get("retention.ms").cloned()),
            Some("100".to_string())
        );
        image.apply(&MetadataRecord::DeleteTopic { name: "t".into() });
        assert!(image.topic("t").is_none());
        assert!(image.topic_by_id(&id).is_none());
    }
}
