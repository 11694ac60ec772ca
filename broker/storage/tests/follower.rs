//! Replication from the storage side: a follower log copying a leader's batches byte
//! for byte (`append_as_follower`), and the leader-epoch cache with its checkpoint
//! across truncation, DeleteRecords, clean and unclean reopens.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::{as_stored, batch, expected_epochs, files_with, log_files, producer_batch};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_storage::{BatchHeader, CompressionType, Log, LogConfig, LogError};

const CHECKPOINT: &str = "leader-epoch-checkpoint";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn read_all(log: &Log) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, true)
        .unwrap()
        .bytes
        .to_vec()
}

/// The batches of `bytes`, split by their headers.
fn split(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = BatchHeader::parse(&bytes[at..]).unwrap().total_len();
        out.push(&bytes[at..at + len]);
        at += len;
    }
    out
}

/// Names and contents of the files in `dir` ending with `suffix`.
fn contents(dir: &Path, suffix: &str) -> Vec<(String, Vec<u8>)> {
    files_with(dir, suffix)
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect()
}

fn checkpoint_text(dir: &Path) -> String {
    fs::read_to_string(dir.join(CHECKPOINT)).unwrap()
}

/// A leader log with 14 batches in epochs 0, 2 and 5 over several segments.
fn leader(dir: &Path) -> Log {
    let mut log = Log::open(dir, config()).unwrap();
    let epochs = [0, 0, 0, 2, 2, 2, 2, 5, 5, 5, 5, 5, 5, 5];
    for (i, epoch) in epochs.into_iter().enumerate() {
        let b = batch(1 + (i % 3) as i32, 40 + 17 * i, 1_000 + i as i64, i as u8);
        log.append(&b, epoch, 0).unwrap();
    }
    log
}

#[test]
fn follower_copy_is_byte_identical_across_segment_rolls() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = leader(leader_dir.path());
    assert!(log_files(leader_dir.path()).len() >= 3);
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), config()).unwrap();
    // Fetch as a replica fetcher would: from the follower's log end, a few batches a time.
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched = leader.read(follower.log_end_offset(), 350, true).unwrap();
        assert_eq!(fetched.first_offset, follower.log_end_offset());
        let info = follower.append_as_follower(&fetched.bytes).unwrap();
        assert_eq!(info.base_offset, fetched.first_offset);
    }
    let leader_bytes = read_all(&leader);
    assert_eq!(read_all(&follower), leader_bytes);
    for suffix in [".log", ".index", ".timeindex"] {
        assert_eq!(
            contents(dir.path(), suffix),
            contents(leader_dir.path(), suffix),
            "{suffix}"
        );
    }
    let batches = split(&leader_bytes);
    let expected = expected_epochs(batches.iter().copied());
    assert_eq!(expected.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 2, 5]);
    assert_eq!(follower.leader_epochs(), expected);
    assert_eq!(leader.leader_epochs(), expected);
    // Every offset reads back as the leader's batch holding it.
    for b in &batches {
        let h = BatchHeader::parse(b).unwrap();
        for offset in h.base_offset..=h.last_offset() {
            assert_eq!(&follower.read(offset, 1, true).unwrap().bytes[..], *b);
        }
    }
    follower.close().unwrap();
    let follower = Log::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&follower), leader_bytes);
    assert_eq!(follower.leader_epochs(), expected);
}

#[test]
fn rejected_payloads_leave_the_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let first = as_stored(batch(3, 20, 1_000, 1), 0, 4);
    log.append_as_follower(&first).unwrap();
    log.flush().unwrap();
    let before = contents(dir.path(), "");
    let cases = [
        (as_stored(batch(1, 20, 1_000, 2), 4, 4), 3, 4), // a gap
        (as_stored(batch(1, 20, 1_000, 2), 2, 4), 3, 2), // an overlap
        (as_stored(batch(1, 20, 1_000, 2), 0, 4), 3, 0), // the same batch again
        (
            // fine, then a gap: the fine batch is not written either
            [
                as_stored(batch(1, 20, 1_000, 2), 3, 5),
                as_stored(batch(1, 20, 1_000, 3), 5, 5),
            ]
            .concat(),
            4,
            5,
        ),
    ];
    for (payload, expected, got) in cases {
        match log.append_as_follower(&payload) {
            Err(LogError::NonContiguousAppend {
                expected: e,
                got: g,
            }) => assert_eq!((e, g), (expected, got)),
            other => panic!("expected NonContiguousAppend, got {other:?}"),
        }
    }
    // The epoch 5 entry of the refused payload was never recorded.
    assert_eq!(log.leader_epochs(), [(4, 0)]);
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(read_all(&log), first);
    assert_eq!(contents(dir.path(), ""), before);
}

/// A batch of `n` keyed records compressed with lz4 by an independent encoder.
fn lz4_batch(n: i64) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; 200])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::Lz4,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.to_vec()
}

#[test]
fn a_compressed_batch_is_kept_as_sent() {
    // The topic stores uncompressed batches: the leader path would decompress this one.
    let uncompressed = LogConfig {
        compression_type: CompressionType::Uncompressed,
        ..LogConfig::default()
    };
    let sent = as_stored(lz4_batch(5), 0, 7);
    assert_eq!(BatchHeader::parse(&sent).unwrap().compression(), 3);

    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), uncompressed.clone()).unwrap();
    follower.append_as_follower(&sent).unwrap();
    assert_eq!(read_all(&follower), sent);
    assert_eq!(follower.log_end_offset(), 5);

    let dir = tempfile::tempdir().unwrap();
    let mut leader = Log::open(dir.path(), uncompressed).unwrap();
    leader.append(&sent, 7, 0).unwrap();
    let stored = read_all(&leader);
    assert_eq!(BatchHeader::parse(&stored).unwrap().compression(), 0);
    assert!(stored.len() > sent.len());
}

/// Producer 9's batches as a leader stored them: epoch 1, sequences 0..=1, 2..=4, 5.
fn replicated_producer_batches() -> Vec<Vec<u8>> {
    vec![
        as_stored(producer_batch(2, 9, 1, 0), 0, 3),
        as_stored(batch(1, 20, 1_000, 7), 2, 3),
        as_stored(producer_batch(3, 9, 1, 2), 3, 3),
        as_stored(producer_batch(1, 9, 1, 5), 6, 3),
    ]
}

fn assert_new_leader_dedupes(log: &mut Log) {
    // The producer retries sequences 2..=4 against the new leader: a duplicate.
    let retry = log.append(&producer_batch(3, 9, 1, 2), 4, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (3, 5));
    assert_eq!(log.log_end_offset(), 7);
    assert!(matches!(
        log.append(&producer_batch(1, 9, 1, 7), 4, 0),
        Err(LogError::OutOfOrderSequence {
            producer_id: 9,
            expected: 6,
            got: 7
        })
    ));
    let next = log.append(&producer_batch(1, 9, 1, 6), 4, 0).unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.base_offset, 7);
    assert_eq!(log.leader_epochs(), [(3, 0), (4, 7)]);
}

#[test]
fn a_retry_after_failover_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    for b in replicated_producer_batches() {
        log.append_as_follower(&b).unwrap();
    }
    assert_new_leader_dedupes(&mut log);
}

#[test]
fn replicated_producer_state_survives_reopens() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        log.append_as_follower(&replicated_producer_batches().concat())
            .unwrap();
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let mut log = Log::open(dir.path(), config()).unwrap();
        assert_new_leader_dedupes(&mut log);
    }
}

/// One-record batches in epochs 0, 0, 2, 5, 5 at offsets 0..5, by the leader path.
fn epochs_0_0_2_5_5(dir: &Path) -> Log {
    let mut log = Log::open(dir, config()).unwrap();
    for epoch in [0, 0, 2, 5, 5] {
        log.append(&batch(1, 20, 1_000, epoch as u8), epoch, 0)
            .unwrap();
    }
    log
}

#[test]
fn epoch_cache_follows_appends_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    // No epoch (-1) adds no entry.
    log.append(&batch(1, 20, 1_000, 0), -1, 0).unwrap();
    assert_eq!(log.leader_epochs(), []);
    assert_eq!(checkpoint_text(dir.path()), "0\n0\n");

    let dir = tempfile::tempdir().unwrap();
    let mut log = epochs_0_0_2_5_5(dir.path());
    assert_eq!(log.leader_epochs(), [(0, 0), (2, 2), (5, 3)]);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(checkpoint_text(dir.path()), "0\n3\n0 0\n2 2\n5 3\n");
    // A batch stamped with an older epoch starts nothing.
    log.append(&batch(1, 20, 1_000, 9), 3, 0).unwrap();
    assert_eq!(log.leader_epochs(), [(0, 0), (2, 2), (5, 3)]);

    assert_eq!(log.end_offset_for_epoch(5), Some((5, 6)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 3)));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 2)));
    assert_eq!(log.end_offset_for_epoch(1), Some((0, 2)));
    assert_eq!(log.end_offset_for_epoch(4), Some((2, 3)));
    assert_eq!(log.end_offset_for_epoch(6), None);
    assert_eq!(log.end_offset_for_epoch(-1), None);

    log.truncate_to(3).unwrap();
    assert_eq!(log.leader_epochs(), [(0, 0), (2, 2)]);
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 3)));
    assert_eq!(log.end_offset_for_epoch(5), None);
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n0 0\n2 2\n");
    // A follower that truncated continues in a newer epoch from its new end.
    log.append_as_follower(&as_stored(batch(2, 20, 1_000, 4), 3, 6))
        .unwrap();
    assert_eq!(log.leader_epochs(), [(0, 0), (2, 2), (6, 3)]);
}

#[test]
fn an_epoch_below_the_first_entry_answers_with_the_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = epochs_0_0_2_5_5(dir.path());
    // DeleteRecords past epoch 0 and 2: epoch 5's entry now starts at the log start.
    assert_eq!(log.delete_records_before(4).unwrap(), 4);
    assert_eq!(log.leader_epochs(), [(5, 4)]);
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 4)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 5)));
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.leader_epochs(), [(5, 4)]);
}

#[test]
fn delete_records_moves_the_covering_entry_and_persists_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = epochs_0_0_2_5_5(dir.path());
    log.delete_records_before(1).unwrap();
    assert_eq!(log.leader_epochs(), [(0, 1), (2, 2), (5, 3)]);
    log.delete_records_before(3).unwrap();
    assert_eq!(log.leader_epochs(), [(5, 3)]);
    assert_eq!(checkpoint_text(dir.path()), "0\n1\n5 3\n");
    // Truncating below the log start empties the log and the cache.
    log.truncate_to(1).unwrap();
    assert_eq!(log.leader_epochs(), []);
    assert_eq!(checkpoint_text(dir.path()), "0\n0\n");
}

#[test]
fn checkpoint_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    epochs_0_0_2_5_5(dir.path()).close().unwrap();
    let text = checkpoint_text(dir.path());
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.leader_epochs(), [(0, 0), (2, 2), (5, 3)]);
    assert_eq!(checkpoint_text(dir.path()), text);
}

#[test]
fn missing_damaged_or_contradicted_checkpoints_are_rebuilt() {
    let damage: [&dyn Fn(&Path); 5] = [
        &|p| fs::remove_file(p).unwrap(),
        &|p| fs::write(p, b"0\n3\n0 0\n2 2\n").unwrap(), // count says 3, two lines
        &|p| fs::write(p, b"0\n3\n0 0\n2 2\n5").unwrap(), // torn
        &|p| fs::write(p, b"garbage").unwrap(),
        // Well formed, but the last batch's epoch 5 is missing from it.
        &|p| fs::write(p, b"0\n1\n0 0\n").unwrap(),
    ];
    for (i, damage) in damage.iter().enumerate() {
        for clean in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let log = epochs_0_0_2_5_5(dir.path());
            if clean {
                log.close().unwrap();
            } else {
                drop(log);
            }
            damage(&dir.path().join(CHECKPOINT));
            let log = Log::open(dir.path(), config()).unwrap();
            assert_eq!(
                log.leader_epochs(),
                [(0, 0), (2, 2), (5, 3)],
                "case {i}, clean {clean}"
            );
            assert_eq!(checkpoint_text(dir.path()), "0\n3\n0 0\n2 2\n5 3\n");
        }
    }
}

#[test]
fn after_a_crash_the_cache_matches_the_surviving_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let mut stored = Vec::new();
    for (i, epoch) in [1, 1, 1, 3, 3].into_iter().enumerate() {
        let b = batch(2, 60, 1_000, i as u8);
        let info = log.append(&b, epoch, 0).unwrap();
        stored.push(as_stored(b, info.base_offset, epoch));
    }
    log.flush().unwrap();
    // Unflushed: epochs 4 and 7, each starting a checkpoint entry before its batch.
    for (i, epoch) in [4, 4, 7].into_iter().enumerate() {
        let b = batch(1, 60, 1_000, 10 + i as u8);
        let info = log.append(&b, epoch, 0).unwrap();
        stored.push(as_stored(b, info.base_offset, epoch));
    }
    assert_eq!(log.leader_epochs(), [(1, 0), (3, 6), (4, 10), (7, 12)]);
    drop(log); // a crash

    // The crash lost the last two batches and tore the one before (a batch of epoch 4).
    let active = log_files(dir.path()).pop().unwrap();
    let len = fs::metadata(&active).unwrap().len();
    let lost: u64 = stored[6..].iter().map(|b| b.len() as u64).sum();
    OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(len - lost - 5)
        .unwrap();
    let surviving = &stored[..5];
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&log), surviving.concat());
    let expected = expected_epochs(surviving.iter().map(Vec::as_slice));
    assert_eq!(expected, [(1, 0), (3, 6)]);
    assert_eq!(log.leader_epochs(), expected);
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n1 0\n3 6\n");
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 10)));
}
