//! The read path of [`Log`]: offset and timestamp lookups returning whole batches.

use bytes::Bytes;

use crate::error::{LogError, Result};
use crate::log::{Log, ReadSlice};
use crate::region::FileSlice;

impl Log {
    /// Finds whole batches starting with the one that contains `offset`, at most
    /// `max_bytes` in total, continuing into later segments while room remains, and
    /// returns them as regions of the segment files, one per segment. If the first
    /// batch alone exceeds `max_bytes` it is returned whole when `min_one` is set, and
    /// nothing is returned otherwise.
    ///
    /// `offset == log_end_offset` gives no regions; an offset below the log start or
    /// past the log end is `OffsetOutOfRange`. The batch is found through the sparse
    /// `.index` and a header scan, the end likewise; no record bytes are read, so the
    /// cost does not grow with `max_bytes`. The regions hold the segment files open:
    /// they stay readable after the segments are deleted or replaced (see
    /// [`crate::FileRegion`]).
    pub fn read_regions(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<FileSlice> {
        self.read_regions_below(offset, max_bytes, min_one, self.log_end_offset())
    }

    /// [`Self::read_regions`], returning only batches that start below `end` (a high
    /// watermark at a batch boundary: consumers of a replicated partition read below it,
    /// followers to the log end). `end` at or past the log end bounds nothing; an
    /// `offset` at or past `end` (but not past the log end) gives no regions.
    pub fn read_regions_below(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        end: i64,
    ) -> Result<FileSlice> {
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        // Where reading must stop: the position of the batch holding `end`.
        let mut stop = None;
        if end < log_end_offset {
            if offset >= end {
                return Ok(FileSlice {
                    regions: Vec::new(),
                    first_offset: offset,
                    high_watermark: self.high_watermark(),
                    log_start_offset,
                });
            }
            let mut index = self.segments.floor(end);
            while let Some(segment) = self.segments.get(index) {
                if let Some((position, _)) = segment.locate_start(end)? {
                    stop = Some((index, position));
                    break;
                }
                index += 1;
            }
        }
        let mut regions = Vec::new();
        let mut first_offset = offset;
        let mut budget = u64::try_from(max_bytes).unwrap_or(u64::MAX);
        let mut index = self.segments.floor(offset);
        // The batch holding `offset` (it may be in a later segment when `offset` is
        // past the last batch of the floor segment).
        let mut found = None;
        while let Some(segment) = self.segments.get(index) {
            if let Some(located) = segment.locate_start(offset)? {
                found = Some(located);
                break;
            }
            index += 1;
        }
        if let Some((mut position, base_offset)) = found {
            while let Some(segment) = self.segments.get(index) {
                let budget_here = match stop {
                    Some((at, _)) if index > at => break,
                    Some((at, limit)) if index == at => {
                        if limit <= position {
                            break;
                        }
                        budget.min(limit - position)
                    }
                    _ => budget,
                };
                let whole_first = min_one && regions.is_empty() && budget_here == budget;
                let len = segment.batch_span(position, budget_here, whole_first)?;
                if len > 0 {
                    if regions.is_empty() {
                        first_offset = base_offset;
                    }
                    regions.push(segment.region(position, len));
                }
                budget = budget.saturating_sub(len);
                if position + len != segment.size() || budget == 0 {
                    break;
                }
                index += 1;
                position = 0;
            }
        }
        Ok(FileSlice {
            regions,
            first_offset,
            high_watermark: self.high_watermark(),
            log_start_offset,
        })
    }

    /// [`Self::read_regions`] with the bytes read into memory, for callers that
    /// decode them; the allocation is the slice's length.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadSlice> {
        let slice = self.read_regions(offset, max_bytes, min_one)?;
        Ok(ReadSlice {
            bytes: Bytes::from(slice.read_all()?),
            first_offset: slice.first_offset,
            high_watermark: slice.high_watermark,
            log_start_offset: slice.log_start_offset,
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

    /// Every batch of the log, in order: (base offset, last offset, length).
    fn batches(log: &Log) -> Vec<(i64, i64, usize)> {
        let bytes = log.read(0, usize::MAX, true).unwrap().bytes;
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            out.push((h.base_offset, h.last_offset(), h.total_len()));
            at += h.total_len();
        }
        out
    }

    /// What a read must return, from the list of batches alone: the batches from the
    /// one holding `offset` while they fit in `max` (the first whole with `min_one`),
    /// as (first offset, length).
    fn expected(all: &[(i64, i64, usize)], offset: i64, max: usize, min_one: bool) -> (i64, usize) {
        let mut first = None;
        let mut len = 0usize;
        for &(base, _, size) in all.iter().filter(|b| b.1 >= offset) {
            let fits = len + size <= max || (min_one && first.is_none());
            if !fits {
                break;
            }
            first.get_or_insert(base);
            len += size;
        }
        (first.unwrap_or(offset), len)
    }

    #[test]
    fn reads_below_an_end_offset_stop_at_the_batch_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 10); // batches of 2 records, 100 bytes, 3 per segment
        let all: Vec<(i64, i64, usize)> = (0..10).map(|i| (2 * i, 2 * i + 1, 100)).collect();
        for end in (0..=22).step_by(2) {
            let below: Vec<_> = all.iter().copied().filter(|b| b.0 < end).collect();
            for offset in 0..=20 {
                for (max, min_one) in [(50, true), (50, false), (250, false), (10_000, false)] {
                    let slice = log.read_regions_below(offset, max, min_one, end).unwrap();
                    let (first, len) = if offset >= end.min(20) {
                        (offset, 0)
                    } else {
                        expected(&below, offset, max, min_one)
                    };
                    let got = (slice.first_offset, slice.len() as usize);
                    let want = (if len == 0 { got.0 } else { first }, len);
                    assert_eq!(
                        got, want,
                        "offset {offset} max {max} min_one {min_one} end {end}"
                    );
                }
            }
        }
        assert!(log.read_regions_below(21, 100, true, 4).is_err());
    }

    #[test]
    fn regions_are_one_per_segment_on_the_current_handles() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 10); // three 100-byte batches per segment
        let slice = log.read_regions(3, 650, false).unwrap();
        assert_eq!((slice.first_offset, slice.len()), (2, 600));
        let spans: Vec<(u64, u64)> = slice
            .regions
            .iter()
            .map(|r| (r.position(), r.len()))
            .collect();
        assert_eq!(spans, [(100, 200), (0, 300), (0, 100)]);
        let again = log.read_regions(0, 1000, false).unwrap();
        assert!(slice.regions[0].same_file(&again.regions[0]));
        assert!(slice.regions[1].same_file(&again.regions[1]));
        assert!(!slice.regions[0].same_file(&slice.regions[1]));
        assert_eq!(
            slice.read_all().unwrap(),
            log.read(3, 650, false).unwrap().bytes
        );
        assert!(log.read_regions(20, 1000, true).unwrap().is_empty());
    }

    #[test]
    fn regions_outlive_their_deleted_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), 10);
        let before = log.read_regions(0, usize::MAX, true).unwrap();
        let bytes = before.read_all().unwrap();
        assert_eq!(bytes.len(), 1000);
        log.delete_records_before(20).unwrap();
        assert_eq!(log.segments.len(), 1);
        assert!(!dir
            .path()
            .join(crate::segment::file_name(0, ".log"))
            .exists());
        // The deleted files' contents are still readable through the regions.
        assert_eq!(before.read_all().unwrap(), bytes);
        assert!(log.read_regions(20, 1000, true).unwrap().is_empty());
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

    mod model {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            /// Reads of random logs (batch sizes, segment sizes, index spacing) return
            /// exactly the batches a plain walk over all batches picks.
            #[test]
            fn reads_match_a_walk_over_all_batches(
                payloads in proptest::collection::vec(0usize..400, 1..40),
                segment_bytes in 500u64..2_000,
                index_interval_bytes in 0u64..600,
                reads in proptest::collection::vec((0i64..80, 0usize..2_500, any::<bool>()), 1..20),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let config = LogConfig {
                    segment_bytes,
                    index_interval_bytes,
                    ..LogConfig::default()
                };
                let mut log = Log::open(dir.path(), config).unwrap();
                for (i, payload) in payloads.iter().enumerate() {
                    log.append(&simple(1 + (i % 3) as i32, *payload, 0), 0, 0).unwrap();
                }
                let all = batches(&log);
                let end = log.log_end_offset();
                for (offset, max, min_one) in reads {
                    let offset = offset.min(end);
                    let slice = log.read_regions(offset, max, min_one).unwrap();
                    let (first, len) = expected(&all, offset, max, min_one);
                    prop_assert_eq!((slice.first_offset, slice.len()), (first, len as u64));
                    prop_assert!(slice.regions.iter().all(|r| !r.is_empty()));
                    let bytes = slice.read_all().unwrap();
                    let mut at = 0;
                    while at < bytes.len() {
                        let h = BatchHeader::parse(&bytes[at..]).unwrap();
                        h.validate_crc(&bytes[at..at + h.total_len()]).unwrap();
                        at += h.total_len();
                    }
                    prop_assert_eq!(at, bytes.len());
                }
            }
        }
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
