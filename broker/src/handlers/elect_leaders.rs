//! ElectLeaders (key 43, KIP-460): preferred or unclean leader elections on request.

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::ResponseError;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::metadata::Election;
use crate::reassignments;

/// Answers ElectLeaders. v0 asks for preferred elections only.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: ElectLeadersRequest,
    _info: RequestInfo,
) -> ElectLeadersResponse {
    let election = match request.election_type {
        0 => Election::Preferred,
        1 => Election::Unclean,
        other => {
            tracing::debug!(
                election_type = other,
                "ElectLeaders with an unknown election type"
            );
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
        }
    };
    let partitions = request.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect::<Vec<_>>()
    });
    let outcomes = blocking(move || reassignments::elect(&ctx, partitions, election))
        .await
        .unwrap_or_default();
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), outcome) in outcomes {
        let mut result = PartitionResult::default().with_partition_id(partition);
        if let Err(refusal) = outcome {
            result = result
                .with_error_code(refusal.code)
                .with_error_message(Some(text(refusal.message)));
        }
        match results.iter_mut().find(|r| &*r.topic.0 == topic.as_str()) {
            Some(r) => r.partition_result.push(result),
            None => results.push(
                ReplicaElectionResult::default()
                    .with_topic(text(topic).into())
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
