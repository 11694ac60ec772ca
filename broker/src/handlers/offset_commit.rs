//! OffsetCommit (key 8): stores a group's consumed positions. A member commits for its
//! generation; a standalone consumer (generation -1, no member id) commits for an empty
//! group. Offsets are appended to `__consumer_offsets` before they are acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::blocking;
use super::produce::now_ms;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::error_codes::UNKNOWN_TOPIC_OR_PARTITION;
use crate::groups::errors::{
    COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID, NOT_COORDINATOR, OFFSET_METADATA_TOO_LARGE,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use crate::groups::offsets::{self, CommittedOffset, OffsetRecord};
use crate::groups::{store, GroupState};

/// `offsets.commit.timeout.ms`: how long a commit waits for the offsets partition's ISR.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers OffsetCommit.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: OffsetCommitRequest,
    _info: RequestInfo,
) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let group_error = check_member(&ctx, &request);
    let image = ctx.image();
    let now = now_ms();
    let mut codes: Vec<Vec<i16>> = Vec::new();
    let mut records = Vec::new();
    for topic in &request.topics {
        let known = image.topic(&topic.name.0);
        let mut topic_codes = Vec::new();
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let code = if let Some(e) = group_error {
                e
            } else if !known.is_some_and(|t| (0..t.partitions).contains(&p.partition_index)) {
                UNKNOWN_TOPIC_OR_PARTITION
            } else if metadata.len() > ctx.groups.config.max_metadata_bytes {
                OFFSET_METADATA_TOO_LARGE
            } else {
                records.push(OffsetRecord {
                    group: group.clone(),
                    topic: topic.name.0.to_string(),
                    partition: p.partition_index,
                    value: Some(CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp: now,
                    }),
                });
                0
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    if !records.is_empty() {
        let (ctx2, group2, records2) = (Arc::clone(&ctx), group.clone(), records.clone());
        let written = blocking(move || store::write(&ctx2, &group2, &records2, now)).await;
        // As Kafka's coordinator does, a commit counts once every ISR member of the
        // offsets partition has it (offsets.commit.timeout.ms).
        let replicated = match written {
            Some(Ok(Some((partition, end)))) => {
                let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
                match partition.replica.wait_replicated(end, deadline).await {
                    Ok(()) => Ok(()),
                    Err(code) if code == ResponseError::RequestTimedOut.code() => Err(code),
                    Err(_) => Err(COORDINATOR_NOT_AVAILABLE),
                }
            }
            Some(Ok(None)) => Ok(()),
            Some(Err(e)) => {
                tracing::error!(group, error = %e, "committing offsets failed");
                Err(COORDINATOR_NOT_AVAILABLE)
            }
            None => Err(COORDINATOR_NOT_AVAILABLE),
        };
        match replicated {
            Ok(()) => ctx.groups.apply_offsets(records, Instant::now()),
            Err(code) => {
                for c in codes.iter_mut().flatten().filter(|c| **c == 0) {
                    *c = code;
                }
            }
        }
    }
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The error for the whole request, if the committer may not commit for this group now.
fn check_member(ctx: &BrokerContext, request: &OffsetCommitRequest) -> Option<i16> {
    if !offsets::valid_group_id(&request.group_id.0) {
        return Some(INVALID_GROUP_ID);
    }
    if !ctx.is_coordinator(&request.group_id.0) {
        return Some(NOT_COORDINATOR);
    }
    let groups = ctx.groups.lock();
    let Some(entry) = groups.get(request.group_id.0.as_str()) else {
        // A standalone consumer may commit for a group that does not exist yet.
        return (request.generation_id_or_member_epoch >= 0 || !request.member_id.is_empty())
            .then_some(UNKNOWN_MEMBER_ID);
    };
    let group = &entry.group;
    if request.generation_id_or_member_epoch < 0 && request.member_id.is_empty() {
        return (group.state != GroupState::Empty).then_some(UNKNOWN_MEMBER_ID);
    }
    if group.state == GroupState::CompletingRebalance {
        return Some(REBALANCE_IN_PROGRESS);
    }
    group
        .validate_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id_or_member_epoch,
        )
        .err()
}
