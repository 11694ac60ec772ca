//! Crash recovery, proven by damaging files between a crash (drop without close) or a
//! clean close and the next open.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use common::{as_stored, batch, files_with, log_files};
use proptest::prelude::*;
use runnel_storage::{BatchHeader, Log, LogConfig};

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// Appends one batch per `(records, payload)` and returns each batch as stored.
fn fill(log: &mut Log, shapes: &[(i32, usize)]) -> Vec<Vec<u8>> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, &(records, payload))| {
            let b = batch(records, payload, 1_000 + i as i64, i as u8);
            let info = log.append(&b, 1, 0).unwrap();
            as_stored(b, info.base_offset, 1)
        })
        .collect()
}

fn base_of(b: &[u8]) -> i64 {
    BatchHeader::parse(b).unwrap().base_offset
}

fn read_all(log: &Log) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, true)
        .unwrap()
        .bytes
        .to_vec()
}

/// Reads from every offset must start at the batch holding it.
fn assert_every_offset_readable(log: &Log, batches: &[Vec<u8>]) {
    for b in batches {
        let h = BatchHeader::parse(b).unwrap();
        for offset in h.base_offset..=h.last_offset() {
            let r = log.read(offset, 1, true).unwrap();
            assert_eq!(&r.bytes[..], &b[..], "offset {offset}");
        }
    }
}

fn shapes() -> impl Strategy<Value = Vec<(i32, usize)>> {
    prop::collection::vec((1..5i32, 0..300usize), 3..16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn torn_tail_is_cut_at_the_torn_batch(shapes in shapes(), cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1_000)).unwrap();
        let stored = fill(&mut log, &shapes);
        log.flush().unwrap();
        drop(log); // crash: no clean-shutdown marker

        let last = stored.last().unwrap();
        let files = log_files(dir.path());
        let active = files.last().unwrap();
        let len = fs::metadata(active).unwrap().len();
        let last_start = len - last.len() as u64;
        let keep = last_start + 1 + cut.index(last.len() - 1) as u64; // inside the last batch
        OpenOptions::new().write(true).open(active).unwrap().set_len(keep).unwrap();

        let mut log = Log::open(dir.path(), config(1_000)).unwrap();
        let intact = &stored[..stored.len() - 1];
        prop_assert_eq!(log.log_end_offset(), base_of(last));
        prop_assert_eq!(read_all(&log), intact.concat());
        prop_assert_eq!(fs::metadata(active).unwrap().len(), last_start);
        assert_every_offset_readable(&log, intact);
        prop_assert_eq!(log.append(&batch(1, 5, 0, 0), 1, 0).unwrap().base_offset, base_of(last));
    }

    #[test]
    fn flipped_byte_truncates_from_that_batch(
        shapes in shapes(),
        victim in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        mask in 1..=255u8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
        let stored = fill(&mut log, &shapes);
        log.flush().unwrap();
        drop(log);

        // A middle batch; any byte from the length field on except the leader epoch
        // (bytes 12..16, which Kafka's CRC does not cover either).
        let m = 1 + victim.index(stored.len() - 2);
        let covered: Vec<usize> = (8..12).chain(16..stored[m].len()).collect();
        let byte = stored[..m].iter().map(Vec::len).sum::<usize>() + covered[at.index(covered.len())];
        let path = log_files(dir.path()).pop().unwrap();
        let mut data = fs::read(&path).unwrap();
        data[byte] ^= mask;
        fs::write(&path, data).unwrap();

        let log = Log::open(dir.path(), config(1 << 20)).unwrap();
        prop_assert_eq!(log.log_end_offset(), base_of(&stored[m]));
        prop_assert_eq!(read_all(&log), stored[..m].concat());
    }
}

#[test]
fn corruption_in_an_unflushed_earlier_segment_deletes_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(400)).unwrap();
    let stored = fill(&mut log, &[(2, 100); 12]); // 161 bytes each: 2 per segment
    drop(log); // never flushed: the recovery point is 0, every segment is scanned
    let files = log_files(dir.path());
    assert_eq!(files.len(), 6);
    let mut data = fs::read(&files[2]).unwrap();
    data[161 + 100] ^= 0x10; // second batch of the third segment
    fs::write(&files[2], data).unwrap();

    let log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.log_end_offset(), base_of(&stored[5]));
    assert_eq!(read_all(&log), stored[..5].concat());
    assert_eq!(log_files(dir.path()).len(), 3);
}

/// Appends `count` zero bytes to `path` (what a preallocated segment looks like when a
/// crash came before its zeros were cut).
fn append_zeros(path: &Path, count: usize) {
    let mut data = fs::read(path).unwrap();
    data.extend(std::iter::repeat_n(0u8, count));
    fs::write(path, data).unwrap();
}

#[test]
fn preallocated_zeros_are_cut_quietly_and_keep_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(400)).unwrap();
    let stored = fill(&mut log, &[(2, 100); 12]); // 161 bytes each: 2 per segment
                                                  // The active segment carries zeros written ahead of its end.
    log.preallocate(1_000).unwrap();
    let files = log_files(dir.path());
    let active = files.last().unwrap();
    assert_eq!(fs::metadata(active).unwrap().len(), 400);
    drop(log); // a crash: the zeros are still there
               // As if a crash came right after a roll, before the old active's zeros were cut.
    append_zeros(&files[2], 239);

    let mut log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!(read_all(&log), stored.concat());
    assert_every_offset_readable(&log, &stored);
    let lengths: Vec<u64> = log_files(dir.path())
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .collect();
    assert_eq!(lengths, [322; 6]);
    // Appends go on right after the last batch.
    let more = fill(&mut log, &[(1, 10)]);
    assert_eq!(base_of(&more[0]), 24);
    assert_eq!(read_all(&log), [stored.concat(), more.concat()].concat());
}

#[test]
fn zeros_then_garbage_is_corruption_not_preallocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(400)).unwrap();
    let stored = fill(&mut log, &[(2, 100); 12]);
    drop(log);
    let files = log_files(dir.path());
    append_zeros(&files[2], 100);
    let mut data = fs::read(&files[2]).unwrap();
    data.push(7);
    fs::write(&files[2], data).unwrap();

    let log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!(read_all(&log), stored[..6].concat());
    assert_eq!(log_files(dir.path()).len(), 3);
}

#[test]
fn missing_or_garbage_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1_000)).unwrap();
    let stored = fill(&mut log, &[(3, 40); 40]); // 101 bytes each: 9 per segment
    log.close().unwrap();
    let indexes = files_with(dir.path(), ".index");
    let time_indexes = files_with(dir.path(), ".timeindex");
    assert_eq!(indexes.len(), 5);
    let originals: Vec<Vec<u8>> = indexes.iter().map(|p| fs::read(p).unwrap()).collect();
    assert!(originals.iter().all(|o| !o.is_empty()));

    fs::remove_file(&indexes[0]).unwrap();
    fs::write(&indexes[1], [0xEE; 37]).unwrap();
    fs::write(&indexes[2], [0xEE; 40]).unwrap();
    fs::write(&time_indexes[3], [0x01; 24]).unwrap();
    fs::remove_file(&time_indexes[4]).unwrap();

    let log = Log::open(dir.path(), config(1_000)).unwrap();
    assert_eq!(read_all(&log), stored.concat());
    assert_every_offset_readable(&log, &stored);
    for (path, original) in indexes.iter().zip(&originals).take(3) {
        assert_eq!(&fs::read(path).unwrap(), original, "{}", path.display());
    }
    for (i, b) in stored.iter().enumerate() {
        let found = log
            .read_batch_by_timestamp(1_000 + i as i64)
            .unwrap()
            .unwrap();
        assert_eq!(&found[..], &b[..]);
    }
}

#[test]
fn torn_segment_after_clean_close_is_still_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1_000)).unwrap();
    let stored = fill(&mut log, &[(1, 39); 30]); // 100 bytes each: 10 per segment
    log.close().unwrap();
    let files = log_files(dir.path());
    assert_eq!(files.len(), 3);
    // Lose the last 30 bytes of the middle segment despite the clean marker.
    OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(970)
        .unwrap();

    let log = Log::open(dir.path(), config(1_000)).unwrap();
    assert_eq!(log.log_end_offset(), 19);
    assert_eq!(read_all(&log), stored[..19].concat());
    assert_eq!(log_files(dir.path()).len(), 2);
}

#[test]
fn unreadable_checkpoints_fall_back_to_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1_000)).unwrap();
    let stored = fill(&mut log, &[(1, 39); 25]);
    log.flush().unwrap();
    drop(log);
    fs::write(dir.path().join("recovery-point"), b"not a number").unwrap();
    fs::write(dir.path().join("recovery-point.tmp"), b"0\n5\n").unwrap();
    // Damage the first segment, which the (lost) recovery point would have trusted.
    let first = &log_files(dir.path())[0];
    OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(250)
        .unwrap();

    let log = Log::open(dir.path(), config(1_000)).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log), stored[..2].concat());
    assert!(!dir.path().join("recovery-point.tmp").exists());
}

fn idempotent(producer_id: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
    let mut b = batch(records, 10, 0, seq as u8);
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn assert_dedupes(dir: &Path) {
    let mut log = Log::open(dir, config(1_000)).unwrap();
    let retry = log.append(&idempotent(3, 0, 4, 2), 0, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (4, 5));
    assert_eq!(
        log.append(&idempotent(3, 0, 6, 1), 0, 0)
            .unwrap()
            .base_offset,
        6
    );
}

#[test]
fn garbage_producer_snapshot_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1_000)).unwrap();
    for seq in [0, 2, 4] {
        log.append(&idempotent(3, 0, seq, 2), 0, 0).unwrap();
    }
    log.close().unwrap();
    fs::write(dir.path().join("producer-state.snapshot"), [7u8; 100]).unwrap();
    assert_dedupes(dir.path());
}
