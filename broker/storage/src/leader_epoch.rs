//! The leader-epoch cache: Kafka's `LeaderEpochFileCache` and its
//! `leader-epoch-checkpoint` file, which let a follower find where its log diverged
//! from the leader's (KIP-101, KIP-279: OffsetsForLeaderEpoch).
//!
//! An entry `(epoch, start_offset)` says that the first batch the log holds with
//! partition leader epoch `epoch` starts at `start_offset`. Entries are strictly
//! increasing in both fields. Both append paths add one when a batch's epoch is greater
//! than the latest entry's (`(epoch, batch base offset)`); batches with epoch -1, or
//! with an epoch at or below the latest, add none.
//!
//! # Checkpoint file `leader-epoch-checkpoint`
//!
//! Text, Kafka's format, each line ending in `\n`:
//!
//! | line | contents                                   |
//! |------|--------------------------------------------|
//! | 1    | version: `0`                               |
//! | 2    | entry count                                |
//! | 3..  | one `epoch start_offset` per entry, in order |
//!
//! At most [`MAX_CHECKPOINT_BYTES`] are read; a longer, torn or malformed file (wrong
//! version, count, order, a negative value) is ignored and the cache is rebuilt.
//!
//! # Durability order
//!
//! The checkpoint is replaced through `checkpoint::write_atomic` (temp, fsync,
//! rename). A new entry is written *durably before* the batch that starts the epoch,
//! so the file is never behind the data: after a crash it holds every entry of the
//! batches that survived, plus perhaps entries at or past the recovered log end
//! offset (for batches that were lost). Removals (truncation, a raised log start
//! offset) are written durably before the call returns: a truncated entry left in
//! the file could otherwise come to point into batches appended after the truncation
//! in an older epoch, where opening could not tell it from a true one.
//!
//! Opening therefore trusts a readable checkpoint, clean shutdown or not, and applies
//! Kafka's `truncateFromEnd(log end offset)` and `truncateFromStart(log start
//! offset)`. It rebuilds the cache by reading every batch header when the checkpoint
//! is missing, unreadable, or contradicts the log (the last batch carries an epoch
//! above the latest entry), then writes the result back.

use std::path::Path;

use crate::checkpoint::{read_bounded, write_atomic, Durability};
use crate::error::Result;
use crate::log::Log;
use crate::segment::LogSegment;

/// File name of the leader-epoch checkpoint in the partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const VERSION: &str = "0";
/// A checkpoint larger than this is ignored (rebuilt from the log): about 40,000
/// entries of the longest form, far more epochs than a partition sees.
pub(crate) const MAX_CHECKPOINT_BYTES: u64 = 1024 * 1024;
/// The shortest entry line, `0 0\n`: bounds the count before allocating.
const MIN_ENTRY_LEN: usize = 4;

/// One entry: the first offset written in a leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i32,
    pub(crate) start_offset: i64,
}

/// The entries of one partition, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The entries as `(epoch, start_offset)`, oldest first.
    pub(crate) fn entries(&self) -> Vec<(i32, i64)> {
        self.entries
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// The latest epoch, if any.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Whether a batch with partition leader epoch `epoch` starts a new entry.
    pub(crate) fn starts_entry(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    /// Adds `(epoch, start_offset)` if `epoch` is newer than the latest entry; returns
    /// whether it did. Entries starting at or past `start_offset` (left by a failed
    /// append) are dropped first, so start offsets stay strictly increasing.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.starts_entry(epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `truncateFromEnd`: removes the entries starting at or past
    /// `end_offset`. Returns whether any was removed.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Kafka's `truncateFromStart`: the log now starts at `start_offset`, so entries
    /// wholly before it go and the one covering it starts there. Returns whether
    /// anything changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        // Entries starting at or before the new start: all but the last of them go.
        let covering = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if covering == 0 {
            return false;
        }
        let removed = self.entries.drain(..covering - 1).count();
        let first = &mut self.entries[0];
        let moved = first.start_offset != start_offset;
        first.start_offset = start_offset;
        removed > 0 || moved
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) -> bool {
        let had = !self.entries.is_empty();
        self.entries.clear();
        had
    }

    /// Kafka's `endOffsetFor` (the answer to OffsetsForLeaderEpoch): `None` for a
    /// negative epoch, an empty cache or an epoch above the latest; the latest epoch
    /// gives `(epoch, log_end_offset)`; otherwise the largest epoch at or below `epoch`
    /// and the start offset of the first entry with a greater epoch. An epoch below
    /// every entry gives `(epoch, first entry's start offset)`, as in Kafka: that
    /// history is gone, and the follower replicates from there.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let latest = self.entries.last()?;
        if epoch == latest.epoch {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        let found = higher
            .checked_sub(1)
            .and_then(|floor| self.entries.get(floor))
            .map_or(epoch, |e| e.epoch);
        Some((found, next.start_offset))
    }

    fn encode(&self) -> String {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        text
    }

    /// Parses a checkpoint; `None` unless it is well formed and strictly increasing.
    fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let body = text.strip_suffix('\n')?;
        let mut lines = body.split('\n');
        if lines.next()? != VERSION {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        if count > bytes.len() / MIN_ENTRY_LEN {
            return None;
        }
        let mut entries: Vec<EpochEntry> = Vec::with_capacity(count);
        for line in lines {
            let (epoch, start) = line.split_once(' ')?;
            let entry = EpochEntry {
                epoch: epoch.parse().ok()?,
                start_offset: start.parse().ok()?,
            };
            let increasing = entries
                .last()
                .is_none_or(|p| entry.epoch > p.epoch && entry.start_offset > p.start_offset);
            if entry.epoch < 0 || entry.start_offset < 0 || !increasing {
                return None;
            }
            entries.push(entry);
        }
        (entries.len() == count).then_some(LeaderEpochCache { entries })
    }

    /// Reads the checkpoint in `dir`: `None` if it is missing or unusable.
    pub(crate) fn read(dir: &Path) -> Result<Option<LeaderEpochCache>> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let Some(bytes) = read_bounded(&path, MAX_CHECKPOINT_BYTES)? else {
            return Ok(None);
        };
        let decoded = Self::decode(&bytes);
        if decoded.is_none() {
            tracing::warn!(path = %path.display(), "ignoring unreadable leader-epoch checkpoint");
        }
        Ok(decoded)
    }

    /// Replaces the checkpoint in `dir` with these entries.
    pub(crate) fn write(&self, dir: &Path, durability: Durability) -> Result<()> {
        write_atomic(
            dir,
            LEADER_EPOCH_CHECKPOINT_FILE,
            self.encode().as_bytes(),
            durability,
        )
    }
}

impl Log {
    /// The latest leader epoch in the log's epoch cache (the epoch of the newest batch
    /// that started an epoch), or `None` when no batch carried an epoch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// OffsetsForLeaderEpoch for this log (Kafka's `endOffsetForEpoch`): `Some((epoch,
    /// end_offset))` where `end_offset` is the offset after the last one written in
    /// `epoch` — the log end offset for the latest epoch; for an older one, the largest
    /// epoch at or below it and the start offset of the next epoch; for an epoch below
    /// every entry, itself and the first entry's start offset. `None` (Kafka's
    /// `UNDEFINED_EPOCH`/`UNDEFINED_EPOCH_OFFSET`) for a negative epoch, an epoch above
    /// the latest, or an empty cache.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader-epoch cache as `(epoch, start_offset)` entries, oldest first: strictly
    /// increasing in both, each start offset within the log.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.epochs.entries()
    }

    /// Records that a batch with `epoch` is about to be written at `base_offset`: a new
    /// entry is persisted durably *before* the batch is (see the module docs).
    pub(crate) fn maybe_assign_epoch(&mut self, epoch: i32, base_offset: i64) -> Result<()> {
        if !self.epochs.starts_entry(epoch) {
            return Ok(());
        }
        let mut next = self.epochs.clone();
        next.assign(epoch, base_offset);
        next.write(&self.dir, Durability::Durable)?;
        self.epochs = next;
        Ok(())
    }

    /// Persists the cache durably after entries were removed or moved, when `changed`.
    pub(crate) fn persist_epochs_after_removal(&self, changed: bool) -> Result<()> {
        if changed {
            self.epochs.write(&self.dir, Durability::Durable)?;
        }
        Ok(())
    }

    /// Loads the cache on open, after recovery and the log start offset: the checkpoint
    /// trimmed to the log, or a rebuild from the batch headers (see the module docs).
    pub(crate) fn load_leader_epochs(&mut self) -> Result<()> {
        let stored = LeaderEpochCache::read(&self.dir)?;
        let mut cache = match stored.clone() {
            Some(mut cache) => {
                cache.truncate_from_end(self.log_end_offset());
                cache
            }
            None => LeaderEpochCache::default(),
        };
        let contradicted = match self.last_batch_epoch()? {
            Some(last) => cache.starts_entry(last),
            None => false,
        };
        if stored.is_none() || contradicted {
            tracing::info!(dir = %self.dir.display(), contradicted, "rebuilding the leader-epoch cache from the log");
            cache = self.scan_leader_epochs()?;
        }
        cache.truncate_from_start(self.log_start_offset());
        if stored.as_ref() != Some(&cache) {
            cache.write(&self.dir, Durability::OldOrNew)?;
        }
        self.epochs = cache;
        Ok(())
    }

    /// The partition leader epoch of the last batch in the log, if there is one.
    fn last_batch_epoch(&self) -> Result<Option<i32>> {
        let Some(segment) = self.segments.iter().rev().find(|s| s.size() > 0) else {
            return Ok(None);
        };
        let last = segment.next_offset().saturating_sub(1);
        Ok(segment
            .locate(last)?
            .map(|(_, header)| header.partition_leader_epoch))
    }

    /// The cache derived from every batch header in the log.
    fn scan_leader_epochs(&self) -> Result<LeaderEpochCache> {
        let mut cache = LeaderEpochCache::default();
        for segment in self.segments.iter() {
            scan_segment_epochs(segment, &mut cache)?;
        }
        Ok(cache)
    }
}

fn scan_segment_epochs(segment: &LogSegment, cache: &mut LeaderEpochCache) -> Result<()> {
    let mut position = 0;
    while position < segment.size() {
        let header = segment.header_at(position)?;
        cache.assign(header.partition_leader_epoch, header.base_offset);
        position += header.total_len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    #[test]
    fn assign_keeps_only_newer_epochs() {
        let mut c = LeaderEpochCache::default();
        assert!(!c.assign(-1, 0));
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5));
        assert!(c.assign(2, 10));
        assert!(!c.assign(1, 12));
        assert!(c.assign(5, 20));
        assert_eq!(c.entries(), [(0, 0), (2, 10), (5, 20)]);
        // An entry left at the log end by a failed append gives way.
        assert!(c.assign(6, 20));
        assert_eq!(c.entries(), [(0, 0), (2, 10), (6, 20)]);
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(0, 0), (2, 10), (5, 20)]);
        assert!(!c.truncate_from_end(21));
        assert!(c.truncate_from_end(20));
        assert_eq!(c.entries(), [(0, 0), (2, 10)]);
        let mut c = cache(&[(0, 0), (2, 10), (5, 20)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), [(2, 12), (5, 20)]);
        assert!(c.truncate_from_start(20));
        assert_eq!(c.entries(), [(5, 20)]);
        assert!(!c.truncate_from_start(20));
        assert!(c.truncate_from_start(30));
        assert_eq!(c.entries(), [(5, 30)]);
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 5), (2, 10), (5, 20)]);
        let leo = 27;
        assert_eq!(c.end_offset_for(5, leo), Some((5, 27)));
        assert_eq!(c.end_offset_for(2, leo), Some((2, 20)));
        // An epoch the log never saw, between two: the one before it.
        assert_eq!(c.end_offset_for(3, leo), Some((2, 20)));
        assert_eq!(c.end_offset_for(1, leo), Some((1, 10)));
        assert_eq!(c.end_offset_for(0, leo), Some((0, 5)));
        assert_eq!(c.end_offset_for(6, leo), None);
        assert_eq!(c.end_offset_for(-1, leo), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, leo), None);
    }

    #[test]
    fn checkpoint_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), None);
        let c = cache(&[(0, 0), (2, 10), (5, 20)]);
        c.write(dir.path(), Durability::Durable).unwrap();
        let text = std::fs::read(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, b"0\n3\n0 0\n2 10\n5 20\n");
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), Some(c));
        LeaderEpochCache::default()
            .write(dir.path(), Durability::OldOrNew)
            .unwrap();
        assert_eq!(
            LeaderEpochCache::read(dir.path()).unwrap(),
            Some(LeaderEpochCache::default())
        );
    }

    #[test]
    fn bad_checkpoints_are_refused() {
        for bad in [
            &b""[..],
            b"0\n",
            b"1\n0\n",
            b"0\n2\n0 0\n",           // count too high
            b"0\n1\n0 0\n2 10\n",     // count too low
            b"0\n2\n2 10\n0 0\n",     // decreasing
            b"0\n2\n0 5\n1 5\n",      // equal start offsets
            b"0\n1\n-1 0\n",          // negative epoch
            b"0\n1\n0 -3\n",          // negative offset
            b"0\n1\n0 0",             // torn: no final newline
            b"0\n1\n0 0 0\n",         // extra field
            b"0\n1\n0\t0\n",          // wrong separator
            b"0\n99999999999\n0 0\n", // a count the bytes cannot hold
            b"0\n1\n0 0\n\n",
            &[0xff, b'\n'],
        ] {
            assert_eq!(LeaderEpochCache::decode(bad), None, "{bad:?}");
        }
        assert_eq!(
            LeaderEpochCache::decode(b"0\n0\n"),
            Some(LeaderEpochCache::default())
        );
    }

    #[test]
    fn oversized_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::default();
        let mut i = 0;
        while c.encode().len() as u64 <= MAX_CHECKPOINT_BYTES {
            // Lines of about 25 bytes; re-encoding once per thousand keeps this quick.
            for _ in 0..1_000 {
                c.assign(i, 1_000_000_000_000 + i64::from(i));
                i += 1;
            }
        }
        let text = c.encode();
        assert!(LeaderEpochCache::decode(text.as_bytes()).is_some());
        std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), text).unwrap();
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), None);
    }
}
