//! Moving the log start offset forward: retention by time and size (Kafka's
//! `UnifiedLog.deleteOldSegments`) and DeleteRecords.
//!
//! # Durability order
//!
//! The new log start offset is persisted in `log-start-offset` (write-temp, fsync,
//! rename, fsync-dir) *before* any segment file is deleted, and segments are deleted
//! oldest first. A crash at any point leaves a log whose start offset is the new one
//! (or, if the checkpoint write itself was lost, the old one with every segment still
//! present): records below an acknowledged DeleteRecords never become readable again.
//! Segments left wholly below the start offset by a crash are deleted by the next open.

use crate::checkpoint::{self, Durability};
use crate::error::{LogError, Result};
use crate::log::Log;
use crate::segment::LogSegment;

/// Name of the log start offset checkpoint.
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// What [`Log::apply_retention`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Segments deleted because their largest timestamp was older than `retention.ms`.
    pub deleted_by_time: usize,
    /// Segments deleted because the log was over `retention.bytes`.
    pub deleted_by_size: usize,
    /// Bytes of record batches deleted.
    pub deleted_bytes: u64,
    /// The log start offset afterwards.
    pub log_start_offset: i64,
}

impl Log {
    /// Applies `retention.ms` and `retention.bytes` at wall-clock time `now_ms`, for
    /// policies containing `delete` (otherwise does nothing).
    ///
    /// Follows Kafka's `deleteRetentionMsBreachedSegments` then
    /// `deleteRetentionSizeBreachedSegments`: from the oldest segment, delete while
    /// `now_ms - largest_timestamp > retention.ms` (largest timestamp = the segment's
    /// max batch timestamp, or its file's modification time when it has none); then,
    /// if the log is at least `retention.bytes`, delete oldest segments while the log
    /// stays at or above `retention.bytes` without them. The active segment is never
    /// deleted. The log start offset moves to the first remaining segment's base
    /// offset and is persisted before files are removed (see the module docs).
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        self.guarded(|log| log.apply_retention_now(now_ms))
    }

    fn apply_retention_now(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome {
            log_start_offset: self.log_start_offset,
            ..RetentionOutcome::default()
        };
        if !self.config.cleanup_policy.deletes() {
            return Ok(outcome);
        }
        let rolled: Vec<&LogSegment> = self
            .segments
            .iter()
            .take(self.segments.rolled_len())
            .collect();
        let mut by_time = 0;
        if self.config.retention_ms >= 0 {
            for segment in &rolled {
                if now_ms.saturating_sub(segment.largest_timestamp()?) > self.config.retention_ms {
                    by_time += 1;
                } else {
                    break;
                }
            }
        }
        let mut by_size = 0;
        if let Ok(limit) = u64::try_from(self.config.retention_bytes) {
            let size = self.size_bytes();
            if size >= limit {
                // Kafka's `diff - segment.size >= 0`: delete while the rest stays ≥ limit.
                let mut excess = size - limit;
                for segment in &rolled[by_time..] {
                    if segment.size() <= excess {
                        excess -= segment.size();
                        by_size += 1;
                    } else {
                        break;
                    }
                }
            }
        }
        let count = by_time + by_size;
        if count == 0 {
            return Ok(outcome);
        }
        outcome.deleted_bytes = rolled[..count].iter().map(|s| s.size()).sum();
        let new_start = self
            .segments
            .get(count)
            .map_or(self.log_end_offset(), LogSegment::base_offset);
        if new_start > self.log_start_offset {
            self.set_log_start_offset(new_start)?;
        }
        self.delete_oldest_segments(count)?;
        outcome.deleted_by_time = by_time;
        outcome.deleted_by_size = by_size;
        outcome.log_start_offset = self.log_start_offset;
        tracing::info!(
            dir = %self.dir.display(),
            deleted_by_time = by_time,
            deleted_by_size = by_size,
            deleted_bytes = outcome.deleted_bytes,
            log_start_offset = self.log_start_offset,
            "deleted log segments by retention"
        );
        Ok(outcome)
    }

    /// DeleteRecords: makes `offset` the log start offset, so every record below it is
    /// unreadable, and deletes the segments wholly below it. `-1` means the high
    /// watermark (as in Kafka's DeleteRecords request). Returns the new log start
    /// offset; an offset at or below the current one changes nothing.
    ///
    /// Fails with `DeleteRecordsOutOfRange` past the high watermark or for another
    /// negative offset. When this returns `Ok` the new start offset is durable. A read
    /// at the new start offset that falls inside a batch returns that batch whole;
    /// clients skip the records before the offset they asked for. The active segment
    /// is kept even when wholly below the new start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        self.guarded(|log| log.delete_records_before_now(offset))
    }

    fn delete_records_before_now(&mut self, offset: i64) -> Result<i64> {
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&offset) {
            return Err(LogError::DeleteRecordsOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                high_watermark,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.set_log_start_offset(offset)?;
        self.delete_segments_below_log_start()?;
        tracing::info!(dir = %self.dir.display(), log_start_offset = offset, "deleted records");
        Ok(offset)
    }

    /// Reads the log start offset checkpoint on open and deletes segments a crash left
    /// wholly below it.
    pub(crate) fn load_log_start_offset(&mut self) -> Result<()> {
        let first_base = self.segments.first().base_offset();
        let stored = checkpoint::read_offset(&self.dir, LOG_START_OFFSET_FILE)?;
        self.log_start_offset = stored
            .unwrap_or(first_base)
            .max(first_base)
            .min(self.log_end_offset());
        self.delete_segments_below_log_start()
    }

    /// Sets and durably persists the log start offset, then moves the leader-epoch
    /// cache's start up to it (Kafka's `truncateFromStart`: the entry covering the new
    /// start is kept, starting there). The epoch checkpoint is written after the
    /// start offset: if it is lost, opening applies the start offset again.
    pub(crate) fn set_log_start_offset(&mut self, offset: i64) -> Result<()> {
        checkpoint::write_offset(
            &self.dir,
            LOG_START_OFFSET_FILE,
            offset,
            Durability::Durable,
        )?;
        self.log_start_offset = offset;
        let changed = self.epochs.truncate_from_start(offset);
        self.persist_epochs_after_removal(changed)
    }

    /// Deletes the non-active segments whose offsets are all below the log start
    /// offset (the next segment's base offset is at most the start offset).
    fn delete_segments_below_log_start(&mut self) -> Result<()> {
        let below = (1..self.segments.len())
            .take_while(|&next| {
                self.segments
                    .get(next)
                    .is_some_and(|s| s.base_offset() <= self.log_start_offset)
            })
            .count();
        self.delete_oldest_segments(below)
    }

    /// Deletes the `count` oldest segments (never the active one), oldest first, then
    /// fsyncs the directory.
    fn delete_oldest_segments(&mut self, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        for segment in self.segments.remove_oldest(count) {
            segment.delete_files(&self.dir)?;
        }
        checkpoint::sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CleanupPolicy, LogConfig};
    use crate::testutil::simple;

    /// 100-byte batches of 2 records, 300-byte segments: 3 batches (6 offsets) each.
    fn config(retention_ms: i64, retention_bytes: i64) -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 100,
            retention_ms,
            retention_bytes,
            ..LogConfig::default()
        }
    }

    fn filled(dir: &std::path::Path, config: LogConfig, timestamps: &[i64]) -> Log {
        let mut log = Log::open(dir, config).unwrap();
        for &ts in timestamps {
            log.append(&simple(2, 39, ts), 0, 0).unwrap();
        }
        log
    }

    #[test]
    fn time_retention_stops_at_the_first_young_segment() {
        let dir = tempfile::tempdir().unwrap();
        // Segments: [0..6) ts ≤ 30, [6..12) ts ≤ 200, [12..18) ts ≤ 60, active [18..20).
        let ts = [10, 20, 30, 40, 200, 50, 60, 60, 60, 70];
        let mut log = filled(dir.path(), config(100, -1), &ts);
        let out = log.apply_retention(250).unwrap();
        assert_eq!((out.deleted_by_time, out.log_start_offset), (1, 6));
        assert_eq!(log.log_start_offset(), 6);
        assert!(matches!(
            log.read(5, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.read(6, 100, true).unwrap().first_offset, 6);
        let out = log.apply_retention(1_000).unwrap();
        assert_eq!(out.deleted_by_time, 2);
        assert_eq!(log.segments.len(), 1); // never the active segment
        assert_eq!(log.log_start_offset(), 18);
        drop(log);
        let log = Log::open(dir.path(), config(100, -1)).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (18, 20));
    }

    #[test]
    fn size_retention_follows_kafka() {
        let dir = tempfile::tempdir().unwrap();
        // 10 batches: segments of 300, 300, 300 and an active one of 100 = 1000 bytes.
        let mut log = filled(dir.path(), config(-1, 700), &[0; 10]);
        // Over by 300: exactly one 300-byte segment can go (the rest is then 700).
        assert_eq!(log.apply_retention(0).unwrap().deleted_by_size, 1);
        assert_eq!(log.size_bytes(), 700);
        // At the limit: excess 0, no segment fits in it.
        assert_eq!(log.apply_retention(0).unwrap().deleted_by_size, 0);
        log.set_config(config(-1, 699));
        assert_eq!(log.apply_retention(0).unwrap().deleted_by_size, 0);
        log.set_config(config(-1, 0));
        let out = log.apply_retention(0).unwrap();
        assert_eq!((out.deleted_by_size, out.deleted_bytes), (2, 600));
        assert_eq!(log.log_start_offset(), 18);
    }

    #[test]
    fn compact_only_policy_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        // Filled before the topic became compacted (the filler records have no keys).
        let mut log = filled(dir.path(), config(0, 0), &[0; 10]);
        log.set_config(LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..config(0, 0)
        });
        assert_eq!(log.apply_retention(i64::MAX).unwrap().deleted_bytes, 0);
        assert_eq!(log.log_start_offset(), 0);
    }

    #[test]
    fn delete_records_moves_the_start_and_persists_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), config(-1, -1), &[0; 10]);
        assert!(matches!(
            log.delete_records_before(21),
            Err(LogError::DeleteRecordsOutOfRange {
                offset: 21,
                high_watermark: 20,
                ..
            })
        ));
        assert!(log.delete_records_before(-2).is_err());
        assert_eq!(log.delete_records_before(7).unwrap(), 7);
        assert_eq!(log.segments.first().base_offset(), 6);
        // Inside the batch 6..=7: that batch is returned whole.
        let r = log.read(7, 1000, true).unwrap();
        assert_eq!((r.first_offset, r.log_start_offset), (6, 7));
        assert!(matches!(
            log.read(6, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.delete_records_before(3).unwrap(), 7);
        assert_eq!(
            log.append(&simple(1, 10, 0), 0, 0)
                .unwrap()
                .log_start_offset,
            7
        );
        drop(log);
        let mut log = Log::open(dir.path(), config(-1, -1)).unwrap();
        assert_eq!(log.log_start_offset(), 7);
        assert_eq!(log.delete_records_before(-1).unwrap(), 21);
        assert_eq!(log.segments.len(), 1);
        assert!(log.read(21, 100, true).unwrap().bytes.is_empty());
        log.close().unwrap();
        let log = Log::open(dir.path(), config(-1, -1)).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (21, 21));
    }

    #[test]
    fn open_deletes_segments_a_crash_left_below_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), config(-1, -1), &[0; 10]);
        drop(log);
        // As if a crash came between the checkpoint write and the deletions.
        checkpoint::write_offset(dir.path(), LOG_START_OFFSET_FILE, 13, Durability::Durable)
            .unwrap();
        let log = Log::open(dir.path(), config(-1, -1)).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.segments.first().base_offset()),
            (13, 12)
        );
        // A checkpoint past the end (e.g. after a recovery cut) is clamped.
        drop(log);
        checkpoint::write_offset(dir.path(), LOG_START_OFFSET_FILE, 99, Durability::Durable)
            .unwrap();
        let log = Log::open(dir.path(), config(-1, -1)).unwrap();
        assert_eq!(log.log_start_offset(), 20);
    }
}
