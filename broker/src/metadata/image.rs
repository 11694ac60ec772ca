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
}

impl MetadataImage {
    /// Applies one record. Records are validated before they are written, so applying
    /// never fails; a record about an unknown topic is ignored.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id.clone_from(cluster_id),
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
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
                    },
                );
            }
            MetadataRecord::DeleteTopic { name } => {
                if let Some(topic) = self.topics.remove(name) {
                    self.names_by_id.remove(&topic.id);
                }
            }
            MetadataRecord::CreatePartitions { name, partitions } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    topic.partitions = topic.partitions.max(*partitions);
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
        }
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
        });
        image.apply(&MetadataRecord::CreatePartitions {
            name: "t".into(),
            partitions: 5,
        });
        image.apply(&MetadataRecord::AlterTopicConfigs {
            name: "t".into(),
            changes: [("retention.ms".to_string(), Some("100".to_string()))].into(),
        });
        let topic = image.topic_by_id(&id).cloned();
        assert_eq!(topic.as_ref().map(|t| t.partitions), Some(5));
        assert_eq!(
            topic.and_then(|t| t.configs.get("retention.ms").cloned()),
            Some("100".to_string())
        );
        image.apply(&MetadataRecord::DeleteTopic { name: "t".into() });
        assert!(image.topic("t").is_none());
        assert!(image.topic_by_id(&id).is_none());
    }
}
