//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in the leader's log
//! (KIP-101, KIP-279). A follower truncates its log to the answer before fetching; a
//! consumer validates its position with it after a leader change (KIP-320).
//!
//! Only the partition's leader answers (others say NOT_LEADER_OR_FOLLOWER), after the
//! KIP-320 check of `current_leader_epoch`. The answer is Kafka's
//! `Partition.lastOffsetForLeaderEpoch`: `(epoch, end_offset)` from the leader-epoch
//! cache, where `end_offset` is the first offset after `epoch` (the log end offset for
//! the current epoch), or UNDEFINED (-1, -1) for an epoch the cache cannot place, with
//! no error. `replica_id` (v3+) changes nothing: there are no ACLs to check it against.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use runnel_storage::Log;

use super::blocking;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;

/// Answers OffsetForLeaderEpoch.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: OffsetForLeaderEpochRequest,
    _info: RequestInfo,
) -> OffsetForLeaderEpochResponse {
    // Kept to answer every partition should the lookup fail.
    let asked: Vec<(_, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.topic.clone(),
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        })
        .collect();
    let answered = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| end_offset(&ctx, topic.topic.0.as_str(), p))
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(topic.topic)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    let topics = answered.unwrap_or_else(|| {
        let failed = ResponseError::UnknownServerError.code();
        asked
            .into_iter()
            .map(|(topic, partitions)| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(topic)
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|p| {
                                EpochEndOffset::default()
                                    .with_partition(p)
                                    .with_error_code(failed)
                            })
                            .collect(),
                    )
            })
            .collect()
    });
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// One partition's answer. Blocking (takes the log's lock).
fn end_offset(
    ctx: &BrokerContext,
    topic: &str,
    asked: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    // Defaults: UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET (-1, -1).
    let answer = EpochEndOffset::default().with_partition(asked.partition);
    let led = ctx.led_partition_in_epoch(topic, asked.partition, asked.current_leader_epoch);
    let (partition, current_epoch) = match led {
        Ok(led) => led,
        Err(code) => return answer.with_error_code(code),
    };
    let found = leader_end_offset(&partition.log(), asked.leader_epoch, current_epoch);
    match found {
        Some((epoch, end_offset)) => answer.with_leader_epoch(epoch).with_end_offset(end_offset),
        None => answer,
    }
}

/// [`Log::end_offset_for_epoch`] on the leader in `current_epoch`, as Kafka's leader
/// answers. Kafka's leader records its epoch in the cache at the log end offset when it
/// takes over; here the cache gains it with the first batch written in it. Until then
/// the answer is computed as if the entry were there: `(current, log end)` for the
/// current epoch, and for an epoch after the cache's latest, that latest (or the epoch
/// itself on an empty cache) ending at the log end.
fn leader_end_offset(log: &Log, epoch: i32, current_epoch: i32) -> Option<(i32, i64)> {
    with_current_epoch(
        log.end_offset_for_epoch(epoch),
        log.latest_epoch(),
        log.log_end_offset(),
        epoch,
        current_epoch,
    )
}

/// The pure rule of [`leader_end_offset`]: `cached` is the cache's own answer.
fn with_current_epoch(
    cached: Option<(i32, i64)>,
    latest: Option<i32>,
    log_end_offset: i64,
    epoch: i32,
    current_epoch: i32,
) -> Option<(i32, i64)> {
    let current_is_cached = latest.is_some_and(|l| l >= current_epoch);
    if epoch < 0 || epoch > current_epoch || current_is_cached {
        return cached;
    }
    match latest {
        _ if epoch == current_epoch => Some((current_epoch, log_end_offset)),
        Some(latest) if epoch > latest => Some((latest, log_end_offset)),
        Some(_) => cached,
        None => Some((epoch, log_end_offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::with_current_epoch;

    #[test]
    fn the_current_epoch_ends_at_the_log_end_before_its_first_batch() {
        // Cache [(0, 0), (2, 5)], log end 9.
        let cache = |epoch: i32| match epoch {
            0 | 1 => Some((0, 5)),
            2 => Some((2, 9)),
            _ => None,
        };
        let answer = |epoch, current| with_current_epoch(cache(epoch), Some(2), 9, epoch, current);
        // Current epoch cached: the cache answers.
        for epoch in [-1, 0, 1, 2, 3] {
            assert_eq!(answer(epoch, 2), cache(epoch), "epoch {epoch}");
        }
        // Leader in epoch 4 with no batch in it yet: as if (4, 9) were cached.
        assert_eq!(answer(4, 4), Some((4, 9)));
        assert_eq!(answer(3, 4), Some((2, 9)));
        assert_eq!(answer(2, 4), Some((2, 9)));
        assert_eq!(answer(1, 4), Some((0, 5)));
        assert_eq!(answer(5, 4), None);
        assert_eq!(answer(-1, 4), None);
        // An empty log: Kafka's new leader has just (current, 0) cached.
        assert_eq!(with_current_epoch(None, None, 0, 0, 0), Some((0, 0)));
        assert_eq!(with_current_epoch(None, None, 0, 1, 3), Some((1, 0)));
        assert_eq!(with_current_epoch(None, None, 0, 1, 0), None);
    }
}
