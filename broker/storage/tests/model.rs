//! Property test: random appends (leader and follower paths), reads, truncations,
//! flushes, clean and unclean reopens against an in-memory model (a list of stored
//! batches). Every read must return exactly the model's bytes, and the leader-epoch
//! cache must be the one the model's batches imply.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{as_stored, batch, expected_epochs};
use proptest::prelude::*;
use proptest::sample::Index;
use runnel_storage::{BatchHeader, Log, LogConfig, LogError};

#[derive(Debug, Clone)]
enum Op {
    /// One produce payload: batches of (records, payload bytes, max timestamp).
    Append {
        batches: Vec<(i32, usize, i64)>,
        leader_epoch: i32,
    },
    /// The same, stored by `append_as_follower` with offsets from the log end moved by
    /// `skew` (refused unless 0) and the batches' own epoch.
    FollowerAppend {
        batches: Vec<(i32, usize, i64)>,
        leader_epoch: i32,
        skew: i64,
    },
    Read {
        at: Index,
        max_bytes: usize,
        min_one: bool,
    },
    ReadByTimestamp(i64),
    Truncate(Index),
    Flush,
    /// Zeros written ahead of the active segment's end (acks=all partitions).
    Preallocate(u64),
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((1..5i32, 0..200usize, 0..1_000i64), 1..4), -1..3i32)
            .prop_map(|(batches, leader_epoch)| Op::Append { batches, leader_epoch }),
        3 => (prop::collection::vec((1..5i32, 0..200usize, 0..1_000i64), 1..4), -1..4i32, prop_oneof![4 => Just(0i64), 1 => -2..3i64])
            .prop_map(|(batches, leader_epoch, skew)| Op::FollowerAppend { batches, leader_epoch, skew }),
        4 => (any::<Index>(), 0..1_500usize, any::<bool>())
            .prop_map(|(at, max_bytes, min_one)| Op::Read { at, max_bytes, min_one }),
        1 => (0..1_100i64).prop_map(Op::ReadByTimestamp),
        1 => any::<Index>().prop_map(Op::Truncate),
        1 => Just(Op::Flush),
        2 => (0..2_000u64).prop_map(Op::Preallocate),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    (300..1_500u64, 0..400u64, 16..120u64, 100..3_000u64).prop_map(
        |(segment_bytes, index_interval_bytes, segment_index_bytes, segment_ms)| LogConfig {
            segment_bytes,
            index_interval_bytes,
            segment_index_bytes,
            segment_ms,
            ..LogConfig::default()
        },
    )
}

/// The model: the stored batches in offset order (the log start offset stays 0).
#[derive(Default)]
struct Model {
    batches: Vec<Vec<u8>>,
}

impl Model {
    fn header(b: &[u8]) -> BatchHeader {
        BatchHeader::parse(b).unwrap()
    }

    fn end(&self) -> i64 {
        self.batches
            .last()
            .map_or(0, |b| Self::header(b).last_offset() + 1)
    }

    fn size(&self) -> u64 {
        self.batches.iter().map(|b| b.len() as u64).sum()
    }

    fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> (i64, Vec<u8>) {
        let Some(first) = self
            .batches
            .iter()
            .position(|b| Self::header(b).last_offset() >= offset)
        else {
            return (offset, Vec::new());
        };
        let mut out = Vec::new();
        for b in &self.batches[first..] {
            if out.len() + b.len() > max_bytes {
                if out.is_empty() && min_one {
                    out.extend_from_slice(b);
                }
                break;
            }
            out.extend_from_slice(b);
        }
        let first_offset = if out.is_empty() {
            offset
        } else {
            Self::header(&out).base_offset
        };
        (first_offset, out)
    }
}

/// The batches of a payload, split by their headers.
fn split(payload: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let len = BatchHeader::parse(&payload[at..]).unwrap().total_len();
        out.push(payload[at..at + len].to_vec());
        at += len;
    }
    out
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), 0);
    prop_assert_eq!(log.log_end_offset(), model.end());
    prop_assert_eq!(log.high_watermark(), model.end());
    prop_assert_eq!(log.size_bytes(), model.size());
    let all = log.read(0, usize::MAX, true).unwrap();
    prop_assert_eq!(all.bytes.to_vec(), model.batches.concat());
    let epochs = expected_epochs(model.batches.iter().map(Vec::as_slice));
    prop_assert_eq!(log.leader_epochs(), epochs.clone());
    prop_assert_eq!(log.latest_epoch(), epochs.last().map(|e| e.0));
    if let Some(&(latest, _)) = epochs.last() {
        prop_assert_eq!(
            log.end_offset_for_epoch(latest),
            Some((latest, model.end()))
        );
    }
    Ok(())
}

/// Bytes of every `.log` file in `dir`.
fn log_file_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn run(config: LogConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Some(Log::open(dir.path(), config.clone()).unwrap());
    let mut model = Model::default();
    let mut seed = 0u8;
    for op in ops {
        let current = log.as_mut().unwrap();
        match op {
            Op::Append {
                batches,
                leader_epoch,
            } => {
                let mut payload = Vec::new();
                let mut stored = Vec::new();
                let mut next = model.end();
                for (records, len, ts) in batches {
                    seed = seed.wrapping_add(1);
                    let b = batch(records, len, ts, seed);
                    payload.extend_from_slice(&b);
                    stored.push(as_stored(b, next, leader_epoch));
                    next += i64::from(records);
                }
                let info = current.append(&payload, leader_epoch, 0).unwrap();
                prop_assert_eq!(info.base_offset, model.end());
                prop_assert_eq!(info.last_offset, next - 1);
                prop_assert!(!info.duplicate);
                model.batches.extend(stored);
            }
            Op::FollowerAppend {
                batches,
                leader_epoch,
                skew,
            } => {
                let start = model.end() + skew;
                let mut next = start;
                let mut payload = Vec::new();
                for (records, len, ts) in batches {
                    seed = seed.wrapping_add(1);
                    payload.extend(as_stored(batch(records, len, ts, seed), next, leader_epoch));
                    next += i64::from(records);
                }
                let result = current.append_as_follower(&payload);
                if skew == 0 {
                    let info = result.unwrap();
                    prop_assert_eq!((info.base_offset, info.last_offset), (start, next - 1));
                    model.batches.extend(split(&payload));
                } else {
                    let refused = matches!(
                        result,
                        Err(LogError::NonContiguousAppend { expected, got })
                            if expected == model.end() && got == start
                    );
                    prop_assert!(refused);
                }
            }
            Op::Read {
                at,
                max_bytes,
                min_one,
            } => {
                let offset = at.index(model.end() as usize + 3) as i64;
                let result = current.read(offset, max_bytes, min_one);
                if offset > model.end() {
                    let out_of_range = matches!(result, Err(LogError::OffsetOutOfRange { .. }));
                    prop_assert!(out_of_range);
                } else {
                    let slice = result.unwrap();
                    let (first_offset, bytes) = model.read(offset, max_bytes, min_one);
                    prop_assert_eq!(slice.bytes.to_vec(), bytes);
                    prop_assert_eq!(slice.first_offset, first_offset);
                    prop_assert_eq!(slice.high_watermark, model.end());
                }
            }
            Op::ReadByTimestamp(ts) => {
                let expected = model
                    .batches
                    .iter()
                    .find(|b| Model::header(b).max_timestamp >= ts);
                let found = current.read_batch_by_timestamp(ts).unwrap();
                prop_assert_eq!(found.map(|b| b.to_vec()), expected.cloned());
            }
            Op::Truncate(at) => {
                let offset = at.index(model.end() as usize + 2) as i64;
                current.truncate_to(offset).unwrap();
                model
                    .batches
                    .retain(|b| Model::header(b).last_offset() < offset);
            }
            Op::Flush => current.flush().unwrap(),
            Op::Preallocate(ahead) => current.preallocate(ahead).unwrap(),
            Op::CloseReopen => {
                log.take().unwrap().close().unwrap();
                // A clean close leaves no preallocated zeros behind.
                prop_assert_eq!(log_file_bytes(dir.path()), model.size());
                log = Some(Log::open(dir.path(), config.clone()).unwrap());
            }
            Op::CrashReopen => {
                drop(log.take());
                log = Some(Log::open(dir.path(), config.clone()).unwrap());
                // Recovery cut any preallocated tail, and nothing else.
                prop_assert_eq!(log_file_bytes(dir.path()), model.size());
            }
        }
        check(log.as_ref().unwrap(), &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(config in config(), ops in prop::collection::vec(op(), 1..60)) {
        run(config, ops)?;
    }
}
