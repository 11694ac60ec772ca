//! Kafka error codes used across handlers, and the one mapping from storage errors.

use kafka_protocol::ResponseError;
use runnel_storage::LogError;

/// `NONE`.
pub const NONE: i16 = 0;
/// `UNSUPPORTED_VERSION`.
pub const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
/// `UNKNOWN_TOPIC_OR_PARTITION`.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
/// `UNKNOWN_TOPIC_ID`.
pub const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();

/// The Kafka error code a client gets for a storage error.
pub fn for_log_error(e: &LogError) -> i16 {
    let error = match e {
        LogError::CorruptRecord { .. } => ResponseError::CorruptMessage,
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        // Answered with per-record errors too: see the Produce handler.
        LogError::RejectedRecords { .. } => ResponseError::InvalidRecord,
        // A stored batch that does not read back (written before append checked it).
        LogError::UnreadableBatch { .. } => ResponseError::CorruptMessage,
        LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::BatchLargerThanSegment { .. } => ResponseError::RecordListTooLarge,
        LogError::OffsetOutOfRange { .. } | LogError::DeleteRecordsOutOfRange { .. } => {
            ResponseError::OffsetOutOfRange
        }
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        _ => ResponseError::KafkaStorageError,
    };
    error.code()
}

/// Logs a storage error once, at the level its cause deserves.
pub fn log_storage_error(tp: &crate::partitions::TopicPartition, e: &LogError) {
    match e {
        LogError::Io { .. } => tracing::error!(partition = %tp, error = %e, "storage error"),
        LogError::UnreadableBatch { .. } | LogError::Compress { .. } => {
            tracing::warn!(partition = %tp, error = %e, "stored data could not be read or written")
        }
        _ => tracing::debug!(partition = %tp, error = %e, "request rejected by the log"),
    }
}
