//! The calls that move partitions between brokers, sent to the bootstrap broker: any
//! broker answers AlterPartitionReassignments, ListPartitionReassignments, ElectLeaders
//! and UnregisterBroker for the whole cluster (forwarding changes to the controller);
//! DescribeLogDirs answers for the broker asked only.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeLogDirsRequest, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, UnregisterBrokerRequest,
};
use kafka_protocol::ResponseError;

use super::client::topic_name;
use super::error::check;
use super::{KafkaError, Reassignment, Refusals, TcpAdminClient, TopicPartition};

/// How long the broker may take to start the moves or elect leaders.
const OPERATION_TIMEOUT_MS: i32 = 30_000;
/// ElectLeaders' `election_type` for the preferred replica.
const PREFERRED: i8 = 0;

/// `targets` grouped by topic, in order.
fn by_topic<V: Clone>(targets: &BTreeMap<TopicPartition, V>) -> BTreeMap<&str, Vec<(i32, V)>> {
    let mut topics: BTreeMap<&str, Vec<(i32, V)>> = BTreeMap::new();
    for (tp, value) in targets {
        topics
            .entry(tp.topic.as_str())
            .or_default()
            .push((tp.partition, value.clone()));
    }
    topics
}

impl TcpAdminClient {
    pub(super) async fn alter_partition_reassignments_impl(
        &self,
        targets: &BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> Result<Refusals, KafkaError> {
        let topics: Vec<ReassignableTopic> =
            by_topic(targets)
                .into_iter()
                .map(|(topic, partitions)| {
                    ReassignableTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(partition, replicas)| {
                                    ReassignablePartition::default()
                                        .with_partition_index(partition)
                                        .with_replicas(replicas.map(|r| {
                                            r.into_iter().map(BrokerId).collect::<Vec<_>>()
                                        }))
                                })
                                .collect(),
                        )
                })
                .collect();
        // A target may change the replication factor (v0 allows it; v1 says so).
        let (response, _) = self
            .call(0..=1, |_| {
                AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(OPERATION_TIMEOUT_MS)
                    .with_allow_replication_factor_change(true)
                    .with_topics(topics)
            })
            .await?;
        check(
            "AlterPartitionReassignments",
            || self.address.clone(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut refusals = Vec::new();
        for topic in &response.responses {
            for partition in &topic.partitions {
                let tp = TopicPartition::new(topic.name.as_str(), partition.partition_index);
                if let Err(error) = check(
                    "AlterPartitionReassignments",
                    || tp.to_string(),
                    partition.error_code,
                    partition.error_message.as_ref(),
                ) {
                    refusals.push((tp, error));
                }
            }
        }
        Ok(refusals)
    }

    pub(super) async fn list_partition_reassignments_impl(
        &self,
    ) -> Result<BTreeMap<TopicPartition, Reassignment>, KafkaError> {
        let (response, _) = self
            .call(0..=0, |_| {
                ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(OPERATION_TIMEOUT_MS)
                    .with_topics(None)
            })
            .await?;
        check(
            "ListPartitionReassignments",
            || self.address.clone(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let ids = |brokers: &[BrokerId]| brokers.iter().map(|b| b.0).collect::<Vec<_>>();
        Ok(response
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(move |p| {
                    (
                        TopicPartition::new(topic.name.as_str(), p.partition_index),
                        Reassignment {
                            replicas: ids(&p.replicas),
                            adding: ids(&p.adding_replicas),
                            removing: ids(&p.removing_replicas),
                        },
                    )
                })
            })
            .collect())
    }

    pub(super) async fn describe_log_dirs_impl(
        &self,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        let (response, _) = self
            .call(1..=4, |_| {
                DescribeLogDirsRequest::default().with_topics(None)
            })
            .await?;
        check(
            "DescribeLogDirs",
            || self.address.clone(),
            response.error_code,
            None,
        )?;
        let mut sizes = BTreeMap::new();
        for dir in &response.results {
            check(
                "DescribeLogDirs",
                || format!("{} on {}", dir.log_dir.as_str(), self.address),
                dir.error_code,
                None,
            )?;
            for topic in &dir.topics {
                for p in topic.partitions.iter().filter(|p| !p.is_future_key) {
                    let tp = TopicPartition::new(topic.name.as_str(), p.partition_index);
                    *sizes.entry(tp).or_insert(0) += p.partition_size.max(0);
                }
            }
        }
        Ok(sizes)
    }

    pub(super) async fn elect_preferred_leaders_impl(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<(), KafkaError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let wanted: BTreeMap<TopicPartition, ()> =
            partitions.iter().map(|tp| (tp.clone(), ())).collect();
        let topics: Vec<TopicPartitions> = by_topic(&wanted)
            .into_iter()
            .map(|(topic, partitions)| {
                TopicPartitions::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions.into_iter().map(|(p, ())| p).collect())
            })
            .collect();
        let (response, _) = self
            .call(0..=2, |_| {
                ElectLeadersRequest::default()
                    .with_election_type(PREFERRED)
                    .with_topic_partitions(Some(topics))
                    .with_timeout_ms(OPERATION_TIMEOUT_MS)
            })
            .await?;
        check(
            "ElectLeaders",
            || self.address.clone(),
            response.error_code,
            None,
        )?;
        for topic in &response.replica_election_results {
            for p in &topic.partition_result {
                if p.error_code == ResponseError::ElectionNotNeeded.code() {
                    continue;
                }
                check(
                    "ElectLeaders",
                    || format!("{}-{}", topic.topic.as_str(), p.partition_id),
                    p.error_code,
                    p.error_message.as_ref(),
                )?;
            }
        }
        Ok(())
    }

    pub(super) async fn unregister_broker_impl(&self, id: i32) -> Result<(), KafkaError> {
        let (response, _) = self
            .call(0..=0, |_| {
                UnregisterBrokerRequest::default().with_broker_id(BrokerId(id))
            })
            .await?;
        check(
            "UnregisterBroker",
            || format!("broker {id}"),
            response.error_code,
            response.error_message.as_ref(),
        )
    }
}
