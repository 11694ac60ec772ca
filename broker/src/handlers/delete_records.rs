//! DeleteRecords (key 21): advances partitions' log start offsets (-1 means the high
//! watermark); consumers below the new start get OFFSET_OUT_OF_RANGE and reset.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::blocking;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::error_codes::{for_log_error, log_storage_error};

/// Answers DeleteRecords.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DeleteRecordsRequest,
    _info: RequestInfo,
) -> DeleteRecordsResponse {
    let topics = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        let partition = match ctx.led_partition(&t.name.0, p.partition_index) {
                            Ok(partition) => partition,
                            Err(code) => return result.with_error_code(code),
                        };
                        let deleted = partition.log().delete_records_before(p.offset);
                        match deleted {
                            Ok(start) => result.with_low_watermark(start),
                            Err(e) => {
                                log_storage_error(&partition.tp, &e);
                                result.with_error_code(for_log_error(&e))
                            }
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    DeleteRecordsResponse::default().with_topics(topics)
}
