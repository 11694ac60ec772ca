//! Log compaction (`cleanup.policy=compact`): keep the latest record per key.
//!
//! # Algorithm (Kafka's `LogCleaner`, one segment in, one segment out)
//!
//! 1. The *cleanable* segments are the non-active segments from the oldest up to (not
//!    including) the first whose largest timestamp is within `min.compaction.lag.ms`
//!    of `now`. The active segment is never read or touched.
//! 2. An offset map (key → offset of its latest record) is built over them.
//! 3. Each cleanable segment, oldest first, is rewritten keeping a record only if it
//!    has a key, the map names its offset, and it is not a tombstone (null value)
//!    whose segment's largest timestamp is more than `delete.retention.ms` old.
//!    Kept records keep their offsets: a rewritten batch has the same base offset,
//!    timestamps, producer id/epoch/base sequence, attributes and `lastOffsetDelta`
//!    (Kafka keeps the last offset too, so the producer's last sequence survives);
//!    only its `recordCount`, length and CRC change (see `records`). A batch with no
//!    record left is dropped; an emptied segment stays as an empty file, keeping its
//!    base. Control batches are kept whole.
//! 4. The rewritten segment's indexes are rebuilt by the recovery scan.
//!
//! Compressed batches are filtered by the same rules, in both passes: the records
//! region is decompressed (`compression`, at most
//! `MAX_DECOMPRESSED_RECORDS_BYTES`), and if a record goes, the kept records are
//! compressed again with the batch's codec. A batch with nothing to remove is copied
//! as it is, never recompressed. Kafka's `MemoryRecordsBuilder` would also reset
//! the base and max timestamps to the kept records'; we keep the header's, as for
//! uncompressed batches, so kept records' bytes are copied verbatim.
//!
//! Records are decoded by our own bounded parser (`records`), not `kafka-protocol`'s
//! `RecordBatchDecoder`: that decoder preallocates from wire counts (header count),
//! collapses duplicate header keys into a map and rejects non-UTF-8 header keys, so
//! re-encoding through it could lose data; copying record bytes verbatim cannot.
//!
//! A data batch whose records cannot be read (a malformed region, an unknown codec,
//! corrupt compressed data, more than the decompression limit) is kept whole and
//! counted in [`CompactionOutcome::opaque_batches`], as is one whose kept records
//! fail to compress. An older value inside one may survive next to a newer one, so
//! while any exists no tombstone is dropped (a key deleted by a tombstone can never
//! resurface from it); the failure is logged, and the next run tries again.
//!
//! # Crash safety
//!
//! | step                                                         | a crash here leaves, and open does           |
//! |--------------------------------------------------------------|----------------------------------------------|
//! | write `<base>.log.cleaned`, fsync                            | original intact; `.cleaned` deleted          |
//! | rename to `<base>.log.swap`, fsync dir                       | `.swap` complete; open swaps it in           |
//! | delete `<base>.index`/`.timeindex`, fsync dir                | same; indexes rebuilt by the scan            |
//! | rename `.swap` over `<base>.log`, fsync dir                  | the new segment; indexes rebuilt             |
//!
//! Segments are swapped oldest first, so a crash between two swaps can leave an older
//! value of a key dropped while the newer one still exists, never the reverse: a
//! tombstone (or newer value) is only removed after every older record of its key in
//! earlier segments already is.
//!
//! # Concurrency
//!
//! [`Log::compact`] takes `&mut self` for its whole run: the broker calls it from a
//! blocking thread holding the log's write lock, so appends and reads of that
//! partition wait. Memory is proportional to the distinct keys of the cleanable range,
//! plus one batch at a time: its stored bytes, its decompressed region (at most
//! `MAX_DECOMPRESSED_RECORDS_BYTES`) and its rewritten copy.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::checkpoint::sync_dir;
use crate::error::{LogError, Result};
use crate::log::{wall_clock_ms, Log};
use crate::records::{self, RecordView, RecordsError, MAX_DECOMPRESSED_RECORDS_BYTES};
use crate::recovery::scan_segment;
use crate::segment::{
    file_name, remove_if_exists, LogSegment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Suffix (after `.log`) of a segment being written by the cleaner.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix (after `.log`) of a complete cleaned segment waiting to replace the original.
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// What [`Log::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionOutcome {
    /// Segments rewritten (segments with nothing to remove are left alone).
    pub segments_rewritten: usize,
    /// Records removed, tombstones included.
    pub records_removed: u64,
    /// Tombstones removed because they were older than `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Data batches kept whole because their records could not be read (malformed,
    /// corrupt or oversized compressed data, an unknown codec) or, once filtered,
    /// could not be compressed again. While any exists, no tombstone is dropped.
    pub opaque_batches: u64,
    /// Bytes of the cleanable segments before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// The first offset not examined: the base offset of the first uncleanable segment.
    pub cleanable_end_offset: i64,
}

/// Where a test stops the cleaner, to simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopAfter {
    /// Run to completion.
    Never,
    /// After the first `.cleaned` file is written and fsynced.
    Cleaned,
    /// After the first `.cleaned` file is renamed to `.swap`.
    Swap,
}

/// Key → offset of its latest record in the cleanable range.
struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
    opaque_batches: u64,
}

/// How the cleaner treats a batch.
enum Decision<'a> {
    /// A control batch: kept whole.
    Whole,
    /// A data batch whose records cannot be read: kept whole and counted.
    Unreadable(RecordsError),
    /// A data batch's records, to filter.
    Records(Vec<RecordView<'a>>),
}

fn path_with(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_name(base, LOG_SUFFIX)))
}

impl Log {
    /// Compacts the log at wall-clock time `now_ms` (see the module docs), for
    /// policies containing `compact`; otherwise does nothing. Offsets are kept, so
    /// reads see gaps; the log start and end offsets do not change.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionOutcome> {
        self.guarded(|log| log.compact_now(now_ms))
    }

    fn compact_now(&mut self, now_ms: i64) -> Result<CompactionOutcome> {
        self.compact_until(now_ms, StopAfter::Never)
    }

    pub(crate) fn compact_until(
        &mut self,
        now_ms: i64,
        stop: StopAfter,
    ) -> Result<CompactionOutcome> {
        let mut outcome = CompactionOutcome {
            cleanable_end_offset: self.segments.first().base_offset(),
            ..CompactionOutcome::default()
        };
        if !self.config.cleanup_policy.compacts() {
            return Ok(outcome);
        }
        let cleanable = self.cleanable_count(now_ms)?;
        if let Some(end) = self.segments.get(cleanable) {
            outcome.cleanable_end_offset = end.base_offset();
        }
        if cleanable == 0 {
            return Ok(outcome);
        }
        let map = self.build_offset_map(cleanable)?;
        outcome.opaque_batches = map.opaque_batches;
        let horizon = now_ms.saturating_sub(self.config.delete_retention_ms);
        for i in 0..cleanable {
            let Some(segment) = self.segments.get(i) else {
                break;
            };
            let expired = segment.largest_timestamp()? < horizon;
            outcome.bytes_before += segment.size();
            let stopped = self.clean_segment(i, &map, expired, stop, &mut outcome)?;
            if stopped {
                return Ok(outcome);
            }
            outcome.bytes_after += self.segments.get(i).map_or(0, LogSegment::size);
        }
        if outcome.opaque_batches > 0 {
            tracing::warn!(
                dir = %self.dir.display(),
                batches = outcome.opaque_batches,
                "batches kept whole by the cleaner: their records could not be read or rewritten; tombstones are kept"
            );
        }
        if outcome.segments_rewritten > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments = outcome.segments_rewritten,
                records_removed = outcome.records_removed,
                bytes_before = outcome.bytes_before,
                bytes_after = outcome.bytes_after,
                "compacted log"
            );
        }
        Ok(outcome)
    }

    /// Leading non-active segments older than `min.compaction.lag.ms`.
    fn cleanable_count(&self, now_ms: i64) -> Result<usize> {
        let lag = self.config.min_compaction_lag_ms.max(0);
        let mut count = 0;
        for segment in self.segments.iter().take(self.segments.rolled_len()) {
            if lag > 0 && segment.largest_timestamp()? > now_ms.saturating_sub(lag) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    fn build_offset_map(&self, cleanable: usize) -> Result<OffsetMap> {
        let mut map = OffsetMap {
            latest: HashMap::new(),
            opaque_batches: 0,
        };
        for segment in self.segments.iter().take(cleanable) {
            let mut position = 0;
            while position < segment.size() {
                let header = segment.header_at(position)?;
                let bytes = segment.read_batch(position, &header)?;
                position += header.total_len() as u64;
                let mut scratch = Vec::new();
                match decide(&bytes, &header, &mut scratch) {
                    Decision::Whole => {}
                    // Logged by the cleaning pass, which meets the same batch.
                    Decision::Unreadable(_) => map.opaque_batches += 1,
                    Decision::Records(records) => {
                        for r in records {
                            if let Some(key) = r.key {
                                let offset = header.base_offset + i64::from(r.offset_delta);
                                map.latest.insert(key.to_vec(), offset);
                            }
                        }
                    }
                }
            }
        }
        Ok(map)
    }

    /// Rewrites rolled segment `i` if anything in it is to be removed. Tombstones go
    /// only if `expired` (the segment is past `delete.retention.ms`) and no batch is
    /// opaque: none unreadable in the cleanable range, none failed to be rewritten so
    /// far. Returns whether `stop` ended the run (a simulated crash).
    fn clean_segment(
        &mut self,
        i: usize,
        map: &OffsetMap,
        expired: bool,
        stop: StopAfter,
        outcome: &mut CompactionOutcome,
    ) -> Result<bool> {
        let Some(segment) = self.segments.get(i) else {
            return Ok(false);
        };
        let base = segment.base_offset();
        let cleaned_path = path_with(&self.dir, base, CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&cleaned_path)
            .map_err(LogError::io(&cleaned_path))?;
        let mut out = BufWriter::new(file);
        let (mut removed, mut tombstones) = (0u64, 0u64);
        let mut position = 0;
        while position < segment.size() {
            let header = segment.header_at(position)?;
            let bytes = segment.read_batch(position, &header)?;
            position += header.total_len() as u64;
            let mut scratch = Vec::new();
            let records = match decide(&bytes, &header, &mut scratch) {
                Decision::Whole => {
                    out.write_all(&bytes).map_err(LogError::io(&cleaned_path))?;
                    continue;
                }
                Decision::Unreadable(reason) => {
                    tracing::debug!(segment = %segment.log_path().display(), offset = header.base_offset, %reason, "batch kept whole");
                    out.write_all(&bytes).map_err(LogError::io(&cleaned_path))?;
                    continue;
                }
                Decision::Records(records) => records,
            };
            // Re-read per batch: a batch kept whole below stops tombstone removal.
            let drop_tombstones = expired && outcome.opaque_batches == 0;
            let total = records.len();
            let mut batch_tombstones = 0u64;
            let kept: Vec<RecordView<'_>> = records
                .into_iter()
                .filter(|r| {
                    let offset = header.base_offset + i64::from(r.offset_delta);
                    let latest = r.key.and_then(|k| map.latest.get(k)) == Some(&offset);
                    let expired = r.tombstone && drop_tombstones;
                    batch_tombstones += u64::from(latest && expired);
                    latest && !expired
                })
                .collect();
            let rebuilt = if kept.len() == total {
                None
            } else if kept.is_empty() {
                Some(Vec::new())
            } else {
                match records::rebuild_batch(&bytes, &header, &kept) {
                    Ok(rebuilt) => Some(rebuilt),
                    Err(reason) => {
                        // Keeping it whole keeps older values; the opaque count keeps
                        // the tombstones that would otherwise let them resurface.
                        tracing::warn!(segment = %segment.log_path().display(), offset = header.base_offset, %reason, "batch kept whole: its kept records could not be rewritten");
                        outcome.opaque_batches += 1;
                        None
                    }
                }
            };
            match rebuilt {
                None => out.write_all(&bytes),
                Some(rebuilt) => {
                    removed += (total - kept.len()) as u64;
                    tombstones += batch_tombstones;
                    out.write_all(&rebuilt)
                }
            }
            .map_err(LogError::io(&cleaned_path))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| LogError::io(&cleaned_path)(e.into_error()))?;
        if removed == 0 {
            drop(file);
            remove_if_exists(&cleaned_path)?;
            return Ok(false);
        }
        // Kafka keeps the original modification time, which time-based policies use.
        file.set_modified(segment.modified()?)
            .and_then(|()| crate::fs::sync_all(&file, &cleaned_path))
            .map_err(LogError::io(&cleaned_path))?;
        drop(file);
        outcome.records_removed += removed;
        outcome.tombstones_removed += tombstones;
        outcome.segments_rewritten += 1;
        if stop == StopAfter::Cleaned {
            return Ok(true);
        }
        let swap_path = path_with(&self.dir, base, SWAP_SUFFIX);
        fs::rename(&cleaned_path, &swap_path).map_err(LogError::io(&swap_path))?;
        sync_dir(&self.dir)?;
        if stop == StopAfter::Swap {
            return Ok(true);
        }
        finish_swap(&self.dir, base)?;
        let mut fresh = LogSegment::open(&self.dir, base, &self.config, wall_clock_ms())?;
        if scan_segment(&mut fresh, base, self.config.index_interval_bytes)? {
            tracing::warn!(segment = %fresh.log_path().display(), "cleaned segment failed its scan and was cut");
        }
        fresh.retire()?;
        fresh.flush()?;
        drop(self.segments.replace_rolled(i, fresh));
        Ok(false)
    }
}

/// Whether a batch's records can be filtered: a data batch whose records (in
/// `scratch` once decompressed) are well formed.
fn decide<'a>(bytes: &'a [u8], header: &BatchHeader, scratch: &'a mut Vec<u8>) -> Decision<'a> {
    if header.is_control() {
        return Decision::Whole;
    }
    match records::read_records(bytes, header, MAX_DECOMPRESSED_RECORDS_BYTES, scratch) {
        Ok(records) => Decision::Records(records),
        Err(reason) => Decision::Unreadable(reason),
    }
}

/// Replaces `<base>.log` by `<base>.log.swap`: indexes removed first (they describe the
/// old file), then the rename, each made durable.
fn finish_swap(dir: &Path, base: i64) -> Result<()> {
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        remove_if_exists(&dir.join(file_name(base, suffix)))?;
    }
    sync_dir(dir)?;
    let log_path = dir.join(file_name(base, LOG_SUFFIX));
    fs::rename(path_with(dir, base, SWAP_SUFFIX), &log_path).map_err(LogError::io(&log_path))?;
    sync_dir(dir)
}

/// On open: deletes `.cleaned` leftovers (the original is intact) and completes every
/// `.swap` (it is whole and fsynced), so a crash mid-compaction loses nothing.
pub(crate) fn recover_interrupted_cleaning(dir: &Path) -> Result<()> {
    let mut removed = false;
    let mut swaps = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(file = name, "removing an interrupted cleaner output");
            remove_if_exists(&entry.path())?;
            removed = true;
        } else if let Some(log_name) = name.strip_suffix(SWAP_SUFFIX) {
            match log_name.strip_suffix(LOG_SUFFIX).map(str::parse::<i64>) {
                Some(Ok(base)) if log_name.len() == 20 + LOG_SUFFIX.len() => swaps.push(base),
                _ => {}
            }
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    for base in swaps {
        tracing::info!(dir = %dir.display(), base, "completing an interrupted segment swap");
        finish_swap(dir, base)?;
    }
    Ok(())
}

/// Names of cleaner leftovers in `dir`, sorted.
#[cfg(test)]
pub(crate) fn leftover_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(CLEANED_SUFFIX) || n.ends_with(SWAP_SUFFIX))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
