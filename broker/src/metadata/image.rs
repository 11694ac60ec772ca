//! The in-memory state that the metadata log's records build up.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reassignment::Reassignment;
use super::{DynamicBrokerConfigs, MetadataRecord};

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
    /// Leader, leader epoch and ISR per partition, kept with `replicas` (empty for a
    /// topic from before clusters: see [`TopicImage::leadership`]).
    #[serde(default)]
    pub leadership: Vec<Leadership>,
    /// Reassignments in flight, by partition (KIP-455; see `reassignment.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reassignments: BTreeMap<i32, Reassignment>,
}

/// Who leads one partition, in which epoch, and which replicas are in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// The leader's broker id, or -1 while the partition is offline.
    pub leader: i32,
    /// Raised on every change of leader, and when the leader restarts (KIP-101):
    /// followers and clients tell an old leader's word from the current one by it.
    pub leader_epoch: i32,
    /// The in-sync replicas. A new partition's is its leader alone; an offline partition
    /// keeps its last leader here, the one replica that may lead it again. Changed by
    /// fencing and by the leader's `AlterPartition` proposals, which keep replica order.
    pub isr: Vec<i32>,
    /// Raised on every change of leader, leader epoch or ISR (Kafka's partition epoch):
    /// an `AlterPartition` proposal names the one it was based on, so a proposal made
    /// before any other change is refused. 0 in images from before it existed.
    #[serde(default)]
    pub partition_epoch: i32,
}

impl Leadership {
    /// A new partition's: its preferred replica leads, in epoch 0.
    fn new(replicas: &[i32]) -> Self {
        let leader = replicas.first().copied().unwrap_or(-1);
        Leadership {
            leader,
            leader_epoch: 0,
            isr: replicas.first().map(|&r| vec![r]).unwrap_or_default(),
            partition_epoch: 0,
        }
    }
}

impl Leadership {
    /// A new leader from the ISR, in a new leader epoch: its first member that is
    /// `live`, or none (-1, offline). Never a replica outside the ISR.
    pub(super) fn elect_from_isr(&mut self, live: &BTreeSet<i32>) {
        self.leader = self
            .isr
            .iter()
            .copied()
            .find(|r| live.contains(r))
            .unwrap_or(-1);
        self.leader_epoch += 1;
    }
}

impl TopicImage {
    /// A new topic: each partition led by its preferred replica in epoch 0.
    pub fn new(
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        replicas: Vec<Vec<i32>>,
    ) -> Self {
        TopicImage {
            name: name.to_string(),
            id,
            partitions,
            configs,
            leadership: replicas.iter().map(|r| Leadership::new(r)).collect(),
            replicas,
            reassignments: BTreeMap::new(),
        }
    }

    /// The leadership of `partition` (for a topic from before clusters, `single` leads
    /// in epoch 0).
    pub fn leadership(&self, partition: i32, single: i32) -> Leadership {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.leadership.get(p))
            .cloned()
            .unwrap_or_else(|| Leadership::new(&self.replicas(partition, single)))
    }

    /// The leader of `partition`, -1 while it is offline.
    pub fn leader(&self, partition: i32, single: i32) -> i32 {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.leadership.get(p))
            .map_or_else(
                || {
                    self.replicas(partition, single)
                        .first()
                        .copied()
                        .unwrap_or(-1)
                },
                |l| l.leader,
            )
    }

    /// The replicas of `partition`: its assignment, or `[single]` for a topic from before
    /// clusters (every partition on the one broker there was).
    pub fn replicas(&self, partition: i32, single: i32) -> Vec<i32> {
        self.replicas_of(partition).unwrap_or_else(|| vec![single])
    }

    /// The partitions with a replica on broker `node` (every partition of a topic from
    /// before clusters, which the one broker there was holds).
    pub fn partitions_on(&self, node: i32) -> impl Iterator<Item = i32> + '_ {
        (0..self.partitions).filter(move |&p| self.has_replica(p, node))
    }

    /// Whether broker `node` holds a replica of `partition` (every partition of a topic
    /// from before clusters is on the one broker there was, whatever its id).
    pub fn has_replica(&self, partition: i32, node: i32) -> bool {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.replicas.get(p))
            .is_none_or(|r| r.contains(&node))
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
    /// The broker epoch of this run (KIP-903): set when its `RegisterBroker` is applied,
    /// from a cluster-wide counter, so every registration has a larger one than any
    /// before. 0 in images from before it existed.
    #[serde(default)]
    pub epoch: i64,
}

/// The cluster metadata at one point of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// `cluster.id`; empty until the `Cluster` record is applied.
    pub cluster_id: String,
    pub(super) topics: BTreeMap<String, TopicImage>,
    names_by_id: HashMap<Uuid, String>,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
    /// The start of the latest producer-id block of each broker.
    #[serde(default)]
    pub producer_id_blocks: BTreeMap<i32, i64>,
    /// Voters that have taken part in the metadata quorum with their storage.
    #[serde(default)]
    pub quorum_members: BTreeSet<u64>,
    /// Registered brokers by node id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// The largest broker epoch given so far (0 before any registration, and in images
    /// from before broker epochs).
    #[serde(default)]
    pub last_broker_epoch: i64,
    /// Broker configs set at runtime (IncrementalAlterConfigs on BROKER resources).
    #[serde(default, skip_serializing_if = "DynamicBrokerConfigs::is_empty")]
    pub broker_configs: DynamicBrokerConfigs,
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
                    TopicImage::new(name, *id, *partitions, configs.clone(), replicas.clone()),
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
                            topic
                                .leadership
                                .extend(replicas.iter().map(|r| Leadership::new(r)));
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
            MetadataRecord::ProducerIdBlock { node_id } => {
                let start = self.next_producer_id;
                self.next_producer_id = start.saturating_add(super::PRODUCER_ID_BLOCK);
                self.producer_id_blocks.insert(*node_id, start);
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
                let restarted = self
                    .brokers
                    .get(node_id)
                    .is_some_and(|b| b.incarnation != *incarnation && !b.fenced);
                // Every applied registration (a retried one too) is a new broker epoch.
                self.last_broker_epoch = self.last_broker_epoch.saturating_add(1);
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        incarnation: *incarnation,
                        fenced: false,
                        epoch: self.last_broker_epoch,
                    },
                );
                // A new run of a broker that still led is a new leader of those partitions
                // (what it had not flushed may be gone): a new epoch.
                if restarted {
                    self.change_leadership(|l| {
                        if l.leader == *node_id {
                            l.leader_epoch += 1;
                        }
                    });
                }
                self.elect_returning(*node_id);
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
                let Some(broker) = self.brokers.get_mut(node_id) else {
                    return;
                };
                if broker.incarnation != *incarnation || broker.fenced == fenced {
                    return;
                }
                broker.fenced = fenced;
                if fenced {
                    self.remove_fenced(*node_id);
                } else {
                    self.elect_returning(*node_id);
                }
            }
            MetadataRecord::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let checked = self.check_alter_partition(
                    topic,
                    *partition,
                    *leader,
                    *leader_epoch,
                    *partition_epoch,
                    isr,
                );
                if let Ok(isr) = checked {
                    if let Some(l) = self.leadership_mut(topic, *partition) {
                        l.isr = isr;
                        l.partition_epoch += 1;
                    }
                    let live = self.live_brokers();
                    self.complete_reassignment(topic, *partition, &live);
                }
            }
            MetadataRecord::ReassignPartition {
                topic,
                partition,
                target,
            } => self.reassign(topic, *partition, target.as_deref()),
            MetadataRecord::ElectLeader {
                topic,
                partition,
                election,
            } => self.elect(topic, *partition, *election),
            MetadataRecord::AlterBrokerConfigs { node_id, changes } => {
                self.broker_configs.apply(*node_id, changes);
            }
            MetadataRecord::UnregisterBroker { node_id } => {
                if self.brokers.get(node_id).is_some_and(|b| b.fenced) {
                    self.brokers.remove(node_id);
                }
            }
        }
    }

    /// Applies `change` to the leadership of every partition of every topic; a partition
    /// whose leader, leader epoch or ISR it changes gets a new partition epoch.
    fn change_leadership(&mut self, mut change: impl FnMut(&mut Leadership)) {
        for topic in self.topics.values_mut() {
            for l in &mut topic.leadership {
                let before = (l.leader, l.leader_epoch, l.isr.clone());
                change(l);
                if (l.leader, l.leader_epoch, &l.isr) != (before.0, before.1, &before.2) {
                    l.partition_epoch += 1;
                }
            }
        }
    }

    /// The stored leadership of `partition` of `topic` (none for a topic from before
    /// clusters).
    pub(super) fn leadership_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Option<&mut Leadership> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get_mut(topic)?.leadership.get_mut(index)
    }

    /// A fenced broker leaves every ISR it is in, except as the last member, and leads
    /// nothing: each partition it led gets the first live replica of its ISR as leader,
    /// or goes offline (-1) when there is none. Never a replica outside the ISR.
    fn remove_fenced(&mut self, node_id: i32) {
        let live = self.live_brokers();
        self.change_leadership(|l| {
            if l.isr.len() > 1 {
                l.isr.retain(|&r| r != node_id);
            }
            if l.leader == node_id {
                l.elect_from_isr(&live);
            }
        });
    }

    /// A broker back in service leads again the offline partitions whose ISR it is in.
    fn elect_returning(&mut self, node_id: i32) {
        self.change_leadership(|l| {
            if l.leader == -1 && l.isr.contains(&node_id) {
                l.leader = node_id;
                l.leader_epoch += 1;
            }
        });
    }

    /// The broker epoch of broker `node_id`'s current registration, if it is registered.
    pub fn broker_epoch(&self, node_id: i32) -> Option<i64> {
        self.brokers.get(&node_id).map(|b| b.epoch)
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
pub(crate) mod tests {
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

    /// Registers broker `node_id` (a new run of it); for the metadata tests.
    /// Brokers 0..=3 registered (broker epochs 1..=4, their runs returned) and topic `t`
    /// with one partition on `replicas`, led by the first in epoch 0.
    pub(crate) fn four_brokers_and_topic_t(replicas: &[i32]) -> (MetadataImage, Vec<Uuid>) {
        let mut image = MetadataImage::default();
        let runs = (0..4).map(|n| register(&mut image, n)).collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            replicas: vec![replicas.to_vec()],
        });
        (image, runs)
    }

    /// The leader's `AlterPartition` proposal of `isr` for `partition` of `topic`, in the
    /// partition's current epochs and the members' current broker epochs.
    pub(crate) fn propose_isr(image: &mut MetadataImage, topic: &str, partition: i32, isr: &[i32]) {
        let Some(l) = image.topic(topic).map(|t| t.leadership(partition, -1)) else {
            return;
        };
        let isr = isr
            .iter()
            .map(|&node_id| crate::metadata::IsrMember {
                node_id,
                broker_epoch: image.broker_epoch(node_id).unwrap_or(-1),
            })
            .collect();
        image.apply(&MetadataRecord::AlterPartition {
            topic: topic.into(),
            partition,
            leader: l.leader,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            isr,
        });
    }

    pub(crate) fn register(image: &mut MetadataImage, node_id: i32) -> Uuid {
        let incarnation = Uuid::new_v4();
        image.apply(&MetadataRecord::RegisterBroker {
            node_id,
            host: "localhost".into(),
            port: 9092 + node_id,
            rack: None,
            incarnation,
        });
        incarnation
    }

    fn leadership(image: &MetadataImage, partition: i32) -> (i32, i32, Vec<i32>) {
        let l = image.topic("t").map(|t| t.leadership(partition, 9));
        l.map_or((-2, -2, vec![]), |l| (l.leader, l.leader_epoch, l.isr))
    }

    #[test]
    fn a_fenced_leader_alone_in_its_isr_takes_its_partitions_offline_until_it_returns() {
        let mut image = MetadataImage::default();
        let runs: Vec<Uuid> = (0..3).map(|n| register(&mut image, n)).collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::new(),
            replicas: vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]],
        });
        assert_eq!(leadership(&image, 1), (1, 0, vec![1]));
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        // Never a replica outside the ISR: offline, epoch raised, last leader kept in the ISR.
        assert_eq!(leadership(&image, 1), (-1, 1, vec![1]));
        assert_eq!(leadership(&image, 0), (0, 0, vec![0]));
        // A fence of an older run, or a second fence, changes nothing.
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            incarnation: Uuid::new_v4(),
        });
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        assert_eq!(leadership(&image, 1), (-1, 1, vec![1]));
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        assert_eq!(leadership(&image, 1), (1, 2, vec![1]));
        // A restarted broker that still led comes back as a new leader epoch.
        register(&mut image, 2);
        assert_eq!(leadership(&image, 2), (2, 1, vec![2]));
        assert_eq!(leadership(&image, 0), (0, 0, vec![0]));
        // A broker that restarts after being fenced leads its offline partitions again.
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        assert_eq!(leadership(&image, 0), (-1, 1, vec![0]));
        register(&mut image, 0);
        assert_eq!(leadership(&image, 0), (0, 2, vec![0]));
    }

    #[test]
    fn a_fenced_leader_hands_over_to_a_live_isr_member_and_leaves_the_isr() {
        let mut image = MetadataImage::default();
        let runs: Vec<Uuid> = (0..3).map(|n| register(&mut image, n)).collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![0, 1, 2]],
        });
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        if let Some(t) = image.topics.get_mut("t") {
            t.leadership[0].isr = vec![0, 1, 2];
        }
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        // Broker 1 is in the ISR but fenced: 2 leads, and 0 leaves the ISR.
        assert_eq!(leadership(&image, 0), (2, 1, vec![1, 2]));
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 2,
            incarnation: runs[2],
        });
        assert_eq!(leadership(&image, 0), (-1, 2, vec![1]));
        // The returning broker that was in the ISR leads; one outside it never does.
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        assert_eq!(leadership(&image, 0), (-1, 2, vec![1]));
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        assert_eq!(leadership(&image, 0), (1, 3, vec![1]));
    }

    #[test]
    fn every_registration_gets_a_larger_broker_epoch() {
        let mut image = MetadataImage::default();
        let first = register(&mut image, 0);
        register(&mut image, 1);
        assert_eq!(
            (image.broker_epoch(0), image.broker_epoch(1)),
            (Some(1), Some(2))
        );
        // A fenced broker keeps its epoch; its next run gets a larger one than any before.
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 0,
            incarnation: first,
        });
        assert_eq!(image.broker_epoch(0), Some(1));
        register(&mut image, 0);
        assert_eq!(image.broker_epoch(0), Some(3));
        assert_eq!(image.broker_epoch(1), Some(2));
        assert_eq!(image.broker_epoch(7), None);
        assert_eq!(image.last_broker_epoch, 3);
        // Images from before broker epochs read as epoch 0, and the next registration
        // still gets a larger one.
        let mut json = serde_json::to_value(&image).expect("an image encodes");
        json.as_object_mut().map(|o| o.remove("last_broker_epoch"));
        for b in json["brokers"]
            .as_object_mut()
            .into_iter()
            .flat_map(|b| b.values_mut())
        {
            b.as_object_mut().map(|o| o.remove("epoch"));
        }
        let mut old: MetadataImage = serde_json::from_value(json).expect("an older image");
        assert_eq!((old.broker_epoch(0), old.last_broker_epoch), (Some(0), 0));
        register(&mut old, 1);
        assert_eq!(old.broker_epoch(1), Some(1));
    }

    fn partition_state(image: &MetadataImage) -> (i32, i32, Vec<i32>, i32) {
        let l = image.topic("t").map(|t| t.leadership(0, 9));
        l.map_or((-2, -2, vec![], -2), |l| {
            (l.leader, l.leader_epoch, l.isr, l.partition_epoch)
        })
    }

    #[test]
    fn every_change_of_leader_or_isr_raises_the_partition_epoch() {
        let mut image = MetadataImage::default();
        let runs: Vec<Uuid> = (0..3).map(|n| register(&mut image, n)).collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![0, 1, 2]],
        });
        assert_eq!(partition_state(&image), (0, 0, vec![0], 0));
        let isr = (0..3)
            .map(|node_id| super::super::IsrMember {
                node_id,
                broker_epoch: image.broker_epoch(node_id).unwrap_or(-1),
            })
            .collect();
        image.apply(&MetadataRecord::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            isr,
        });
        assert_eq!(partition_state(&image), (0, 0, vec![0, 1, 2], 1));
        let fence = |node_id: usize| MetadataRecord::FenceBroker {
            node_id: node_id as i32,
            incarnation: runs[node_id],
        };
        let unfence = |node_id: usize| MetadataRecord::UnfenceBroker {
            node_id: node_id as i32,
            incarnation: runs[node_id],
        };
        // A follower leaves the ISR: a new partition epoch, the same leader epoch.
        image.apply(&fence(1));
        assert_eq!(partition_state(&image), (0, 0, vec![0, 2], 2));
        // The leader is fenced: a new leader and both epochs raised.
        image.apply(&fence(0));
        assert_eq!(partition_state(&image), (2, 1, vec![2], 3));
        image.apply(&fence(2));
        assert_eq!(partition_state(&image), (-1, 2, vec![2], 4));
        // What changes nothing raises nothing.
        image.apply(&fence(2));
        image.apply(&unfence(0));
        register(&mut image, 1);
        assert_eq!(partition_state(&image), (-1, 2, vec![2], 4));
        image.apply(&unfence(2));
        assert_eq!(partition_state(&image), (2, 3, vec![2], 5));
        // The leader restarts: a new leader epoch, so a new partition epoch.
        register(&mut image, 2);
        assert_eq!(partition_state(&image), (2, 4, vec![2], 6));
        // Leaderships from before partition epochs read as partition epoch 0.
        let old = serde_json::json!({"leader": 1, "leader_epoch": 3, "isr": [1]});
        let old: Leadership = serde_json::from_value(old).expect("an older leadership");
        assert_eq!(old.partition_epoch, 0);
    }

    #[test]
    fn images_without_leadership_read_as_preferred_leaders_in_epoch_zero() {
        let topic = TopicImage {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 2,
            configs: BTreeMap::new(),
            replicas: vec![vec![2, 0], vec![0, 2]],
            leadership: Vec::new(),
            reassignments: BTreeMap::new(),
        };
        assert_eq!(topic.leader(1, 9), 0);
        assert_eq!(topic.leadership(0, 9).isr, vec![2]);
        let legacy = TopicImage {
            replicas: Vec::new(),
            ..topic
        };
        assert_eq!(legacy.leadership(1, 9).leader, 9);
        let json =
            serde_json::json!({"name": "u", "id": Uuid::nil(), "partitions": 1, "configs": {}});
        let old: TopicImage =
            serde_json::from_value(json).expect("an image from before leadership");
        assert_eq!(old.leader(0, 4), 4);
    }

    #[test]
    fn producer_id_blocks_never_overlap_whoever_asks() {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::ProducerIds { next: 1000 });
        for node_id in [2, 0, 2] {
            image.apply(&MetadataRecord::ProducerIdBlock { node_id });
        }
        // In log order: node 2 got 1000, node 0 got 2000, node 2 then 3000.
        assert_eq!(image.producer_id_blocks.get(&0), Some(&2000));
        assert_eq!(image.producer_id_blocks.get(&2), Some(&3000));
        assert_eq!(image.next_producer_id, 4000);
    }
}
