//! InitProducerId (key 22): hands idempotent producers a producer id and epoch. A producer
//! that presents its current id and epoch (KIP-360, v3+) gets the epoch bumped; producer
//! ids are never reused across restarts. Transactional ids are not served yet.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::blocking;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::topics;

/// Answers InitProducerId.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: InitProducerIdRequest,
    _info: RequestInfo,
) -> InitProducerIdResponse {
    let error = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        tracing::debug!("transactional producers are not supported yet");
        return error(ResponseError::TransactionalIdAuthorizationFailed);
    }
    // An exhausted epoch gets a fresh producer id, as in Kafka.
    if request.producer_id.0 >= 0 && (0..i16::MAX - 1).contains(&request.producer_epoch) {
        return InitProducerIdResponse::default()
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match blocking(move || topics::allocate_producer_id(&ctx)).await {
        Some(Ok(id)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            error(ResponseError::CoordinatorNotAvailable)
        }
        None => error(ResponseError::UnknownServerError),
    }
}
