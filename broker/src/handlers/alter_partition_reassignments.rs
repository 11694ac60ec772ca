//! AlterPartitionReassignments (key 45, KIP-455): starts or cancels moves of partitions'
//! replicas. Checks and records are in `crate::reassignments`.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::reassignments::{self, Move};

/// Answers AlterPartitionReassignments.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: AlterPartitionReassignmentsRequest,
    _info: RequestInfo,
) -> AlterPartitionReassignmentsResponse {
    // v0 has no flag: a move may change the replication factor, as before KIP-860.
    let allow_factor_change = request.allow_replication_factor_change;
    let moves: Vec<Move> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Move {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let asked = moves.clone();
    let outcomes = blocking(move || reassignments::reassign(&ctx, &moves, allow_factor_change))
        .await
        .unwrap_or_default();
    let mut responses: Vec<ReassignableTopicResponse> = Vec::new();
    for (i, m) in asked.iter().enumerate() {
        let mut result = ReassignablePartitionResponse::default().with_partition_index(m.partition);
        match outcomes.get(i) {
            Some(Ok(())) => {}
            Some(Err(refusal)) => {
                result = result
                    .with_error_code(refusal.code)
                    .with_error_message(Some(text(refusal.message.clone())));
            }
            None => {
                result = result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(text("the request could not be handled")));
            }
        }
        match responses
            .iter_mut()
            .find(|r| &*r.name.0 == m.topic.as_str())
        {
            Some(topic) => topic.partitions.push(result),
            None => responses.push(
                ReassignableTopicResponse::default()
                    .with_name(text(m.topic.clone()).into())
                    .with_partitions(vec![result]),
            ),
        }
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_allow_replication_factor_change(allow_factor_change)
        .with_responses(responses)
}
