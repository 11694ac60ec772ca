//! The v2 record-batch header: the part of every batch storage reads.
//!
//! Storage reads and patches the fixed 61-byte header; records are parsed (within
//! bounds, see `records`) only by the validation of some appends (`validate`), the
//! cleaner and a lookup by timestamp. All fields are big-endian.
//!
//! | byte | field                  | type | notes                                        |
//! |-----:|------------------------|------|----------------------------------------------|
//! |    0 | `baseOffset`           | i64  | patched by the log on append                 |
//! |    8 | `batchLength`          | i32  | bytes after this field: total = 12 + length  |
//! |   12 | `partitionLeaderEpoch` | i32  | patched by the log on append                 |
//! |   16 | `magic`                | i8   | must be 2                                    |
//! |   17 | `crc`                  | u32  | CRC-32C of bytes 21..end                     |
//! |   21 | `attributes`           | i16  | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control |
//! |   23 | `lastOffsetDelta`      | i32  | `recordCount - 1` for batches we accept      |
//! |   27 | `baseTimestamp`        | i64  |                                              |
//! |   35 | `maxTimestamp`         | i64  | set to the append time under `LogAppendTime` |
//! |   43 | `producerId`           | i64  | -1 when not idempotent                       |
//! |   51 | `producerEpoch`        | i16  |                                              |
//! |   53 | `baseSequence`         | i32  |                                              |
//! |   57 | `recordCount`          | i32  |                                              |
//! |   61 | records…               |      | see `records`                                |

use crate::error::{CorruptReason, LogError, Result};

/// Size of the v2 record-batch header in bytes.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the part of the batch counted by `batchLength` (base offset + length).
pub(crate) const LOG_OVERHEAD: usize = 12;
/// The only record-batch format storage accepts.
pub(crate) const MAGIC_V2: i8 = 2;

const LEADER_EPOCH_AT: usize = 12;
const CRC_AT: usize = 17;
/// The CRC covers the batch from the attributes field to its end.
const CRC_COVERS_FROM: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// A parsed v2 record-batch header.
///
/// Obtained from [`BatchHeader::parse`], which guarantees that `magic == 2` and that
/// `total_len() >= BATCH_HEADER_LEN`; it does not check the CRC or that the whole batch
/// is present (see [`BatchHeader::validate_crc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes in the batch after the length field.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// CRC-32C (Castagnoli) of bytes 21 to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time under `LogAppendTime`).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`.
    ///
    /// Fails with `CorruptRecord` if fewer than 61 bytes are given, the magic byte is not
    /// 2, or `batchLength` is too small to hold the header. `buf` may be longer than
    /// the header (typically the whole batch or payload).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(LogError::corrupt(CorruptReason::ShortHeader {
                available: buf.len(),
            }));
        }
        let batch_length = be_i32(buf, 8);
        // 49 = 61 - 12: the header fields after the length field.
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(LogError::corrupt(CorruptReason::LengthTooSmall {
                batch_length,
            }));
        }
        let magic = buf[16] as i8;
        if magic != MAGIC_V2 {
            return Err(LogError::corrupt(CorruptReason::UnsupportedMagic { magic }));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Total size of the batch in bytes, header included (`12 + batchLength`).
    pub fn total_len(&self) -> usize {
        // `parse` guarantees batch_length >= 49, so the cast cannot lose a sign.
        LOG_OVERHEAD + self.batch_length.unsigned_abs() as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Checks the stored CRC against `batch`, which must be the whole batch
    /// (`total_len()` bytes, header included).
    pub fn validate_crc(&self, batch: &[u8]) -> Result<()> {
        if batch.len() != self.total_len() {
            return Err(LogError::corrupt(CorruptReason::Truncated {
                needed: self.total_len() as u64,
                available: batch.len() as u64,
            }));
        }
        let computed = compute_crc(batch);
        if computed != self.crc {
            return Err(LogError::corrupt(CorruptReason::CrcMismatch {
                stored: self.crc,
                computed,
            }));
        }
        Ok(())
    }

    /// Compression codec id (attribute bits 0-2): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// Whether the timestamp-type bit says `LogAppendTime`.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the batch comes from an idempotent producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, wrapping from `i32::MAX` to 0 as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + delta`, wrapping past `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub(crate) fn increment_sequence(seq: i32, delta: i32) -> i32 {
    if delta >= 0 && seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq.wrapping_add(delta)
    }
}

/// CRC-32C of a whole batch as stored in its header (bytes 21 to the end).
///
/// `batch` must be at least `BATCH_HEADER_LEN` bytes.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_COVERS_FROM..).unwrap_or_default())
}

/// Writes the base offset into a batch. Not covered by the CRC.
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch. Not covered by the CRC.
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a batch with the broker's append time, as Kafka does for
/// `message.timestamp.type=LogAppendTime`: sets `maxTimestamp`, the timestamp-type
/// attribute bit, and recomputes the CRC. `baseTimestamp` (and so each record's
/// create time) is kept, as in Kafka's `setMaxTimestamp`.
pub(crate) fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let attributes = be_i16(batch, 21) | TIMESTAMP_TYPE_BIT;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch, BatchSpec};

    #[test]
    fn parses_every_field() {
        let spec = BatchSpec {
            base_offset: 77,
            leader_epoch: 3,
            attributes: 0x0002,
            base_timestamp: 1_000,
            max_timestamp: 1_005,
            producer_id: 42,
            producer_epoch: 7,
            base_sequence: 9,
            record_count: 4,
            payload_len: 10,
        };
        let b = batch(&spec);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 77);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.batch_length as usize, b.len() - 12);
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(h.magic, 2);
        assert_eq!(h.attributes, 2);
        assert_eq!(h.compression(), 2);
        assert_eq!(h.last_offset_delta, 3);
        assert_eq!(h.last_offset(), 80);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_005);
        assert_eq!(h.producer_id, 42);
        assert_eq!(h.producer_epoch, 7);
        assert_eq!(h.base_sequence, 9);
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.record_count, 4);
        assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
        h.validate_crc(&b).unwrap();
    }

    #[test]
    fn header_length_boundaries() {
        let b = batch(&BatchSpec::default());
        for len in [0, 12, BATCH_HEADER_LEN - 1] {
            assert!(matches!(
                BatchHeader::parse(&b[..len]),
                Err(LogError::CorruptRecord {
                    reason: CorruptReason::ShortHeader { .. }
                })
            ));
        }
        // A header-only batch (batchLength 49) is the smallest legal one.
        let mut min = b[..BATCH_HEADER_LEN].to_vec();
        min[8..12].copy_from_slice(&49i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&min).unwrap().total_len(), 61);
        for bad in [48, 0, -1, i32::MIN] {
            min[8..12].copy_from_slice(&bad.to_be_bytes());
            assert!(matches!(
                BatchHeader::parse(&min),
                Err(LogError::CorruptRecord {
                    reason: CorruptReason::LengthTooSmall { .. }
                })
            ));
        }
        min[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&min).unwrap().total_len(),
            12 + i32::MAX as usize
        );
    }

    #[test]
    fn rejects_other_magic() {
        let mut b = batch(&BatchSpec::default());
        b[16] = 1;
        assert!(matches!(
            BatchHeader::parse(&b),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::UnsupportedMagic { magic: 1 }
            })
        ));
    }

    #[test]
    fn crc_detects_flips_but_ignores_offset_and_epoch() {
        let mut b = batch(&BatchSpec::default());
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 99);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 99));
        h.validate_crc(&b).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(
            h.validate_crc(&b),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::CrcMismatch { .. }
            })
        ));
        assert!(matches!(
            h.validate_crc(&b[..last]),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::Truncated { .. }
            })
        ));
    }

    #[test]
    fn crc_is_castagnoli_over_attributes_to_end() {
        let b = batch(&BatchSpec::default());
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.crc, crc32c::crc32c(&b[21..]));
        // CRC-32C of "123456789" is the standard check value 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = batch(&BatchSpec {
            base_timestamp: 5,
            max_timestamp: 6,
            ..BatchSpec::default()
        });
        set_log_append_time(&mut b, 1_700_000_000_000);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 1_700_000_000_000);
        assert_eq!(h.base_timestamp, 5);
        h.validate_crc(&b).unwrap();
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}
