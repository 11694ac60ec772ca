//! [`TcpAdminClient`]: the [`KafkaAdmin`] operations, and the topic-level ones sent to
//! the bootstrap broker (any broker of the cluster answers them).
//!
//! Each API is sent at the highest version that the broker advertises (ApiVersions),
//! the codec knows and this crate implements:
//!
//! | API | versions implemented |
//! |---|---|
//! | Metadata | 4–12 |
//! | DescribeCluster | 0–2 |
//! | CreateTopics | 2–7 |
//! | CreatePartitions | 0–3 |
//! | DescribeConfigs | 1–4 |
//! | IncrementalAlterConfigs | 0–1 |
//! | DeleteTopics | 1–6 |
//! | ListOffsets | 1–6 |
//! | OffsetFetch | 2–7 |
//! | DescribeGroups | 0–5 |
//! | OffsetCommit | 2–8 |
//! | AlterPartitionReassignments | 0–1 |
//! | ListPartitionReassignments | 0 |
//! | DescribeLogDirs | 1–4 |
//! | ElectLeaders | 0–2 |
//! | UnregisterBroker | 0 |

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use runnel_client::{ClientConfig, ClientError, Connection};
use tokio::sync::Mutex;

use super::error::check;
use super::routing::{Routes, Shared};
use super::{
    AdminFactory, AlterConfigOp, ClusterBroker, ClusterDescription, ConfigEntry, ConfigSource,
    GroupDescription, KafkaAdmin, KafkaError, NewTopic, OffsetSpec, PartitionMetadata,
    TopicMetadata, TopicPartition,
};

/// Kafka's resource type number for a topic.
const RESOURCE_TOPIC: i8 = 2;
/// How long the broker may take over topic creation/deletion/growth.
const BROKER_OPERATION_TIMEOUT_MS: i32 = 30_000;

/// An admin client of one cluster, bootstrapped from one broker.
///
/// Admin calls go to the bootstrap broker; group calls to the group's coordinator and
/// ListOffsets to the partitions' leaders, on connections kept per broker (see
/// `routing.rs`). Calls are serialized per connection (a tokio `Mutex` held across the
/// round trip).
pub struct TcpAdminClient {
    pub(super) bootstrap: Shared,
    pub(super) address: String,
    pub(super) config: ClientConfig,
    pub(super) routes: Routes,
}

impl TcpAdminClient {
    /// Connects to the first reachable address of `bootstrap` (`host:port[,...]`) and
    /// asks it which API versions it serves.
    pub async fn connect(bootstrap: &str, config: &ClientConfig) -> Result<Self, KafkaError> {
        let mut last_error = None;
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Connection::connect(address, config).await {
                Ok(mut connection) => {
                    connection.api_versions().await?;
                    return Ok(Self {
                        bootstrap: Arc::new(Mutex::new(connection)),
                        address: address.to_string(),
                        config: config.clone(),
                        routes: Routes::default(),
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(KafkaError::Client(last_error.unwrap_or_else(|| {
            ClientError::Connect {
                address: bootstrap.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address given"),
            }
        })))
    }

    /// Sends the request `build` makes to the bootstrap broker, at the highest version
    /// that the broker advertises, the codec knows and `implemented` holds; returns the
    /// response and that version.
    pub(super) async fn call<R: Request>(
        &self,
        implemented: RangeInclusive<i16>,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(R::Response, i16), KafkaError> {
        Self::call_on(&self.bootstrap, implemented, build).await
    }
}

pub(super) fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

pub(super) fn topic_name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn topic_id(id: &uuid::Uuid) -> Option<String> {
    (!id.is_nil()).then(|| id.to_string())
}

#[async_trait::async_trait]
impl KafkaAdmin for TcpAdminClient {
    async fn metadata(&self, topics: Option<&[String]>) -> Result<Vec<TopicMetadata>, KafkaError> {
        let (response, _) = self
            .call(4..=12, |_| {
                MetadataRequest::default()
                    .with_topics(topics.map(|names| {
                        names
                            .iter()
                            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                            .collect()
                    }))
                    .with_allow_auto_topic_creation(false)
            })
            .await?;
        let mut result = Vec::with_capacity(response.topics.len());
        for topic in response.topics {
            let name = topic
                .name
                .as_ref()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            if topic.error_code == ResponseError::UnknownTopicOrPartition.code() {
                continue;
            }
            check("Metadata", || name.clone(), topic.error_code, None)?;
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            result.push(TopicMetadata {
                topic_id: topic_id(&topic.topic_id),
                name,
                partitions,
            });
        }
        result.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(result)
    }

    async fn describe_cluster(&self) -> Result<ClusterDescription, KafkaError> {
        // Version 2 can list fenced brokers too; endpoint type 1 (brokers) is the default.
        let (response, _) = self
            .call(0..=2, |version| {
                DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2)
            })
            .await?;
        check(
            "DescribeCluster",
            || self.address.clone(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut brokers: Vec<ClusterBroker> = response
            .brokers
            .iter()
            .map(|b| ClusterBroker {
                id: b.broker_id.0,
                fenced: b.is_fenced,
                rack: b.rack.as_ref().map(|r| r.as_str().to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let controller = response.controller_id.0;
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.as_str().to_string(),
            controller_id: (controller >= 0).then_some(controller),
            brokers,
        })
    }

    async fn create_topic(&self, topic: &NewTopic) -> Result<Option<String>, KafkaError> {
        let configs = topic
            .config
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(text(k))
                    .with_value(Some(text(v)))
            })
            .collect();
        let (response, _) = self
            .call(2..=7, |_| {
                CreateTopicsRequest::default()
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(topic_name(&topic.name))
                        .with_num_partitions(topic.partitions)
                        .with_replication_factor(topic.replication_factor.unwrap_or(-1))
                        .with_configs(configs)])
                    .with_timeout_ms(BROKER_OPERATION_TIMEOUT_MS)
            })
            .await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.as_str() == topic.name)
            .ok_or_else(|| KafkaError::MissingInResponse {
                api: "CreateTopics",
                resource: topic.name.clone(),
            })?;
        check(
            "CreateTopics",
            || topic.name.clone(),
            result.error_code,
            result.error_message.as_ref(),
        )?;
        Ok(topic_id(&result.topic_id))
    }

    async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), KafkaError> {
        let (response, _) = self
            .call(0..=3, |_| {
                CreatePartitionsRequest::default()
                    // No assignments (null, not the codec's default empty list): the
                    // brokers place the new partitions.
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(total)
                        .with_assignments(None)])
                    .with_timeout_ms(BROKER_OPERATION_TIMEOUT_MS)
            })
            .await?;
        let result = response
            .results
            .iter()
            .find(|r| r.name.as_str() == topic)
            .ok_or_else(|| KafkaError::MissingInResponse {
                api: "CreatePartitions",
                resource: topic.to_string(),
            })?;
        check(
            "CreatePartitions",
            || topic.to_string(),
            result.error_code,
            result.error_message.as_ref(),
        )
    }

    async fn describe_topic_config(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<String, ConfigEntry>, KafkaError> {
        let (response, _) = self
            .call(1..=4, |_| {
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(text(topic))
                        .with_configuration_keys(None),
                ])
            })
            .await?;
        let result = response
            .results
            .iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| KafkaError::MissingInResponse {
                api: "DescribeConfigs",
                resource: topic.to_string(),
            })?;
        check(
            "DescribeConfigs",
            || topic.to_string(),
            result.error_code,
            result.error_message.as_ref(),
        )?;
        Ok(result
            .configs
            .iter()
            .map(|c| {
                let entry = ConfigEntry {
                    value: c.value.as_ref().map(|v| v.as_str().to_string()),
                    source: ConfigSource::from_code(c.config_source),
                };
                (c.name.as_str().to_string(), entry)
            })
            .collect())
    }

    async fn alter_topic_config(
        &self,
        topic: &str,
        ops: &[AlterConfigOp],
    ) -> Result<(), KafkaError> {
        let configs = ops
            .iter()
            .map(|op| match op {
                AlterConfigOp::Set { name, value } => AlterableConfig::default()
                    .with_name(text(name))
                    .with_config_operation(0)
                    .with_value(Some(text(value))),
                AlterConfigOp::Delete { name } => AlterableConfig::default()
                    .with_name(text(name))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let (response, _) = self
            .call(0..=1, |_| {
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(text(topic))
                        .with_configs(configs),
                ])
            })
            .await?;
        let result = response
            .responses
            .iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| KafkaError::MissingInResponse {
                api: "IncrementalAlterConfigs",
                resource: topic.to_string(),
            })?;
        check(
            "IncrementalAlterConfigs",
            || topic.to_string(),
            result.error_code,
            result.error_message.as_ref(),
        )
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), KafkaError> {
        let (response, _) = self
            .call(1..=6, |version| {
                let request =
                    DeleteTopicsRequest::default().with_timeout_ms(BROKER_OPERATION_TIMEOUT_MS);
                if version >= 6 {
                    request.with_topics(vec![
                        DeleteTopicState::default().with_name(Some(topic_name(topic)))
                    ])
                } else {
                    request.with_topic_names(vec![topic_name(topic)])
                }
            })
            .await?;
        let result = response
            .responses
            .iter()
            .find(|r| r.name.as_ref().is_some_and(|n| n.as_str() == topic))
            .ok_or_else(|| KafkaError::MissingInResponse {
                api: "DeleteTopics",
                resource: topic.to_string(),
            })?;
        check(
            "DeleteTopics",
            || topic.to_string(),
            result.error_code,
            result.error_message.as_ref(),
        )
    }

    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        self.list_offsets_impl(partitions, spec).await
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        self.describe_group_impl(group).await
    }

    async fn fetch_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        self.fetch_offsets_impl(group).await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaError> {
        self.commit_offsets_impl(group, offsets).await
    }

    async fn alter_partition_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> Result<super::Refusals, KafkaError> {
        self.alter_partition_reassignments_impl(targets).await
    }

    async fn list_partition_reassignments(
        &self,
    ) -> Result<BTreeMap<TopicPartition, super::Reassignment>, KafkaError> {
        self.list_partition_reassignments_impl().await
    }

    async fn describe_log_dirs(&self) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        self.describe_log_dirs_impl().await
    }

    async fn elect_preferred_leaders(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<(), KafkaError> {
        self.elect_preferred_leaders_impl(partitions).await
    }

    async fn unregister_broker(&self, id: i32) -> Result<(), KafkaError> {
        self.unregister_broker_impl(id).await
    }
}

/// Makes a [`TcpAdminClient`] per call, with the given limits.
#[derive(Clone, Debug)]
pub struct TcpAdminFactory {
    /// Identity and limits of every connection made.
    pub config: ClientConfig,
}

impl Default for TcpAdminFactory {
    /// Client id and software name `runnel-operator`; the client's default limits.
    fn default() -> Self {
        Self {
            config: ClientConfig::new("runnel-operator"),
        }
    }
}

#[async_trait::async_trait]
impl AdminFactory for TcpAdminFactory {
    async fn connect(&self, bootstrap: &str) -> Result<Arc<dyn KafkaAdmin>, KafkaError> {
        Ok(Arc::new(
            TcpAdminClient::connect(bootstrap, &self.config).await?,
        ))
    }
}

impl std::fmt::Debug for TcpAdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpAdminClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
