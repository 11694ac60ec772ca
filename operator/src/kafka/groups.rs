//! The group calls of [`TcpAdminClient`]: DescribeGroups, OffsetFetch and OffsetCommit,
//! each sent to the group's coordinator (`routing.rs`).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::client::{text, topic_name};
use super::error::check;
use super::routing::is_coordinator_error;
use super::{GroupDescription, GroupMemberDescription, KafkaError, TcpAdminClient, TopicPartition};

impl TcpAdminClient {
    pub(super) async fn describe_group_impl(
        &self,
        group: &str,
    ) -> Result<GroupDescription, KafkaError> {
        let response = self
            .group_call(
                "DescribeGroups",
                group,
                0..=5,
                |_| DescribeGroupsRequest::default().with_groups(vec![GroupId(text(group))]),
                |response| {
                    response
                        .groups
                        .iter()
                        .find(|g| g.group_id.as_str() == group)
                        .map_or(0, |g| g.error_code)
                },
            )
            .await?;
        let described = response
            .groups
            .iter()
            .find(|g| g.group_id.as_str() == group)
            .ok_or_else(|| KafkaError::MissingInResponse {
                api: "DescribeGroups",
                resource: group.to_string(),
            })?;
        check(
            "DescribeGroups",
            || group.to_string(),
            described.error_code,
            described.error_message.as_ref(),
        )?;
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: described.group_state.as_str().to_string(),
            members: described
                .members
                .iter()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id.as_str().to_string(),
                    client_id: m.client_id.as_str().to_string(),
                    client_host: m.client_host.as_str().to_string(),
                })
                .collect(),
        })
    }

    pub(super) async fn fetch_offsets_impl(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        // v1 cannot ask for "all topics"; v2+ does with a null topic list.
        // v2+ carries a coordinator error at the top level.
        let response = self
            .group_call(
                "OffsetFetch",
                group,
                2..=7,
                |_| {
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(text(group)))
                        .with_topics(None)
                },
                |response| response.error_code,
            )
            .await?;
        check(
            "OffsetFetch",
            || group.to_string(),
            response.error_code,
            None,
        )?;
        let mut offsets = BTreeMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                let tp = TopicPartition::new(topic.name.as_str(), p.partition_index);
                check("OffsetFetch", || tp.to_string(), p.error_code, None)?;
                if p.committed_offset >= 0 {
                    offsets.insert(tp, p.committed_offset);
                }
            }
        }
        Ok(offsets)
    }

    pub(super) async fn commit_offsets_impl(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaError> {
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for (tp, offset) in offsets {
            by_topic
                .entry(&tp.topic)
                .or_default()
                .push((tp.partition, *offset));
        }
        let build = |_: i16| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(text(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::default())
                .with_topics(
                    by_topic
                        .iter()
                        .map(|(topic, partitions)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(topic_name(topic))
                                .with_partitions(
                                    partitions
                                        .iter()
                                        .map(|(index, offset)| {
                                            OffsetCommitRequestPartition::default()
                                                .with_partition_index(*index)
                                                .with_committed_offset(*offset)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        };
        // A coordinator error comes on every partition of the answer.
        let coordinator_code = |response: &OffsetCommitResponse| {
            response
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.error_code)
                .find(|code| is_coordinator_error(*code))
                .unwrap_or(0)
        };
        let response = self
            .group_call("OffsetCommit", group, 2..=8, build, coordinator_code)
            .await?;
        for topic in &response.topics {
            for p in &topic.partitions {
                check(
                    "OffsetCommit",
                    || format!("{group} {}-{}", topic.name.as_str(), p.partition_index),
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }
}
