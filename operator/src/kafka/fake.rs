//! A fake cluster behind [`KafkaAdmin`], for reconcile tests: in-memory topics, groups
//! and offsets, and a log of every call made (one readable line per call) so tests
//! assert exactly what a pass asked of Kafka.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{
    AdminFactory, AlterConfigOp, ClusterBroker, ClusterDescription, ConfigEntry, ConfigSource,
    GroupDescription, KafkaAdmin, KafkaError, NewTopic, OffsetSpec, PartitionMetadata,
    Reassignment, Refusals, TopicMetadata, TopicPartition,
};

/// A topic of the fake cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeTopic {
    /// Topic id.
    pub id: String,
    /// Partition count.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// Configs set on the topic.
    pub overrides: BTreeMap<String, String>,
}

/// The fake cluster's state.
#[derive(Default, Debug)]
pub struct FakeState {
    /// Topics by name.
    pub topics: BTreeMap<String, FakeTopic>,
    /// Groups by id (unknown groups are `Dead`).
    pub groups: BTreeMap<String, GroupDescription>,
    /// Committed offsets per group.
    pub committed: BTreeMap<String, BTreeMap<TopicPartition, i64>>,
    /// Log start offsets (0 when absent).
    pub log_start: BTreeMap<TopicPartition, i64>,
    /// Log end offsets (0 when absent).
    pub log_end: BTreeMap<TopicPartition, i64>,
    /// Connecting fails (connection refused), as when no broker answers.
    pub unreachable: bool,
    /// What DescribeCluster answers; `None`: cluster `fake-cluster`, brokers 0, 1 and 2
    /// live, controller 0.
    pub cluster: Option<ClusterDescription>,
    /// Replicas of partitions placed explicitly (the first leads); other partitions
    /// have replicas `0..replication_factor`, led by 0.
    pub assignments: BTreeMap<TopicPartition, Vec<i32>>,
    /// Reassignments in flight: the target replicas (see [`FakeKafka::finish_moves`]).
    pub moving: BTreeMap<TopicPartition, Vec<i32>>,
    /// Size of each partition in bytes, as every replica reports it (0 when absent).
    pub sizes: BTreeMap<TopicPartition, i64>,
    /// Brokers unregistered so far.
    pub unregistered: Vec<i32>,
    /// Brokers that refuse UnregisterBroker (still live), with Kafka's code.
    pub unregister_refused: BTreeMap<i32, i16>,
    /// Topics created so far, for ids.
    created: u32,
}

impl FakeState {
    /// The replicas of `tp` (of a topic with `rf` replicas) outside any move.
    pub fn replicas(&self, tp: &TopicPartition, rf: i32) -> Vec<i32> {
        self.assignments
            .get(tp)
            .cloned()
            .unwrap_or_else(|| (0..rf).collect())
    }
}

/// A cheaply cloned handle on one fake cluster; it is its own [`AdminFactory`].
#[derive(Clone, Default)]
pub struct FakeKafka {
    state: Arc<Mutex<FakeState>>,
    calls: Arc<Mutex<Vec<String>>>,
    /// The address this handle was connected to (DescribeLogDirs answers for it).
    address: Option<String>,
}

impl FakeKafka {
    /// Changes the state.
    pub fn with_state(&self, change: impl FnOnce(&mut FakeState)) -> &Self {
        change(&mut self.state.lock().unwrap());
        self
    }

    /// Adds a topic with id `id-<name>`.
    pub fn with_topic(&self, name: &str, partitions: i32, overrides: &[(&str, &str)]) -> &Self {
        let topic = FakeTopic {
            id: format!("id-{name}"),
            partitions,
            replication_factor: 1,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        self.with_state(|s| {
            s.topics.insert(name.to_string(), topic);
        })
    }

    /// Completes every reassignment in flight: the targets become the replicas.
    pub fn finish_moves(&self) -> &Self {
        self.with_state(|s| {
            let moving = std::mem::take(&mut s.moving);
            s.assignments.extend(moving);
        })
    }

    /// The replicas of every partition (moves in flight listed as the union of old and
    /// new, as Kafka's metadata does), by partition.
    pub fn placement(&self) -> BTreeMap<TopicPartition, Vec<i32>> {
        let state = self.state.lock().unwrap();
        state
            .topics
            .iter()
            .flat_map(|(name, t)| {
                (0..t.partitions)
                    .map(|p| TopicPartition::new(name.clone(), p))
                    .map(|tp| {
                        let replicas = current_replicas(&state, &tp, t.replication_factor);
                        (tp, replicas)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The brokers unregistered so far.
    pub fn unregistered(&self) -> Vec<i32> {
        self.state.lock().unwrap().unregistered.clone()
    }

    /// A copy of topic `name`.
    pub fn topic(&self, name: &str) -> Option<FakeTopic> {
        self.state.lock().unwrap().topics.get(name).cloned()
    }

    /// The committed offsets of `group`.
    pub fn committed(&self, group: &str) -> BTreeMap<TopicPartition, i64> {
        self.state
            .lock()
            .unwrap()
            .committed
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// The calls made so far, one line each, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

fn unknown_topic(api: &'static str, topic: &str) -> KafkaError {
    KafkaError::Broker {
        api,
        resource: topic.to_string(),
        code: 3,
        message: None,
    }
}

#[async_trait::async_trait]
impl AdminFactory for FakeKafka {
    async fn connect(&self, bootstrap: &str) -> Result<Arc<dyn KafkaAdmin>, KafkaError> {
        self.record(format!("connect {bootstrap}"));
        if self.state.lock().unwrap().unreachable {
            return Err(KafkaError::Client(runnel_client::ClientError::Connect {
                address: bootstrap.to_string(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            }));
        }
        let mut connected = self.clone();
        connected.address = Some(bootstrap.to_string());
        Ok(Arc::new(connected))
    }
}

#[async_trait::async_trait]
impl KafkaAdmin for FakeKafka {
    async fn metadata(&self, topics: Option<&[String]>) -> Result<Vec<TopicMetadata>, KafkaError> {
        self.record(format!("Metadata {topics:?}"));
        let state = self.state.lock().unwrap();
        Ok(state
            .topics
            .iter()
            .filter(|(name, _)| topics.is_none_or(|wanted| wanted.contains(name)))
            .map(|(name, t)| TopicMetadata {
                name: name.clone(),
                topic_id: Some(t.id.clone()),
                partitions: (0..t.partitions)
                    .map(|p| {
                        let tp = TopicPartition::new(name.clone(), p);
                        let replicas = current_replicas(&state, &tp, t.replication_factor);
                        PartitionMetadata {
                            partition: p,
                            leader: state.replicas(&tp, t.replication_factor)[0],
                            replicas,
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    async fn describe_cluster(&self) -> Result<ClusterDescription, KafkaError> {
        self.record("DescribeCluster".to_string());
        let state = self.state.lock().unwrap();
        let mut cluster = state.cluster.clone().unwrap_or_else(|| ClusterDescription {
            cluster_id: "fake-cluster".into(),
            controller_id: Some(0),
            brokers: (0..3)
                .map(|id| ClusterBroker {
                    id,
                    fenced: false,
                    rack: None,
                })
                .collect(),
        });
        cluster
            .brokers
            .retain(|b| !state.unregistered.contains(&b.id));
        Ok(cluster)
    }

    async fn create_topic(&self, topic: &NewTopic) -> Result<Option<String>, KafkaError> {
        self.record(format!(
            "CreateTopics {} partitions={} rf={:?} config={:?}",
            topic.name, topic.partitions, topic.replication_factor, topic.config
        ));
        let mut state = self.state.lock().unwrap();
        if state.topics.contains_key(&topic.name) {
            return Err(KafkaError::Broker {
                api: "CreateTopics",
                resource: topic.name.clone(),
                code: 36,
                message: None,
            });
        }
        if topic.config.keys().any(|k| k == "invalid.config") {
            return Err(KafkaError::Broker {
                api: "CreateTopics",
                resource: topic.name.clone(),
                code: 40,
                message: Some("unknown config invalid.config".into()),
            });
        }
        state.created += 1;
        let id = format!("id-{}", topic.name);
        state.topics.insert(
            topic.name.clone(),
            FakeTopic {
                id: id.clone(),
                partitions: topic.partitions,
                replication_factor: topic.replication_factor.map_or(1, i32::from),
                overrides: topic.config.clone(),
            },
        );
        Ok(Some(id))
    }

    async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), KafkaError> {
        self.record(format!("CreatePartitions {topic} {total}"));
        let mut state = self.state.lock().unwrap();
        let t = state
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic("CreatePartitions", topic))?;
        t.partitions = total;
        Ok(())
    }

    async fn describe_topic_config(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<String, ConfigEntry>, KafkaError> {
        self.record(format!("DescribeConfigs {topic}"));
        let state = self.state.lock().unwrap();
        let t = state
            .topics
            .get(topic)
            .ok_or_else(|| unknown_topic("DescribeConfigs", topic))?;
        let mut configs: BTreeMap<String, ConfigEntry> = BTreeMap::from([(
            "cleanup.policy".to_string(),
            ConfigEntry {
                value: Some("delete".into()),
                source: ConfigSource::Default,
            },
        )]);
        for (k, v) in &t.overrides {
            configs.insert(
                k.clone(),
                ConfigEntry {
                    value: Some(v.clone()),
                    source: ConfigSource::Topic,
                },
            );
        }
        Ok(configs)
    }

    async fn alter_topic_config(
        &self,
        topic: &str,
        ops: &[AlterConfigOp],
    ) -> Result<(), KafkaError> {
        let text: Vec<String> = ops
            .iter()
            .map(|op| match op {
                AlterConfigOp::Set { name, value } => format!("set {name}={value}"),
                AlterConfigOp::Delete { name } => format!("delete {name}"),
            })
            .collect();
        self.record(format!("IncrementalAlterConfigs {topic} {text:?}"));
        let mut state = self.state.lock().unwrap();
        let t = state
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic("IncrementalAlterConfigs", topic))?;
        for op in ops {
            match op {
                AlterConfigOp::Set { name, value } => {
                    t.overrides.insert(name.clone(), value.clone());
                }
                AlterConfigOp::Delete { name } => {
                    t.overrides.remove(name);
                }
            }
        }
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), KafkaError> {
        self.record(format!("DeleteTopics {topic}"));
        let mut state = self.state.lock().unwrap();
        state
            .topics
            .remove(topic)
            .map(|_| ())
            .ok_or_else(|| unknown_topic("DeleteTopics", topic))
    }

    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
        self.record(format!("ListOffsets {spec:?} {names:?}"));
        let state = self.state.lock().unwrap();
        Ok(partitions
            .iter()
            .map(|tp| {
                let offset = match spec {
                    OffsetSpec::Earliest => state.log_start.get(tp).copied().unwrap_or(0),
                    OffsetSpec::Latest => state.log_end.get(tp).copied().unwrap_or(0),
                    OffsetSpec::Timestamp(_) => -1,
                };
                (tp.clone(), offset)
            })
            .collect())
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        self.record(format!("DescribeGroups {group}"));
        let state = self.state.lock().unwrap();
        Ok(state
            .groups
            .get(group)
            .cloned()
            .unwrap_or_else(|| GroupDescription {
                group_id: group.to_string(),
                state: "Dead".into(),
                members: Vec::new(),
            }))
    }

    async fn fetch_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        self.record(format!("OffsetFetch {group}"));
        Ok(self.committed(group))
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaError> {
        let text: Vec<String> = offsets.iter().map(|(tp, o)| format!("{tp}={o}")).collect();
        self.record(format!("OffsetCommit {group} {text:?}"));
        let mut state = self.state.lock().unwrap();
        state
            .committed
            .entry(group.to_string())
            .or_default()
            .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
        Ok(())
    }

    async fn alter_partition_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> Result<Refusals, KafkaError> {
        let text: Vec<String> = targets
            .iter()
            .map(|(tp, r)| match r {
                Some(r) => format!("{tp}={r:?}"),
                None => format!("{tp}=cancel"),
            })
            .collect();
        self.record(format!("AlterPartitionReassignments {text:?}"));
        let mut state = self.state.lock().unwrap();
        let mut refusals = Vec::new();
        for (tp, target) in targets {
            let refuse = |code| KafkaError::Broker {
                api: "AlterPartitionReassignments",
                resource: tp.to_string(),
                code,
                message: None,
            };
            if state
                .topics
                .get(&tp.topic)
                .is_none_or(|t| tp.partition >= t.partitions)
            {
                refusals.push((tp.clone(), refuse(3)));
                continue;
            }
            match target {
                Some(replicas) => {
                    state.moving.insert(tp.clone(), replicas.clone());
                }
                None if state.moving.remove(tp).is_none() => {
                    refusals.push((tp.clone(), refuse(85)));
                }
                None => {}
            }
        }
        Ok(refusals)
    }

    async fn list_partition_reassignments(
        &self,
    ) -> Result<BTreeMap<TopicPartition, Reassignment>, KafkaError> {
        self.record("ListPartitionReassignments".to_string());
        let state = self.state.lock().unwrap();
        Ok(state
            .moving
            .iter()
            .map(|(tp, target)| {
                let rf = state
                    .topics
                    .get(&tp.topic)
                    .map_or(1, |t| t.replication_factor);
                let old = state.replicas(tp, rf);
                let reassignment = Reassignment {
                    replicas: current_replicas(&state, tp, rf),
                    adding: target
                        .iter()
                        .filter(|b| !old.contains(b))
                        .copied()
                        .collect(),
                    removing: old
                        .iter()
                        .filter(|b| !target.contains(b))
                        .copied()
                        .collect(),
                };
                (tp.clone(), reassignment)
            })
            .collect())
    }

    async fn describe_log_dirs(&self) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        let address = self.address.clone().unwrap_or_default();
        self.record(format!("DescribeLogDirs {address}"));
        // `<cluster>-<id>.<service>...`: the broker this handle reaches.
        let id: Option<i32> = address
            .split('.')
            .next()
            .and_then(|host| host.rsplit('-').next())
            .and_then(|id| id.parse().ok());
        let placement = self.placement();
        let state = self.state.lock().unwrap();
        Ok(placement
            .into_iter()
            .filter(|(_, replicas)| id.is_some_and(|id| replicas.contains(&id)))
            .map(|(tp, _)| {
                let size = state.sizes.get(&tp).copied().unwrap_or(0);
                (tp, size)
            })
            .collect())
    }

    async fn elect_preferred_leaders(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<(), KafkaError> {
        let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
        self.record(format!("ElectLeaders {names:?}"));
        Ok(())
    }

    async fn unregister_broker(&self, id: i32) -> Result<(), KafkaError> {
        self.record(format!("UnregisterBroker {id}"));
        let mut state = self.state.lock().unwrap();
        if let Some(code) = state.unregister_refused.get(&id) {
            return Err(KafkaError::Broker {
                api: "UnregisterBroker",
                resource: format!("broker {id}"),
                code: *code,
                message: None,
            });
        }
        state.unregistered.push(id);
        Ok(())
    }
}

/// The replicas metadata lists for `tp`: during a move, the old ones then the new ones.
fn current_replicas(state: &FakeState, tp: &TopicPartition, rf: i32) -> Vec<i32> {
    let mut replicas = state.replicas(tp, rf);
    if let Some(target) = state.moving.get(tp) {
        for b in target {
            if !replicas.contains(b) {
                replicas.push(*b);
            }
        }
    }
    replicas
}
