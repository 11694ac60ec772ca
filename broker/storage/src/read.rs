//! The read path of [`Log`]: offset and timestamp lookups returning whole batches.

use bytes::Bytes;

use crate::error::{LogError, Result};
use crate::log::{Log, ReadSlice};

impl Log {
    /// Reads whole batches starting with the one that contains `offset`, at most
    /// `max_bytes` in total, continuing into later segments while room remains. If the
    /// first batch alone exceeds `max_bytes` it is returned whole when `min_one` is set,
    /// and nothing is returned otherwise.
    ///
    /// `offset == log_end_offset` gives empty bytes; an offset below the log start or
    /// past the log end is `OffsetOutOfRange`. The batch is found through the sparse
    /// `.index` and a header scan; only the bytes returned are read.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadSlice> {
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let mut out: Vec<u8> = Vec::new();
        let mut budget = max_bytes;
        let mut index = self.segments.floor(offset);
        // Position of the batch holding `offset` (it may be in a later segment when
        // `offset` is past the last batch of the floor segment).
        let mut position = None;
        while let Some(segment) = self.segments.get(index) {
            if let Some((p, _)) = segment.locate(offset)? {
                position = Some(p);
                break;
            }
            index += 1;
        }
        if let Some(mut position) = position {
            while let Some(segment) = self.segments.get(index) {
                let chunk = segment.read_batches(position, budget, min_one && out.is_empty())?;
                let reached_end = position + chunk.len() as u64 == segment.size();
                budget = budget.saturating_sub(chunk.len());
                if out.is_empty() {
                    out = chunk;
                } else {
                    out.extend_from_slice(&chunk);
                }
                if !reached_end || budget == 0 {
                    break;
                }
                index += 1;
                position = 0;
            }
        }
        let first_offset = match out.get(..8) {
            Some(b) => i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => offset,
        };
        Ok(ReadSlice {
            bytes: Bytes::from(out),
            first_offset,
            high_watermark: self.high_watermark(),
            log_start_offset,
        })
    }

    /// Returns the first batch (in offset order) whose max timestamp is at least
    /// `timestamp`, whole, or `None` if there is none. Segments are skipped by their
    /// max timestamp and the batch found through the `.timeindex`; the caller decodes
    /// records to find the exact offset.
    pub fn read_batch_by_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>> {
        for segment in self.segments.iter() {
            if segment.max_timestamp() < timestamp {
                continue;
            }
            if let Some(batch) = segment.read_by_timestamp(timestamp)? {
                return Ok(Some(Bytes::from(batch)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::simple;
    use crate::{BatchHeader, LogConfig};

    /// A log of `n` batches of 2 records each, 100 bytes each, max timestamp 1000 + 10·i,
    /// in 300-byte segments with an index entry every 100 bytes.
    fn filled(dir: &std::path::Path, n: i64) -> Log {
        let config = LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir, config).unwrap();
        for i in 0..n {
            log.append(&simple(2, 39, 1000 + 10 * i), 0, 0).unwrap();
        }
        log
    }

    #[test]
    fn reads_whole_batches_within_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 10);
        for (offset, max, expect_first, expect_len) in [
            (0, 100, 0, 100),
            (1, 100, 0, 100),
            (1, 199, 0, 100),
            (2, 250, 2, 200),
            (3, 1000, 2, 900),
            (3, 850, 2, 800),
            (19, 1000, 18, 100),
            (0, 99, 0, 0),
        ] {
            let r = log.read(offset, max, false).unwrap();
            assert_eq!(
                (r.first_offset, r.bytes.len()),
                (expect_first, expect_len),
                "offset {offset} max {max}"
            );
            assert_eq!(r.high_watermark, 20);
            let mut at = 0;
            while at < r.bytes.len() {
                let h = BatchHeader::parse(&r.bytes[at..]).unwrap();
                h.validate_crc(&r.bytes[at..at + h.total_len()]).unwrap();
                at += h.total_len();
            }
        }
        // min_one returns an oversized first batch whole.
        let r = log.read(4, 10, true).unwrap();
        assert_eq!((r.first_offset, r.bytes.len()), (4, 100));
    }

    #[test]
    fn end_and_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 3);
        let r = log.read(6, 1000, true).unwrap();
        assert!(r.bytes.is_empty());
        assert_eq!(r.first_offset, 6);
        for bad in [-1, 7, i64::MAX] {
            assert!(matches!(
                log.read(bad, 1000, true),
                Err(LogError::OffsetOutOfRange {
                    log_start_offset: 0,
                    log_end_offset: 6,
                    ..
                })
            ));
        }
        let empty_dir = tempfile::tempdir().unwrap();
        let empty = Log::open(empty_dir.path(), LogConfig::default()).unwrap();
        assert!(empty.read(0, 100, true).unwrap().bytes.is_empty());
    }

    #[test]
    fn finds_batches_by_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 10);
        let base_of = |ts: i64| {
            log.read_batch_by_timestamp(ts)
                .unwrap()
                .map(|b| BatchHeader::parse(&b).unwrap().base_offset)
        };
        assert_eq!(base_of(i64::MIN), Some(0));
        assert_eq!(base_of(1000), Some(0));
        assert_eq!(base_of(1001), Some(2));
        assert_eq!(base_of(1040), Some(8));
        assert_eq!(base_of(1041), Some(10));
        assert_eq!(base_of(1090), Some(18));
        assert_eq!(base_of(1091), None);
    }

    #[test]
    fn timestamp_lookup_with_out_of_order_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config).unwrap();
        for ts in [50, 10, 70, 20, 90, 30] {
            log.append(&simple(1, 10, ts), 0, 0).unwrap();
        }
        let base_of = |ts: i64| {
            log.read_batch_by_timestamp(ts)
                .unwrap()
                .map(|b| BatchHeader::parse(&b).unwrap().base_offset)
        };
        assert_eq!(base_of(15), Some(0));
        assert_eq!(base_of(51), Some(2));
        assert_eq!(base_of(71), Some(4));
        assert_eq!(base_of(91), None);
    }
}
