//! A fake cluster behind [`KafkaAdmin`], for reconcile tests: in-memory topics, groups
//! and offsets, and a log of every call made (one readable line per call) so tests
//! assert exactly what a pass asked of Kafka.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{
    AdminFactory, AlterConfigOp, ClusterBroker, ClusterDescription, ConfigEntry, ConfigSource,
    GroupDescription, KafkaAdmin, KafkaError, NewTopic, OffsetSpec, PartitionMetadata,
    TopicMetadata, TopicPartition,
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
    /// Topics created so far, for ids.
    created: u32,
}

/// A cheaply cloned handle on one fake cluster; it is its own [`AdminFactory`].
#[derive(Clone, Default)]
pub struct FakeKafka {
    state: Arc<Mutex<FakeState>>,
    calls: Arc<Mutex<Vec<String>>>,
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
        Ok(Arc::new(self.clone()))
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
                    .map(|p| PartitionMetadata {
                        partition: p,
                        leader: 0,
                        replicas: (0..t.replication_factor).collect(),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn describe_cluster(&self) -> Result<ClusterDescription, KafkaError> {
        self.record("DescribeCluster".to_string());
        let state = self.state.lock().unwrap();
        Ok(state.cluster.clone().unwrap_or_else(|| ClusterDescription {
            cluster_id: "fake-cluster".into(),
            controller_id: Some(0),
            brokers: (0..3)
                .map(|id| ClusterBroker { id, fenced: false })
                .collect(),
        }))
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
}
