//! UnregisterBroker (key 64): a stopped broker leaves the cluster's metadata, as after a
//! scale-down. Refused while it is live or still holds replicas.

use std::sync::Arc;

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::ResponseError;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::reassignments;

/// Answers UnregisterBroker.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: UnregisterBrokerRequest,
    _info: RequestInfo,
) -> UnregisterBrokerResponse {
    let node_id = request.broker_id.0;
    match blocking(move || reassignments::unregister(&ctx, node_id)).await {
        Some(Ok(())) => UnregisterBrokerResponse::default().with_error_message(None),
        Some(Err(refusal)) => UnregisterBrokerResponse::default()
            .with_error_code(refusal.code)
            .with_error_message(Some(text(refusal.message))),
        None => UnregisterBrokerResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code())
            .with_error_message(Some(text("the request could not be handled"))),
    }
}
