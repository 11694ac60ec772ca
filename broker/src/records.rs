//! Record batches built with `kafka-protocol`'s encoder, for tests. The broker itself
//! reads records inside a stored batch only through `runnel-storage`'s bounded parser
//! ([`runnel_storage::first_record_at_or_after`], for ListOffsets by timestamp): the
//! `kafka-protocol` decoder reserves memory from the header's record count and
//! decompresses without a limit, so a stored batch whose header lies could make it
//! allocate hundreds of gigabytes.

#[cfg(test)]
use bytes::Bytes;

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
    use runnel_storage::{first_record_at_or_after, TimestampAndOffset};

    /// Storage's parser reads what the Java-compatible encoder writes, every codec.
    #[test]
    fn storage_finds_records_in_batches_kafka_protocol_encodes() {
        let at = |timestamp, offset| Some(TimestampAndOffset { timestamp, offset });
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = test_batch_of(&[(10, 100), (11, 300), (12, 200)], compression);
            let find = |t| first_record_at_or_after(&batch, t).unwrap();
            assert_eq!(find(150), at(300, 11), "{compression:?}");
            assert_eq!(find(100), at(100, 10), "{compression:?}");
            assert_eq!(find(301), None, "{compression:?}");
        }
    }
}
