//! ApiVersions (key 18): the versions this broker serves, straight from the dispatch table.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::context::BrokerContext;
use crate::dispatch::{encode_response, Reply, RequestInfo, ROUTES};
use crate::error_codes::{NONE, UNSUPPORTED_VERSION};

fn served() -> Vec<ApiVersion> {
    ROUTES
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect()
}

/// Answers ApiVersions.
pub async fn handle(
    _ctx: Arc<BrokerContext>,
    _request: ApiVersionsRequest,
    _info: RequestInfo,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(NONE)
        .with_api_keys(served())
}

/// The reply to an ApiVersions request of a version newer than served: a v0 response with
/// UNSUPPORTED_VERSION and the served list, so the client retries with a version it shares.
pub fn unsupported_version_reply(correlation_id: i32) -> Reply {
    let response = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(served());
    match encode_response(correlation_id, 0, &response) {
        Ok(frame) => Reply::Frame(frame),
        Err(_) => Reply::Close,
    }
}
