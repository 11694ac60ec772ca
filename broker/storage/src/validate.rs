//! Record-level checks of an incoming batch and re-compression for the topic's
//! `compression.type` (Kafka's `LogValidator`): run by append after the header checks
//! of `append::split_batches` and before anything is written.
//!
//! | batch and topic                               | what happens to the records                         |
//! |-----------------------------------------------|-----------------------------------------------------|
//! | codec = the topic's (or `producer`), not compacted | nothing: stored as received (the zero-copy path) |
//! | codec ≠ the topic's `compression.type`        | decompressed, parsed, re-compressed with the topic's codec |
//! | any, compacted topic                          | parsed; a record without a key refuses the payload   |
//! | control batch                                 | nothing                                             |
//!
//! "Parsed" means every record is read with its lengths checked, the record count
//! must match the header's and the offset deltas must increase up to
//! `lastOffsetDelta` (`records::parse_region`); a compressed region may decompress to
//! at most [`MAX_DECOMPRESSED_RECORDS_BYTES`].
//!
//! Unlike Kafka's `LogValidator`, a compressed batch kept as received is not
//! decompressed to be validated: that costs every compressed producer (measured: lz4
//! produce throughput 40% lower on two cores), and what append stores is read back
//! only through bounded parsers (`records`), never the codec's. Its header is checked
//! like any other (`append::split_batches`: the record count must fit the
//! decompression limit at 7 bytes a record). A re-compressed batch keeps its header fields (base
//! offset, timestamps, producer id, epoch and sequence, flags, record count) and its
//! record bytes; only the codec bits, the length and the CRC change. Its new size is
//! checked against `max.message.bytes` and `segment.bytes` like a received batch.
//!
//! Decompression and compression are CPU work: [`crate::Log::append_decodes_records`]
//! tells the caller when to keep an append off an async runtime's threads.

use std::ops::Range;

use crate::batch::BatchHeader;
use crate::compression::Codec;
use crate::config::LogConfig;
use crate::error::{
    CorruptReason, InvalidReason, LogError, RecordError, RecordErrorReason, Result,
};
use crate::records::{self, RecordsError, MAX_DECOMPRESSED_RECORDS_BYTES};

/// Where the bytes of a checked batch are.
pub(crate) enum BatchBytes {
    /// In the payload as received, at this range.
    Payload(Range<usize>),
    /// A new batch (re-compressed for the topic).
    Rewritten(Vec<u8>),
}

/// Checks the records of every batch of `payload` (split by `split_batches`), in
/// order, and re-compresses those whose codec is not the topic's. Fails on the first
/// batch that breaks a rule; nothing is written by this.
pub(crate) fn check_batches(
    payload: &[u8],
    batches: Vec<(Range<usize>, BatchHeader)>,
    config: &LogConfig,
) -> Result<Vec<(BatchBytes, BatchHeader)>> {
    batches
        .into_iter()
        .map(|(range, header)| {
            // split_batches checked the range; a miss is reported, never a panic.
            let batch =
                payload
                    .get(range.clone())
                    .ok_or(LogError::corrupt(CorruptReason::Truncated {
                        needed: range.end as u64,
                        available: payload.len() as u64,
                    }))?;
            match check_batch(batch, &header, config)? {
                None => Ok((BatchBytes::Payload(range), header)),
                Some(rewritten) => {
                    let size = rewritten.len() as u64;
                    let max = config
                        .max_message_bytes
                        .min(config.effective_segment_bytes());
                    if size > max {
                        return Err(LogError::RecordTooLarge { size, max });
                    }
                    let header = BatchHeader::parse(&rewritten)?;
                    Ok((BatchBytes::Rewritten(rewritten), header))
                }
            }
        })
        .collect()
}

/// Checks one batch's records; returns the batch re-compressed with the topic's codec
/// when that differs from the batch's.
fn check_batch(batch: &[u8], header: &BatchHeader, config: &LogConfig) -> Result<Option<Vec<u8>>> {
    if header.is_control() {
        return Ok(None);
    }
    let source = match Codec::from_id(header.compression()) {
        None => None,
        Some(codec) => Some(codec.map_err(|e| rejected(RecordsError::Codec(e)))?),
    };
    let compacted = config.cleanup_policy.compacts();
    let target = config.compression_type.target(source);
    if target == source && !compacted {
        return Ok(None);
    }
    let mut scratch = Vec::new();
    let region = records::region(batch, header, MAX_DECOMPRESSED_RECORDS_BYTES, &mut scratch)
        .map_err(rejected)?;
    let parsed = records::parse_region(region, header)
        .ok_or(LogError::invalid(InvalidReason::MalformedRecords))?;
    if compacted {
        let errors: Vec<RecordError> = parsed
            .iter()
            .enumerate()
            .filter(|(_, r)| r.key.is_none())
            .map(|(i, _)| RecordError {
                // At most recordCount records, an i32.
                batch_index: i32::try_from(i).unwrap_or(i32::MAX),
                reason: RecordErrorReason::MissingKey,
            })
            .collect();
        if !errors.is_empty() {
            return Err(LogError::RejectedRecords { errors });
        }
    }
    if target == source {
        return Ok(None);
    }
    records::recompress_batch(batch, region, target)
        .map(Some)
        .map_err(rejected)
}

/// The error for a batch whose records could not be read or rewritten.
fn rejected(e: RecordsError) -> LogError {
    match e.reason() {
        Ok(reason) => LogError::invalid(reason),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CleanupPolicy, CompressionType};
    use crate::testutil::{compressed, keyed_batch};

    fn config(compression_type: CompressionType, cleanup_policy: CleanupPolicy) -> LogConfig {
        LogConfig {
            compression_type,
            cleanup_policy,
            ..LogConfig::default()
        }
    }

    fn check(batch: &[u8], config: &LogConfig) -> Result<Option<Vec<u8>>> {
        check_batch(batch, &BatchHeader::parse(batch).unwrap(), config)
    }

    const RECORDS: &[(Option<&str>, Option<&str>)] = &[
        (Some("a"), Some("1")),
        (Some("b"), None),
        (Some("c"), Some("3")),
    ];

    #[test]
    fn every_codec_pair_is_recompressed_keeping_header_and_records() {
        let plain = keyed_batch(RECORDS, 1_000);
        let codecs = [
            None,
            Some(Codec::Gzip),
            Some(Codec::Snappy),
            Some(Codec::Lz4),
            Some(Codec::Zstd),
        ];
        let topic = |c: Option<Codec>| match c {
            None => CompressionType::Uncompressed,
            Some(Codec::Gzip) => CompressionType::Gzip,
            Some(Codec::Snappy) => CompressionType::Snappy,
            Some(Codec::Lz4) => CompressionType::Lz4,
            Some(Codec::Zstd) => CompressionType::Zstd,
        };
        for from in codecs {
            let batch = from.map_or_else(|| plain.clone(), |c| compressed(&plain, c));
            let source_header = BatchHeader::parse(&batch).unwrap();
            // `producer` keeps every batch as it is.
            let keep = config(CompressionType::Producer, CleanupPolicy::Delete);
            assert!(check(&batch, &keep).unwrap().is_none(), "{from:?}");
            for to in codecs {
                let c = config(topic(to), CleanupPolicy::Delete);
                let out = check(&batch, &c).unwrap();
                if from == to {
                    assert!(out.is_none(), "{from:?} -> {to:?} is kept as it is");
                    continue;
                }
                let out = out.unwrap();
                let h = BatchHeader::parse(&out).unwrap();
                h.validate_crc(&out).unwrap();
                assert_eq!(h.compression(), to.map_or(0, Codec::id));
                // Every other header field is the producer's.
                assert_eq!(
                    BatchHeader {
                        attributes: source_header.attributes,
                        batch_length: source_header.batch_length,
                        crc: source_header.crc,
                        ..h
                    },
                    source_header
                );
                let mut scratch = Vec::new();
                let region =
                    records::region(&out, &h, MAX_DECOMPRESSED_RECORDS_BYTES, &mut scratch)
                        .unwrap();
                assert_eq!(
                    region,
                    &plain[crate::BATCH_HEADER_LEN..],
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn keyless_records_in_a_compacted_topic_are_listed_by_batch_index() {
        let compact = config(CompressionType::Producer, CleanupPolicy::Compact);
        let batch = keyed_batch(
            &[
                (Some("a"), Some("1")),
                (None, Some("2")),
                (Some("c"), None),
                (None, None),
            ],
            0,
        );
        let expect = |r: Result<Option<Vec<u8>>>| match r {
            Err(LogError::RejectedRecords { errors }) => {
                let at: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
                assert_eq!(at, [1, 3]);
                assert!(errors
                    .iter()
                    .all(|e| e.reason == RecordErrorReason::MissingKey));
            }
            other => panic!("expected rejected records, got {other:?}"),
        };
        expect(check(&batch, &compact));
        expect(check(&compressed(&batch, Codec::Lz4), &compact));
        let both = config(CompressionType::Zstd, CleanupPolicy::CompactDelete);
        expect(check(&batch, &both));
        // Keys everywhere: accepted; a delete-only topic does not look.
        assert!(check(&keyed_batch(RECORDS, 0), &compact).unwrap().is_none());
        let delete = config(CompressionType::Producer, CleanupPolicy::Delete);
        assert!(check(&batch, &delete).unwrap().is_none());
    }

    #[test]
    fn compressed_batches_are_validated_when_read_and_kept_whole_otherwise() {
        // Kept as received on a `producer` topic: not decompressed, so not validated.
        let keep = config(CompressionType::Producer, CleanupPolicy::Delete);
        let mut opaque = compressed(&keyed_batch(RECORDS, 0), Codec::Gzip);
        let at = opaque.len() - 4;
        opaque[at..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert!(check(&opaque, &keep).unwrap().is_none());
        // Read (a compacted topic's keys, or a re-compression): validated.
        let keep = config(CompressionType::Producer, CleanupPolicy::Compact);
        let plain = keyed_batch(RECORDS, 0);
        let mut lying = compressed(&plain, Codec::Gzip);
        // One record more than the region holds.
        lying[57..61].copy_from_slice(&4i32.to_be_bytes());
        lying[23..27].copy_from_slice(&3i32.to_be_bytes());
        let crc = crate::batch::compute_crc(&lying);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            check(&lying, &keep),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::MalformedRecords
            })
        ));
        let mut garbage = compressed(&plain, Codec::Zstd);
        let at = garbage.len() - 4;
        garbage[at..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let crc = crate::batch::compute_crc(&garbage);
        garbage[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            check(&garbage, &keep),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::MalformedCompression { codec: Codec::Zstd }
                    | InvalidReason::MalformedRecords
            })
        ));
    }
}
