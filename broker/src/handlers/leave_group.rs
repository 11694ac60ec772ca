//! LeaveGroup (key 13): members leave (one by member id in v0-2, a batch by member or
//! instance id in v3+), and the group rebalances without them.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{NOT_COORDINATOR, UNKNOWN_MEMBER_ID};

/// Answers LeaveGroup.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: LeaveGroupRequest,
    info: RequestInfo,
) -> LeaveGroupResponse {
    if !ctx.is_coordinator(&request.group_id.0) {
        return LeaveGroupResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let config = &ctx.groups.config;
    let now = Instant::now();
    let mut groups = ctx.groups.lock();
    let group = groups
        .get_mut(request.group_id.0.as_str())
        .map(|e| &mut e.group);
    if info.version < 3 {
        let code = match group {
            Some(g) => g.leave(&request.member_id, None, config, now),
            None => UNKNOWN_MEMBER_ID,
        };
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let Some(group) = group else {
        return LeaveGroupResponse::default().with_error_code(UNKNOWN_MEMBER_ID);
    };
    let members = request
        .members
        .into_iter()
        .map(|m| {
            let code = group.leave(&m.member_id, m.group_instance_id.as_deref(), config, now);
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
