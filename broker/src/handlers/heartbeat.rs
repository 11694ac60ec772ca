//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{NOT_COORDINATOR, UNKNOWN_MEMBER_ID};

/// Answers Heartbeat.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: HeartbeatRequest,
    _info: RequestInfo,
) -> HeartbeatResponse {
    if !ctx.is_coordinator(&request.group_id.0) {
        return HeartbeatResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let mut groups = ctx.groups.lock();
    let code = match groups.get_mut(request.group_id.0.as_str()) {
        Some(entry) => entry.group.heartbeat(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            Instant::now(),
        ),
        None => UNKNOWN_MEMBER_ID,
    };
    HeartbeatResponse::default().with_error_code(code)
}
