//! Retention by time and size (property tests against Kafka's rules), DeleteRecords,
//! and reads racing grouped flushes.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::{Barrier, RwLock};

use common::{batch, log_files};
use proptest::prelude::*;
use runnel_storage::{BatchHeader, CleanupPolicy, Log, LogConfig, LogError};

fn config(segment_bytes: u64, retention_ms: i64, retention_bytes: i64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        retention_ms,
        retention_bytes,
        ..LogConfig::default()
    }
}

/// A segment as seen on disk: (base offset, bytes, largest batch timestamp).
type Seg = (i64, u64, i64);

/// Appends `(records, payload, timestamp)` batches and returns the segments.
fn fill(dir: &Path, log: &mut Log, shapes: &[(i32, usize, i64)]) -> Vec<Seg> {
    let mut batch_ts = Vec::new();
    for (i, &(records, payload, ts)) in shapes.iter().enumerate() {
        let info = log
            .append(&batch(records, payload, ts, i as u8), 0, 0)
            .unwrap();
        batch_ts.push((info.base_offset, ts));
    }
    let bases: Vec<i64> = log_files(dir)
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    bases
        .iter()
        .enumerate()
        .map(|(i, &base)| {
            let end = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let largest = batch_ts
                .iter()
                .filter(|(o, _)| (base..end).contains(o))
                .map(|&(_, ts)| ts)
                .max()
                .unwrap_or(-1);
            let size = std::fs::metadata(&log_files(dir)[i]).unwrap().len();
            (base, size, largest)
        })
        .collect()
}

fn shapes() -> impl Strategy<Value = Vec<(i32, usize, i64)>> {
    prop::collection::vec((1..4i32, 0..150usize, 0..1_000i64), 1..40)
}

/// After retention left `start`: reads below fail, reads at it work, a reopen agrees.
fn check_start(dir: &Path, log: Log, start: i64, cfg: LogConfig) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), start);
    if start > 0 {
        let below = log.read(start - 1, 100, true);
        let out_of_range = matches!(below, Err(LogError::OffsetOutOfRange { .. }));
        prop_assert!(out_of_range, "read below the start offset succeeded");
    }
    let at = log.read(start, 100, true).unwrap();
    prop_assert!(at.bytes.is_empty() || at.first_offset == start);
    drop(log);
    let log = Log::open(dir, cfg).unwrap();
    prop_assert_eq!(log.log_start_offset(), start);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn time_retention_deletes_the_expired_prefix(
        shapes in shapes(),
        segment_bytes in 220u64..900,
        retention_ms in 0i64..1_000,
        now in 0i64..2_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(segment_bytes, retention_ms, -1);
        let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
        let segs = fill(dir.path(), &mut log, &shapes);
        let rolled = &segs[..segs.len() - 1];
        let expected = rolled.iter().take_while(|s| now - s.2 > retention_ms).count();
        let out = log.apply_retention(now).unwrap();
        prop_assert_eq!((out.deleted_by_time, out.deleted_by_size), (expected, 0));
        prop_assert_eq!(out.deleted_bytes, segs[..expected].iter().map(|s| s.1).sum::<u64>());
        prop_assert_eq!(log_files(dir.path()).len(), segs.len() - expected);
        check_start(dir.path(), log, segs[expected].0, cfg)?;
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes(
        shapes in shapes(),
        segment_bytes in 220u64..900,
        limit_fraction in 0.0f64..1.2,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(segment_bytes, -1, -1)).unwrap();
        let segs = fill(dir.path(), &mut log, &shapes);
        let total: u64 = segs.iter().map(|s| s.1).sum();
        let limit = (total as f64 * limit_fraction) as i64;
        let cfg = config(segment_bytes, -1, limit);
        log.set_config(cfg.clone());
        let out = log.apply_retention(0).unwrap();
        let left = log.size_bytes();
        prop_assert_eq!(left, total - out.deleted_bytes);
        if total < limit as u64 {
            prop_assert_eq!(out.deleted_by_size, 0);
        } else {
            // Kafka's rule: never below the limit, and the next oldest segment could
            // not go without dropping below it (or it is the active segment).
            prop_assert!(left >= limit as u64);
            let remaining = &segs[out.deleted_by_size..];
            prop_assert!(remaining.len() == 1 || left - remaining[0].1 < limit as u64);
        }
        check_start(dir.path(), log, segs[out.deleted_by_size].0, cfg)?;
    }
}

#[test]
fn delete_records_survives_a_crash_and_bounds_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(300, -1, -1);
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..12 {
        log.append(&batch(3, 50, 100, i), 0, 0).unwrap(); // 111 bytes, 2 batches a segment
    }
    assert_eq!(log.log_end_offset(), 36);
    assert!(matches!(
        log.delete_records_before(37),
        Err(LogError::DeleteRecordsOutOfRange {
            offset: 37,
            high_watermark: 36,
            ..
        })
    ));
    assert_eq!(log.delete_records_before(13).unwrap(), 13);
    // The batch 12..=14 holds the new start: returned whole, clients skip 12.
    let r = log.read(13, 10_000, true).unwrap();
    assert_eq!((r.first_offset, r.log_start_offset), (12, 13));
    assert_eq!(BatchHeader::parse(&r.bytes).unwrap().base_offset, 12);
    assert!(matches!(
        log.read(12, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log_files(dir.path()).len(), 4); // [0..6) and [6..12) deleted
    drop(log); // crash: the start offset was persisted before returning
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.log_start_offset(), 13);
    // Retention then never moves the start backwards.
    log.set_config(config(300, -1, 0));
    let out = log.apply_retention(0).unwrap();
    assert_eq!((out.deleted_by_size, out.log_start_offset), (3, 30));
    assert_eq!(log.delete_records_before(20).unwrap(), 30);
    assert_eq!(log.delete_records_before(-1).unwrap(), 36);
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (36, 36));
}

#[test]
fn compact_and_delete_applies_both() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        ..config(300, 500, -1)
    };
    // Filled before the topic became compacted: append refuses filler records (no
    // parseable key) under `compact`.
    let mut log = Log::open(dir.path(), config(300, 500, -1)).unwrap();
    for i in 0..6 {
        log.append(&batch(1, 100, 100 * i64::from(i), i), 0, 0)
            .unwrap();
    }
    log.set_config(cfg);
    // One 161-byte batch per 300-byte segment; timestamps 0, 100, 200 are > 500 old.
    let out = log.apply_retention(750).unwrap();
    assert_eq!(out.deleted_by_time, 3);
    assert_eq!(log.log_start_offset(), 3);
    // Filler records have no parseable keys: the cleaner keeps them whole.
    assert_eq!(log.compact(750).unwrap().records_removed, 0);
}

#[test]
fn reads_and_flush_handles_run_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let log = RwLock::new(Log::open(dir.path(), config(4_096, -1, -1)).unwrap());
    log.write()
        .unwrap()
        .append(&batch(2, 100, 0, 0), 0, 0)
        .unwrap();
    // Both calls take `&self`: two threads hold read guards at the same moment.
    let both_inside = Barrier::new(2);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let guard = log.read().unwrap();
            both_inside.wait();
            guard.read(0, 1024, true).unwrap().bytes.len()
        });
        let guard = log.read().unwrap();
        both_inside.wait();
        let handle = guard.flush_handle().unwrap().unwrap();
        assert_eq!(reader.join().unwrap(), 161);
        drop(guard);
        handle.sync().unwrap();
        log.write()
            .unwrap()
            .mark_flushed(handle.upto_offset())
            .unwrap();
    });
    assert_eq!(log.read().unwrap().recovery_point(), 2);
    let appends = 300;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..appends {
                log.write()
                    .unwrap()
                    .append(&batch(2, 100, i64::from(i), i as u8), 0, 0)
                    .unwrap();
            }
        });
        let reader = s.spawn(|| {
            let mut reads = 0;
            loop {
                let guard = log.read().unwrap();
                let done = guard.log_end_offset() == 2 * i64::from(appends);
                let start = guard.log_start_offset();
                let r = guard.read(start, 64 * 1024, true).unwrap();
                drop(guard);
                let mut at = 0;
                while at < r.bytes.len() {
                    let h = BatchHeader::parse(&r.bytes[at..]).unwrap();
                    h.validate_crc(&r.bytes[at..at + h.total_len()]).unwrap();
                    at += h.total_len();
                }
                reads += 1;
                if done {
                    return reads;
                }
            }
        });
        let flusher = s.spawn(|| {
            let mut flushes = 0;
            loop {
                let done = log.read().unwrap().log_end_offset() == 2 * i64::from(appends);
                // Handle under the read lock, fsync with no lock, mark under the write lock.
                let handle = log.read().unwrap().flush_handle().unwrap();
                if let Some(handle) = handle {
                    handle.sync().unwrap();
                    log.write()
                        .unwrap()
                        .mark_flushed(handle.upto_offset())
                        .unwrap();
                    flushes += 1;
                }
                if done {
                    return flushes;
                }
            }
        });
        assert!(reader.join().unwrap() > 0);
        assert!(flusher.join().unwrap() > 0);
    });
    let log = log.into_inner().unwrap();
    assert_eq!(log.unflushed_messages(), 0);
    assert_eq!(log.recovery_point(), 600);
}
