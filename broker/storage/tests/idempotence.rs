//! Property test: one idempotent producer sending, retrying, bumping its epoch, mixed
//! with truncations and clean/unclean reopens. The expected outcome of every send is
//! derived from the batches the model says are in the log, as Kafka would decide it.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::batch;
use proptest::prelude::*;
use proptest::sample::Index;
use runnel_storage::{Log, LogConfig, LogError};

const PRODUCER: i64 = 4242;

#[derive(Debug, Clone)]
enum Op {
    Send(i32),
    Retry(Index),
    BumpEpoch,
    Plain,
    Truncate(Index),
    Flush,
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..4i32).prop_map(Op::Send),
        4 => any::<Index>().prop_map(Op::Retry),
        1 => Just(Op::BumpEpoch),
        2 => Just(Op::Plain),
        1 => any::<Index>().prop_map(Op::Truncate),
        1 => Just(Op::Flush),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

/// A producer batch: epoch, first and last sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sent {
    epoch: i16,
    first_seq: i32,
    records: i32,
}

impl Sent {
    fn last_seq(&self) -> i32 {
        self.first_seq + self.records - 1
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = batch(self.records, 8, 0, self.first_seq as u8);
        b[43..51].copy_from_slice(&PRODUCER.to_be_bytes());
        b[51..53].copy_from_slice(&self.epoch.to_be_bytes());
        b[53..57].copy_from_slice(&self.first_seq.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

/// A batch in the log: offsets and, for producer batches, what was sent.
#[derive(Debug, Clone, Copy)]
struct Stored {
    base: i64,
    last: i64,
    sent: Option<Sent>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Appended,
    Duplicate(i64, i64),
    OutOfOrder,
    Fenced,
}

#[derive(Default)]
struct Model {
    log: Vec<Stored>,
}

impl Model {
    fn end(&self) -> i64 {
        self.log.last().map_or(0, |s| s.last + 1)
    }

    /// Current epoch and its last five batches, as a replay of the log builds them.
    fn state(&self) -> Option<(i16, Vec<Stored>)> {
        let mine: Vec<Stored> = self
            .log
            .iter()
            .filter(|s| s.sent.is_some())
            .copied()
            .collect();
        let epoch = mine.last()?.sent?.epoch;
        let same: Vec<Stored> = mine
            .into_iter()
            .filter(|s| s.sent.is_some_and(|x| x.epoch == epoch))
            .collect();
        let tail = same[same.len().saturating_sub(5)..].to_vec();
        Some((epoch, tail))
    }

    fn expect(&self, s: &Sent) -> Outcome {
        let Some((epoch, recent)) = self.state() else {
            return Outcome::Appended;
        };
        if s.epoch == epoch {
            if let Some(d) = recent.iter().find(|r| {
                r.sent
                    .is_some_and(|x| x.first_seq == s.first_seq && x.last_seq() == s.last_seq())
            }) {
                return Outcome::Duplicate(d.base, d.last);
            }
        }
        if s.epoch < epoch {
            return Outcome::Fenced;
        }
        let expected = if s.epoch > epoch {
            0
        } else {
            recent
                .last()
                .and_then(|r| r.sent)
                .map_or(0, |x| x.last_seq() + 1)
        };
        if s.first_seq == expected {
            Outcome::Appended
        } else {
            Outcome::OutOfOrder
        }
    }

    /// What a well-behaved producer sends next at `epoch`.
    fn next(&self, epoch: i16, records: i32) -> Sent {
        let first_seq = match self.state() {
            Some((e, recent)) if e == epoch => recent
                .last()
                .and_then(|r| r.sent)
                .map_or(0, |x| x.last_seq() + 1),
            _ => 0,
        };
        Sent {
            epoch,
            first_seq,
            records,
        }
    }
}

fn send(log: &mut Log, model: &mut Model, s: Sent) -> Result<(), TestCaseError> {
    let expected = model.expect(&s);
    let got = match log.append(&s.bytes(), 0, 0) {
        Ok(info) if info.duplicate => Outcome::Duplicate(info.base_offset, info.last_offset),
        Ok(info) => {
            prop_assert_eq!(info.base_offset, model.end());
            Outcome::Appended
        }
        Err(LogError::OutOfOrderSequence { .. }) => Outcome::OutOfOrder,
        Err(LogError::InvalidProducerEpoch { .. }) => Outcome::Fenced,
        Err(e) => return Err(TestCaseError::fail(e.to_string())),
    };
    prop_assert_eq!(&got, &expected, "sending {:?}", s);
    if got == Outcome::Appended {
        let base = model.end();
        model.log.push(Stored {
            base,
            last: base + i64::from(s.records) - 1,
            sent: Some(s),
        });
    }
    Ok(())
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Some(Log::open(dir.path(), config()).unwrap());
    let mut model = Model::default();
    let mut epoch = 0i16;
    let mut history: Vec<Sent> = Vec::new();
    for op in ops {
        let current = log.as_mut().unwrap();
        match op {
            Op::Send(records) => {
                let s = model.next(epoch, records);
                history.push(s);
                send(current, &mut model, s)?;
            }
            Op::Retry(i) if !history.is_empty() => {
                let s = history[i.index(history.len())];
                send(current, &mut model, s)?;
            }
            Op::Retry(_) => {}
            Op::BumpEpoch => epoch += 1,
            Op::Plain => {
                let info = current.append(&batch(2, 8, 0, 0), 0, 0).unwrap();
                model.log.push(Stored {
                    base: info.base_offset,
                    last: info.last_offset,
                    sent: None,
                });
            }
            Op::Truncate(i) => {
                let offset = i.index(model.end() as usize + 1) as i64;
                current.truncate_to(offset).unwrap();
                model.log.retain(|s| s.last < offset);
            }
            Op::Flush => current.flush().unwrap(),
            Op::CloseReopen => {
                log.take().unwrap().close().unwrap();
                log = Some(Log::open(dir.path(), config()).unwrap());
            }
            Op::CrashReopen => {
                drop(log.take());
                log = Some(Log::open(dir.path(), config()).unwrap());
            }
        }
        prop_assert_eq!(log.as_ref().unwrap().log_end_offset(), model.end());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn idempotent_producer_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
