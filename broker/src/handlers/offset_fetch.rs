//! OffsetFetch (key 9): a group's committed offsets, for named partitions or all of them;
//! v8+ asks for several groups at once. Partitions without a commit get offset -1.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::NOT_COORDINATOR;
use crate::groups::offsets::CommittedOffset;

/// One committed position as reported: (topic, partition, offset or None).
type Position = (String, i32, Option<CommittedOffset>);

/// Answers OffsetFetch.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: OffsetFetchRequest,
    info: RequestInfo,
) -> OffsetFetchResponse {
    if info.version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                if !ctx.is_coordinator(&g.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(NOT_COORDINATOR);
                }
                let positions = lookup(&ctx, &g.group_id.0, wanted);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(group_topics(positions))
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if !ctx.is_coordinator(&request.group_id.0) {
        // v2+ has a top-level error; v0-1 clients see it on no partition, as Kafka's do.
        return OffsetFetchResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let positions = lookup(&ctx, &request.group_id.0, wanted);
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (topic, partition, committed) in positions {
        if topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
            topics.push(OffsetFetchResponseTopic::default().with_name(TopicName(text(topic))));
        }
        let (offset, epoch, metadata) = fields(committed);
        if let Some(t) = topics.last_mut() {
            t.partitions.push(
                OffsetFetchResponsePartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(epoch)
                    .with_metadata(Some(text(metadata))),
            );
        }
    }
    OffsetFetchResponse::default().with_topics(topics)
}

fn fields(committed: Option<CommittedOffset>) -> (i64, i32, String) {
    committed.map_or((-1, -1, String::new()), |c| {
        (c.offset, c.leader_epoch, c.metadata)
    })
}

fn group_topics(positions: Vec<Position>) -> Vec<OffsetFetchResponseTopics> {
    let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
    for (topic, partition, committed) in positions {
        if topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
            topics.push(OffsetFetchResponseTopics::default().with_name(TopicName(text(topic))));
        }
        let (offset, epoch, metadata) = fields(committed);
        if let Some(t) = topics.last_mut() {
            t.partitions.push(
                OffsetFetchResponsePartitions::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(epoch)
                    .with_metadata(Some(text(metadata))),
            );
        }
    }
    topics
}

/// The committed positions of `group`: the named partitions, or (None) every committed one.
fn lookup(
    ctx: &BrokerContext,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<Position> {
    let groups = ctx.groups.lock();
    let offsets = groups.get(group).map(|e| &e.offsets);
    match wanted {
        Some(topics) => topics
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .map(|(topic, p)| {
                let committed = offsets.and_then(|o| o.get(&(topic.clone(), p)).cloned());
                (topic, p, committed)
            })
            .collect(),
        None => offsets
            .map(|o| {
                o.iter()
                    .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
