//! Disk faults injected through the file-system seam (`runnel_storage::fs`): a failed
//! fsync or write fails the log for good, nothing is reported durable after it, and a
//! reopen (recovery) keeps everything flushed before the fault.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{as_stored, batch, log_files};
use runnel_storage::fs::{inject, Fault, EIO, ENOSPC};
use runnel_storage::{Log, LogConfig, LogDirHealth, LogError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

/// Appends `count` batches of two records and returns each as stored.
fn fill(log: &mut Log, count: usize, seed: u8) -> Vec<u8> {
    let mut stored = Vec::new();
    for i in 0..count {
        let b = batch(2, 150, 1_000 + i as i64, seed.wrapping_add(i as u8));
        let info = log.append(&b, 1, 0).unwrap();
        stored.extend(as_stored(b, info.base_offset, 1));
    }
    stored
}

fn read_all(log: &Log) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, true)
        .unwrap()
        .bytes
        .to_vec()
}

fn errno(e: &LogError) -> Option<i32> {
    match e {
        LogError::Io { source, .. } | LogError::LogDirFailed { source, .. } => {
            source.raw_os_error()
        }
        _ => None,
    }
}

fn is_dir_failed(result: Result<impl std::fmt::Debug, LogError>) -> bool {
    matches!(result, Err(LogError::LogDirFailed { .. }))
}

fn recovery_point_on_disk(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("recovery-point")).unwrap_or_default()
}

#[test]
fn a_failed_fsync_is_never_retried_as_success() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let flushed = fill(&mut log, 3, 1);
    log.flush().unwrap();
    let (recovery_point, checkpoint) = (log.recovery_point(), recovery_point_on_disk(dir.path()));
    fill(&mut log, 2, 9);

    let fault = inject(dir.path(), Fault::syncs(EIO));
    let e = log.flush().unwrap_err();
    assert!(
        matches!(e, LogError::Io { .. }) && errno(&e) == Some(EIO),
        "{e:?}"
    );
    // The disk would now say yes (the fault is gone): the log must still say no.
    drop(fault);
    let again = log.flush().unwrap_err();
    assert!(matches!(again, LogError::LogDirFailed { .. }), "{again:?}");
    assert_eq!(
        errno(&again),
        Some(EIO),
        "the first failure's cause is kept"
    );
    assert!(log.dir_health().is_failed());
    assert_eq!(
        (log.recovery_point(), log.data_synced()),
        (recovery_point, recovery_point)
    );
    assert_eq!(recovery_point_on_disk(dir.path()), checkpoint);
    // Nothing more is written or reported durable; reads go on.
    assert!(is_dir_failed(log.append(&batch(1, 10, 0, 0), 1, 0)));
    assert!(is_dir_failed(log.flush_handle()));
    assert!(is_dir_failed(log.data_flush_handle()));
    assert!(is_dir_failed(log.mark_flushed(log.log_end_offset())));
    assert!(is_dir_failed(log.truncate_to(1)));
    assert_eq!(&read_all(&log)[..flushed.len()], &flushed[..]);
    // No clean-shutdown marker: the next open scans.
    assert!(is_dir_failed(log.close()));
    assert!(!dir.path().join("clean-shutdown").exists());

    let mut log = Log::open(dir.path(), config()).unwrap();
    assert!(log.segments_scanned_at_open() >= 1);
    let recovered = read_all(&log);
    assert!(recovered.len() >= flushed.len());
    assert_eq!(&recovered[..flushed.len()], &flushed[..]);
    // Reopened, the directory is healthy again.
    fill(&mut log, 1, 20);
    log.flush().unwrap();
}

#[test]
fn a_handle_synced_after_the_failure_reports_nothing_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, 2, 1);
    // Two acknowledgement rounds in flight; the first one's fsync fails.
    let first = log.data_flush_handle().unwrap().unwrap();
    let second = log.data_flush_handle().unwrap().unwrap();
    let fault = inject(dir.path(), Fault::syncs(EIO));
    assert_eq!(errno(&first.sync().unwrap_err()), Some(EIO));
    drop(fault);
    assert!(is_dir_failed(second.sync()));
    assert!(is_dir_failed(log.mark_synced(&second)));
    assert!(is_dir_failed(log.mark_synced(&first)));
    assert_eq!(log.data_synced(), 0);
}

#[test]
fn the_logs_of_a_directory_fail_together_and_listeners_hear_once() {
    let dir = tempfile::tempdir().unwrap();
    let health = LogDirHealth::new(dir.path());
    let heard = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&heard);
    health.on_failure(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let (a, b) = (dir.path().join("t-0"), dir.path().join("t-1"));
    let mut log_a = Log::open_in(&a, config(), Arc::clone(&health)).unwrap();
    let mut log_b = Log::open_in(&b, config(), Arc::clone(&health)).unwrap();
    fill(&mut log_a, 1, 1);
    fill(&mut log_b, 1, 2);
    let fault = inject(&a, Fault::syncs(EIO));
    assert!(log_a.flush().is_err());
    drop(fault);
    assert!(is_dir_failed(log_b.flush()));
    assert!(is_dir_failed(log_b.append(&batch(1, 10, 0, 0), 1, 0)));
    assert!(is_dir_failed(Log::open_in(
        &dir.path().join("t-2"),
        config(),
        Arc::clone(&health)
    )));
    assert_eq!(heard.load(Ordering::SeqCst), 1);
}

#[test]
fn a_torn_write_leaves_the_log_consistent_and_recovery_cuts_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let flushed = fill(&mut log, 2, 1);
    log.flush().unwrap();
    let end = log.log_end_offset();

    // ENOSPC part-way through the batch; the cut that follows fails too.
    let fault = inject(dir.path(), Fault::writes(ENOSPC).torn(30));
    let e = log.append(&batch(2, 150, 5_000, 7), 1, 0).unwrap_err();
    assert_eq!(errno(&e), Some(ENOSPC), "{e:?}");
    drop(fault);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), flushed, "the torn bytes are never served");
    let file_len = |dir: &Path| {
        let files = log_files(dir);
        std::fs::metadata(files.last().unwrap()).unwrap().len()
    };
    assert_eq!(file_len(dir.path()), flushed.len() as u64 + 30);
    assert!(is_dir_failed(log.append(&batch(1, 10, 0, 0), 1, 0)));
    drop(log);

    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), flushed);
    assert_eq!(file_len(dir.path()), flushed.len() as u64);
    fill(&mut log, 1, 3);
    assert_eq!(log.log_end_offset(), end + 2);
}

/// Every fsync of a flush (segment data, indexes, directory after a roll, checkpoint,
/// producer snapshot), failing in turn: the recovery point moves only once every file
/// it covers was synced (a failure after that, in the producer snapshot, leaves it
/// moved), and a reopen holds everything the last successful flush covered.
#[test]
fn a_fault_at_any_fsync_of_a_flush_keeps_what_was_flushed_before() {
    for after in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        let flushed = fill(&mut log, 4, 1);
        log.flush().unwrap();
        let recovery_point = log.recovery_point();
        let checkpoint = recovery_point_on_disk(dir.path());
        fill(&mut log, 6, 50); // rolls: a new segment, its directory entry to sync
        let fault = inject(dir.path(), Fault::syncs(EIO).after(after));
        let result = log.flush();
        drop(fault);
        if result.is_ok() {
            assert!(after >= 3, "a flush across a roll syncs several files");
            break;
        }
        let moved = log.recovery_point() != recovery_point;
        if moved {
            // Only the last step, the producer snapshot after a roll, comes after it.
            assert_eq!(
                log.recovery_point(),
                log.log_end_offset(),
                "fault after {after}"
            );
            let text = format!("0\n{}\n", log.log_end_offset());
            assert_eq!(recovery_point_on_disk(dir.path()), text);
        } else {
            assert_eq!(
                recovery_point_on_disk(dir.path()),
                checkpoint,
                "fault after {after}"
            );
        }
        assert!(is_dir_failed(log.flush()));
        drop(log);
        let log = Log::open(dir.path(), config()).unwrap();
        let recovered = read_all(&log);
        assert_eq!(
            &recovered[..flushed.len()],
            &flushed[..],
            "fault after {after} fsyncs"
        );
    }
}

/// Every write of a run of appends and flushes (segment data, index entries,
/// checkpoints), failing in turn with a torn write: the log reopens consistent, holding
/// at least what was flushed before the fault.
#[test]
fn a_torn_write_anywhere_leaves_a_log_that_reopens_with_what_was_flushed() {
    for after in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        let mut flushed = Vec::new();
        let fault = inject(dir.path(), Fault::writes(ENOSPC).after(after).torn(11));
        let mut failed = false;
        for round in 0..4u8 {
            let mut appended = Vec::new();
            for i in 0..3 {
                let b = batch(2, 150, 1_000, round * 10 + i);
                match log.append(&b, 1, 0) {
                    Ok(info) => appended.extend(as_stored(b, info.base_offset, 1)),
                    Err(_) => failed = true,
                }
                if failed {
                    break;
                }
            }
            if failed || log.flush().is_err() {
                failed = true;
                break;
            }
            flushed.extend(appended);
        }
        drop(fault);
        if !failed {
            assert!(after > 10, "appends and flushes write many times");
            break;
        }
        assert!(log.dir_health().is_failed());
        drop(log);
        let log = Log::open(dir.path(), config()).unwrap();
        let recovered = read_all(&log);
        assert!(
            recovered.len() >= flushed.len(),
            "fault after {after} writes"
        );
        assert_eq!(
            &recovered[..flushed.len()],
            &flushed[..],
            "fault after {after} writes"
        );
    }
}
