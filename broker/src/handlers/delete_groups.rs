//! DeleteGroups (key 42): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`). A group with members gets NON_EMPTY_GROUP.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::blocking;
use super::produce::now_ms;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{
    COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, NOT_COORDINATOR,
};
use crate::groups::offsets::OffsetRecord;
use crate::groups::{store, GroupState};

/// Answers DeleteGroups.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DeleteGroupsRequest,
    _info: RequestInfo,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let group = id.0.to_string();
        let tombstones = {
            let groups = ctx.groups.lock();
            match groups.get(&group) {
                _ if !ctx.is_coordinator(&group) => Err(NOT_COORDINATOR),
                None => Err(GROUP_ID_NOT_FOUND),
                Some(e) if e.group.state == GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
                Some(e) if !e.group.members.is_empty() => Err(NON_EMPTY_GROUP),
                Some(e) => Ok(e
                    .offsets
                    .keys()
                    .map(|(t, p)| OffsetRecord {
                        group: group.clone(),
                        topic: t.clone(),
                        partition: *p,
                        value: None,
                    })
                    .collect::<Vec<_>>()),
            }
        };
        let code = match tombstones {
            Err(code) => code,
            Ok(records) => {
                let (ctx2, group2) = (Arc::clone(&ctx), group.clone());
                match blocking(move || store::write(&ctx2, &group2, &records, now_ms())).await {
                    Some(Ok(_)) => {
                        let mut groups = ctx.groups.lock();
                        if groups
                            .get(&group)
                            .is_some_and(|e| e.group.members.is_empty())
                        {
                            groups.remove(&group);
                        }
                        0
                    }
                    _ => COORDINATOR_NOT_AVAILABLE,
                }
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
