//! CreatePartitions (key 37): grows topics to a larger partition count.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

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
        request
            .topics
            .into_iter()
            .map(|t| {
                let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                // An empty list is read as none given (placed by the broker), as older
                // clients send it.
                let assignments = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
                    a.iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
                match topics::create_partitions(
                    &ctx,
                    &t.name.0,
                    t.count,
                    assignments,
                    validate_only,
                ) {
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
