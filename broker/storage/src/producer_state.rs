//! Idempotent-producer state: Kafka's `ProducerStateManager`, reduced to what
//! idempotence needs (no transactions yet).
//!
//! Per producer id the log keeps the current producer epoch and the metadata of the
//! last [`MAX_BATCHES_PER_PRODUCER`] batches, which is enough to recognise a retried
//! batch (a *duplicate*) and to insist that sequence numbers follow each other.
//!
//! The state is rebuilt on open from a snapshot plus the batches after it. The
//! snapshot (`producer-state.snapshot`, written atomically) is:
//!
//! | bytes | field                                                          |
//! |------:|----------------------------------------------------------------|
//! |     4 | magic `RNPS`                                                   |
//! |     2 | version (1), u16                                               |
//! |     8 | offset: the state covers every batch below it, i64             |
//! |     4 | producer count, u32                                            |
//! |     … | per producer: id i64, epoch i16, batch count u8 (≤ 5), then per batch: first sequence i32, last sequence i32, base offset i64, last offset i64 |
//! |     4 | CRC-32C of everything before it, u32                           |

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use crate::batch::{increment_sequence, BatchHeader};
use crate::checkpoint::{read_bounded, remove_durably, write_atomic, Durability};
use crate::error::{LogError, Result};

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`, matching
/// `max.in.flight.requests.per.connection` = 5 for idempotent producers).
pub(crate) const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// File name of the producer-state snapshot.
pub(crate) const SNAPSHOT_FILE: &str = "producer-state.snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"RNPS";
const SNAPSHOT_VERSION: u16 = 1;
/// Larger snapshots are ignored (state is then rebuilt from the log).
const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;
const ENTRY_HEADER_LEN: usize = 8 + 2 + 1;
const BATCH_META_LEN: usize = 4 + 4 + 8 + 8;

/// Where one of a producer's recent batches landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

/// What the log knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn new(epoch: i16, first: BatchMetadata) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::from([first]),
        }
    }

    fn push(&mut self, batch: BatchMetadata) {
        if self.batches.len() == MAX_BATCHES_PER_PRODUCER {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
    }
}

/// The outcome of checking a client batch.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Write the batch; afterwards the producer's entry is this.
    Append(ProducerEntry),
    /// The batch was already written at these offsets; write nothing.
    Duplicate(BatchMetadata),
}

/// Producer id → state, for one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

fn metadata(header: &BatchHeader, base_offset: i64) -> BatchMetadata {
    BatchMetadata {
        first_seq: header.base_sequence,
        last_seq: header.last_sequence(),
        base_offset,
        last_offset: base_offset + i64::from(header.last_offset_delta),
    }
}

impl ProducerStateManager {
    /// The entry for `producer_id`, if known.
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Number of producers tracked.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Checks an idempotent client batch that would get `base_offset`, against
    /// `current` (the producer's entry including earlier batches of the same payload).
    ///
    /// Follows Kafka's `ProducerAppendInfo`: a retry of one of the last five batches
    /// (same epoch and sequence range) is a duplicate; an older epoch is fenced; a
    /// newer epoch must start at sequence 0; otherwise the first sequence must follow
    /// the last one (wrapping at `i32::MAX`). An unknown producer may start at any
    /// sequence, as Kafka accepts since 2.x (its state may have been removed).
    pub(crate) fn check(
        current: Option<&ProducerEntry>,
        header: &BatchHeader,
        base_offset: i64,
    ) -> Result<Verdict> {
        let producer_id = header.producer_id;
        let epoch = header.producer_epoch;
        let batch = metadata(header, base_offset);
        let Some(current) = current else {
            return Ok(Verdict::Append(ProducerEntry::new(epoch, batch)));
        };
        if epoch == current.epoch {
            if let Some(dup) = current
                .batches
                .iter()
                .find(|b| b.first_seq == batch.first_seq && b.last_seq == batch.last_seq)
            {
                return Ok(Verdict::Duplicate(*dup));
            }
        }
        if epoch < current.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: current.epoch,
            });
        }
        let expected = if epoch > current.epoch {
            0
        } else {
            current
                .batches
                .back()
                .map_or(0, |b| increment_sequence(b.last_seq, 1))
        };
        if batch.first_seq != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id,
                expected,
                got: batch.first_seq,
            });
        }
        let next = if epoch > current.epoch {
            ProducerEntry::new(epoch, batch)
        } else {
            let mut e = current.clone();
            e.push(batch);
            e
        };
        Ok(Verdict::Append(next))
    }

    /// Records the entry produced by [`Self::check`] once its batch is written.
    pub(crate) fn commit(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    /// Applies a batch read back from the log, without checks (rebuilding state).
    pub(crate) fn replay(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let batch = metadata(header, header.base_offset);
        match self.producers.get_mut(&header.producer_id) {
            Some(e) if e.epoch == header.producer_epoch => e.push(batch),
            _ => {
                self.producers.insert(
                    header.producer_id,
                    ProducerEntry::new(header.producer_epoch, batch),
                );
            }
        }
    }

    /// Forgets every producer (before a rebuild from the log).
    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }

    fn encode(&self, offset: i64) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(22 + self.producers.len() * (ENTRY_HEADER_LEN + 2 * BATCH_META_LEN));
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(e) = self.producers.get(&id) else {
                continue;
            };
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot; `None` if it is not a well-formed snapshot of ours.
    fn decode(bytes: &[u8]) -> Option<(i64, ProducerStateManager)> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader(body);
        if r.take(4)? != SNAPSHOT_MAGIC || u16::from_be_bytes(r.array()?) != SNAPSHOT_VERSION {
            return None;
        }
        let offset = i64::from_be_bytes(r.array()?);
        let count = u32::from_be_bytes(r.array()?) as usize;
        // Bound the allocation by what the bytes can hold.
        if count > r.0.len() / ENTRY_HEADER_LEN {
            return None;
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = i64::from_be_bytes(r.array()?);
            let epoch = i16::from_be_bytes(r.array()?);
            let n = usize::from(r.take(1)?[0]);
            if n == 0 || n > MAX_BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(r.array()?),
                    last_seq: i32::from_be_bytes(r.array()?),
                    base_offset: i64::from_be_bytes(r.array()?),
                    last_offset: i64::from_be_bytes(r.array()?),
                });
            }
            producers.insert(id, ProducerEntry { epoch, batches });
        }
        r.0.is_empty()
            .then_some((offset, ProducerStateManager { producers }))
    }

    /// Writes a snapshot of the state as of `offset` (all batches below it applied).
    /// A crash may leave the previous snapshot, which only means a longer replay.
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<()> {
        write_atomic(
            dir,
            SNAPSHOT_FILE,
            &self.encode(offset),
            Durability::OldOrNew,
        )
    }

    /// Reads the snapshot in `dir`: `(offset, state)`, or `None` if absent or unusable.
    pub(crate) fn read_snapshot(dir: &Path) -> Result<Option<(i64, ProducerStateManager)>> {
        let path = dir.join(SNAPSHOT_FILE);
        let Some(bytes) = read_bounded(&path, MAX_SNAPSHOT_BYTES)? else {
            return Ok(None);
        };
        let decoded = Self::decode(&bytes);
        if decoded.is_none() {
            tracing::warn!(path = %path.display(), "ignoring unreadable producer-state snapshot");
        }
        Ok(decoded)
    }

    /// Deletes the snapshot (it would describe batches that no longer exist).
    pub(crate) fn delete_snapshot(dir: &Path) -> Result<()> {
        remove_durably(dir, SNAPSHOT_FILE).map(|_| ())
    }
}

/// A cursor over a byte slice whose reads fail (rather than panic) past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::idempotent;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader::parse(&idempotent(pid, epoch, seq, count)).unwrap()
    }

    fn append(psm: &mut ProducerStateManager, h: &BatchHeader, base: i64) -> Result<Verdict> {
        let v = ProducerStateManager::check(psm.get(h.producer_id), h, base)?;
        if let Verdict::Append(e) = &v {
            psm.commit(h.producer_id, e.clone());
        }
        Ok(v)
    }

    #[test]
    fn sequences_must_follow() {
        let mut psm = ProducerStateManager::default();
        // Unknown producers may start anywhere.
        assert!(matches!(
            append(&mut psm, &header(1, 0, 7, 3), 0),
            Ok(Verdict::Append(_))
        ));
        assert!(matches!(
            append(&mut psm, &header(1, 0, 10, 1), 3),
            Ok(Verdict::Append(_))
        ));
        let err = append(&mut psm, &header(1, 0, 12, 1), 4).unwrap_err();
        assert!(matches!(
            err,
            LogError::OutOfOrderSequence {
                producer_id: 1,
                expected: 11,
                got: 12
            }
        ));
    }

    #[test]
    fn retries_of_last_five_are_duplicates() {
        let mut psm = ProducerStateManager::default();
        for i in 0..7 {
            append(&mut psm, &header(9, 2, i * 2, 2), i64::from(i) * 2).unwrap();
        }
        // Batches 2..=6 are remembered, 0 and 1 are not.
        match append(&mut psm, &header(9, 2, 4, 2), 100).unwrap() {
            Verdict::Duplicate(m) => assert_eq!((m.base_offset, m.last_offset), (4, 5)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            append(&mut psm, &header(9, 2, 0, 2), 100),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        // Same first sequence but a different range is not a duplicate.
        assert!(matches!(
            append(&mut psm, &header(9, 2, 12, 1), 100),
            Err(LogError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut psm = ProducerStateManager::default();
        append(&mut psm, &header(5, 3, 0, 1), 0).unwrap();
        assert!(matches!(
            append(&mut psm, &header(5, 2, 1, 1), 1),
            Err(LogError::InvalidProducerEpoch {
                producer_id: 5,
                epoch: 2,
                current: 3
            })
        ));
        assert!(matches!(
            append(&mut psm, &header(5, 4, 1, 1), 1),
            Err(LogError::OutOfOrderSequence {
                expected: 0,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            append(&mut psm, &header(5, 4, 0, 1), 1),
            Ok(Verdict::Append(_))
        ));
        // The old epoch's batches are forgotten: its retry is now fenced.
        assert!(matches!(
            append(&mut psm, &header(5, 3, 0, 1), 2),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
    }

    #[test]
    fn sequence_wraps_to_zero() {
        let mut psm = ProducerStateManager::default();
        append(&mut psm, &header(1, 0, i32::MAX - 1, 2), 0).unwrap();
        assert!(matches!(
            append(&mut psm, &header(1, 0, 0, 1), 2),
            Ok(Verdict::Append(_))
        ));
    }

    #[test]
    fn snapshot_round_trip_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut psm = ProducerStateManager::default();
        for (i, pid) in [3i64, 1, 2].iter().enumerate() {
            for s in 0..(i as i32 + 2) {
                psm.replay(&BatchHeader {
                    base_offset: i64::from(s) * 10,
                    ..header(*pid, 1, s, 1)
                });
            }
        }
        psm.write_snapshot(dir.path(), 77).unwrap();
        let (offset, loaded) = ProducerStateManager::read_snapshot(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(offset, 77);
        assert_eq!(loaded, psm);

        let path = dir.path().join(SNAPSHOT_FILE);
        let good = std::fs::read(&path).unwrap();
        for cut in [0, 3, good.len() / 2, good.len() - 1] {
            assert!(ProducerStateManager::decode(&good[..cut]).is_none());
        }
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(ProducerStateManager::decode(&flipped).is_none());
        // A huge count with a valid CRC must not allocate.
        let mut lying = good[..22].to_vec();
        lying[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lying);
        lying.extend_from_slice(&crc.to_be_bytes());
        assert!(ProducerStateManager::decode(&lying).is_none());
        ProducerStateManager::delete_snapshot(dir.path()).unwrap();
        assert!(ProducerStateManager::read_snapshot(dir.path())
            .unwrap()
            .is_none());
    }
}
