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
//!
//! An acknowledgement only needs the record bytes on disk. [`Log::data_flush_handle`]
//! covers the `.log` files alone (and the directory when segments were created), and
//! [`Log::mark_synced`] with it advances only the in-memory [`Log::data_synced`]: no
//! index fsyncs, no checkpoint write. That is safe because after a crash recovery
//! re-reads every segment past the persisted recovery point, keeps each batch whose
//! CRC-32C holds and rebuilds the indexes; fsynced data past the recovery point is
//! therefore recovered. [`Log::ack_flush_handle`] picks a full handle when the last
//! full flush is older than a given interval, which bounds that re-reading.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::checkpoint::{self, Durability};
use crate::error::{LogError, Result};
use crate::fs;
use crate::health::LogDirHealth;
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
    /// Indexes included: syncing it lets the recovery point advance.
    full: bool,
    /// The log directory's health: a failed sync fails it, a failed directory refuses.
    health: Arc<LogDirHealth>,
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

    /// Whether the handle covers the indexes too (from [`Log::flush_handle`]), so that
    /// the recovery point may advance once it is synced.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// fsyncs every file, then the partition directory if segments were created
    /// since the last flush. Blocking; call it without holding the log's lock.
    ///
    /// A data-only handle uses fdatasync: the bytes and the file length, not the
    /// modification time (which retention reads only for segments whose batches carry
    /// no timestamp, and which the next full flush, with fsync, persists).
    ///
    /// A failed fsync fails the log directory ([`LogDirHealth`]); once it has failed,
    /// this returns [`LogError::LogDirFailed`] without syncing: a retried fsync could
    /// succeed for pages the kernel has already dropped.
    pub fn sync(&self) -> Result<()> {
        self.health.check()?;
        self.health.record(self.sync_files())
    }

    fn sync_files(&self) -> Result<()> {
        for (path, file) in &self.files {
            let synced = if self.full {
                fs::sync_all(file, path)
            } else {
                fs::sync_data(file, path)
            };
            synced.map_err(LogError::io(path))?;
        }
        if let Some(dir) = &self.dir {
            checkpoint::sync_dir(dir)?;
        }
        Ok(())
    }
}

/// The least [`Log::preallocate`] keeps ahead of a segment's end.
pub const MIN_PREALLOCATE: u64 = 64 * 1024;

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
        self.health.check()?;
        self.handle_past(self.recovery_point, true)
    }

    /// What to fsync so that every record up to the current log end offset is on disk:
    /// the `.log` files past [`Self::data_synced`] (and the directory when segments
    /// were created), not the indexes. `None` when nothing is unsynced. Complete it
    /// with [`Self::mark_synced`].
    pub fn data_flush_handle(&self) -> Result<Option<FlushHandle>> {
        self.health.check()?;
        self.handle_past(self.data_synced(), false)
    }

    /// A handle on the segments holding offsets at or past `synced` (with their
    /// indexes when `full`), up to the log end offset.
    fn handle_past(&self, synced: i64, full: bool) -> Result<Option<FlushHandle>> {
        let upto_offset = self.log_end_offset();
        if upto_offset <= synced && !self.dir_dirty {
            return Ok(None);
        }
        let mut files = Vec::new();
        for segment in self.segments.iter().rev() {
            if segment.next_offset() <= synced && segment.size() > 0 {
                break;
            }
            if full {
                files.extend(segment.clone_handles()?);
            } else {
                files.push(segment.clone_log_handle()?);
            }
        }
        self.flush_handle_upto
            .fetch_max(upto_offset, Ordering::AcqRel);
        Ok(Some(FlushHandle {
            files,
            dir: self.dir_dirty.then(|| self.dir.clone()),
            upto_offset,
            full,
            health: Arc::clone(&self.health),
        }))
    }

    /// The handle an acknowledgement waits for at wall-clock time `now_ms`: a full
    /// one ([`Self::flush_handle`]) when the last full flush is at least
    /// `full_every_ms` old, else a data-only one ([`Self::data_flush_handle`]).
    pub fn ack_flush_handle(&self, now_ms: i64, full_every_ms: i64) -> Result<Option<FlushHandle>> {
        if now_ms.saturating_sub(self.last_flush_ms) >= full_every_ms {
            self.flush_handle()
        } else {
            self.data_flush_handle()
        }
    }

    /// Records that `handle` was synced: [`Self::mark_flushed`] for a full handle;
    /// for a data-only one, advances [`Self::data_synced`] (same bounds: never past
    /// the log end or a truncation, never backwards).
    ///
    /// Refused ([`LogError::LogDirFailed`]) once the directory has failed, even if this
    /// handle's own sync succeeded: another fsync of the same files may have failed.
    pub fn mark_synced(&mut self, handle: &FlushHandle) -> Result<()> {
        if handle.full {
            return self.mark_flushed(handle.upto_offset);
        }
        self.guarded(|log| {
            if let Some(valid) = log.synced_past(handle.upto_offset, log.data_synced) {
                log.data_synced = valid;
            }
            Ok(())
        })
    }

    /// How far a synced handle with this `upto_offset` makes the log durable (never
    /// past the log end nor past a handle a truncation has invalidated), or `None`
    /// when that is not past `floor`. When it is, clears `dir_dirty` if the handle
    /// covered the directory: a segment created after the handle was taken starts at
    /// or past its offset; one created before it had its directory entry fsynced by it.
    fn synced_past(&mut self, upto_offset: i64, floor: i64) -> Option<i64> {
        let valid = upto_offset
            .min(self.flush_handle_upto.load(Ordering::Acquire))
            .min(self.log_end_offset());
        if valid <= floor {
            return None;
        }
        if self.segments.active().base_offset() < valid {
            self.dir_dirty = false;
        }
        Some(valid)
    }

    /// Writes zeros ahead of the active segment's end, up to `ahead` bytes (never past
    /// `segment.bytes`), so that the acknowledgement fsyncs of the appends that follow
    /// write only data (see `segment.rs`). For partitions whose producers wait for
    /// fsyncs; the next sync carries the zeros. Cheap when enough is still ahead.
    pub fn preallocate(&mut self, ahead: u64) -> Result<()> {
        self.guarded(|log| {
            let (window, limit) = log.preallocation_window(ahead);
            log.segments.active_mut().preallocate(window, limit)
        })
    }

    /// How far ahead to preallocate, and the file length not to pass (`segment.bytes`):
    /// as much as the active segment holds, between [`MIN_PREALLOCATE`] and `ahead`, so
    /// a new segment's first rounds each carry a little of zeros rather than all of
    /// `ahead` at once.
    fn preallocation_window(&self, ahead: u64) -> (u64, u64) {
        let window = ahead.min(self.segments.active().size().max(MIN_PREALLOCATE));
        (window, self.config.effective_segment_bytes())
    }

    /// Whether [`Self::preallocate`] with `ahead` would write zeros now (less than half
    /// of `ahead` is left). No I/O.
    pub fn preallocation_due(&self, ahead: u64) -> bool {
        let (window, limit) = self.preallocation_window(ahead);
        self.segments.active().preallocation_due(window, limit)
    }

    /// Every offset below this has its record bytes fsynced (at least
    /// [`Self::recovery_point`]).
    pub fn data_synced(&self) -> i64 {
        self.data_synced
    }

    /// Records that a [`FlushHandle`] with this `upto_offset` was synced: persists the
    /// recovery point (never past the log end, nor past a handle a truncation has
    /// invalidated, nor backwards) and snapshots producer state when a segment rolled.
    /// Refused once the directory has failed (see [`Self::mark_synced`]).
    pub fn mark_flushed(&mut self, upto_offset: i64) -> Result<()> {
        self.guarded(|log| log.mark_flushed_now(upto_offset))
    }

    fn mark_flushed_now(&mut self, upto_offset: i64) -> Result<()> {
        let Some(valid) = self.synced_past(upto_offset, self.recovery_point) else {
            return Ok(());
        };
        checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, valid, Durability::OldOrNew)?;
        self.recovery_point = valid;
        self.data_synced = self.data_synced.max(valid);
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
    fn the_preallocated_window_grows_with_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let active_len = |log: &Log| {
            let path = log.segments.active().log_path().to_path_buf();
            std::fs::metadata(path).unwrap().len()
        };
        log.append(&simple(1, 1_000, 0), 0, 0).unwrap();
        let small = log.size_bytes();
        assert!(log.preallocation_due(1 << 20));
        log.preallocate(1 << 20).unwrap();
        // A new segment gets the least window, not all of `ahead`.
        assert_eq!(active_len(&log), small + MIN_PREALLOCATE);
        assert!(!log.preallocation_due(1 << 20));
        // Once it holds more than that, the window is what it holds, up to `ahead`.
        while log.size_bytes() < 3 * MIN_PREALLOCATE {
            log.append(&simple(8, 8_000, 0), 0, 0).unwrap();
        }
        let held = log.size_bytes();
        assert!(log.preallocation_due(1 << 20));
        log.preallocate(1 << 20).unwrap();
        assert_eq!(active_len(&log), 2 * held);
        log.preallocate(MIN_PREALLOCATE).unwrap();
        assert_eq!(active_len(&log), 2 * held);
        assert_eq!(log.size_bytes(), held);
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
    fn data_handles_sync_segment_data_only_and_recovery_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        log.append(&simple(2, 39, 0), 0, 0).unwrap();
        log.flush().unwrap();
        for _ in 0..3 {
            log.append(&simple(2, 39, 0), 0, 0).unwrap(); // rolls once
        }
        let handle = log.data_flush_handle().unwrap().unwrap();
        assert!(!handle.is_full());
        // The two segments holding offsets 2..8, their .log files alone.
        assert_eq!((handle.upto_offset(), handle.file_count()), (8, 2));
        handle.sync().unwrap();
        log.mark_synced(&handle).unwrap();
        assert_eq!((log.data_synced(), log.recovery_point()), (8, 2));
        assert!(
            !log.dir_dirty,
            "the new segment's directory entry was synced"
        );
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(2),
            "no checkpoint write on the acknowledgement path"
        );
        assert!(log.data_flush_handle().unwrap().is_none(), "nothing new");

        // Old enough: the acknowledgement path takes a full flush, which checkpoints.
        let now = log.last_flush_ms;
        log.append(&simple(1, 39, 0), 0, 0).unwrap();
        assert!(!log
            .ack_flush_handle(now + 999, 1_000)
            .unwrap()
            .unwrap()
            .is_full());
        let full = log.ack_flush_handle(now + 1_000, 1_000).unwrap().unwrap();
        assert!(full.is_full());
        full.sync().unwrap();
        log.mark_synced(&full).unwrap();
        assert_eq!((log.data_synced(), log.recovery_point()), (9, 9));

        // Data synced past the persisted recovery point survives a crash: recovery
        // re-reads it from the segment files and rebuilds the indexes.
        log.append(&simple(3, 39, 0), 0, 0).unwrap();
        let handle = log.data_flush_handle().unwrap().unwrap();
        handle.sync().unwrap();
        log.mark_synced(&handle).unwrap();
        let expected = log.read(0, usize::MAX, true).unwrap();
        drop(log); // crash: no clean-shutdown marker
        let log = Log::open(dir.path(), small()).unwrap();
        assert_eq!(log.log_end_offset(), 12);
        assert!(log.segments_scanned_at_open() >= 1);
        assert_eq!(log.read(0, usize::MAX, true).unwrap().bytes, expected.bytes);
        assert_eq!(log.read(10, usize::MAX, true).unwrap().first_offset, 9);
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
