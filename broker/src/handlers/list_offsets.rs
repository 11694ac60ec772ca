//! ListOffsets (key 2): the earliest (-2) and latest (-1) offsets of a partition, or the
//! first offset whose record timestamp is at or after a given time (via the time index,
//! then storage's bounded record parser on the one batch found: a stored batch that
//! does not read back is answered with CORRUPT_MESSAGE, never decoded without bounds).

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::blocking;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::error_codes::{for_log_error, log_storage_error};

/// `timestamp` asking for the log end offset.
const LATEST: i64 = -1;
/// `timestamp` asking for the log start offset.
const EARLIEST: i64 = -2;

/// Answers ListOffsets.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: ListOffsetsRequest,
    info: RequestInfo,
) -> ListOffsetsResponse {
    // Leader epochs are reported from v4 on.
    let with_epoch = info.version >= 4;
    // A follower asking (replica_id >= 0) is told the log end offset, not the high
    // watermark, as Kafka's replicas are.
    let replica = request.replica_id.0 >= 0;
    let answered = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| lookup(&ctx, &name, p, with_epoch, replica))
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    match answered {
        Some(topics) => ListOffsetsResponse::default().with_topics(topics),
        None => ListOffsetsResponse::default(),
    }
}

fn lookup(
    ctx: &BrokerContext,
    topic: &str,
    want: &ListOffsetsPartition,
    with_epoch: bool,
    replica: bool,
) -> ListOffsetsPartitionResponse {
    let (partition, timestamp) = (want.partition_index, want.timestamp);
    let response = ListOffsetsPartitionResponse::default()
        .with_partition_index(partition)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1);
    let (p, epoch) = match ctx.led_partition_in_epoch(topic, partition, want.current_leader_epoch) {
        Ok(led) => led,
        Err(code) => return response.with_error_code(code),
    };
    // The current leader's epoch: what an offset found here was served in.
    let response = response.with_leader_epoch(if with_epoch { epoch } else { -1 });
    let log = p.log();
    match timestamp {
        LATEST if replica => response.with_offset(log.log_end_offset()),
        LATEST => response.with_offset(p.high_watermark(&log)),
        EARLIEST => response.with_offset(log.log_start_offset()),
        t if t < 0 => response.with_error_code(ResponseError::UnsupportedVersion.code()),
        t => match log.read_batch_by_timestamp(t) {
            Ok(Some(batch)) => {
                // Decompressing and parsing need no lock (this runs on a blocking thread).
                drop(log);
                match runnel_storage::first_record_at_or_after(&batch, t) {
                    Ok(Some(found)) => response
                        .with_offset(found.offset)
                        .with_timestamp(found.timestamp),
                    Ok(None) => response,
                    Err(e) => {
                        log_storage_error(&p.tp, &e);
                        response.with_error_code(for_log_error(&e))
                    }
                }
            }
            Ok(None) => response,
            Err(e) => {
                log_storage_error(&p.tp, &e);
                response.with_error_code(for_log_error(&e))
            }
        },
    }
}
