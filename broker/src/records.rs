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
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: i - 1,
            timestamp: 1_700_000_000_000,
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
            compression: Compression::None,
        },
    )
    .expect("encoding a plain batch cannot fail");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32 - 11, // one batch: offset - sequence constant
            timestamp,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        }
    }

    #[test]
    fn finds_the_first_record_at_or_after_a_timestamp() -> anyhow::Result<()> {
        let records = vec![record(10, 100), record(11, 200), record(12, 300)];
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )?;
            let batch = buf.freeze();
            assert_eq!(first_at_or_after(batch.clone(), 150), Some((11, 200)));
            assert_eq!(first_at_or_after(batch.clone(), 100), Some((10, 100)));
            assert_eq!(first_at_or_after(batch, 301), None);
        }
        Ok(())
    }
}
