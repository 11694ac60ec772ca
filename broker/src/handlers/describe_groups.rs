//! DescribeGroups (key 15): state, protocol and members (with metadata and assignment) of
//! each group. An unknown group is reported as Dead, as Kafka's classic coordinator does.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::NOT_COORDINATOR;
use crate::groups::GroupState;

/// Answers DescribeGroups.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DescribeGroupsRequest,
    _info: RequestInfo,
) -> DescribeGroupsResponse {
    let groups = ctx.groups.lock();
    let described = request
        .groups
        .into_iter()
        .map(|id| {
            if !ctx.is_coordinator(&id.0) {
                return DescribedGroup::default()
                    .with_error_code(NOT_COORDINATOR)
                    .with_group_id(id)
                    .with_authorized_operations(i32::MIN);
            }
            let Some(entry) = groups.get(id.0.as_str()) else {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(text(GroupState::Dead.name()))
                    .with_authorized_operations(i32::MIN);
            };
            let g = &entry.group;
            let protocol = g.protocol_name.clone().unwrap_or_default();
            let members = g
                .members
                .values()
                .map(|m| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default();
                    DescribedGroupMember::default()
                        .with_member_id(text(m.id.clone()))
                        .with_group_instance_id(m.instance_id.clone().map(text))
                        .with_client_id(text(m.client_id.clone()))
                        .with_client_host(text(m.client_host.clone()))
                        .with_member_metadata(metadata)
                        .with_member_assignment(m.assignment.clone())
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(text(g.state.name()))
                .with_protocol_type(text(g.protocol_type.clone().unwrap_or_default()))
                .with_protocol_data(text(protocol))
                .with_members(members)
                .with_authorized_operations(i32::MIN)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}
