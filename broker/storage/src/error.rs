//! The storage engine's typed errors.
//!
//! Each variant carries the context a handler needs to pick a Kafka error code
//! (the broker maps them in one place) and a log line needs to be useful.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::compression::Codec;

/// The result type of every fallible storage call.
pub type Result<T> = std::result::Result<T, LogError>;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file-system call failed; the log directory should be treated as failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The log's directory failed: a write or fsync in it returned an error earlier
    /// (`path`, `source`), so nothing more is written or reported durable there until
    /// the directory is reopened, which recovers it by scanning (see `health`).
    #[error("The log directory {} is offline after an I/O error on {}: {source}.", dir.display(), path.display())]
    LogDirFailed {
        /// The directory (the broker's data directory, or the log's own).
        dir: PathBuf,
        /// The file or directory whose write or fsync failed first.
        path: PathBuf,
        /// The operating system's error for that first failure.
        source: std::io::Error,
    },
    /// A record batch from a client is malformed at the framing level
    /// (length, magic, CRC): Kafka's `CORRUPT_MESSAGE`.
    #[error("The record batch is corrupt: {reason}.")]
    CorruptRecord {
        /// What was wrong with it.
        reason: CorruptReason,
    },
    /// A record batch from a client is well framed but its header is inconsistent:
    /// Kafka's `INVALID_RECORD`.
    #[error("The record batch is invalid: {reason}.")]
    InvalidRecord {
        /// What was wrong with it.
        reason: InvalidReason,
    },
    /// Records of a well-formed batch break a rule of the topic (a record without a key
    /// in a compacted topic): Kafka's `RecordValidationException`, `INVALID_RECORD`
    /// with one error per record. Only the first offending batch's records are listed;
    /// nothing of the payload is written.
    #[error("The batch was rejected: {}.", summarize(errors))]
    RejectedRecords {
        /// One per offending record, in order; never empty.
        errors: Vec<RecordError>,
    },
    /// A stored batch's records cannot be read (they do not parse, or decompress past
    /// the limit): the batch is answered with this, never decoded without bounds.
    #[error("The stored batch at offset {base_offset} cannot be read: {reason}.")]
    UnreadableBatch {
        /// The batch's base offset.
        base_offset: i64,
        /// What is wrong with it.
        reason: InvalidReason,
    },
    /// Compressing a batch for the topic's `compression.type` failed (the encoders
    /// write to memory, so this is not expected).
    #[error("Compressing a batch with {codec} failed: {source}.")]
    Compress {
        /// The topic's codec.
        codec: Codec,
        /// The encoder's error.
        source: std::io::Error,
    },
    /// A record batch is larger than the topic allows (`max.message.bytes`).
    #[error("The record batch is {size} bytes, larger than the maximum of {max} bytes.")]
    RecordTooLarge {
        /// The batch's total size in bytes.
        size: u64,
        /// The configured maximum in bytes.
        max: u64,
    },
    /// A record batch is larger than a segment (`segment.bytes`): batches never span
    /// segments. Kafka's RECORD_LIST_TOO_LARGE.
    #[error("The record batch is {size} bytes, larger than the segment size of {segment} bytes.")]
    BatchLargerThanSegment {
        /// The batch's total size in bytes.
        size: u64,
        /// `segment.bytes`.
        segment: u64,
    },
    /// The requested offset is not in `[log_start_offset, log_end_offset]`.
    #[error(
        "Offset {offset} is out of range: the log holds offsets {log_start_offset} to {log_end_offset} (exclusive)."
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The first offset in the log.
        log_start_offset: i64,
        /// The next offset the log will assign.
        log_end_offset: i64,
    },
    /// An idempotent producer's batch does not follow its previous batch.
    #[error("Producer {producer_id} sent sequence {got}, but sequence {expected} was expected.")]
    OutOfOrderSequence {
        /// The producer id of the batch.
        producer_id: i64,
        /// The first sequence the log would have accepted.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// An idempotent producer's epoch is older than the one the log has seen
    /// (the producer was fenced by a newer instance).
    #[error("Producer {producer_id} used epoch {epoch}, older than its current epoch {current}.")]
    InvalidProducerEpoch {
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
        /// The newest epoch the log has seen for this producer.
        current: i16,
    },
    /// Data already on disk failed validation while being read (an index entry
    /// pointing outside the log, a bad batch header). Never returned for bytes the
    /// recovery scan has accepted unless the disk changed underneath the log.
    #[error("The log file {} is corrupt at byte {position}: {reason}.", path.display())]
    CorruptLog {
        /// The segment or index file.
        path: PathBuf,
        /// The byte position of the problem in that file.
        position: u64,
        /// What was found there.
        reason: CorruptReason,
    },
    /// `delete_records_before` was given an offset past the high watermark (or a
    /// negative offset other than -1): Kafka's `OFFSET_OUT_OF_RANGE` for DeleteRecords.
    #[error(
        "Cannot delete records before offset {offset}: it must be between the log start offset {log_start_offset} and the high watermark {high_watermark}."
    )]
    DeleteRecordsOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The log start offset at the time of the call.
        log_start_offset: i64,
        /// The high watermark at the time of the call.
        high_watermark: i64,
    },
    /// A follower append (`Log::append_as_follower`) does not continue the log: the
    /// first batch's base offset is not the log end offset, or a batch does not follow
    /// the one before it (in a compacted topic, where the leader's cleaner leaves gaps,
    /// a base offset at or past the expected one is accepted). Nothing was written; the
    /// replica fetcher should truncate or refetch from `expected`.
    #[error(
        "The replicated batch starts at offset {got}, but the log continues at offset {expected}."
    )]
    NonContiguousAppend {
        /// The offset the log expected the batch to start at.
        expected: i64,
        /// The batch's base offset.
        got: i64,
    },
    /// `truncate_to` was given a negative offset.
    #[error("Cannot truncate the log to negative offset {offset}.")]
    InvalidTruncation {
        /// The offset asked for.
        offset: i64,
    },
}

/// The `errors` of [`LogError::RejectedRecords`] in a few words.
fn summarize(errors: &[RecordError]) -> String {
    match errors.first() {
        Some(first) => format!(
            "{} record(s) refused, the first at batch index {}: {}",
            errors.len(),
            first.batch_index,
            first.reason
        ),
        None => "no record error was given".to_string(),
    }
}

/// Why one record of a batch was refused (Kafka's `RecordError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordError {
    /// The record's position in its batch, from 0 (not its offset delta).
    pub batch_index: i32,
    /// What is wrong with it.
    pub reason: RecordErrorReason,
}

/// What is wrong with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordErrorReason {
    /// The record has a null key and the topic is compacted (`cleanup.policy` includes
    /// `compact`): the cleaner could never remove it.
    MissingKey,
}

impl fmt::Display for RecordErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordErrorReason::MissingKey => {
                f.write_str("a compacted topic cannot accept a record without a key")
            }
        }
    }
}

impl LogError {
    /// Builds a closure that wraps an `io::Error` with the path it concerns, for `map_err`.
    pub(crate) fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.as_ref().to_path_buf();
        move |source| LogError::Io { path, source }
    }

    pub(crate) fn corrupt(reason: CorruptReason) -> LogError {
        LogError::CorruptRecord { reason }
    }

    pub(crate) fn invalid(reason: InvalidReason) -> LogError {
        LogError::InvalidRecord { reason }
    }
}

/// Framing problems in a record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptReason {
    /// Fewer bytes than a batch header (61) were available.
    ShortHeader {
        /// Bytes available.
        available: usize,
    },
    /// The batch length field gives a total size below the header size.
    LengthTooSmall {
        /// The `batchLength` field as read.
        batch_length: i32,
    },
    /// The batch length field points past the end of the buffer or file.
    Truncated {
        /// The batch's total size according to its header.
        needed: u64,
        /// Bytes actually available.
        available: u64,
    },
    /// The magic byte is not 2 (only v2 record batches are supported).
    UnsupportedMagic {
        /// The magic byte as read.
        magic: i8,
    },
    /// The stored CRC-32C does not match the bytes.
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC computed over the batch.
        computed: u32,
    },
    /// A batch's offsets go backwards relative to the batch before it.
    NonMonotonicOffset {
        /// The batch's base offset.
        base_offset: i64,
        /// The smallest offset the batch could have had.
        expected_at_least: i64,
    },
    /// An index entry is inconsistent with its log file.
    BadIndexEntry,
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::ShortHeader { available } => write!(
                f,
                "only {available} bytes remain, fewer than the 61-byte batch header"
            ),
            CorruptReason::LengthTooSmall { batch_length } => {
                write!(
                    f,
                    "the batch length {batch_length} is smaller than a header"
                )
            }
            CorruptReason::Truncated { needed, available } => write!(
                f,
                "the batch needs {needed} bytes but only {available} are present"
            ),
            CorruptReason::UnsupportedMagic { magic } => {
                write!(f, "magic byte {magic} is not supported (only 2 is)")
            }
            CorruptReason::CrcMismatch { stored, computed } => write!(
                f,
                "the stored CRC {stored:#010x} does not match the computed CRC {computed:#010x}"
            ),
            CorruptReason::NonMonotonicOffset {
                base_offset,
                expected_at_least,
            } => write!(
                f,
                "base offset {base_offset} is below the expected {expected_at_least}"
            ),
            CorruptReason::BadIndexEntry => {
                write!(f, "an index entry does not point at a batch boundary")
            }
        }
    }
}

/// Header inconsistencies in a well-framed record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// The produce payload held no batch at all.
    NoBatches,
    /// `recordCount` is zero or negative.
    NoRecords {
        /// The `recordCount` field.
        record_count: i32,
    },
    /// `lastOffsetDelta` is not `recordCount - 1`.
    LastOffsetDeltaMismatch {
        /// The `lastOffsetDelta` field.
        last_offset_delta: i32,
        /// The `recordCount` field.
        record_count: i32,
    },
    /// An idempotent batch (producer id ≥ 0) has a negative base sequence.
    MissingSequence {
        /// The batch's producer id.
        producer_id: i64,
    },
    /// Assigning offsets to the batch would overflow a signed 64-bit offset.
    OffsetOverflow,
    /// `recordCount` is more than the batch could hold: every record takes at least
    /// 7 bytes of the records region (of the decompressed region, at most the
    /// decompression limit, for a compressed batch).
    RecordCountTooLarge {
        /// The `recordCount` field.
        record_count: i32,
        /// The most records the batch could hold.
        max: u64,
    },
    /// Attribute bits 0-2 name no codec Kafka defines (5-7).
    UnknownCodec {
        /// The attribute bits.
        id: u8,
    },
    /// The compressed records region is truncated or corrupt.
    MalformedCompression {
        /// The batch's codec.
        codec: Codec,
    },
    /// The compressed records region decompresses to more than the limit.
    DecompressedTooLarge {
        /// The batch's codec.
        codec: Codec,
        /// The limit in bytes.
        limit: usize,
    },
    /// The records region does not parse, or its records do not match the header's
    /// record count and offset deltas.
    MalformedRecords,
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::NoBatches => write!(f, "the payload holds no record batch"),
            InvalidReason::NoRecords { record_count } => {
                write!(f, "the record count {record_count} is not positive")
            }
            InvalidReason::LastOffsetDeltaMismatch {
                last_offset_delta,
                record_count,
            } => write!(
                f,
                "the last offset delta {last_offset_delta} does not match the record count {record_count}"
            ),
            InvalidReason::MissingSequence { producer_id } => write!(
                f,
                "producer {producer_id} sent an idempotent batch without a sequence number"
            ),
            InvalidReason::OffsetOverflow => {
                write!(f, "assigning offsets would overflow the offset space")
            }
            InvalidReason::RecordCountTooLarge { record_count, max } => write!(
                f,
                "the record count {record_count} is more than the {max} records the batch could hold"
            ),
            InvalidReason::UnknownCodec { id } => {
                write!(f, "compression codec id {id} is not one Kafka defines")
            }
            InvalidReason::MalformedCompression { codec } => {
                write!(f, "the {codec} data of the records is malformed")
            }
            InvalidReason::DecompressedTooLarge { codec, limit } => write!(
                f,
                "the {codec} data of the records decompresses to more than {limit} bytes"
            ),
            InvalidReason::MalformedRecords => write!(
                f,
                "the records do not parse or do not match the header's count and offset deltas"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sentences() {
        let e = LogError::corrupt(CorruptReason::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert_eq!(
            e.to_string(),
            "The record batch is corrupt: the stored CRC 0x00000001 does not match the computed CRC 0x00000002."
        );
        let e = LogError::OffsetOutOfRange {
            offset: 9,
            log_start_offset: 0,
            log_end_offset: 5,
        };
        assert!(e.to_string().starts_with("Offset 9 is out of range"));
    }

    #[test]
    fn io_error_keeps_path_and_source() {
        let e = LogError::io("/x/y.log")(std::io::Error::other("disk on fire"));
        assert!(e.to_string().contains("/x/y.log"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
