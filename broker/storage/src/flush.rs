//! Flush policy (`flush.messages`, `flush.ms`) and grouped fsync across partitions.
//!
//! [`Log::flush`] fsyncs under the caller's lock. A broker-level flusher that wants to
//! fsync many partitions together without blocking their appends instead:
//!
//! 1. takes [`Log::flush_handle`] under a short (read) lock: second handles on the
//!    dirty segment files, plus the log end offset they cover;
//! 2. releases the lock and calls [`FlushHandle::sync`] (possibly for many partitions,
//!    from several threads);
//! 3. re-takes the (write) lock and calls [`Log::mark_flushed`] with
//!    [`FlushHandle::upto_offset`], which persists the recovery point.
//!
//! Appends made between 1 and 3 are not covered and stay unflushed. A truncation in
//! between invalidates the handle: `mark_flushed` never moves the recovery point past
//! the truncation point on its behalf.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::checkpoint::{self, Durability};
use crate::error::{LogError, Result};
use crate::log::{wall_clock_ms, Log, RECOVERY_POINT_FILE};

/// What must be fsynced for a log's recovery point to reach [`Self::upto_offset`].
///
/// Holds duplicated file descriptors, so it stays valid (and harmless) if the log
/// rolls, truncates or deletes segments meanwhile. `Send + Sync`; [`Self::sync`] takes
/// no lock of the log.
#[derive(Debug)]
pub struct FlushHandle {
    files: Vec<(PathBuf, File)>,
    dir: Option<PathBuf>,
    upto_offset: i64,
}

impl FlushHandle {
    /// The log end offset when the handle was taken: once [`Self::sync`] succeeded,
    /// every offset below it is on disk.
    pub fn upto_offset(&self) -> i64 {
        self.upto_offset
    }

    /// Number of files (segment data and indexes) the handle will fsync.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// fsyncs every file, then the partition directory if segments were created
    /// since the last flush. Blocking; call it without holding the log's lock.
    pub fn sync(&self) -> Result<()> {
        for (path, file) in &self.files {
            file.sync_all().map_err(LogError::io(path))?;
        }
        if let Some(dir) = &self.dir {
            checkpoint::sync_dir(dir)?;
        }
        Ok(())
    }
}

impl Log {
    /// Offsets appended since the recovery point (Kafka's `unflushedMessages`).
    pub fn unflushed_messages(&self) -> u64 {
        u64::try_from(self.log_end_offset() - self.recovery_point).unwrap_or(0)
    }

    /// Whether the flush policy asks for a flush at wall-clock time `now_ms`: something
    /// is unflushed and either `flush.messages` messages are, or `flush.ms` has passed
    /// since the last flush (or open).
    pub fn needs_flush(&self, now_ms: i64) -> bool {
        let unflushed = self.unflushed_messages();
        if unflushed == 0 {
            return false;
        }
        let waited = u64::try_from(now_ms.saturating_sub(self.last_flush_ms)).unwrap_or(0);
        unflushed >= self.config.flush_messages || waited >= self.config.flush_ms
    }

    /// What to fsync so the recovery point can reach the current log end offset, or
    /// `None` when nothing is unflushed. Takes `&self`: hold only a read lock, and do
    /// the fsyncs ([`FlushHandle::sync`]) after releasing it (see the module docs).
    pub fn flush_handle(&self) -> Result<Option<FlushHandle>> {
        let upto_offset = self.log_end_offset();
        if upto_offset <= self.recovery_point && !self.dir_dirty {
            return Ok(None);
        }
        let mut files = Vec::new();
        for segment in self.segments.iter().rev() {
            if segment.next_offset() <= self.recovery_point && segment.size() > 0 {
                break;
            }
            files.extend(segment.clone_handles()?);
        }
        self.flush_handle_upto
            .fetch_max(upto_offset, Ordering::AcqRel);
        Ok(Some(FlushHandle {
            files,
            dir: self.dir_dirty.then(|| self.dir.clone()),
            upto_offset,
        }))
    }

    /// Records that a [`FlushHandle`] with this `upto_offset` was synced: persists the
    /// recovery point (never past the log end, nor past a handle a truncation has
    /// invalidated, nor backwards) and snapshots producer state when a segment rolled.
    pub fn mark_flushed(&mut self, upto_offset: i64) -> Result<()> {
        let valid = upto_offset
            .min(self.flush_handle_upto.load(Ordering::Acquire))
            .min(self.log_end_offset());
        if valid <= self.recovery_point {
            return Ok(());
        }
        // A segment created after the handle was taken starts at or past its offset;
        // one created before it had its directory entry fsynced by the handle.
        if self.segments.active().base_offset() < valid {
            self.dir_dirty = false;
        }
        checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, valid, Durability::OldOrNew)?;
        self.recovery_point = valid;
        self.last_flush_ms = wall_clock_ms();
        self.maybe_snapshot_producers()
    }

    /// The recovery point: every offset below it is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::testutil::simple;

    fn small() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            flush_messages: 5,
            flush_ms: 1_000,
            ..LogConfig::default()
        }
    }

    #[test]
    fn policy_by_count_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        let start = log.last_flush_ms;
        assert!(!log.needs_flush(start + 10_000)); // nothing unflushed
        log.append(&simple(4, 10, 0), 0, 0).unwrap();
        assert_eq!(log.unflushed_messages(), 4);
        assert!(!log.needs_flush(start + 999));
        assert!(log.needs_flush(start + 1_000));
        log.append(&simple(1, 10, 0), 0, 0).unwrap();
        assert!(log.needs_flush(start));
        log.flush().unwrap();
        assert_eq!(log.unflushed_messages(), 0);
        assert!(!log.needs_flush(i64::MAX));
        let never = LogConfig::default();
        log.set_config(never);
        log.append(&simple(3, 10, 0), 0, 0).unwrap();
        assert!(!log.needs_flush(i64::MAX - 1));
    }

    #[test]
    fn handle_then_mark_moves_the_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        assert!(log.flush_handle().unwrap().is_none());
        for _ in 0..4 {
            log.append(&simple(2, 39, 0), 0, 0).unwrap(); // rolls after 3 batches
        }
        let handle = log.flush_handle().unwrap().unwrap();
        assert_eq!((handle.upto_offset(), handle.file_count()), (8, 6));
        log.append(&simple(2, 39, 0), 0, 0).unwrap(); // not covered
        handle.sync().unwrap();
        log.mark_flushed(handle.upto_offset()).unwrap();
        assert_eq!((log.recovery_point(), log.unflushed_messages()), (8, 2));
        assert!(!log.dir_dirty);
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(8)
        );
        // Never backwards, never past the log end or an unissued handle.
        log.mark_flushed(3).unwrap();
        log.mark_flushed(100).unwrap();
        assert_eq!(log.recovery_point(), 8);
    }

    #[test]
    fn truncation_invalidates_outstanding_handles() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        log.append(&simple(2, 39, 0), 0, 0).unwrap();
        log.flush().unwrap();
        log.append(&simple(4, 39, 0), 0, 0).unwrap();
        let handle = log.flush_handle().unwrap().unwrap();
        assert_eq!(handle.upto_offset(), 6);
        log.truncate_to(2).unwrap();
        log.append(&simple(4, 39, 0), 0, 0).unwrap(); // offsets 2..6 again, unsynced
        handle.sync().unwrap();
        log.mark_flushed(6).unwrap();
        assert_eq!(log.recovery_point(), 2);
        assert_eq!(log.unflushed_messages(), 4);
    }
}
