//! Committed offsets in the internal compacted topic `__consumer_offsets`, in Kafka's own
//! record format so the topic reads the same as Kafka's:
//!
//! | record | field       | type              | notes                                  |
//! |--------|-------------|-------------------|----------------------------------------|
//! | key    | version     | i16               | 1 (OffsetCommitKey)                    |
//! |        | group       | string (i16 len)  |                                        |
//! |        | topic       | string (i16 len)  |                                        |
//! |        | partition   | i32               |                                        |
//! | value  | version     | i16               | 3 (OffsetCommitValue)                  |
//! |        | offset      | i64               |                                        |
//! |        | leaderEpoch | i32               | -1 when unknown                        |
//! |        | metadata    | string (i16 len)  |                                        |
//! |        | timestamp   | i64               | commit time, ms since the epoch        |
//!
//! A null value (tombstone) deletes the offset. A group's records go to partition
//! `abs(javaHashCode(group)) % partitions`, as in Kafka.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Name of the internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the committed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp: i64,
}

/// A decoded `__consumer_offsets` record: a commit, or a tombstone (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetRecord {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The offset, or `None` when deleted.
    pub value: Option<CommittedOffset>,
}

/// The longest group id, topic name or metadata string an offset record can hold: its
/// i16 length prefix. A longer group id is refused with INVALID_GROUP_ID, never cut.
pub const MAX_STRING_BYTES: usize = i16::MAX as usize;

/// Whether `group` may be used as a group id: not empty, and short enough for the key
/// of its offset records.
pub fn valid_group_id(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_STRING_BYTES
}

/// Why offset records could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum OffsetRecordError {
    /// A string is longer than its i16 length prefix can say.
    #[error("the {field} is {len} bytes; an offset record holds at most {MAX_STRING_BYTES}")]
    TooLong {
        /// Which string (`group id`, `topic`, `metadata`).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The record batch encoder failed.
    #[error("cannot encode the offset record batch: {0}")]
    Codec(Box<dyn std::error::Error + Send + Sync>),
}

/// The `__consumer_offsets` partition of a group.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    // Kafka's Utils.abs: i32::MIN maps to 0 rather than overflowing.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

fn put_str(buf: &mut BytesMut, s: &str, field: &'static str) -> Result<(), OffsetRecordError> {
    let len = i16::try_from(s.len()).map_err(|_| OffsetRecordError::TooLong {
        field,
        len: s.len(),
    })?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

/// Encodes records as one uncompressed batch ready for `Log::append`.
pub fn encode_batch(records: &[OffsetRecord], now_ms: i64) -> Result<Bytes, OffsetRecordError> {
    let encoded = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut key = BytesMut::new();
            key.put_i16(1);
            put_str(&mut key, &r.group, "group id")?;
            put_str(&mut key, &r.topic, "topic")?;
            key.put_i32(r.partition);
            let value = match &r.value {
                None => None,
                Some(v) => {
                    let mut value = BytesMut::new();
                    value.put_i16(3);
                    value.put_i64(v.offset);
                    value.put_i32(v.leader_epoch);
                    put_str(&mut value, &v.metadata, "metadata")?;
                    value.put_i64(v.commit_timestamp);
                    Some(value.freeze())
                }
            };
            Ok(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch whenever offset - sequence changes; keeping
                // it constant puts every record in one batch whose base sequence is -1.
                sequence: i as i32 - 1,
                timestamp: now_ms,
                key: Some(key.freeze()),
                value,
                headers: Default::default(),
            })
        })
        .collect::<Result<Vec<Record>, OffsetRecordError>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &encoded,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| OffsetRecordError::Codec(e.into()))?;
    Ok(buf.freeze())
}

/// Decodes the offset records of one stored batch (header included); records of other
/// kinds (group metadata, unknown versions) are skipped. Bounded by storage's record
/// parser: a batch whose header lies is an error, never a large allocation.
pub fn decode_batch(batch: &[u8]) -> Result<Vec<OffsetRecord>, runnel_storage::LogError> {
    Ok(runnel_storage::records_of(batch)?
        .into_iter()
        .filter_map(|r| decode_record(r.key.map(Bytes::from), r.value.map(Bytes::from)))
        .collect())
}

fn decode_record(key: Option<Bytes>, value: Option<Bytes>) -> Option<OffsetRecord> {
    let mut key = key?;
    if key.remaining() < 2 || !matches!(key.get_i16(), 0 | 1) {
        return None;
    }
    let group = get_str(&mut key)?;
    let topic = get_str(&mut key)?;
    if key.remaining() < 4 {
        return None;
    }
    let partition = key.get_i32();
    let value = match value {
        None => None,
        Some(mut v) => {
            if v.remaining() < 10 {
                return None;
            }
            let version = v.get_i16();
            let offset = v.get_i64();
            let leader_epoch = if version >= 3 && v.remaining() >= 4 {
                v.get_i32()
            } else {
                -1
            };
            let metadata = get_str(&mut v)?;
            let commit_timestamp = if v.remaining() >= 8 { v.get_i64() } else { 0 };
            Some(CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp,
            })
        }
    };
    Some(OffsetRecord {
        group,
        topic,
        partition,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_fit_the_offsets_key_or_are_refused() {
        let at = |len: usize| "g".repeat(len);
        assert!(!valid_group_id(""));
        assert!(valid_group_id(&at(MAX_STRING_BYTES - 1)));
        assert!(valid_group_id(&at(MAX_STRING_BYTES)));
        assert!(!valid_group_id(&at(MAX_STRING_BYTES + 1)));
        let record = |group: String| OffsetRecord {
            group,
            topic: "t".into(),
            partition: 0,
            value: None,
        };
        let fits = encode_batch(&[record(at(MAX_STRING_BYTES))], 1).expect("fits");
        let back = decode_batch(&fits).expect("decodes");
        assert_eq!(back[0].group.len(), MAX_STRING_BYTES);
        // One byte more is an error, not a key cut short (possibly inside a character).
        assert!(matches!(
            encode_batch(&[record(at(MAX_STRING_BYTES + 1))], 1),
            Err(OffsetRecordError::TooLong { field: "group id", len }) if len == MAX_STRING_BYTES + 1
        ));
    }

    #[test]
    fn partitioning_matches_kafka() {
        // Java: Math.abs("my-group".hashCode()) % 50.
        let java_hash: i32 = "my-group"
            .chars()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(partition_for("my-group", 50), java_hash.abs() % 50);
        assert_eq!(partition_for("", 50), 0);
        for g in ["a", "group-1", "ünïcode", "x".repeat(300).as_str()] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
    }

    #[test]
    fn records_round_trip_with_tombstones() -> anyhow::Result<()> {
        let records = vec![
            OffsetRecord {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "meta".into(),
                    commit_timestamp: 1234,
                }),
            },
            OffsetRecord {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
        ];
        let batch = encode_batch(&records, 1234)?;
        assert_eq!(decode_batch(&batch)?, records);
        Ok(())
    }
}
