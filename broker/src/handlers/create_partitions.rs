//! CreatePartitions (key 37): grows topics to a larger partition count.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::topics;

/// Answers CreatePartitions.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: CreatePartitionsRequest,
    _info: RequestInfo,
) -> CreatePartitionsResponse {
    let validate_only = request.validate_only;
    let results = blocking(move || {
        let node = ctx.node_id();
        request
            .topics
            .into_iter()
            .map(|t| {
                let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
                    a.iter().any(|a| {
                        a.broker_ids.len() != 1 || a.broker_ids.iter().any(|b| b.0 != node)
                    })
                });
                if bad_assignment {
                    return result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(Some(text(format!(
                            "replicas must be exactly [{node}], the only broker"
                        ))));
                }
                match topics::create_partitions(&ctx, &t.name.0, t.count, validate_only) {
                    Ok(()) => result,
                    Err(e) => result
                        .with_error_code(e.code())
                        .with_error_message(Some(text(e.to_string()))),
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    CreatePartitionsResponse::default().with_results(results)
}
