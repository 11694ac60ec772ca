//! SyncGroup (key 14): the leader hands out the assignment; every member receives its own
//! once the leader's has arrived.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{
    COORDINATOR_NOT_AVAILABLE, INCONSISTENT_GROUP_PROTOCOL, NOT_COORDINATOR, UNKNOWN_MEMBER_ID,
};
use crate::groups::{Pending, SyncResult};

/// Answers SyncGroup.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: SyncGroupRequest,
    _info: RequestInfo,
) -> SyncGroupResponse {
    let result = sync(&ctx, request).await;
    SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_protocol_type(result.protocol_type.map(text))
        .with_protocol_name(result.protocol_name.map(text))
        .with_assignment(result.assignment)
}

async fn sync(ctx: &BrokerContext, request: SyncGroupRequest) -> SyncResult {
    let fail = |error| SyncResult {
        error,
        ..Default::default()
    };
    if !ctx.is_coordinator(&request.group_id.0) {
        return fail(NOT_COORDINATOR);
    }
    let member = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let pending = {
        let mut groups = ctx.groups.lock();
        let Some(entry) = groups.get_mut(request.group_id.0.as_str()) else {
            return fail(UNKNOWN_MEMBER_ID);
        };
        let group = &mut entry.group;
        // v5+: the protocol named must be the group's.
        let type_mismatch = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_deref() != Some(t.as_str()));
        let name_mismatch = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_deref() != Some(n.as_str()));
        if type_mismatch || name_mismatch {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        let assignments = request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        group.sync(
            &member,
            instance.as_deref(),
            request.generation_id,
            assignments,
            Instant::now(),
        )
    };
    match pending {
        Pending::Ready(r) => r,
        Pending::Wait(rx) => rx.await.unwrap_or_else(|_| fail(COORDINATOR_NOT_AVAILABLE)),
    }
}
