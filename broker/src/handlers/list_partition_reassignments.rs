//! ListPartitionReassignments (key 46, KIP-455): the moves in flight.

use std::sync::Arc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;

/// Answers ListPartitionReassignments from this broker's image: every move in flight, or
/// those of the partitions named (partitions not moving are left out).
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: ListPartitionReassignmentsRequest,
    _info: RequestInfo,
) -> ListPartitionReassignmentsResponse {
    let image = ctx.image();
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for topic in image.topics() {
        let named = match &wanted {
            None => None,
            Some(w) => match w.iter().find(|(name, _)| *name == topic.name) {
                Some((_, partitions)) => Some(partitions),
                None => continue,
            },
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .reassignments
            .iter()
            .filter(|(p, _)| named.is_none_or(|n| n.contains(p)))
            .map(|(&p, moving)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p)
                    .with_replicas(ids(topic.replicas(p, -1)))
                    .with_adding_replicas(ids(moving.adding()))
                    .with_removing_replicas(ids(moving.removing()))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(text(topic.name.clone()).into())
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_topics(topics)
}
