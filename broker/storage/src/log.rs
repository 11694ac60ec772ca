//! [`Log`]: one partition's log — Kafka's `UnifiedLog`/`LocalLog` on a single node.
//!
//! # On-disk layout of `<data>/<topic>-<partition>/`
//!
//! | file                          | contents                                                        | written                     |
//! |-------------------------------|-----------------------------------------------------------------|-----------------------------|
//! | `<base>.log`                  | record batches exactly as appended (base offset, leader epoch and, under `LogAppendTime`, max timestamp + CRC patched) | append (no fsync); fsync on flush |
//! | `<base>.index`                | sparse offset index: 8-byte entries (relative offset u32, position u32) | with the `.log`; rebuilt by recovery |
//! | `<base>.timeindex`            | sparse time index: 12-byte entries (timestamp i64, relative offset u32) | with the `.log`; rebuilt by recovery |
//! | `recovery-point`              | offset below which everything is fsynced (text: `0\n<offset>\n`) | atomically, by flush        |
//! | `producer-state.snapshot`     | idempotent-producer state as of an offset (see `producer_state`) | atomically, on flush after a roll, and on close |
//! | `clean-shutdown`              | empty marker: the log was closed and needs no recovery scan     | by close; deleted by open   |
//! | `leader-epoch-checkpoint`     | leader-epoch cache: `0\n<count>\n` then `<epoch> <start offset>\n` per entry (see `leader_epoch`) | durably: before the batch starting a new epoch; after truncation and when the log start offset rises |
//! | `log-start-offset`            | the log start offset (text, like `recovery-point`); a value below the first segment's base is ignored | durably, by retention, DeleteRecords and truncation, before segments are deleted |
//! | `<base>.log.cleaned`          | a segment being rewritten by the cleaner; deleted on open       | by `compact`                |
//! | `<base>.log.swap`             | a complete, fsynced rewritten segment; swapped in on open       | by `compact`                |
//!
//! `<base>` is the segment's base offset as 20 zero-padded digits. The log start
//! offset is the larger of the `log-start-offset` checkpoint and the first segment's
//! base offset (at most the log end offset). Checkpoints are replaced by
//! write-temp/fsync/rename/fsync-dir, except that the directory fsync is skipped when
//! losing the rename is harmless (a recovery point moving forward, a producer
//! snapshot: the older file is still correct); `*.tmp` leftovers are removed on open.
//!
//! # Durability order
//!
//! Appends only write. [`Log::flush`] fsyncs every segment holding offsets at or above
//! the recovery point (and the directory if segments were created or deleted), and
//! only then persists the new recovery point. After a crash, [`Log::open`] scans every
//! segment from the one holding the recovery point, so whatever was not fsynced is
//! validated before it is served.
//! A new leader-epoch cache entry is persisted before the batch that starts the epoch
//! is written, so after a crash the checkpoint is never behind the surviving data;
//! open drops its entries at or past the recovered log end offset (`leader_epoch`).
//! Retention and DeleteRecords persist the new log start offset before deleting
//! segments (`retention`); compaction swaps each rewritten segment in through
//! fsynced `.cleaned` and `.swap` files (`cleaner`).
//!
//! # Concurrency
//!
//! `Log` is `Send + Sync` and does blocking file I/O. Mutating calls take `&mut self`,
//! reads take `&self`; the caller serialises access (a `Mutex`, or an `RwLock` to let
//! reads run together) and calls from a blocking thread, never an async task.
//! [`Log::flush_handle`] takes `&self` and returns file handles that can be fsynced
//! after the lock is released; [`Log::mark_flushed`] then moves the recovery point.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::checkpoint::{self, Durability};
use crate::cleaner;
pub use crate::config::{LogConfig, TimestampType};
use crate::error::{LogError, Result};
use crate::health::LogDirHealth;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::ProducerStateManager;
use crate::recovery;
use crate::segment::{remove_segment_files, LogSegment};
use crate::segment_list::SegmentList;

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended (for a duplicate: of the original batch).
    pub base_offset: i64,
    /// Offset of the last record appended (for a duplicate: of the original batch).
    pub last_offset: i64,
    /// The append time stamped on the batches under `LogAppendTime`, else -1.
    pub log_append_time: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// The payload retried an idempotent batch already in the log; nothing was written.
    pub duplicate: bool,
}

/// Bytes returned by [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSlice {
    /// Whole record batches, byte-identical to what was stored.
    pub bytes: bytes::Bytes,
    /// Base offset of the first batch in `bytes` (may be below the offset asked for,
    /// when that offset is inside a batch); the offset asked for when `bytes` is empty.
    pub first_offset: i64,
    /// The high watermark (the log end offset on a single node).
    pub high_watermark: i64,
    /// The log start offset.
    pub log_start_offset: i64,
}

/// A partition log: an ordered list of segments, the active one last.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: SegmentList,
    /// The first offset readable; at least the first segment's base, at most the log
    /// end offset. Persisted in `log-start-offset` (durably) whenever it changes.
    pub(crate) log_start_offset: i64,
    /// Every offset below this is fsynced with its indexes; persisted in
    /// `recovery-point`.
    pub(crate) recovery_point: i64,
    /// Every offset below this has its segment data fsynced (at least
    /// `recovery_point`): what an acknowledgement waits for. Not persisted: recovery
    /// re-reads everything past the recovery point and keeps the valid batches.
    pub(crate) data_synced: i64,
    pub(crate) producers: ProducerStateManager,
    /// The leader-epoch cache, mirrored in `leader-epoch-checkpoint` (`leader_epoch`).
    pub(crate) epochs: LeaderEpochCache,
    /// Offset of the producer-state snapshot on disk, if any.
    pub(crate) snapshot_offset: Option<i64>,
    /// Segment files were created or deleted since the directory was last fsynced.
    pub(crate) dir_dirty: bool,
    /// Wall-clock time of the last flush (or of open), for `flush.ms`.
    pub(crate) last_flush_ms: i64,
    /// The largest `upto_offset` of a [`crate::FlushHandle`] handed out and not since
    /// invalidated by a truncation: [`Log::mark_flushed`] never moves the recovery
    /// point past it.
    pub(crate) flush_handle_upto: AtomicI64,
    /// Segments that [`Log::open`] scanned batch by batch (0 after a clean shutdown).
    pub(crate) segments_scanned_at_open: usize,
    /// Whether the directory may still be written; shared with the other logs in it.
    pub(crate) health: Arc<LogDirHealth>,
}

pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Log {
    /// Opens (creating if absent) the partition log in `dir` (`<data>/<topic>-<partition>/`).
    ///
    /// Without a clean-shutdown marker, segments from the one holding the recovery point
    /// onwards are scanned batch by batch (length, magic, CRC-32C); the first invalid or
    /// torn batch and everything after it is removed (later segments deleted) and their
    /// indexes are rebuilt. With the marker, segments are trusted, but any whose index is
    /// missing or inconsistent is scanned the same way. Producer state is rebuilt from its
    /// snapshot plus the batches after it. On return the marker is gone and the recovery
    /// point equals the log end offset.
    ///
    /// Before any of this, leftovers of an interrupted compaction are resolved (a
    /// `.cleaned` file is deleted, a `.swap` file replaces its segment); after it, the
    /// log start offset is read from its checkpoint and segments wholly below it (left
    /// by a crash during retention or DeleteRecords) are deleted.
    ///
    /// The log gets a [`LogDirHealth`] of its own: an I/O error fails this log alone.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        Self::open_in(dir, config, LogDirHealth::new(dir))
    }

    /// [`Log::open`], sharing `health` with the other logs of a log directory: an I/O
    /// error in any of them fails them all (see `health`). Refused when `health` has
    /// failed already; an I/O error while opening fails it.
    pub fn open_in(dir: &Path, config: LogConfig, health: Arc<LogDirHealth>) -> Result<Log> {
        health.check()?;
        let opened = Self::open_with(dir, config, Arc::clone(&health));
        health.record(opened)
    }

    fn open_with(dir: &Path, config: LogConfig, health: Arc<LogDirHealth>) -> Result<Log> {
        if !dir.try_exists().map_err(LogError::io(dir))? {
            std::fs::create_dir_all(dir).map_err(LogError::io(dir))?;
            // Make the new partition directory's entry durable.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                checkpoint::sync_dir(parent)?;
            }
        }
        // A crash during compaction leaves `.cleaned` (dropped) or `.swap` (completed).
        cleaner::recover_interrupted_cleaning(dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        let stored_recovery_point = checkpoint::read_offset(dir, RECOVERY_POINT_FILE)?;
        let recovery_point = if clean {
            None
        } else {
            Some(stored_recovery_point.unwrap_or(0))
        };
        let loaded = recovery::load_segments(dir, &config, recovery_point, wall_clock_ms())?;
        let Some(segments) = SegmentList::new(loaded.segments) else {
            // load_segments creates a first segment when there is none.
            return Err(LogError::io(dir)(std::io::Error::other(
                "no segment after load",
            )));
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            log_start_offset: segments.first().base_offset(),
            segments,
            recovery_point: 0,
            data_synced: 0,
            producers: ProducerStateManager::default(),
            epochs: LeaderEpochCache::default(),
            snapshot_offset: None,
            dir_dirty: loaded.truncated,
            last_flush_ms: wall_clock_ms(),
            flush_handle_upto: AtomicI64::new(-1),
            segments_scanned_at_open: loaded.scanned.len(),
            health,
        };
        // Scanned segments may hold data that never reached the disk before the crash:
        // fsync them before the recovery point moves past them.
        for segment in log.segments.iter() {
            if loaded.scanned.contains(&segment.base_offset()) {
                segment.flush()?;
            }
        }
        if log.dir_dirty {
            checkpoint::sync_dir(dir)?;
            log.dir_dirty = false;
        }
        log.recovery_point = log.log_end_offset();
        log.data_synced = log.recovery_point;
        if stored_recovery_point != Some(log.recovery_point) {
            // Moving it back (recovery cut fsynced data) must survive a crash; moving it
            // forward may be lost, which only means a longer scan next time.
            let durability = if stored_recovery_point.is_some_and(|rp| rp > log.recovery_point) {
                Durability::Durable
            } else {
                Durability::OldOrNew
            };
            checkpoint::write_offset(dir, RECOVERY_POINT_FILE, log.recovery_point, durability)?;
        }
        log.load_log_start_offset()?;
        log.load_producer_state()?;
        log.load_leader_epochs()?;
        if clean {
            checkpoint::remove_durably(dir, CLEAN_SHUTDOWN_FILE)?;
        }
        tracing::debug!(
            dir = %dir.display(),
            clean,
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            producers = log.producers.len(),
            "opened log"
        );
        Ok(log)
    }

    /// Loads the producer-state snapshot if it is usable and replays the batches after it.
    fn load_producer_state(&mut self) -> Result<()> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let (from, state) = match ProducerStateManager::read_snapshot(&self.dir)? {
            Some((offset, state)) if (start..=end).contains(&offset) => {
                self.snapshot_offset = Some(offset);
                (offset, state)
            }
            Some((offset, _)) => {
                tracing::info!(dir = %self.dir.display(), offset, "discarding producer-state snapshot outside the log");
                ProducerStateManager::delete_snapshot(&self.dir)?;
                self.snapshot_offset = None;
                (start, ProducerStateManager::default())
            }
            None => {
                self.snapshot_offset = None;
                (start, ProducerStateManager::default())
            }
        };
        self.producers = state;
        for segment in self.segments.iter() {
            if segment.next_offset() <= from {
                continue;
            }
            let mut position = match segment.locate(from)? {
                Some((position, _)) => position,
                None => continue,
            };
            while position < segment.size() {
                let header = segment.header_at(position)?;
                self.producers.replay(&header);
                position += header.total_len() as u64;
            }
        }
        Ok(())
    }

    /// How many segments [`Log::open`] had to scan (validate batch by batch): 0 after a
    /// clean shutdown with intact indexes, at least 1 after a crash.
    pub fn segments_scanned_at_open(&self) -> usize {
        self.segments_scanned_at_open
    }

    /// Replaces the configuration (a topic config changed). Applies to later appends;
    /// existing segments are not rewritten.
    pub fn set_config(&mut self, config: LogConfig) {
        self.segments.for_each_mut(|s| s.apply_config(&config));
        self.config = config;
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The first offset readable: moved forward by retention and DeleteRecords
    /// ([`Log::delete_records_before`]); reads below it are `OffsetOutOfRange`.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.segments.active().next_offset()
    }

    /// The offset up to which consumers may read; the log end offset on a single node.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    /// Total bytes of record batches in all segments (indexes excluded).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(LogSegment::size).sum()
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// fsyncs every segment written since the last flush (data and indexes), the
    /// directory if segments were created or deleted, then persists the recovery point
    /// (= log end offset). Also snapshots producer state when a segment rolled since
    /// the last snapshot, bounding the replay after a crash.
    ///
    /// A flush with nothing new does no I/O; otherwise it typically costs an fsync of
    /// the active `.log` (plus its indexes when they gained entries) and one of the
    /// recovery-point file. Callers should group flushes across produce requests.
    pub fn flush(&mut self) -> Result<()> {
        self.guarded(|log| log.flush_now())
    }

    fn flush_now(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        for segment in self.segments.iter().rev() {
            if segment.next_offset() <= self.recovery_point && segment.size() > 0 {
                break;
            }
            segment.flush()?;
        }
        if self.dir_dirty {
            checkpoint::sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        if end != self.recovery_point {
            // A crash may bring back the previous recovery point: only a longer scan.
            checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, end, Durability::OldOrNew)?;
            self.recovery_point = end;
        }
        self.data_synced = self.data_synced.max(end);
        self.last_flush_ms = wall_clock_ms();
        self.maybe_snapshot_producers()
    }

    /// Snapshots producer state at the log end offset when a segment rolled since the
    /// last snapshot. A snapshot past what survives a crash is discarded on open.
    pub(crate) fn maybe_snapshot_producers(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        let active_base = self.segments.active().base_offset();
        if self.snapshot_offset.is_none_or(|s| s < active_base) {
            self.producers.write_snapshot(&self.dir, end)?;
            self.snapshot_offset = Some(end);
        }
        Ok(())
    }

    /// Truncates the log so that it ends before `offset`: every batch whose last offset
    /// is at least `offset` is removed, so the log end offset becomes `offset` when that
    /// is a batch boundary, and the base offset of the batch spanning `offset`
    /// otherwise. `offset` at or past the log end does nothing; below the log start,
    /// the log is emptied and restarts at `offset`. Leader-epoch cache entries starting
    /// at or past the new log end offset are removed (all of them when the log is
    /// emptied). The result is fsynced.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.guarded(|log| log.truncate_to_now(offset))
    }

    fn truncate_to_now(&mut self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(LogError::InvalidTruncation { offset });
        }
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset() {
            return self.truncate_fully_and_start_at(offset);
        }
        let keep = self.segments.floor(offset);
        let keep_base = self
            .segments
            .get(keep)
            .map_or(offset, LogSegment::base_offset);
        // Write-ahead: the recovery point must not claim anything past the cut.
        self.lower_recovery_point(keep_base)?;
        for segment in self.segments.split_off_after(keep) {
            segment.delete_files(&self.dir)?;
            self.dir_dirty = true;
        }
        self.segments.active_mut().truncate_to(offset)?;
        let removed = self.epochs.truncate_from_end(self.log_end_offset());
        self.persist_epochs_after_removal(removed)?;
        if self.log_start_offset > self.log_end_offset() {
            // A cut inside the batch holding the log start offset.
            let end = self.log_end_offset();
            self.set_log_start_offset(end)?;
        }
        self.after_truncation()
    }

    /// Empties the log and restarts it at `offset` (a follower that fell behind the
    /// leader's log start offset starts over there, as Kafka's followers do). Durable.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.guarded(|log| log.truncate_fully_and_start_at_now(offset))
    }

    fn truncate_fully_and_start_at_now(&mut self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(LogError::InvalidTruncation { offset });
        }
        self.lower_recovery_point(offset)?;
        self.set_log_start_offset(offset)?;
        // Delete newest first, so a crash part-way leaves a shorter but consistent log.
        for segment in self.segments.iter().rev() {
            remove_segment_files(&self.dir, segment.base_offset())?;
        }
        self.dir_dirty = true;
        let fresh = LogSegment::create(&self.dir, offset, &self.config, wall_clock_ms())?;
        drop(self.segments.replace_all(fresh));
        let removed = self.epochs.clear();
        self.persist_epochs_after_removal(removed)?;
        self.after_truncation()
    }

    fn lower_recovery_point(&mut self, bound: i64) -> Result<()> {
        // Flush handles covering offsets at or past the cut no longer describe the log.
        self.flush_handle_upto
            .fetch_min(bound, std::sync::atomic::Ordering::AcqRel);
        if self.recovery_point > bound {
            // Durable: an older, higher recovery point would skip scanning the cut region.
            checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, bound, Durability::Durable)?;
            self.recovery_point = bound;
        }
        self.data_synced = self.data_synced.min(bound);
        if self.snapshot_offset.is_some_and(|s| s > bound) {
            ProducerStateManager::delete_snapshot(&self.dir)?;
            self.snapshot_offset = None;
        }
        Ok(())
    }

    fn after_truncation(&mut self) -> Result<()> {
        self.producers.clear();
        self.load_producer_state()?;
        self.flush()
    }

    /// Flushes everything and writes the clean-shutdown marker, so the next open skips
    /// the recovery scan.
    ///
    /// Once the directory has failed this writes nothing and returns
    /// [`LogError::LogDirFailed`]: without the marker the next open scans the segments
    /// past the recovery point and cuts what never reached the disk.
    pub fn close(mut self) -> Result<()> {
        self.guarded(Log::close_now)
    }

    fn close_now(&mut self) -> Result<()> {
        // The final time-index entry lets the next open skip scanning for timestamps.
        let active = self.segments.active_mut();
        active.retire()?;
        self.flush()?;
        self.segments.active().flush()?;
        let end = self.log_end_offset();
        if self.snapshot_offset != Some(end) {
            self.producers.write_snapshot(&self.dir, end)?;
        }
        checkpoint::write_marker(&self.dir, CLEAN_SHUTDOWN_FILE)?;
        tracing::debug!(dir = %self.dir.display(), log_end_offset = end, "closed log");
        Ok(())
    }

    /// Removes the log's directory and everything in it (topic deletion).
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(LogError::io(&dir))?;
        if let Some(parent) = dir.parent() {
            checkpoint::sync_dir(parent)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{idempotent, simple};

    fn small() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    fn all_bytes(log: &Log) -> Vec<u8> {
        log.read(log.log_start_offset(), usize::MAX, true)
            .unwrap()
            .bytes
            .to_vec()
    }

    #[test]
    fn log_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Log>();
    }

    #[test]
    fn clean_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        for i in 0..7 {
            log.append(&simple(2, 39, 100 + i), 3, 0).unwrap();
        }
        let before = all_bytes(&log);
        log.close().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(14)
        );
        let mut log = Log::open(dir.path(), small()).unwrap();
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 14));
        assert_eq!(all_bytes(&log), before);
        let ts_batch = log.read_batch_by_timestamp(105).unwrap().unwrap();
        assert_eq!(
            crate::BatchHeader::parse(&ts_batch).unwrap().base_offset,
            10
        );
        assert_eq!(log.append(&simple(1, 10, 0), 0, 0).unwrap().base_offset, 14);
    }

    fn assert_producer_state_kept(dir: &Path) {
        let mut log = Log::open(dir, small()).unwrap();
        let retry = log.append(&idempotent(9, 1, 2, 3), 0, 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (7, 9));
        assert!(matches!(
            log.append(&idempotent(9, 1, 6, 1), 0, 0),
            Err(LogError::OutOfOrderSequence { expected: 5, .. })
        ));
        assert!(matches!(
            log.append(&idempotent(9, 0, 5, 1), 0, 0),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(
            log.append(&idempotent(9, 1, 5, 1), 0, 0)
                .unwrap()
                .base_offset,
            10
        );
    }

    /// Offsets 0..5 plain in 100-byte batches (rolling at 300 bytes), then producer 9
    /// epoch 1 sequences 0..=1 at 5..=6 and 2..=4 at 7..=9.
    fn write_producer_history(log: &mut Log) {
        for _ in 0..5 {
            log.append(&simple(1, 39, 0), 0, 0).unwrap();
        }
        log.append(&idempotent(9, 1, 0, 2), 0, 0).unwrap();
        log.append(&idempotent(9, 1, 2, 3), 0, 0).unwrap();
    }

    #[test]
    fn producer_state_survives_clean_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        write_producer_history(&mut log);
        log.close().unwrap();
        assert_producer_state_kept(dir.path());
    }

    #[test]
    fn producer_state_survives_unclean_reopen() {
        // Never flushed: rebuilt by scanning the whole log.
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        write_producer_history(&mut log);
        drop(log);
        assert_producer_state_kept(dir.path());

        // Flushed after a roll (snapshot written), then more appends, then a crash.
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        for _ in 0..5 {
            log.append(&simple(1, 39, 0), 0, 0).unwrap();
        }
        log.append(&idempotent(9, 1, 0, 2), 0, 0).unwrap();
        log.flush().unwrap();
        assert!(dir
            .path()
            .join(crate::producer_state::SNAPSHOT_FILE)
            .exists());
        log.append(&idempotent(9, 1, 2, 3), 0, 0).unwrap();
        drop(log);
        assert_producer_state_kept(dir.path());
    }

    #[test]
    fn flush_persists_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        log.append(&simple(3, 10, 0), 0, 0).unwrap();
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(0)
        );
        log.flush().unwrap();
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(3)
        );
        log.flush().unwrap();
        assert_eq!(log.recovery_point, 3);
    }

    #[test]
    fn truncate_to_boundaries_spans_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        for _ in 0..8 {
            log.append(&simple(2, 39, 0), 0, 0).unwrap(); // 100 bytes, 2 offsets
        }
        let original = all_bytes(&log);
        log.truncate_to(16).unwrap(); // at the end: nothing
        log.truncate_to(99).unwrap();
        assert_eq!(log.log_end_offset(), 16);
        assert!(matches!(
            log.truncate_to(-1),
            Err(LogError::InvalidTruncation { offset: -1 })
        ));

        log.truncate_to(12).unwrap(); // a batch boundary in the third segment
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(all_bytes(&log), original[..600]);
        log.truncate_to(7).unwrap(); // inside batch 6..=7, a segment's first batch
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(all_bytes(&log), original[..300]);
        assert_eq!(log.segments.len(), 2);
        assert_eq!(log.segments.active().size(), 0);
        assert_eq!(log.append(&simple(1, 10, 0), 0, 0).unwrap().base_offset, 6);
        drop(log);
        let log = Log::open(dir.path(), small()).unwrap();
        assert_eq!(log.log_end_offset(), 7);
        assert_eq!(all_bytes(&log)[..300], original[..300]);
    }

    #[test]
    fn truncate_below_log_start_restarts_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        log.truncate_to(0).unwrap();
        log.append(&simple(2, 39, 0), 0, 0).unwrap();
        log.truncate_to(0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        // Move the start forward by truncating fully to a higher offset, then below it.
        log.truncate_fully_and_start_at(50).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
        log.append(&simple(2, 39, 0), 0, 0).unwrap();
        log.truncate_to(10).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
        assert!(matches!(
            log.read(5, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        log.close().unwrap();
        let log = Log::open(dir.path(), small()).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
    }

    #[test]
    fn truncation_rebuilds_producer_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        write_producer_history(&mut log);
        log.close().unwrap();
        let mut log = Log::open(dir.path(), small()).unwrap();
        log.truncate_to(7).unwrap();
        // Sequences 2..=4 are gone, so they are no longer a duplicate but the next batch.
        let info = log.append(&idempotent(9, 1, 2, 3), 0, 0).unwrap();
        assert!(!info.duplicate);
        assert_eq!(info.base_offset, 7);
    }

    #[test]
    fn delete_removes_the_directory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("topic-0");
        let mut log = Log::open(&dir, small()).unwrap();
        log.append(&simple(1, 10, 0), 0, 0).unwrap();
        log.delete().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn set_config_applies_to_later_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&simple(1, 100, 0), 0, 0).unwrap();
        let config = LogConfig {
            max_message_bytes: 100,
            ..LogConfig::default()
        };
        log.set_config(config.clone());
        assert_eq!(log.config(), &config);
        assert!(matches!(
            log.append(&simple(1, 100, 0), 0, 0),
            Err(LogError::RecordTooLarge { .. })
        ));
    }
}
