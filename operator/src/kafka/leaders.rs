//! ListOffsets of [`TcpAdminClient`], sent to each partition's leader.
//!
//! Metadata (on the bootstrap connection) names the partitions' leaders and the brokers'
//! addresses; the partitions are grouped by leader and each leader gets one ListOffsets
//! on its connection (`routing.rs`). Partitions answered NOT_LEADER_OR_FOLLOWER,
//! LEADER_NOT_AVAILABLE or UNKNOWN_LEADER_EPOCH, whose leader could not be reached, or
//! that had no leader, are looked up once more after a short backoff: [`ROUNDS`] in all.
//! A partition still without an answer then fails the whole call, with the broker's code
//! kept: a caller computing lag gets an error rather than a partial or stale answer.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, MetadataRequest};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::client::topic_name;
use super::error::check;
use super::routing::{backoff, Node};
use super::{KafkaError, OffsetSpec, TcpAdminClient, TopicPartition};

/// Metadata lookups of one call: the first and one refresh.
pub(super) const ROUNDS: u32 = 2;

/// Where the partitions of one call are, as one Metadata answer says.
struct Leaders {
    /// The listed brokers.
    brokers: BTreeMap<i32, Node>,
    /// Each partition asked about that exists: its leader (`-1` for none) and the
    /// partition's error code.
    partitions: BTreeMap<TopicPartition, (i32, i16)>,
}

/// Whether `code` says the partition's leader moved or is not known yet.
fn is_leader_error(code: i16) -> bool {
    [
        ResponseError::NotLeaderOrFollower.code(),
        ResponseError::LeaderNotAvailable.code(),
        ResponseError::UnknownLeaderEpoch.code(),
    ]
    .contains(&code)
}

fn partition_error(tp: &TopicPartition, code: i16, message: &str) -> KafkaError {
    KafkaError::Broker {
        api: "ListOffsets",
        resource: tp.to_string(),
        code,
        message: Some(message.to_string()),
    }
}

impl TcpAdminClient {
    pub(super) async fn list_offsets_impl(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        let mut offsets = BTreeMap::new();
        let mut pending: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
        for round in 1..=ROUNDS {
            if pending.is_empty() {
                break;
            }
            let retry = self
                .list_offsets_round(&pending, spec, &mut offsets)
                .await?;
            if round == ROUNDS {
                if let Some((_, error)) = retry.into_iter().next() {
                    return Err(error);
                }
                break;
            }
            pending = retry.into_keys().collect();
            if !pending.is_empty() {
                debug!(round, partitions = pending.len(), "leaders looked up again");
                tokio::time::sleep(backoff(round)).await;
            }
        }
        Ok(offsets)
    }

    /// One lookup of the leaders of `pending` and one ListOffsets per leader; fills
    /// `offsets` and returns the partitions worth another round, with why.
    async fn list_offsets_round(
        &self,
        pending: &BTreeSet<TopicPartition>,
        spec: OffsetSpec,
        offsets: &mut BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, KafkaError>, KafkaError> {
        let leaders = self.leaders(pending).await?;
        let mut retry = BTreeMap::new();
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in pending {
            let Some(&(leader, code)) = leaders.partitions.get(tp) else {
                let code = ResponseError::UnknownTopicOrPartition.code();
                return Err(partition_error(tp, code, "the partition does not exist"));
            };
            if leader >= 0 && leaders.brokers.contains_key(&leader) {
                by_leader.entry(leader).or_default().push(tp.clone());
            } else {
                // Offline, or led by a broker not listed (fenced): none to ask now.
                let code = if code == 0 {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    code
                };
                retry.insert(tp.clone(), partition_error(tp, code, "no live leader"));
            }
        }
        for (leader, tps) in by_leader {
            let Some(node) = leaders.brokers.get(&leader) else {
                continue;
            };
            match self.list_offsets_on(node, &tps, spec).await {
                Ok(answers) => {
                    for (tp, code, offset) in answers {
                        if code == 0 {
                            offsets.insert(tp, offset);
                        } else if is_leader_error(code) {
                            let error = partition_error(&tp, code, "the leader moved");
                            retry.insert(tp, error);
                        } else {
                            check("ListOffsets", || tp.to_string(), code, None)?;
                        }
                    }
                }
                Err(error) if error.is_connection_error() => {
                    self.drop_connection(node);
                    for tp in tps {
                        let message = format!("leader {} unreachable: {error}", node.id);
                        let code = ResponseError::LeaderNotAvailable.code();
                        retry.insert(tp.clone(), partition_error(&tp, code, &message));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(retry)
    }

    /// The leaders of `partitions` and the brokers' addresses, from Metadata.
    async fn leaders(&self, partitions: &BTreeSet<TopicPartition>) -> Result<Leaders, KafkaError> {
        let topics: BTreeSet<&str> = partitions.iter().map(|tp| tp.topic.as_str()).collect();
        let (response, _) = self
            .call(4..=12, |_| {
                MetadataRequest::default()
                    .with_topics(Some(
                        topics
                            .iter()
                            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                            .collect(),
                    ))
                    .with_allow_auto_topic_creation(false)
            })
            .await?;
        let brokers: BTreeMap<i32, Node> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, Node::new(b.node_id.0, b.host.as_str(), b.port)))
            .collect();
        self.learn_bootstrap_node(&brokers.keys().copied().collect::<Vec<_>>());
        let mut found = BTreeMap::new();
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref() else {
                continue;
            };
            if topic.error_code == ResponseError::UnknownTopicOrPartition.code() {
                continue;
            }
            check(
                "Metadata",
                || name.as_str().to_string(),
                topic.error_code,
                None,
            )?;
            for p in &topic.partitions {
                let tp = TopicPartition::new(name.as_str(), p.partition_index);
                found.insert(tp, (p.leader_id.0, p.error_code));
            }
        }
        Ok(Leaders {
            brokers,
            partitions: found,
        })
    }

    /// One ListOffsets for `partitions` to `node`: `(partition, error code, offset)` for
    /// each of them.
    async fn list_offsets_on(
        &self,
        node: &Node,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<Vec<(TopicPartition, i16, i64)>, KafkaError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let connection = self.connection(node).await?;
        let (response, _) = Self::call_on(&connection, 1..=6, |_| {
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(
                    by_topic
                        .iter()
                        .map(|(topic, indexes)| {
                            ListOffsetsTopic::default()
                                .with_name(topic_name(topic))
                                .with_partitions(
                                    indexes
                                        .iter()
                                        .map(|i| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(*i)
                                                .with_timestamp(spec.wire_timestamp())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        })
        .await?;
        let mut answers: BTreeMap<TopicPartition, (i16, i64)> = BTreeMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                let tp = TopicPartition::new(topic.name.as_str(), p.partition_index);
                answers.insert(tp, (p.error_code, p.offset));
            }
        }
        partitions
            .iter()
            .map(|tp| {
                let (code, offset) =
                    answers
                        .get(tp)
                        .copied()
                        .ok_or_else(|| KafkaError::MissingInResponse {
                            api: "ListOffsets",
                            resource: tp.to_string(),
                        })?;
                Ok((tp.clone(), code, offset))
            })
            .collect()
    }
}
