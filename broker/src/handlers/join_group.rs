//! JoinGroup (key 11): a member joins or rejoins its group; the response comes when the
//! group's join phase completes (all members rejoined, or the rebalance timeout passed).
//! v4+ clients first get MEMBER_ID_REQUIRED with their id (KIP-394).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{
    COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT, NOT_COORDINATOR,
};
use crate::groups::{offsets, GroupCoordinator, JoinRequest, JoinResult, Pending};

/// Answers JoinGroup.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: JoinGroupRequest,
    info: RequestInfo,
) -> JoinGroupResponse {
    let result = join(&ctx, request, &info).await;
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(text(id))
                .with_group_instance_id(instance.map(text))
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(if result.error == 0 {
            result.generation
        } else {
            -1
        })
        .with_protocol_type(result.protocol_type.map(text))
        .with_protocol_name(result.protocol_name.map(text))
        .with_leader(text(result.leader))
        .with_member_id(text(result.member_id))
        // The field exists from v9; older leaders recompute and SyncGroup keeps the stored one.
        .with_skip_assignment(info.version >= 9 && result.skip_assignment)
        .with_members(members)
}

async fn join(ctx: &BrokerContext, request: JoinGroupRequest, info: &RequestInfo) -> JoinResult {
    let fail = |error| JoinResult {
        error,
        ..Default::default()
    };
    let group_id = request.group_id.0.to_string();
    if !offsets::valid_group_id(&group_id) {
        return fail(INVALID_GROUP_ID);
    }
    if !ctx.is_coordinator(&group_id) {
        return fail(NOT_COORDINATOR);
    }
    let config = &ctx.groups.config;
    let session = Duration::from_millis(u64::try_from(request.session_timeout_ms).unwrap_or(0));
    if session < config.min_session_timeout || session > config.max_session_timeout {
        return fail(INVALID_SESSION_TIMEOUT);
    }
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance =
        u64::try_from(request.rebalance_timeout_ms).map_or(session, Duration::from_millis);
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: info.client_id.clone().unwrap_or_default(),
        client_host: info.client_host.clone(),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: info.version >= 4,
    };
    let pending = {
        let mut groups = ctx.groups.lock();
        let entry = GroupCoordinator::entry(&mut groups, &group_id, Instant::now());
        entry.group.join(join, config, Instant::now())
    };
    match pending {
        Pending::Ready(r) => r,
        Pending::Wait(rx) => rx.await.unwrap_or_else(|_| fail(COORDINATOR_NOT_AVAILABLE)),
    }
}
