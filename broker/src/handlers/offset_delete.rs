//! OffsetDelete (key 47): deletes a group's committed offsets for some partitions, unless
//! the group's members are still subscribed to the topic.

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::blocking;
use super::produce::now_ms;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{
    COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC, NOT_COORDINATOR,
};
use crate::groups::offsets::OffsetRecord;
use crate::groups::store;

/// Answers OffsetDelete.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: OffsetDeleteRequest,
    _info: RequestInfo,
) -> OffsetDeleteResponse {
    let group = request.group_id.0.to_string();
    if !ctx.is_coordinator(&group) {
        return OffsetDeleteResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let mut records = Vec::new();
    let codes: Vec<Vec<i16>> = {
        let groups = ctx.groups.lock();
        let Some(entry) = groups.get(&group) else {
            return OffsetDeleteResponse::default().with_error_code(GROUP_ID_NOT_FOUND);
        };
        request
            .topics
            .iter()
            .map(|t| {
                let subscribed = entry.group.is_subscribed_to(&t.name.0);
                t.partitions
                    .iter()
                    .map(|p| {
                        if subscribed {
                            return GROUP_SUBSCRIBED_TO_TOPIC;
                        }
                        records.push(OffsetRecord {
                            group: group.clone(),
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                            value: None,
                        });
                        0
                    })
                    .collect()
            })
            .collect()
    };
    let (ctx2, group2, records2) = (Arc::clone(&ctx), group.clone(), records.clone());
    let failed = match blocking(move || store::write(&ctx2, &group2, &records2, now_ms())).await {
        Some(Ok(_)) => {
            ctx.groups.apply_offsets(records, std::time::Instant::now());
            false
        }
        _ => true,
    };
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, c)| {
                    let code = if failed && c == 0 {
                        COORDINATOR_NOT_AVAILABLE
                    } else {
                        c
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
