//! One log segment: a `.log` file of record batches plus its two sparse indexes.
//!
//! A segment is named by its base offset (20 zero-padded digits) and holds batches
//! with offsets from that base up to the next segment's base. Batches are written with
//! positional writes at `size`; `size` (not the file length) bounds every read, so a
//! torn tail left by a failed write is never served and is cut by the next recovery.
//!
//! The active segment of a partition under acks=all may be longer than `size`: zeros
//! written ahead by [`LogSegment::preallocate`]. Overwriting blocks that already exist
//! in the file lets an fdatasync write just the data: no block allocation and no size
//! change for the filesystem to commit to its journal first (on this project's ext4
//! test machine that is about a third off every acknowledgement's fsync). The zeros
//! are cut when the segment stops being active or the log closes; after a crash the
//! recovery scan recognises an all-zero tail and cuts it quietly.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::config::LogConfig;
use crate::error::{CorruptReason, LogError, Result};
use crate::fs;
use crate::index::{OffsetIndex, TimeIndex};
use crate::region::FileRegion;

/// Extension of segment data files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Extension of sparse offset indexes.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Extension of sparse time indexes.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// `<20-digit base offset><suffix>`, Kafka's segment file naming.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// A segment of a partition log. Not shared: the owning [`crate::Log`] serialises access.
#[derive(Debug)]
pub(crate) struct LogSegment {
    base_offset: i64,
    log_path: Arc<Path>,
    /// Shared with the [`FileRegion`]s handed out, which keep it open after the
    /// segment is deleted or replaced.
    log: Arc<File>,
    /// Bytes of whole, accepted batches; the file may be longer only after a failed write.
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// One past the last offset of the last batch (`base_offset` when empty).
    next_offset: i64,
    /// Largest batch max timestamp in the segment, or -1.
    max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: what `segment.ms` is measured from.
    rolling_timestamp: Option<i64>,
    /// When this process created or opened the segment (fallback for `segment.ms`).
    created_ms: i64,
    bytes_since_index_entry: u64,
    /// The file's length as this segment knows it: `size` plus zeros written ahead by
    /// [`Self::preallocate`]; never below `size`.
    allocated: u64,
}

impl LogSegment {
    /// Creates an empty segment at `base_offset`, replacing any files of that name.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(LogError::io(&log_path))?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&dir.join(file_name(base_offset, suffix)))?;
        }
        Self::with_file(dir, base_offset, log_path, log, 0, config, now_ms)
    }

    /// Opens an existing segment. `size` is the file length; offsets, timestamps and
    /// index validity are not known until [`Self::load_clean`] or a recovery scan.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(LogError::io(&log_path))?;
        let size = log.metadata().map_err(LogError::io(&log_path))?.len();
        Self::with_file(dir, base_offset, log_path, log, size, config, now_ms)
    }

    fn with_file(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        log: File,
        size: u64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let index_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let time_index_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        Ok(LogSegment {
            base_offset,
            log_path: log_path.into(),
            log: Arc::new(log),
            size,
            offset_index: OffsetIndex::open(&index_path, base_offset, config.segment_index_bytes)?,
            time_index: TimeIndex::open(&time_index_path, base_offset, config.segment_index_bytes)?,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            rolling_timestamp: None,
            created_ms: now_ms,
            bytes_since_index_entry: 0,
            allocated: size,
        })
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn log_file(&self) -> &File {
        &self.log
    }

    /// Kafka's `LogSegment.largestTimestamp`: the largest batch timestamp, or the
    /// `.log` file's modification time (ms since the epoch) when no batch has one.
    pub(crate) fn largest_timestamp(&self) -> Result<i64> {
        if self.max_timestamp >= 0 {
            return Ok(self.max_timestamp);
        }
        let modified = self.modified()?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The `.log` file's modification time.
    pub(crate) fn modified(&self) -> Result<std::time::SystemTime> {
        self.log
            .metadata()
            .and_then(|m| m.modified())
            .map_err(LogError::io(&self.log_path))
    }

    /// A second handle on the `.log` file alone, so it can be fsynced without the
    /// log's lock (see [`crate::FlushHandle`]).
    pub(crate) fn clone_log_handle(&self) -> Result<(PathBuf, File)> {
        let log = self.log.try_clone().map_err(LogError::io(&self.log_path))?;
        Ok((self.log_path.to_path_buf(), log))
    }

    /// Second handles on the `.log` and both index files.
    pub(crate) fn clone_handles(&self) -> Result<Vec<(PathBuf, File)>> {
        Ok(vec![
            self.clone_log_handle()?,
            self.offset_index.clone_handle()?,
            self.time_index.clone_handle()?,
        ])
    }

    /// Reads the whole batch described by `header` at `position` (as returned by
    /// [`Self::header_at`], which bounds its length by the segment size).
    pub(crate) fn read_batch(&self, position: u64, header: &BatchHeader) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; header.total_len()];
        self.log
            .read_exact_at(&mut buf, position)
            .map_err(LogError::io(&self.log_path))?;
        Ok(buf)
    }

    pub(crate) fn apply_config(&mut self, config: &LogConfig) {
        self.offset_index
            .set_max_index_bytes(config.segment_index_bytes);
        self.time_index
            .set_max_index_bytes(config.segment_index_bytes);
    }

    /// Whether a batch of `batch_len` bytes, with the given max timestamp and last
    /// offset, must go to a new segment (Kafka's `LogSegment.shouldRoll`). An empty
    /// segment never rolls.
    pub(crate) fn should_roll(
        &self,
        config: &LogConfig,
        batch_len: u64,
        batch_max_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        // Like Kafka: measure age in the batch's own time when the first batch has a
        // timestamp, so replaying old data does not roll on every batch.
        let waited = match self.rolling_timestamp {
            Some(first) if first >= 0 => batch_max_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        };
        let too_old = i64::try_from(config.segment_ms).is_ok_and(|ms| waited > ms);
        self.size.saturating_add(batch_len) > config.effective_segment_bytes()
            || too_old
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || crate::index::RelativeOffset::new(self.base_offset, last_offset).is_none()
    }

    /// Writes `batch` (already patched) at the end and indexes it. Does not fsync.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u64,
    ) -> Result<()> {
        let position = self.size;
        if let Err(e) = fs::write_all_at(&self.log, batch, position, &self.log_path) {
            // Best effort: cut what may have been written so the file ends at `size`.
            let _ = fs::set_len(&self.log, position, &self.log_path);
            self.allocated = position;
            return Err(LogError::io(&self.log_path)(e));
        }
        self.note_batch(position, header, index_interval_bytes)?;
        self.allocated = self.allocated.max(self.size);
        Ok(())
    }

    /// Writes zeros after the last batch so the next `ahead` bytes of appends overwrite
    /// existing blocks (see the module docs), never past `limit` (the segment size that
    /// makes it roll). Does nothing while more than half of `ahead` is still ahead, so
    /// a steady writer pays for it once per `ahead / 2` bytes. Does not fsync: the
    /// next fsync of the file carries the zeros and the new length.
    pub(crate) fn preallocate(&mut self, ahead: u64, limit: u64) -> Result<()> {
        let Some(target) = self.preallocation_target(ahead, limit) else {
            return Ok(());
        };
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut position = self.allocated;
        while position < target {
            let len =
                usize::try_from(target - position).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            if let Err(e) = fs::write_all_at(&self.log, &ZEROS[..len], position, &self.log_path) {
                // Leave the file as it was: ending at `allocated`.
                let _ = fs::set_len(&self.log, self.allocated, &self.log_path);
                return Err(LogError::io(&self.log_path)(e));
            }
            position += len as u64;
        }
        self.allocated = target;
        Ok(())
    }

    /// Whether [`Self::preallocate`] with these arguments would write zeros now.
    pub(crate) fn preallocation_due(&self, ahead: u64, limit: u64) -> bool {
        self.preallocation_target(ahead, limit).is_some()
    }

    /// The file length [`Self::preallocate`] would extend the file to now, if any.
    fn preallocation_target(&self, ahead: u64, limit: u64) -> Option<u64> {
        let target = self.size.saturating_add(ahead).min(limit.max(self.size));
        let due = self.allocated < self.size.saturating_add(ahead / 2) && target > self.allocated;
        due.then_some(target)
    }

    /// Cuts zeros written ahead by [`Self::preallocate`], so the file ends at the last
    /// batch. Done when the segment stops being active and when the log closes.
    pub(crate) fn trim(&mut self) -> Result<()> {
        if self.allocated > self.size {
            self.cut_file_to_size()?;
        }
        Ok(())
    }

    /// The file length this segment keeps: `size` plus preallocated zeros.
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Updates size, offsets, timestamps and indexes for a batch at `position`; used by
    /// appends and by the recovery scan that rebuilds the indexes.
    pub(crate) fn note_batch(
        &mut self,
        position: u64,
        header: &BatchHeader,
        index_interval_bytes: u64,
    ) -> Result<()> {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.rolling_timestamp.get_or_insert(header.max_timestamp);
        // Kafka's rule: the first batch is found by position 0, later batches get an
        // entry once more than `index.interval.bytes` have passed since the last one.
        if self.bytes_since_index_entry > index_interval_bytes {
            self.offset_index.append(header.base_offset, position)?;
            self.time_index.maybe_append(
                self.max_timestamp,
                self.offset_of_max_timestamp,
                false,
            )?;
            self.bytes_since_index_entry = 0;
        }
        let len = header.total_len() as u64;
        self.bytes_since_index_entry += len;
        self.size = position + len;
        self.next_offset = header.last_offset().saturating_add(1);
        Ok(())
    }

    /// Empties both indexes and the derived state, before a recovery scan re-notes
    /// every batch.
    pub(crate) fn begin_rebuild(&mut self) -> Result<()> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.rolling_timestamp = None;
        self.bytes_since_index_entry = 0;
        Ok(())
    }

    /// Cuts the file to `size` after a recovery scan stopped at an invalid batch.
    pub(crate) fn cut_file_to_size(&mut self) -> Result<()> {
        fs::set_len(&self.log, self.size, &self.log_path).map_err(LogError::io(&self.log_path))?;
        self.allocated = self.size;
        Ok(())
    }

    /// Loads a segment that was closed cleanly: checks its indexes and derives the
    /// next offset and max timestamp from them plus a short header scan. Returns
    /// `Ok(false)` if anything is inconsistent (the caller then runs a recovery scan).
    pub(crate) fn load_clean(&mut self) -> Result<bool> {
        if !self.offset_index.is_valid(self.size)? {
            return Ok(false);
        }
        match self.recompute_tail() {
            Ok(()) => {}
            Err(LogError::CorruptLog { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.time_index.is_valid(self.next_offset)
    }

    /// Re-derives `next_offset`, `max_timestamp` and the first batch's timestamp from
    /// the indexes and the batches after their last entries.
    fn recompute_tail(&mut self) -> Result<()> {
        self.rolling_timestamp = None;
        self.next_offset = self.base_offset;
        (self.max_timestamp, self.offset_of_max_timestamp) = self
            .time_index
            .last_entry()
            .unwrap_or((-1, self.base_offset));
        if self.size == 0 {
            return Ok(());
        }
        self.rolling_timestamp = Some(self.header_at(0)?.max_timestamp);
        // Every batch before the last offset-index entry, and before the batch of the
        // last time-index entry, has a max timestamp at most that entry's (both
        // indexes are offered an entry at the same moments), so only the tail is read.
        let from_offset_index = self.offset_index.last_entry().map_or(0, |(_, p)| p);
        let from_time_index = match self.time_index.last_entry() {
            Some((_, offset)) => self.offset_index.lookup(offset)?.1,
            None => 0,
        };
        let mut position = from_offset_index.max(from_time_index);
        while position < self.size {
            let h = self.header_at(position)?;
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.base_offset;
            }
            self.next_offset = h.last_offset().saturating_add(1);
            position += h.total_len() as u64;
        }
        self.bytes_since_index_entry = self.size - from_offset_index;
        Ok(())
    }

    /// Reads and checks the header of the batch at `position` (which must be a batch
    /// boundary below `size`).
    pub(crate) fn header_at(&self, position: u64) -> Result<BatchHeader> {
        let corrupt = |reason| LogError::CorruptLog {
            path: self.log_path.to_path_buf(),
            position,
            reason,
        };
        let available = self.size.saturating_sub(position);
        if available < BATCH_HEADER_LEN as u64 {
            return Err(corrupt(CorruptReason::ShortHeader {
                available: available as usize,
            }));
        }
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.log
            .read_exact_at(&mut buf, position)
            .map_err(LogError::io(&self.log_path))?;
        let header = BatchHeader::parse(&buf).map_err(|e| match e {
            LogError::CorruptRecord { reason } => corrupt(reason),
            other => other,
        })?;
        let needed = header.total_len() as u64;
        if needed > available {
            return Err(corrupt(CorruptReason::Truncated { needed, available }));
        }
        Ok(header)
    }

    /// Position and header of the first batch whose last offset is at least `offset`,
    /// found from the sparse index and a forward header scan; `None` past the end.
    pub(crate) fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let (_, mut position) = self.offset_index.lookup(offset)?;
        while position < self.size {
            let h = self.header_at(position)?;
            if h.last_offset() >= offset {
                return Ok(Some((position, h)));
            }
            position += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Position and base offset of the first batch whose last offset is at least
    /// `offset`, like [`Self::locate`], without reading a header when the index names
    /// a batch starting at `offset` (where followers and tailing consumers fetch from).
    pub(crate) fn locate_start(&self, offset: i64) -> Result<Option<(u64, i64)>> {
        match self.offset_index.lookup(offset)? {
            (indexed, position) if indexed == offset && position < self.size => {
                Ok(Some((position, offset)))
            }
            _ => Ok(self
                .locate(offset)?
                .map(|(position, header)| (position, header.base_offset))),
        }
    }

    /// Length of the whole batches from `position` (a batch boundary) that fit in
    /// `max_bytes`; if the first batch alone is larger and `min_one` is set, its
    /// length. Reads only batch headers: the scan starts at the last indexed batch
    /// at or before the limit, so it reads about `index.interval.bytes` worth of
    /// headers whatever `max_bytes` is, and none when the rest of the segment fits
    /// (`size` ends a whole batch): a follower or consumer at the end of the log.
    pub(crate) fn batch_span(&self, position: u64, max_bytes: u64, min_one: bool) -> Result<u64> {
        let available = self.size.saturating_sub(position);
        if available <= max_bytes {
            return Ok(available);
        }
        let limit = position + available.min(max_bytes);
        let mut end = match self.offset_index.floor_position(limit)? {
            Some(indexed) if indexed > position => indexed,
            _ => position,
        };
        while end < limit {
            let next = end + self.header_at(end)?.total_len() as u64;
            if next > limit {
                break;
            }
            end = next;
        }
        if end == position && min_one && available > 0 {
            end += self.header_at(position)?.total_len() as u64;
        }
        Ok(end - position)
    }

    /// The `len` bytes at `position` of this segment's `.log`, through its shared handle.
    pub(crate) fn region(&self, position: u64, len: u64) -> FileRegion {
        FileRegion::new(
            Arc::clone(&self.log),
            Arc::clone(&self.log_path),
            position,
            len,
        )
    }

    /// The first batch whose max timestamp is at least `timestamp`, whole.
    pub(crate) fn read_by_timestamp(&self, timestamp: i64) -> Result<Option<Vec<u8>>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let mut position = match self.time_index.lookup_below(timestamp)? {
            Some(offset) => self.offset_index.lookup(offset)?.1,
            None => 0,
        };
        while position < self.size {
            let h = self.header_at(position)?;
            if h.max_timestamp >= timestamp {
                let mut buf = vec![0u8; h.total_len()];
                self.log
                    .read_exact_at(&mut buf, position)
                    .map_err(LogError::io(&self.log_path))?;
                return Ok(Some(buf));
            }
            position += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Drops every batch whose last offset is at least `offset` (a batch spanning
    /// `offset` is dropped whole). Returns whether anything was removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<bool> {
        let Some((position, header)) = self.locate(offset)? else {
            return Ok(false);
        };
        self.offset_index.truncate_to_offset(header.base_offset)?;
        self.time_index.truncate_to_offset(header.base_offset)?;
        self.size = position;
        self.cut_file_to_size()?;
        self.recompute_tail()?;
        Ok(true)
    }

    /// When the segment stops being active or the log closes: appends the final
    /// time-index entry (so a clean open knows the segment's max timestamp without a
    /// scan), cuts the zeros written ahead ([`Self::trim`]) and lets the indexes drop
    /// the entries they kept in memory for lookups at the end of the log.
    pub(crate) fn retire(&mut self) -> Result<()> {
        self.time_index
            .maybe_append(self.max_timestamp, self.offset_of_max_timestamp, true)?;
        self.trim()?;
        self.cool_indexes()
    }

    /// Lets the indexes drop the newest entries they keep in memory, once written (a
    /// segment that is not active, whose lookups read the files).
    pub(crate) fn cool_indexes(&mut self) -> Result<()> {
        self.offset_index.cool()?;
        self.time_index.cool()
    }

    /// fsyncs the data file and both indexes.
    pub(crate) fn flush(&self) -> Result<()> {
        fs::sync_all(&self.log, &self.log_path).map_err(LogError::io(&self.log_path))?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Deletes the segment's three files.
    pub(crate) fn delete_files(self, dir: &Path) -> Result<()> {
        let base = self.base_offset;
        drop(self);
        remove_segment_files(dir, base)
    }
}

/// Deletes the three files of the segment at `base_offset` (not the directory entry's
/// durability: the caller fsyncs the directory).
pub(crate) fn remove_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        remove_if_exists(&dir.join(file_name(base_offset, suffix)))?;
    }
    Ok(())
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch, BatchSpec};

    /// A segment at base 100 holding batches of `counts` records, 100 bytes each,
    /// max timestamps 10, 30, 20, 40, ... as given.
    fn segment(dir: &Path, batches: &[(i32, i64)]) -> LogSegment {
        let config = LogConfig {
            index_interval_bytes: 150,
            ..LogConfig::default()
        };
        let mut s = LogSegment::create(dir, 100, &config, 0).unwrap();
        let mut next = 100;
        for &(count, ts) in batches {
            let b = batch(&BatchSpec {
                base_offset: next,
                record_count: count,
                max_timestamp: ts,
                payload_len: 39,
                ..BatchSpec::default()
            });
            let h = BatchHeader::parse(&b).unwrap();
            s.append(&b, &h, config.index_interval_bytes).unwrap();
            next += i64::from(count);
        }
        s
    }

    #[test]
    fn tracks_offsets_timestamps_and_locates_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = segment(dir.path(), &[(2, 10), (3, 30), (1, 20), (4, 40), (1, 5)]);
        assert_eq!(file_name(100, LOG_SUFFIX), "00000000000000000100.log");
        assert_eq!(
            (s.size(), s.next_offset(), s.max_timestamp()),
            (500, 111, 40)
        );
        for (offset, position) in [
            (0, 0),
            (100, 0),
            (101, 0),
            (102, 100),
            (104, 100),
            (105, 200),
            (106, 300),
            (110, 400),
        ] {
            assert_eq!(
                s.locate(offset).unwrap().map(|(p, _)| p),
                Some(position),
                "offset {offset}"
            );
        }
        assert!(s.locate(111).unwrap().is_none());
        // Index entries at 105 (position 200) and 110 (400): those are found from the
        // index alone, every other offset by reading headers, with the same answers.
        assert_eq!(
            (
                s.offset_index.lookup(105).unwrap(),
                s.offset_index.lookup(110).unwrap()
            ),
            ((105, 200), (110, 400))
        );
        for offset in 0..=112 {
            assert_eq!(
                s.locate_start(offset).unwrap(),
                s.locate(offset).unwrap().map(|(p, h)| (p, h.base_offset)),
                "offset {offset}"
            );
        }
        let ts_base = |ts| {
            s.read_by_timestamp(ts)
                .unwrap()
                .map(|b| BatchHeader::parse(&b).unwrap().base_offset)
        };
        assert_eq!(
            (ts_base(11), ts_base(21), ts_base(31), ts_base(41)),
            (Some(102), Some(102), Some(106), None)
        );
    }

    #[test]
    fn batch_span_is_bounded_to_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        // Index entries (every 150 bytes) at positions 200 and 400 of 600.
        let s = segment(dir.path(), &[(1, 0); 6]);
        for (position, max, min_one, span) in [
            (0, 250, false, 200),
            (0, 200, false, 200),
            (0, 199, false, 100),
            (100, 10_000, false, 500),
            (100, 300, false, 300),
            (100, 299, false, 200),
            (300, 150, false, 100),
            (0, 99, false, 0),
            (0, 99, true, 100),
            (0, 0, true, 100),
            (500, 100, true, 100),
            (600, 100, true, 0),
            (0, u64::MAX, false, 600),
        ] {
            assert_eq!(
                s.batch_span(position, max, min_one).unwrap(),
                span,
                "position {position} max {max} min_one {min_one}"
            );
        }
    }

    #[test]
    fn preallocation_writes_zeros_ahead_and_trim_cuts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = segment(dir.path(), &[(1, 10), (1, 20)]);
        let file_len = |s: &LogSegment| std::fs::metadata(s.log_path()).unwrap().len();
        let data = std::fs::read(s.log_path()).unwrap();
        assert_eq!((s.size(), file_len(&s)), (200, 200));
        s.preallocate(1_000, 10_000).unwrap();
        assert_eq!((s.allocated(), file_len(&s)), (1_200, 1_200));
        // Appends overwrite the zeros; the file keeps its length.
        let b = batch(&BatchSpec {
            base_offset: 102,
            payload_len: 39,
            ..BatchSpec::default()
        });
        s.append(&b, &BatchHeader::parse(&b).unwrap(), 150).unwrap();
        assert_eq!((s.size(), file_len(&s)), (300, 1_200));
        // More than half of `ahead` is still ahead: nothing is written.
        assert!(!s.preallocation_due(1_000, 10_000));
        assert!(s.preallocation_due(2_000, 10_000));
        s.preallocate(1_000, 10_000).unwrap();
        assert_eq!(file_len(&s), 1_200);
        // Less than half: topped up to `ahead` again, never past `limit`.
        s.preallocate(2_000, 10_000).unwrap();
        assert_eq!(file_len(&s), 2_300);
        s.preallocate(20_000, 4_000).unwrap();
        assert_eq!(file_len(&s), 4_000);
        let on_disk = std::fs::read(s.log_path()).unwrap();
        assert_eq!(&on_disk[..200], &data[..]);
        assert_eq!(&on_disk[200..300], &b[..]);
        assert!(on_disk[300..].iter().all(|&z| z == 0));
        assert_eq!(s.read_batch(200, &s.header_at(200).unwrap()).unwrap(), b);
        s.trim().unwrap();
        assert_eq!((s.allocated(), file_len(&s)), (300, 300));
    }

    #[test]
    fn truncate_recomputes_tail_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = segment(dir.path(), &[(2, 10), (3, 50), (1, 20), (4, 40)]);
        assert!(s.truncate_to(103).unwrap()); // inside the batch 102..=104
        assert_eq!(
            (s.size(), s.next_offset(), s.max_timestamp()),
            (100, 102, 10)
        );
        assert!(!s.truncate_to(102).unwrap());
        assert!(s.truncate_to(100).unwrap());
        assert_eq!((s.size(), s.next_offset(), s.max_timestamp()), (0, 100, -1));
        assert_eq!(std::fs::metadata(s.log_path()).unwrap().len(), 0);
    }

    #[test]
    fn clean_load_matches_appended_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = segment(dir.path(), &[(2, 10), (3, 50), (1, 20), (4, 40), (1, 45)]);
        assert!(s.offset_index.warm_entries() > 0 && s.time_index.warm_entries() > 0);
        s.retire().unwrap();
        // Retired: its lookups read the index files, nothing stays in memory.
        assert_eq!(
            (s.offset_index.warm_entries(), s.time_index.warm_entries()),
            (0, 0)
        );
        s.flush().unwrap();
        let (next, max, size) = (s.next_offset(), s.max_timestamp(), s.size());
        drop(s);
        let mut reopened = LogSegment::open(dir.path(), 100, &LogConfig::default(), 0).unwrap();
        assert!(reopened.load_clean().unwrap());
        assert_eq!(
            (
                reopened.next_offset(),
                reopened.max_timestamp(),
                reopened.size()
            ),
            (next, max, size)
        );
    }

    #[test]
    fn garbage_on_disk_is_corrupt_log_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = segment(dir.path(), &[(1, 0); 3]);
        // Simulate a bad index entry: positions that are not batch boundaries.
        assert!(matches!(
            s.header_at(7),
            Err(LogError::CorruptLog { position: 7, .. })
        ));
        assert!(matches!(s.header_at(290), Err(LogError::CorruptLog { .. })));
        // A header whose length runs past the end.
        let mut huge = batch(&BatchSpec::default());
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        s.log.write_all_at(&huge, 300).unwrap();
        s.size = 300 + huge.len() as u64;
        assert!(matches!(
            s.header_at(300),
            Err(LogError::CorruptLog {
                reason: CorruptReason::Truncated { .. },
                ..
            })
        ));
        assert!(matches!(
            s.batch_span(300, 10, true),
            Err(LogError::CorruptLog { .. })
        ));
    }
}
