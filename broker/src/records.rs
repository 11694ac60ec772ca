//! Reading the records inside a stored batch, for the few requests that need more than
//! batch headers (ListOffsets by timestamp). Decompression is CPU work: call from a
//! blocking thread.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

/// The offset and timestamp of the first record in `batch` whose timestamp is at or after
/// `timestamp`, or `None` when there is none or the batch cannot be decoded.
pub fn first_at_or_after(mut batch: Bytes, timestamp: i64) -> Option<(i64, i64)> {
    let sets = RecordBatchDecoder::decode_all(&mut batch).ok()?;
    sets.iter()
        .flat_map(|set| set.records.iter())
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp))
}

/// A small uncompressed batch of `count` records (magic 2, valid CRC-32C), for tests.
#[cfg(test)]
pub(crate) fn test_batch(count: i32) -> Bytes {
    let records: Vec<(i64, i64)> = (0..i64::from(count))
        .map(|offset| (offset, 1_700_000_000_000))
        .collect();
    test_batch_of(&records, kafka_protocol::records::Compression::None)
}

/// One batch of plain records at the given `(offset, timestamp)`s, for tests.
#[cfg(test)]
pub(crate) fn test_batch_of(
    records: &[(i64, i64)],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let first = records.first().map_or(0, |r| r.0);
    let records: Vec<Record> = records
        .iter()
        .map(|&(offset, timestamp)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // One batch: the encoder splits where offset - sequence changes.
            sequence: i32::try_from(offset - first).unwrap_or(0) - 1,
            timestamp,
            key: None,
            value: Some(Bytes::from_static(b"value")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encoding a test batch cannot fail");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

    #[test]
    fn finds_the_first_record_at_or_after_a_timestamp() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = test_batch_of(&[(10, 100), (11, 200), (12, 300)], compression);
            assert_eq!(first_at_or_after(batch.clone(), 150), Some((11, 200)));
            assert_eq!(first_at_or_after(batch.clone(), 100), Some((10, 100)));
            assert_eq!(first_at_or_after(batch, 301), None);
        }
    }
}
