//! ListGroups (key 16): every group with its protocol type and state, filtered by state
//! (v4+) and type (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;

/// Answers ListGroups.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: ListGroupsRequest,
    _info: RequestInfo,
) -> ListGroupsResponse {
    let groups = ctx.groups.lock();
    let mut listed: Vec<ListedGroup> = groups
        .values()
        .filter(|e| e.group.state != crate::groups::GroupState::Dead)
        .filter(|e| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(e.group.state.name()))
        })
        .filter(|_| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("classic"))
        })
        .map(|e| {
            ListedGroup::default()
                .with_group_id(GroupId(text(e.group.id.clone())))
                .with_protocol_type(text(e.group.protocol_type.clone().unwrap_or_default()))
                .with_group_state(text(e.group.state.name()))
                .with_group_type(text("classic"))
        })
        .collect();
    listed.sort_by(|a, b| a.group_id.0.as_str().cmp(b.group_id.0.as_str()));
    ListGroupsResponse::default().with_groups(listed)
}
