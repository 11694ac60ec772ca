//! The append path of [`Log`]: validate, check idempotence, assign offsets, write.

use std::collections::HashMap;
use std::ops::Range;

use crate::batch::{self, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::compression::Codec;
use crate::config::{LogConfig, TimestampType};
use crate::error::{CorruptReason, InvalidReason, LogError, Result};
use crate::log::{AppendInfo, Log};
use crate::producer_state::{ProducerEntry, ProducerStateManager, Verdict};
use crate::records::{MAX_DECOMPRESSED_RECORDS_BYTES, MIN_RECORD_LEN};
use crate::segment::LogSegment;
use crate::validate::{self, BatchBytes};

/// What to do with a payload once every batch is checked.
enum Plan {
    /// Write these batches in order.
    Write(Vec<PlannedBatch>),
    /// The payload retries batches already in the log: answer with this, write nothing.
    Duplicate(AppendInfo),
}

/// One batch of a payload, checked and given its offsets, not yet written.
struct PlannedBatch {
    bytes: BatchBytes,
    header: BatchHeader,
    base_offset: i64,
    /// The producer's entry once this batch is written.
    producer: Option<(i64, ProducerEntry)>,
}

/// Who wrote the batches being appended: the checks differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A producer, through [`Log::append`].
    Client,
    /// The partition leader, through [`Log::append_as_follower`]: the leader already
    /// applied `max.message.bytes` (Kafka's `ignoreRecordSize`: a topic config lowered
    /// since must not stop replication), and its cleaner may have removed records from
    /// a batch while keeping `lastOffsetDelta`, as the recovery scan allows.
    Replication,
}

/// Splits a produce payload into batches, validating each one's framing and header:
/// length bounds (≥ 61, ≤ `max.message.bytes` (not for [`Origin::Replication`]) and
/// `segment.bytes`, inside the buffer), magic 2, CRC-32C, a codec Kafka defines,
/// `recordCount ≥ 1`, `lastOffsetDelta == recordCount - 1` (`≥` for
/// [`Origin::Replication`]), and a record count the batch can hold: at
/// most one record per `MIN_RECORD_LEN` (7) bytes of the records region, or of
/// [`MAX_DECOMPRESSED_RECORDS_BYTES`] for a compressed batch. Nothing is allocated
/// from a length or a count before it is checked.
pub(crate) fn split_batches(
    records: &[u8],
    config: &LogConfig,
    origin: Origin,
) -> Result<Vec<(Range<usize>, BatchHeader)>> {
    if records.is_empty() {
        return Err(LogError::invalid(InvalidReason::NoBatches));
    }
    let mut batches = Vec::new();
    let mut start = 0usize;
    while start < records.len() {
        let rest = &records[start..];
        if rest.len() < LOG_OVERHEAD {
            return Err(LogError::corrupt(CorruptReason::ShortHeader {
                available: rest.len(),
            }));
        }
        let batch_length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = match u64::try_from(batch_length) {
            Ok(len) if len + LOG_OVERHEAD as u64 >= BATCH_HEADER_LEN as u64 => {
                len + LOG_OVERHEAD as u64
            }
            _ => {
                return Err(LogError::corrupt(CorruptReason::LengthTooSmall {
                    batch_length,
                }))
            }
        };
        if origin == Origin::Client && total > config.max_message_bytes {
            return Err(LogError::RecordTooLarge {
                size: total,
                max: config.max_message_bytes,
            });
        }
        let segment = config.effective_segment_bytes();
        if total > segment {
            return Err(LogError::BatchLargerThanSegment {
                size: total,
                segment,
            });
        }
        if total > rest.len() as u64 {
            return Err(LogError::corrupt(CorruptReason::Truncated {
                needed: total,
                available: rest.len() as u64,
            }));
        }
        // total <= rest.len(), so it fits usize.
        let total = total as usize;
        let bytes = &rest[..total];
        let header = BatchHeader::parse(bytes)?;
        header.validate_crc(bytes)?;
        if header.record_count < 1 {
            return Err(LogError::invalid(InvalidReason::NoRecords {
                record_count: header.record_count,
            }));
        }
        let (delta, expected) = (
            i64::from(header.last_offset_delta),
            i64::from(header.record_count) - 1,
        );
        let consistent = match origin {
            Origin::Client => delta == expected,
            Origin::Replication => delta >= expected,
        };
        if !consistent {
            return Err(LogError::invalid(InvalidReason::LastOffsetDeltaMismatch {
                last_offset_delta: header.last_offset_delta,
                record_count: header.record_count,
            }));
        }
        check_record_count(&header)?;
        batches.push((start..start + total, header));
        start += total;
    }
    Ok(batches)
}

/// The most records `header`'s batch can hold, and an error if it claims more (see
/// [`split_batches`]). Also refuses a codec id Kafka does not define.
fn check_record_count(header: &BatchHeader) -> Result<()> {
    let room = match Codec::from_id(header.compression()) {
        None => header.total_len().saturating_sub(BATCH_HEADER_LEN),
        Some(Ok(_)) => MAX_DECOMPRESSED_RECORDS_BYTES,
        Some(Err(_)) => {
            return Err(LogError::invalid(InvalidReason::UnknownCodec {
                id: header.compression(),
            }))
        }
    };
    let max = (room / MIN_RECORD_LEN) as u64;
    // record_count >= 1 was checked, so the conversion cannot fail.
    let claimed = u64::try_from(header.record_count).unwrap_or(u64::MAX);
    if claimed > max {
        return Err(LogError::invalid(InvalidReason::RecordCountTooLarge {
            record_count: header.record_count,
            max,
        }));
    }
    Ok(())
}

impl Log {
    /// Whether appending `records` decompresses or parses records: the topic is
    /// compacted (keys are checked), or a batch's codec is not the one its topic's
    /// `compression.type` stores (it is re-compressed). That is CPU work in proportion
    /// to the decompressed size, which an async caller should do off its runtime's
    /// threads; otherwise append only reads headers and copies bytes. A payload too
    /// malformed to walk gives `false` (append refuses it from its headers).
    pub fn append_decodes_records(&self, records: &[u8]) -> bool {
        if self.config.cleanup_policy.compacts() {
            return true;
        }
        let mut start = 0usize;
        while let Some(rest) = records.get(start..).filter(|r| r.len() >= BATCH_HEADER_LEN) {
            // The codec: the low three bits of the attributes' second byte.
            let source = match Codec::from_id(rest[22] & 0x07) {
                None => None,
                Some(Ok(codec)) => Some(codec),
                // An unknown codec: append refuses it from its header.
                Some(Err(_)) => return false,
            };
            if self.config.compression_type.target(source) != source {
                return true;
            }
            let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            let Some(next) = usize::try_from(length)
                .ok()
                .and_then(|len| len.checked_add(LOG_OVERHEAD))
                .and_then(|total| start.checked_add(total))
            else {
                return false;
            };
            start = next;
        }
        false
    }

    /// Appends the record batches of one produce payload (the raw `records` of one
    /// partition).
    ///
    /// Every batch is validated before any is written (see [`crate::BatchHeader`] and
    /// `split_batches` for the header checks; failures are `CorruptRecord`,
    /// `InvalidRecord` or `RecordTooLarge`), then its records where the batch or the
    /// topic calls for it (see the `validate` module: compressed batches are
    /// decompressed, within a bound, and parsed; a compacted topic refuses records
    /// without a key with `RejectedRecords`; a batch whose codec is not the topic's
    /// `compression.type` is re-compressed, keeping its offsets, timestamps and
    /// producer fields).
    /// Offsets are assigned from the log end offset by patching each batch's base
    /// offset; the partition leader epoch is set to `leader_epoch` unless that is
    /// negative (then the producer's value is kept). Under `LogAppendTime` the max
    /// timestamp becomes `now_ms`, the timestamp-type bit is set and the CRC recomputed;
    /// otherwise the bytes are stored as received, or as re-compressed. A stored
    /// epoch newer than [`Log::latest_epoch`] starts a leader-epoch cache entry,
    /// persisted before the batch is written (see `leader_epoch`).
    ///
    /// Idempotent batches (producer id ≥ 0, not control batches) are checked in order
    /// as Kafka's `ProducerStateManager` does: a retry of one of the producer's last five
    /// batches makes the whole call a duplicate (`duplicate: true`, the original
    /// offsets, nothing written); an older epoch is `InvalidProducerEpoch`; a newer
    /// epoch must start at sequence 0 and otherwise sequences must follow on, else
    /// `OutOfOrderSequence`. A producer the log has never seen may start at any
    /// sequence (Kafka's behaviour since 2.x).
    ///
    /// A batch goes to a new segment when it would push the active one past
    /// `segment_bytes`, when an index is full, when relative offsets would overflow, or
    /// when the batch's max timestamp is more than `segment_ms` after the first batch's
    /// (Kafka's measure; `now_ms` minus the segment's creation time if the first batch
    /// has no timestamp). Does not fsync: see [`Log::flush`]. On an I/O error a prefix
    /// of the payload may have been appended; the log stays consistent.
    pub fn append(&mut self, records: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        self.guarded(|log| log.append_now(records, leader_epoch, now_ms))
    }

    fn append_now(&mut self, records: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let batches = split_batches(records, &self.config, Origin::Client)?;
        let batches = validate::check_batches(records, batches, &self.config)?;
        let plan = match self.plan(batches)? {
            Plan::Write(plan) => plan,
            Plan::Duplicate(info) => return Ok(info),
        };
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        let mut buf = records.to_vec();
        let first_offset = plan
            .first()
            .map_or(self.log_end_offset(), |p| p.base_offset);
        for mut planned in plan {
            let bytes: &mut [u8] = match &mut planned.bytes {
                BatchBytes::Payload(range) => &mut buf[range.clone()],
                BatchBytes::Rewritten(rewritten) => rewritten,
            };
            batch::set_base_offset(bytes, planned.base_offset);
            let mut header = BatchHeader {
                base_offset: planned.base_offset,
                ..planned.header
            };
            if leader_epoch >= 0 {
                batch::set_partition_leader_epoch(bytes, leader_epoch);
                header.partition_leader_epoch = leader_epoch;
            }
            if log_append_time {
                batch::set_log_append_time(bytes, now_ms);
                header = BatchHeader::parse(bytes)?;
            }
            self.maybe_assign_epoch(header.partition_leader_epoch, header.base_offset)?;
            self.maybe_roll(&header, now_ms)?;
            let interval = self.config.index_interval_bytes;
            self.segments
                .active_mut()
                .append(bytes, &header, interval)?;
            if let Some((producer_id, entry)) = planned.producer {
                self.producers.commit(producer_id, entry);
            }
        }
        Ok(AppendInfo {
            base_offset: first_offset,
            last_offset: self.log_end_offset() - 1,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// Assigns offsets and checks producer state for every batch, writing nothing.
    fn plan(&self, batches: Vec<(BatchBytes, BatchHeader)>) -> Result<Plan> {
        let mut next_offset = self.log_end_offset();
        let mut staged: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut plan = Vec::with_capacity(batches.len());
        for (bytes, header) in batches {
            let base_offset = next_offset;
            next_offset = base_offset
                .checked_add(i64::from(header.record_count))
                .ok_or(LogError::invalid(InvalidReason::OffsetOverflow))?;
            let producer = if header.has_producer_id() && !header.is_control() {
                let producer_id = header.producer_id;
                if header.base_sequence < 0 {
                    return Err(LogError::invalid(InvalidReason::MissingSequence {
                        producer_id,
                    }));
                }
                let current = staged
                    .get(&producer_id)
                    .or_else(|| self.producers.get(producer_id));
                match ProducerStateManager::check(current, &header, base_offset)? {
                    Verdict::Duplicate(original) => {
                        tracing::debug!(
                            producer_id,
                            base_sequence = header.base_sequence,
                            base_offset = original.base_offset,
                            "duplicate idempotent batch"
                        );
                        return Ok(Plan::Duplicate(AppendInfo {
                            base_offset: original.base_offset,
                            last_offset: original.last_offset,
                            log_append_time: -1,
                            log_start_offset: self.log_start_offset(),
                            duplicate: true,
                        }));
                    }
                    Verdict::Append(entry) => {
                        staged.insert(producer_id, entry.clone());
                        Some((producer_id, entry))
                    }
                }
            } else {
                None
            };
            plan.push(PlannedBatch {
                bytes,
                header,
                base_offset,
                producer,
            });
        }
        Ok(Plan::Write(plan))
    }

    /// Rolls to a new active segment if `header`'s batch must not go in the current one.
    pub(crate) fn maybe_roll(&mut self, header: &BatchHeader, now_ms: i64) -> Result<()> {
        let active = self.segments.active();
        if !active.should_roll(
            &self.config,
            header.total_len() as u64,
            header.max_timestamp,
            header.last_offset(),
            now_ms,
        ) {
            return Ok(());
        }
        let base_offset = self.log_end_offset();
        tracing::debug!(dir = %self.dir.display(), base_offset, previous_size = active.size(), "rolling log segment");
        let previous = self.segments.active_mut();
        previous.retire()?;
        let next = LogSegment::create(&self.dir, base_offset, &self.config, now_ms)?;
        self.segments.roll(next);
        self.dir_dirty = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CleanupPolicy, CompressionType};
    use crate::error::{RecordError, RecordErrorReason};
    use crate::testutil::{
        batch, batch_with_region, compressed, idempotent, keyed_batch, simple, zeros_record,
        BatchSpec,
    };
    use std::path::Path;

    fn open(dir: &Path, config: LogConfig) -> Log {
        Log::open(dir, config).unwrap()
    }

    fn small_segments(segment_bytes: u64) -> LogConfig {
        LogConfig {
            segment_bytes,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn assigns_offsets_and_patches_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        let b = batch(&BatchSpec {
            base_offset: 999,
            leader_epoch: 4,
            record_count: 3,
            ..BatchSpec::default()
        });
        let info = log.append(&b, 7, 0).unwrap();
        assert_eq!(
            (info.base_offset, info.last_offset, info.log_append_time),
            (0, 2, -1)
        );
        assert!(!info.duplicate);
        let info = log.append(&b, -1, 0).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (3, 5));
        assert_eq!(log.log_end_offset(), 6);
        let read = log.read(0, 1 << 20, false).unwrap();
        let first = BatchHeader::parse(&read.bytes).unwrap();
        assert_eq!((first.base_offset, first.partition_leader_epoch), (0, 7));
        let second = BatchHeader::parse(&read.bytes[b.len()..]).unwrap();
        // A negative leader epoch keeps the producer's value.
        assert_eq!((second.base_offset, second.partition_leader_epoch), (3, 4));
        // Everything but the base offset and leader epoch is stored as received.
        assert_eq!(read.bytes[16..b.len()], b[16..]);
        first.validate_crc(&read.bytes[..b.len()]).unwrap();
    }

    #[test]
    fn validates_every_batch_before_writing_any() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        let good = simple(1, 10, 0);
        let mut bad = simple(1, 10, 0);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let payload = [good.clone(), bad].concat();
        assert!(matches!(
            log.append(&payload, 0, 0),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::CrcMismatch { .. }
            })
        ));
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
        // Trailing bytes that are not a whole batch.
        let payload = [good.clone(), vec![0; 11]].concat();
        assert!(matches!(
            log.append(&payload, 0, 0),
            Err(LogError::CorruptRecord { .. })
        ));
        let payload = [good.clone(), good[..good.len() - 1].to_vec()].concat();
        assert!(matches!(
            log.append(&payload, 0, 0),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::Truncated { .. }
            })
        ));
        assert!(matches!(
            log.append(&[], 0, 0),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::NoBatches
            })
        ));
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(
            log.append(&[good.clone(), good].concat(), 0, 0)
                .unwrap()
                .last_offset,
            1
        );
    }

    #[test]
    fn rejects_inconsistent_counts_and_bad_magic() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        let zero = batch(&BatchSpec {
            record_count: 0,
            ..BatchSpec::default()
        });
        assert!(matches!(
            log.append(&zero, 0, 0),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::NoRecords { record_count: 0 }
            })
        ));
        let mut mismatch = simple(3, 10, 0);
        mismatch[23..27].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&mismatch[21..]);
        mismatch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            log.append(&mismatch, 0, 0),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::LastOffsetDeltaMismatch { .. }
            })
        ));
        let mut v1 = simple(1, 10, 0);
        v1[16] = 1;
        assert!(matches!(
            log.append(&v1, 0, 0),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::UnsupportedMagic { magic: 1 }
            })
        ));
        let no_seq = idempotent(5, 0, -1, 1);
        assert!(matches!(
            log.append(&no_seq, 0, 0),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::MissingSequence { producer_id: 5 }
            })
        ));
    }

    #[test]
    fn record_count_must_fit_the_records_region() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        // 70 bytes of records hold at most 10 records of 7 bytes.
        for (count, accepted) in [(9, true), (10, true), (11, false), (i32::MAX, false)] {
            let mut b = simple(1, 70, 0);
            b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = batch::compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let got = log.append(&b, 0, 0);
            if accepted {
                got.unwrap();
                continue;
            }
            assert!(
                matches!(
                    got,
                    Err(LogError::InvalidRecord {
                        reason: InvalidReason::RecordCountTooLarge { record_count, max: 10 }
                    }) if record_count == count
                ),
                "{count}"
            );
        }
        assert_eq!(log.log_end_offset(), 19);
    }

    #[test]
    fn compressed_record_count_is_bounded_by_the_decompression_limit() {
        let dir = tempfile::tempdir().unwrap();
        // Compacted, so append reads the records (a `producer` topic keeps a compressed
        // batch whole and checks only its header).
        let compacted = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), compacted);
        let max = (MAX_DECOMPRESSED_RECORDS_BYTES / MIN_RECORD_LEN) as i32;
        let real = compressed(&keyed_batch(&[(Some("k"), Some("v"))], 0), Codec::Lz4);
        let claiming = |count: i32| {
            let mut b = real.clone();
            b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = batch::compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            b
        };
        log.append(&claiming(1), 0, 0).unwrap();
        // Within the bound the header passes; the records then do not match it.
        for count in [max - 1, max] {
            assert!(
                matches!(
                    log.append(&claiming(count), 0, 0),
                    Err(LogError::InvalidRecord {
                        reason: InvalidReason::MalformedRecords
                    })
                ),
                "{count}"
            );
        }
        for count in [max + 1, i32::MAX] {
            assert!(
                matches!(
                    log.append(&claiming(count), 0, 0),
                    Err(LogError::InvalidRecord {
                        reason: InvalidReason::RecordCountTooLarge { max: m, .. }
                    }) if m == max as u64
                ),
                "{count}"
            );
        }
        assert_eq!(log.log_end_offset(), 1);
    }

    #[test]
    fn decompressed_size_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        // An lz4 topic, so append decompresses the zstd batches to re-compress them.
        let lz4 = LogConfig {
            compression_type: CompressionType::Lz4,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), lz4);
        let limit = MAX_DECOMPRESSED_RECORDS_BYTES;
        for (region_len, accepted) in [(limit - 1, true), (limit, true), (limit + 1, false)] {
            // One record of zeros: 13 bytes of framing at this size.
            let region = zeros_record(region_len - 13);
            assert_eq!(region.len(), region_len);
            let b = compressed(&batch_with_region(&region, 1), Codec::Zstd);
            drop(region);
            assert!(b.len() < 64 * 1024, "zeros compress well");
            let got = log.append(&b, 0, 0);
            if accepted {
                got.unwrap();
            } else {
                assert!(
                    matches!(
                        got,
                        Err(LogError::InvalidRecord {
                            reason: InvalidReason::DecompressedTooLarge {
                                codec: Codec::Zstd,
                                limit: l
                            }
                        }) if l == limit
                    ),
                    "{region_len}"
                );
            }
        }
        assert_eq!(log.log_end_offset(), 2);
    }

    #[test]
    fn unknown_codecs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        for id in 5..=7 {
            let b = batch(&BatchSpec {
                attributes: id,
                ..BatchSpec::default()
            });
            assert!(matches!(
                log.append(&b, 0, 0),
                Err(LogError::InvalidRecord {
                    reason: InvalidReason::UnknownCodec { id: i }
                }) if i16::from(i) == id
            ));
        }
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn batches_are_stored_with_the_topics_codec() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            compression_type: CompressionType::Zstd,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        let plain = keyed_batch(&[(Some("a"), Some("1")), (Some("b"), Some("2"))], 500);
        let region = &plain[BATCH_HEADER_LEN..];
        let zstd = compressed(&plain, Codec::Zstd);
        for b in [compressed(&plain, Codec::Lz4), plain.clone(), zstd.clone()] {
            log.append(&b, 3, 0).unwrap();
        }
        assert_eq!(log.log_end_offset(), 6);
        let stored = log.read(0, 1 << 20, false).unwrap().bytes;
        let mut at = 0;
        for base_offset in [0, 2, 4] {
            let h = BatchHeader::parse(&stored[at..]).unwrap();
            let bytes = &stored[at..at + h.total_len()];
            h.validate_crc(bytes).unwrap();
            assert_eq!(
                (h.base_offset, h.compression(), h.partition_leader_epoch),
                (base_offset, 4, 3)
            );
            assert_eq!(
                (h.base_timestamp, h.max_timestamp, h.record_count),
                (500, 500, 2)
            );
            let mut scratch = Vec::new();
            let got = crate::records::region(bytes, &h, 1 << 20, &mut scratch).unwrap();
            assert_eq!(got, region);
            at += h.total_len();
        }
        // A batch already in the topic's codec is stored as received.
        assert_eq!(stored[at - zstd.len() + 16..], zstd[16..]);

        // Stored uncompressed, a batch may outgrow max.message.bytes: refused.
        log.set_config(LogConfig {
            compression_type: CompressionType::Uncompressed,
            max_message_bytes: 1_000,
            ..LogConfig::default()
        });
        let big = compressed(&batch_with_region(&zeros_record(2_000), 1), Codec::Gzip);
        assert!(big.len() < 1_000);
        assert!(matches!(
            log.append(&big, 0, 0),
            Err(LogError::RecordTooLarge { max: 1_000, .. })
        ));
        assert_eq!(log.log_end_offset(), 6);
    }

    #[test]
    fn compacted_topics_refuse_keyless_records_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        let good = keyed_batch(&[(Some("a"), Some("1"))], 0);
        let bad = keyed_batch(&[(Some("b"), Some("2")), (None, Some("3"))], 0);
        for payload in [
            [good.clone(), bad.clone()].concat(),
            [good.clone(), compressed(&bad, Codec::Snappy)].concat(),
        ] {
            match log.append(&payload, 0, 0) {
                Err(LogError::RejectedRecords { errors }) => assert_eq!(
                    errors,
                    [RecordError {
                        batch_index: 1,
                        reason: RecordErrorReason::MissingKey
                    }]
                ),
                other => panic!("expected rejected records, got {other:?}"),
            }
        }
        assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
        log.append(&good, 0, 0).unwrap();
        assert_eq!(log.log_end_offset(), 1);
    }

    #[test]
    fn append_says_when_it_decodes_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        let plain = keyed_batch(&[(Some("a"), Some("1"))], 0);
        let lz4 = compressed(&plain, Codec::Lz4);
        assert!(!log.append_decodes_records(&plain));
        assert!(!log.append_decodes_records(&[plain.clone(), plain.clone()].concat()));
        // A compressed batch kept as received is not decompressed.
        assert!(!log.append_decodes_records(&[plain.clone(), lz4.clone()].concat()));
        // Too short or lying lengths: no walk past the end, and append refuses them.
        assert!(!log.append_decodes_records(&plain[..30]));
        let mut lying = plain.clone();
        lying[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(!log.append_decodes_records(&lying));
        for config in [
            LogConfig {
                cleanup_policy: CleanupPolicy::Compact,
                ..LogConfig::default()
            },
            LogConfig {
                compression_type: CompressionType::Gzip,
                ..LogConfig::default()
            },
        ] {
            log.set_config(config);
            assert!(log.append_decodes_records(&plain));
        }
        log.set_config(LogConfig {
            compression_type: CompressionType::Lz4,
            ..LogConfig::default()
        });
        assert!(!log.append_decodes_records(&lz4));
        log.set_config(LogConfig {
            compression_type: CompressionType::Uncompressed,
            ..LogConfig::default()
        });
        assert!(!log.append_decodes_records(&plain));
        assert!(log.append_decodes_records(&lz4));
    }

    #[test]
    fn max_message_bytes_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let max = 200u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                max_message_bytes: max,
                ..LogConfig::default()
            },
        );
        let sized = |total: u64| simple(1, total as usize - BATCH_HEADER_LEN, 0);
        log.append(&sized(max - 1), 0, 0).unwrap();
        log.append(&sized(max), 0, 0).unwrap();
        assert!(matches!(
            log.append(&sized(max + 1), 0, 0),
            Err(LogError::RecordTooLarge {
                size: 201,
                max: 200
            })
        ));
        let mut negative = sized(100);
        negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            log.append(&negative, 0, 0),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::LengthTooSmall { batch_length: -1 }
            })
        ));
        // A length far beyond the buffer is rejected without allocating it.
        let mut huge = sized(100);
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            log.append(&huge, 0, 0),
            Err(LogError::RecordTooLarge { .. })
        ));
        // Batches never span segments, so segment.bytes bounds them too.
        log.set_config(LogConfig {
            segment_bytes: 150,
            ..LogConfig::default()
        });
        assert!(matches!(
            log.append(&sized(151), 0, 0),
            Err(LogError::BatchLargerThanSegment {
                size: 151,
                segment: 150
            })
        ));
        assert_eq!(log.log_end_offset(), 2);
    }

    #[test]
    fn rolls_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let b = simple(2, 39, 0); // 100 bytes
        let mut log = open(dir.path(), small_segments(250));
        for _ in 0..5 {
            log.append(&b, 0, 0).unwrap();
        }
        // 2 batches (200 bytes) fit in 250; the third rolls.
        assert_eq!(
            segment_files(dir.path()),
            [
                "00000000000000000000.log",
                "00000000000000000004.log",
                "00000000000000000008.log"
            ]
        );
        assert_eq!(log.size_bytes(), 500);
        let all = log.read(0, 1 << 20, false).unwrap();
        assert_eq!(all.bytes.len(), 500);
        let tail = log.read(5, 1 << 20, false).unwrap();
        assert_eq!((tail.first_offset, tail.bytes.len()), (4, 300));
    }

    #[test]
    fn rolls_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_ms: 1_000,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        // CreateTime: measured from the first batch's timestamp to the new batch's.
        log.append(&simple(1, 10, 10_000), 0, 10_000).unwrap();
        log.append(&simple(1, 10, 11_000), 0, 50_000).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        log.append(&simple(1, 10, 11_001), 0, 11_001).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 2);

        // LogAppendTime: the stamped time is now_ms, so now_ms drives rolling.
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_ms: 1_000,
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        log.append(&simple(1, 10, 0), 0, 5_000).unwrap();
        log.append(&simple(1, 10, 0), 0, 6_000).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        log.append(&simple(1, 10, 0), 0, 6_001).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            ["00000000000000000000.log", "00000000000000000002.log"]
        );

        // Without timestamps, the segment's creation time (now_ms at roll) is used.
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_segments(250));
        log.set_config(LogConfig {
            segment_ms: 1_000,
            ..small_segments(250)
        });
        log.append(&simple(2, 139, 0), 0, 0).unwrap();
        log.append(&simple(2, 39, -1), 0, 100).unwrap(); // rolls by size at now 100
        log.append(&simple(1, 10, -1), 0, 1_100).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 2);
        log.append(&simple(1, 10, -1), 0, 1_101).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 3);
    }

    #[test]
    fn rolls_when_index_full() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 0,
            segment_index_bytes: 24, // three offset-index entries, two time-index entries
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        for i in 0..6 {
            log.append(&simple(1, 10, 100 + i), 0, 0).unwrap();
        }
        assert!(segment_files(dir.path()).len() >= 2);
        for offset in 0..6 {
            let r = log.read(offset, 1, true).unwrap();
            assert_eq!(r.first_offset, offset);
        }
    }

    #[test]
    fn log_append_time_restamps_and_recomputes_crc() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config);
        let b = batch(&BatchSpec {
            base_timestamp: 10,
            max_timestamp: 20,
            ..BatchSpec::default()
        });
        let info = log.append(&b, 0, 1_234_567).unwrap();
        assert_eq!(info.log_append_time, 1_234_567);
        let stored = log.read(0, 1 << 20, false).unwrap().bytes;
        let h = BatchHeader::parse(&stored).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!((h.base_timestamp, h.max_timestamp), (10, 1_234_567));
        h.validate_crc(&stored).unwrap();
        assert_ne!(h.crc, BatchHeader::parse(&b).unwrap().crc);
        assert_eq!(stored[61..], b[61..]);
    }

    #[test]
    fn duplicate_retry_returns_original_offsets_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        log.append(&simple(2, 10, 0), 0, 0).unwrap();
        let first = log.append(&idempotent(77, 0, 0, 3), 0, 0).unwrap();
        let second = log.append(&idempotent(77, 0, 3, 2), 0, 0).unwrap();
        assert_eq!((first.base_offset, first.last_offset), (2, 4));
        let size = log.size_bytes();
        let retry = log.append(&idempotent(77, 0, 0, 3), 0, 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (2, 4));
        let retry = log.append(&idempotent(77, 0, 3, 2), 0, 0).unwrap();
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (second.base_offset, second.last_offset)
        );
        assert_eq!(log.size_bytes(), size);
        assert_eq!(log.log_end_offset(), 7);
        // A payload containing a duplicate is a duplicate as a whole (Kafka's rule).
        let payload = [idempotent(78, 0, 0, 1), idempotent(77, 0, 3, 2)].concat();
        assert!(log.append(&payload, 0, 0).unwrap().duplicate);
        assert_eq!(log.log_end_offset(), 7);
    }

    #[test]
    fn sequence_gap_and_old_epoch_are_rejected_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), LogConfig::default());
        log.append(&idempotent(1, 3, 0, 2), 0, 0).unwrap();
        assert!(matches!(
            log.append(&idempotent(1, 3, 3, 1), 0, 0),
            Err(LogError::OutOfOrderSequence {
                producer_id: 1,
                expected: 2,
                got: 3
            })
        ));
        assert!(matches!(
            log.append(&idempotent(1, 2, 2, 1), 0, 0),
            Err(LogError::InvalidProducerEpoch {
                producer_id: 1,
                epoch: 2,
                current: 3
            })
        ));
        // A bad second batch rejects the whole payload, first batch included.
        let payload = [idempotent(1, 3, 2, 1), idempotent(1, 3, 9, 1)].concat();
        assert!(matches!(
            log.append(&payload, 0, 0),
            Err(LogError::OutOfOrderSequence { expected: 3, .. })
        ));
        assert_eq!(log.log_end_offset(), 2);
        // Batches in one payload are checked in order against each other.
        let payload = [idempotent(1, 3, 2, 1), idempotent(1, 3, 3, 4)].concat();
        assert_eq!(log.append(&payload, 0, 0).unwrap().last_offset, 6);
        log.append(&idempotent(1, 4, 0, 1), 0, 0).unwrap();
    }
}
