//! Sparse per-segment indexes: `.index` (offset → file position) and `.timeindex`
//! (timestamp → offset).
//!
//! Both are append-only files of fixed-size big-endian entries, searched with binary
//! search over positional reads (never loaded whole). The newest entries an index
//! appended in this process ([`WARM_ENTRIES`], while its segment is active) are also kept
//! in memory: followers and tailing consumers read at the end of the log, so their
//! lookups need no read of the file. New entries reach the file together, up to
//! [`WARM_ENTRIES`] in one write, and always before the file is fsynced or handed out
//! to be, so what a flush covers is whole. They are derived data: on any
//! doubt (wrong length, entries out of order, positions past the log) the segment's
//! indexes are rebuilt from its `.log` by the recovery scan.
//!
//! | file         | entry bytes | layout                                              |
//! |--------------|------------:|-----------------------------------------------------|
//! | `.index`     |           8 | relative offset u32, file position u32              |
//! | `.timeindex` |          12 | timestamp i64, relative offset u32                  |
//!
//! Offsets are relative to the segment's base offset. An `.index` entry points at the
//! start of the batch whose *base* offset it names; a `.timeindex` entry says that the
//! batches up to and including the one with that base offset have max timestamps at
//! most the entry's timestamp, and that batch is the first to reach it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{LogError, Result};
use crate::fs;

/// An offset relative to its segment's base offset; at most `i32::MAX` as in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RelativeOffset(u32);

impl RelativeOffset {
    /// `offset - base`, if it is in `0..=i32::MAX`.
    pub(crate) fn new(base: i64, offset: i64) -> Option<RelativeOffset> {
        let delta = offset.checked_sub(base)?;
        if (0..=i64::from(i32::MAX)).contains(&delta) {
            u32::try_from(delta).ok().map(RelativeOffset)
        } else {
            None
        }
    }

    fn absolute(self, base: i64) -> i64 {
        base + i64::from(self.0)
    }
}

/// A byte position inside a segment's `.log` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FilePosition(u32);

impl FilePosition {
    /// The position, if it fits the 32 bits an index entry has.
    pub(crate) fn new(position: u64) -> Option<FilePosition> {
        u32::try_from(position).ok().map(FilePosition)
    }

    pub(crate) fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// Entries read per positional read when validating a whole index.
const VALIDATE_CHUNK_ENTRIES: usize = 4096;

/// Newest entries an index keeps in memory while its segment is active (1 KiB of
/// offset index, at the default `index.interval.bytes` the last 512 KiB of the log;
/// Kafka keeps the pages of a similar "warm section" of its mapped index resident for
/// the same reason). A lookup that falls among them reads no file: with RF=3 acks=all,
/// leaders answered followers' fetches with a binary search of one `pread` per probe,
/// about 3 % of the brokers' CPU. Entries are also written to the file this many at a
/// time (a batch larger than `index.interval.bytes` is indexed, so with 16 KiB batches
/// the two indexes' 8- and 12-byte writes were 60 % of a broker's `pwrite` calls).
const WARM_ENTRIES: usize = 128;

/// An append-only file of `N`-byte entries.
#[derive(Debug)]
struct IndexFile<const N: usize> {
    path: PathBuf,
    file: File,
    entries: u64,
    /// The file length was not a multiple of `N` when opened.
    ragged: bool,
    /// The file did not exist and was created empty by `open`.
    created: bool,
    /// Written since the last fsync (atomic only so `sync` can take `&self`).
    dirty: AtomicBool,
    /// Copies of the last `warm.len()` entries (at most [`WARM_ENTRIES`]), oldest first:
    /// those appended since the file was opened or [`Self::cool`]ed, less any truncated.
    warm: VecDeque<[u8; N]>,
    /// Entries in the file. Those past it are all in `warm` (so every entry before
    /// `warm` is in the file) until [`Self::write_pending`] writes them. Atomic so that
    /// it can be done with `&self`: by whoever fsyncs the file or takes a handle to,
    /// under the log's read lock (two at once write the same bytes).
    written: AtomicU64,
}

impl<const N: usize> IndexFile<N> {
    fn open(path: &Path) -> Result<Self> {
        let created = !path.try_exists().map_err(LogError::io(path))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LogError::io(path))?;
        let len = file.metadata().map_err(LogError::io(path))?.len();
        let entries = len / N as u64;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            entries,
            ragged: len % N as u64 != 0,
            created,
            dirty: AtomicBool::new(false),
            warm: VecDeque::new(),
            written: AtomicU64::new(entries),
        })
    }

    /// Index of the first entry kept in memory (`entries` when none is).
    fn warm_start(&self) -> u64 {
        self.entries - self.warm.len() as u64
    }

    fn entry(&self, i: u64) -> Result<[u8; N]> {
        if let Some(warm) = i
            .checked_sub(self.warm_start())
            .and_then(|k| self.warm.get(usize::try_from(k).ok()?))
        {
            return Ok(*warm);
        }
        let mut buf = [0u8; N];
        self.file
            .read_exact_at(&mut buf, i * N as u64)
            .map_err(LogError::io(&self.path))?;
        Ok(buf)
    }

    /// Appends `entry` in memory; the file gets it with the next [`Self::write_pending`],
    /// done here when the oldest entry in memory is about to leave unwritten.
    fn append(&mut self, entry: [u8; N]) -> Result<()> {
        if self.warm.len() == WARM_ENTRIES {
            if self.written.load(Ordering::Acquire) <= self.warm_start() {
                self.write_pending()?;
            }
            self.warm.pop_front();
        }
        self.warm.push_back(entry);
        self.entries += 1;
        self.created = false;
        Ok(())
    }

    /// Writes the entries appended since the last call (all in memory) to the file in
    /// one positional write.
    fn write_pending(&self) -> Result<()> {
        let written = self.written.load(Ordering::Acquire);
        if written >= self.entries {
            return Ok(());
        }
        let lost = || {
            LogError::io(&self.path)(std::io::Error::other("index entries left memory unwritten"))
        };
        let first = written
            .checked_sub(self.warm_start())
            .and_then(|k| usize::try_from(k).ok())
            .ok_or_else(lost)?;
        let bytes: Vec<u8> = self.warm.range(first..).flatten().copied().collect();
        fs::write_all_at(&self.file, &bytes, written * N as u64, &self.path)
            .map_err(LogError::io(&self.path))?;
        // Dirty first: whoever then sees the entries written also sees them unsynced.
        self.dirty.store(true, Ordering::Relaxed);
        self.written.store(self.entries, Ordering::Release);
        Ok(())
    }

    fn truncate(&mut self, entries: u64) -> Result<()> {
        let written = self.written.load(Ordering::Acquire).min(entries);
        fs::set_len(&self.file, written * N as u64, &self.path)
            .map_err(LogError::io(&self.path))?;
        self.written.store(written, Ordering::Release);
        let keep = entries.saturating_sub(self.warm_start());
        self.warm
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.entries = entries;
        self.ragged = false;
        self.created = false;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Number of leading entries for which `pred` holds; `pred` must hold for a
    /// prefix of the entries and not after it.
    fn partition_point(&self, pred: impl Fn(&[u8; N]) -> bool) -> Result<u64> {
        let start = self.warm_start();
        if self.warm.front().is_some_and(&pred) {
            return Ok(start + self.warm.partition_point(&pred) as u64);
        }
        // The answer is at or before the first entry in memory: only the file is searched.
        let (mut lo, mut hi) = (0u64, start);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(&self.entry(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Calls `check` on every entry in order, reading in chunks; stops at the first
    /// `false`. Returns whether every entry passed.
    fn all(&self, mut check: impl FnMut(&[u8; N]) -> bool) -> Result<bool> {
        self.write_pending()?;
        let mut buf = vec![0u8; N * VALIDATE_CHUNK_ENTRIES];
        let mut done = 0u64;
        while done < self.entries {
            let n = (self.entries - done).min(VALIDATE_CHUNK_ENTRIES as u64) as usize;
            let chunk = &mut buf[..n * N];
            self.file
                .read_exact_at(chunk, done * N as u64)
                .map_err(LogError::io(&self.path))?;
            for raw in chunk.chunks_exact(N) {
                let mut entry = [0u8; N];
                entry.copy_from_slice(raw);
                if !check(&entry) {
                    return Ok(false);
                }
            }
            done += n as u64;
        }
        Ok(true)
    }

    /// Writes the entries kept in memory that the file lacks, then drops them all (the
    /// segment is no longer active).
    fn cool(&mut self) -> Result<()> {
        self.write_pending()?;
        self.warm = VecDeque::new();
        Ok(())
    }

    /// A second handle on the file, for fsyncing it outside the log's lock; every entry
    /// is in the file first.
    fn clone_handle(&self) -> Result<(PathBuf, File)> {
        self.write_pending()?;
        let file = self.file.try_clone().map_err(LogError::io(&self.path))?;
        Ok((self.path.clone(), file))
    }

    /// Writes the pending entries, then fsyncs the file if it changed since the last
    /// fsync (most flushes add no entry).
    fn sync(&self) -> Result<()> {
        self.write_pending()?;
        if self.dirty.swap(false, Ordering::Relaxed) {
            if let Err(e) = fs::sync_all(&self.file, &self.path) {
                self.dirty.store(true, Ordering::Relaxed);
                return Err(LogError::io(&self.path)(e));
            }
        }
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn max_entries(max_index_bytes: u64, entry_len: usize) -> u64 {
    (max_index_bytes / entry_len as u64).max(1)
}

/// What an index holds, as a fixed-size big-endian entry of `N` bytes.
pub(crate) trait IndexEntry<const N: usize>: Copy {
    fn decode(bytes: &[u8; N]) -> Self;
    fn encode(self) -> [u8; N];
    /// The offset the entry names, relative to the segment's base offset.
    fn relative_offset(self) -> RelativeOffset;
}

/// An `.index` entry: the batch with this base offset starts at this position.
pub(crate) type OffsetEntry = (RelativeOffset, FilePosition);

impl IndexEntry<8> for OffsetEntry {
    fn decode(e: &[u8; 8]) -> Self {
        (RelativeOffset(u32_at(e, 0)), FilePosition(u32_at(e, 4)))
    }

    fn encode(self) -> [u8; 8] {
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&self.0 .0.to_be_bytes());
        entry[4..].copy_from_slice(&self.1 .0.to_be_bytes());
        entry
    }

    fn relative_offset(self) -> RelativeOffset {
        self.0
    }
}

/// A `.timeindex` entry: the batch with this base offset is the first to reach this
/// max timestamp.
pub(crate) type TimeEntry = (i64, RelativeOffset);

impl IndexEntry<12> for TimeEntry {
    fn decode(e: &[u8; 12]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        (i64::from_be_bytes(ts), RelativeOffset(u32_at(e, 8)))
    }

    fn encode(self) -> [u8; 12] {
        let mut entry = [0u8; 12];
        entry[..8].copy_from_slice(&self.0.to_be_bytes());
        entry[8..].copy_from_slice(&self.1 .0.to_be_bytes());
        entry
    }

    fn relative_offset(self) -> RelativeOffset {
        self.1
    }
}

/// A sparse index of one segment: entries of type `E`, `N` bytes each, in a file.
#[derive(Debug)]
pub(crate) struct SparseIndex<const N: usize, E> {
    file: IndexFile<N>,
    base_offset: i64,
    max_entries: u64,
    last: Option<E>,
}

/// The sparse offset index of one segment.
pub(crate) type OffsetIndex = SparseIndex<8, OffsetEntry>;

/// The sparse time index of one segment.
pub(crate) type TimeIndex = SparseIndex<12, TimeEntry>;

impl<const N: usize, E: IndexEntry<N>> SparseIndex<N, E> {
    /// Opens (creating if absent) the index without validating it.
    pub(crate) fn open(path: &Path, base_offset: i64, max_index_bytes: u64) -> Result<Self> {
        let file = IndexFile::<N>::open(path)?;
        let last = match file.entries {
            0 => None,
            n => Some(E::decode(&file.entry(n - 1)?)),
        };
        Ok(SparseIndex {
            file,
            base_offset,
            max_entries: max_entries(max_index_bytes, N),
            last,
        })
    }

    /// Appends `entry` (the caller checked it keeps the index ordered).
    fn push(&mut self, entry: E) -> Result<()> {
        self.file.append(entry.encode())?;
        self.last = Some(entry);
        Ok(())
    }

    /// The last entry for which `below` holds, the entries being ordered so that it
    /// holds for a prefix of them.
    fn last_where(&self, below: impl Fn(E) -> bool) -> Result<Option<E>> {
        let n = self.file.partition_point(|e| below(E::decode(e)))?;
        match n {
            0 => Ok(None),
            n => Ok(Some(E::decode(&self.file.entry(n - 1)?))),
        }
    }

    /// Drops entries for offsets at or after `offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) -> Result<()> {
        let base = self.base_offset;
        let keep = self
            .file
            .partition_point(|e| E::decode(e).relative_offset().absolute(base) < offset)?;
        self.file.truncate(keep)?;
        self.last = match keep {
            0 => None,
            n => Some(E::decode(&self.file.entry(n - 1)?)),
        };
        Ok(())
    }

    /// Empties the index (before a rebuild).
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.file.truncate(0)?;
        self.last = None;
        Ok(())
    }

    /// Drops the newest entries kept in memory, once in the file: the segment stopped
    /// being active, and its lookups read the file.
    pub(crate) fn cool(&mut self) -> Result<()> {
        self.file.cool()
    }

    /// Whether the index has reached `segment.index.bytes` (the segment must roll).
    pub(crate) fn is_full(&self) -> bool {
        self.file.entries >= self.max_entries
    }

    /// Applies a new `segment.index.bytes`.
    pub(crate) fn set_max_index_bytes(&mut self, max_index_bytes: u64) {
        self.max_entries = max_entries(max_index_bytes, N);
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.file.entries
    }

    /// Entries kept in memory.
    #[cfg(test)]
    pub(crate) fn warm_entries(&self) -> usize {
        self.file.warm.len()
    }

    pub(crate) fn clone_handle(&self) -> Result<(PathBuf, File)> {
        self.file.clone_handle()
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync()
    }
}

impl OffsetIndex {
    /// Whether the file is well formed for a `.log` of `log_size` bytes: present (unless
    /// the log is empty), whole entries, offsets and positions strictly increasing,
    /// every position inside the log.
    pub(crate) fn is_valid(&self, log_size: u64) -> Result<bool> {
        if self.file.ragged || (self.file.created && log_size > 0) {
            return Ok(false);
        }
        let mut prev: Option<OffsetEntry> = None;
        self.file.all(|e| {
            let (rel, pos) = OffsetEntry::decode(e);
            let ordered = prev.is_none_or(|(r, p)| rel > r && pos > p);
            prev = Some((rel, pos));
            ordered && rel.0 <= i32::MAX as u32 && pos.get() < log_size
        })
    }

    /// Records that the batch with base offset `offset` starts at `position`.
    /// Entries that would not be strictly increasing or do not fit are skipped:
    /// the index is sparse, so a missing entry only costs a longer scan.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> Result<()> {
        let (Some(rel), Some(pos)) = (
            RelativeOffset::new(self.base_offset, offset),
            FilePosition::new(position),
        ) else {
            return Ok(());
        };
        if self.last.is_some_and(|(r, p)| rel <= r || pos <= p) {
            return Ok(());
        }
        self.push((rel, pos))
    }

    /// The indexed batch start closest before `target`: the largest entry whose offset
    /// is at most `target`, as (absolute offset, position); `(base, 0)` if none.
    pub(crate) fn lookup(&self, target: i64) -> Result<(i64, u64)> {
        let base = self.base_offset;
        Ok(
            match self.last_where(|(rel, _)| rel.absolute(base) <= target)? {
                Some((rel, pos)) => (rel.absolute(base), pos.get()),
                None => (base, 0),
            },
        )
    }

    /// The largest indexed batch start at or before `position`, if any (positions
    /// increase with offsets, so the entries are sorted by both).
    pub(crate) fn floor_position(&self, position: u64) -> Result<Option<u64>> {
        Ok(self
            .last_where(|(_, pos)| pos.get() <= position)?
            .map(|(_, pos)| pos.get()))
    }

    /// The last entry as (absolute offset, position).
    pub(crate) fn last_entry(&self) -> Option<(i64, u64)> {
        self.last
            .map(|(r, p)| (r.absolute(self.base_offset), p.get()))
    }
}

impl TimeIndex {
    /// Whether the file is well formed for a segment whose offsets are below
    /// `next_offset`: present (unless the segment is empty), whole entries, timestamps
    /// strictly increasing, offsets non-decreasing and inside the segment.
    pub(crate) fn is_valid(&self, next_offset: i64) -> Result<bool> {
        if self.file.ragged || (self.file.created && next_offset > self.base_offset) {
            return Ok(false);
        }
        let base = self.base_offset;
        let mut prev: Option<TimeEntry> = None;
        self.file.all(|e| {
            let (ts, rel) = TimeEntry::decode(e);
            let ordered = prev.is_none_or(|(t, r)| ts > t && rel >= r);
            prev = Some((ts, rel));
            ordered && ts >= 0 && rel.0 <= i32::MAX as u32 && rel.absolute(base) < next_offset
        })
    }

    /// Records that the batch with base offset `offset` is the first to reach max
    /// timestamp `timestamp`, if that is newer than the last entry. `force` ignores
    /// the size limit (for the final entry written when a segment becomes inactive).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64, force: bool) -> Result<()> {
        if (!force && self.is_full()) || timestamp < 0 {
            return Ok(());
        }
        let Some(rel) = RelativeOffset::new(self.base_offset, offset) else {
            return Ok(());
        };
        if self.last.is_some_and(|(t, r)| timestamp <= t || rel < r) {
            return Ok(());
        }
        self.push((timestamp, rel))
    }

    /// The base offset of the last indexed batch whose timestamp is below `timestamp`:
    /// every batch up to and including it has a max timestamp below `timestamp`.
    pub(crate) fn lookup_below(&self, timestamp: i64) -> Result<Option<i64>> {
        let base = self.base_offset;
        Ok(self
            .last_where(|(t, _)| t < timestamp)?
            .map(|(_, rel)| rel.absolute(base)))
    }

    /// The last entry as (timestamp, absolute offset).
    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.last.map(|(t, r)| (t, r.absolute(self.base_offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(dir: &Path, base: i64) -> OffsetIndex {
        OffsetIndex::open(&dir.join("i.index"), base, 1 << 20).unwrap()
    }

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = offset_index(dir.path(), 100);
        for (i, off) in [110i64, 120, 130, 150].iter().enumerate() {
            idx.append(*off, (i as u64 + 1) * 1000).unwrap();
        }
        assert_eq!(idx.lookup(99).unwrap(), (100, 0));
        assert_eq!(idx.lookup(100).unwrap(), (100, 0));
        assert_eq!(idx.lookup(109).unwrap(), (100, 0));
        assert_eq!(idx.lookup(110).unwrap(), (110, 1000));
        assert_eq!(idx.lookup(129).unwrap(), (120, 2000));
        assert_eq!(idx.lookup(149).unwrap(), (130, 3000));
        assert_eq!(idx.lookup(10_000).unwrap(), (150, 4000));
        for (position, floor) in [
            (0, None),
            (999, None),
            (1000, Some(1000)),
            (2999, Some(2000)),
            (u64::MAX, Some(4000)),
        ] {
            assert_eq!(idx.floor_position(position).unwrap(), floor, "{position}");
        }
        assert!(idx.is_valid(4001).unwrap());
        assert!(!idx.is_valid(4000).unwrap());
    }

    #[test]
    fn offset_index_skips_non_increasing_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = offset_index(dir.path(), 0);
        idx.append(10, 500).unwrap();
        idx.append(10, 600).unwrap();
        idx.append(11, 500).unwrap();
        idx.append(-1, 700).unwrap();
        idx.append(20, 900).unwrap();
        assert_eq!(idx.entries(), 2);
        idx.sync().unwrap();
        drop(idx);
        let idx = offset_index(dir.path(), 0);
        assert_eq!(idx.entries(), 2);
        assert_eq!(idx.last_entry(), Some((20, 900)));
        assert_eq!(idx.lookup(15).unwrap(), (10, 500));
    }

    #[test]
    fn offset_index_truncate_and_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&dir.path().join("i.index"), 0, 24).unwrap();
        idx.append(1, 10).unwrap();
        idx.append(2, 20).unwrap();
        assert!(!idx.is_full());
        idx.append(3, 30).unwrap();
        assert!(idx.is_full());
        idx.truncate_to_offset(2).unwrap();
        assert_eq!(idx.entries(), 1);
        assert_eq!(idx.last_entry(), Some((1, 10)));
        assert!(!idx.is_full());
        idx.reset().unwrap();
        assert_eq!(idx.last_entry(), None);
        assert_eq!(idx.lookup(5).unwrap(), (0, 0));
    }

    #[test]
    fn garbage_offset_index_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.index");
        std::fs::write(&path, [0xAB; 13]).unwrap();
        assert!(!OffsetIndex::open(&path, 0, 1 << 20)
            .unwrap()
            .is_valid(1 << 30)
            .unwrap());
        // Whole entries, but not increasing.
        std::fs::write(&path, [0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 10]).unwrap();
        assert!(!OffsetIndex::open(&path, 0, 1 << 20)
            .unwrap()
            .is_valid(1 << 30)
            .unwrap());
    }

    #[test]
    fn time_index_lookup_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TimeIndex::open(&dir.path().join("t.timeindex"), 50, 1 << 20).unwrap();
        idx.maybe_append(-1, 50, false).unwrap();
        idx.maybe_append(1000, 50, false).unwrap();
        idx.maybe_append(1000, 55, false).unwrap(); // not newer: skipped
        idx.maybe_append(2000, 60, false).unwrap();
        idx.maybe_append(3000, 70, false).unwrap();
        assert_eq!(idx.last_entry(), Some((3000, 70)));
        assert_eq!(idx.lookup_below(1000).unwrap(), None);
        assert_eq!(idx.lookup_below(1001).unwrap(), Some(50));
        assert_eq!(idx.lookup_below(2500).unwrap(), Some(60));
        assert_eq!(idx.lookup_below(i64::MAX).unwrap(), Some(70));
        assert!(idx.is_valid(71).unwrap());
        assert!(!idx.is_valid(70).unwrap());
        idx.truncate_to_offset(60).unwrap();
        assert_eq!(idx.last_entry(), Some((1000, 50)));
    }

    #[test]
    fn time_index_full_except_forced() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TimeIndex::open(&dir.path().join("t.timeindex"), 0, 12).unwrap();
        idx.maybe_append(1, 0, false).unwrap();
        assert!(idx.is_full());
        idx.maybe_append(2, 1, false).unwrap();
        assert_eq!(idx.last_entry(), Some((1, 0)));
        idx.maybe_append(2, 1, true).unwrap();
        assert_eq!(idx.last_entry(), Some((2, 1)));
    }

    /// Entry `i` of the index built by `warm_lookups_match_the_file`: offset
    /// `base + 10 i + 10`, position `100 i + 100`.
    fn nth(base: i64, i: u64) -> (i64, u64) {
        (base + 10 * i as i64 + 10, 100 * i + 100)
    }

    /// Appends entries `range` of [`nth`].
    fn append_nth(idx: &mut OffsetIndex, base: i64, range: std::ops::Range<u64>) {
        for i in range {
            let (offset, position) = nth(base, i);
            idx.append(offset, position).unwrap();
        }
    }

    /// What `lookup` must answer for an index holding entries `0..entries` of [`nth`].
    fn expected_lookup(base: i64, entries: u64, target: i64) -> (i64, u64) {
        (0..entries)
            .map(|i| nth(base, i))
            .take_while(|&(offset, _)| offset <= target)
            .last()
            .unwrap_or((base, 0))
    }

    fn assert_lookups(idx: &OffsetIndex, base: i64, entries: u64, when: &str) {
        assert_eq!(idx.entries(), entries, "{when}");
        let end = nth(base, entries).0 + 20;
        for target in (base - 5..end).step_by(3) {
            assert_eq!(
                idx.lookup(target).unwrap(),
                expected_lookup(base, entries, target),
                "{when}: lookup({target})"
            );
        }
        for position in (0..100 * entries + 200).step_by(37) {
            let floor = (0..entries)
                .map(|i| nth(base, i).1)
                .take_while(|&p| p <= position)
                .last();
            assert_eq!(
                idx.floor_position(position).unwrap(),
                floor,
                "{when}: floor({position})"
            );
        }
    }

    #[test]
    fn warm_lookups_match_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = 1000;
        let mut idx = offset_index(dir.path(), base);
        let total = WARM_ENTRIES as u64 * 2 + 44;
        let append = |idx: &mut OffsetIndex, range| append_nth(idx, base, range);
        append(&mut idx, 0..total);
        assert_eq!(idx.warm_entries(), WARM_ENTRIES);
        assert_lookups(&idx, base, total, "appended");
        // Cut inside the entries kept in memory, then below them.
        let inside = total - 10;
        idx.truncate_to_offset(nth(base, inside).0).unwrap();
        assert_eq!(idx.warm_entries(), WARM_ENTRIES - 10);
        assert_lookups(&idx, base, inside, "truncated inside the warm entries");
        let below = WARM_ENTRIES as u64 / 2;
        idx.truncate_to_offset(nth(base, below).0).unwrap();
        assert_eq!(idx.warm_entries(), 0);
        assert_lookups(&idx, base, below, "truncated below the warm entries");
        append(&mut idx, below..total);
        assert_eq!(idx.warm_entries(), WARM_ENTRIES);
        assert_lookups(&idx, base, total, "appended again");
        // Reopened after a sync, or cooled: no entry in memory, the same answers from
        // the file.
        idx.sync().unwrap();
        let reopened = offset_index(dir.path(), base);
        assert_eq!(reopened.warm_entries(), 0);
        assert_lookups(&reopened, base, total, "reopened");
        idx.cool().unwrap();
        assert_eq!(idx.warm_entries(), 0);
        assert_lookups(&idx, base, total, "cooled");
    }

    fn file_entries(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len() / 8
    }

    #[test]
    fn entries_reach_the_file_together_and_before_any_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.index");
        let mut idx = OffsetIndex::open(&path, 0, 1 << 20).unwrap();
        let append = |idx: &mut OffsetIndex, range| append_nth(idx, 0, range);
        let warm = WARM_ENTRIES as u64;
        append(&mut idx, 0..warm);
        assert_eq!(file_entries(&path), 0, "kept in memory");
        // The oldest entry must leave memory: all of them are written, in one go.
        append(&mut idx, warm..warm + 1);
        assert_eq!(file_entries(&path), warm);
        append(&mut idx, warm + 1..warm + 10);
        assert_eq!(file_entries(&path), warm);
        // A handle to fsync outside the lock gets every entry in the file first.
        let (_, handle) = idx.clone_handle().unwrap();
        assert_eq!(file_entries(&path), warm + 10);
        drop(handle);
        append(&mut idx, warm + 10..warm + 15);
        idx.sync().unwrap();
        assert_eq!(file_entries(&path), warm + 15);
        // A truncation cuts the file and the memory alike.
        idx.truncate_to_offset(nth(0, warm + 12).0).unwrap();
        assert_eq!(file_entries(&path), warm + 12);
        append(&mut idx, warm + 12..warm + 20);
        assert_eq!(file_entries(&path), warm + 12);
        idx.truncate_to_offset(nth(0, warm + 16).0).unwrap();
        assert_eq!(
            file_entries(&path),
            warm + 12,
            "the cut ones were never written"
        );
        assert_lookups(&idx, 0, warm + 16, "truncated among unwritten entries");
        // Lost before a sync (a crash): the file holds a shorter, whole index, whose
        // lookups answer with the entries it has (the index is sparse).
        drop(idx);
        let reopened = OffsetIndex::open(&path, 0, 1 << 20).unwrap();
        assert_eq!(reopened.entries(), warm + 12);
        assert!(reopened.is_valid(u64::MAX >> 8).unwrap());
        assert_lookups(
            &reopened,
            0,
            warm + 12,
            "reopened without the unwritten ones",
        );
    }

    #[test]
    fn lookups_at_the_end_read_the_entries_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.index");
        let mut idx = OffsetIndex::open(&path, 0, 1 << 20).unwrap();
        let total = WARM_ENTRIES as u64 * 2;
        append_nth(&mut idx, 0, 0..total);
        idx.sync().unwrap();
        // Scribble over the file's last entry behind the index's back: a lookup that
        // reads the file now finds a position the index never recorded.
        let last = nth(0, total - 1);
        let forged = (RelativeOffset(last.0 as u32), FilePosition(7)).encode();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&forged, (total - 1) * 8).unwrap();
        assert_eq!(idx.lookup(last.0).unwrap(), last);
        assert_eq!(idx.lookup(i64::MAX).unwrap(), last);
        idx.cool().unwrap();
        assert_eq!(idx.lookup(last.0).unwrap(), (last.0, 7));
    }

    #[test]
    fn relative_offset_bounds() {
        assert!(RelativeOffset::new(10, 9).is_none());
        assert!(RelativeOffset::new(10, 10).is_some());
        assert!(RelativeOffset::new(0, i64::from(i32::MAX)).is_some());
        assert!(RelativeOffset::new(0, i64::from(i32::MAX) + 1).is_none());
        assert!(FilePosition::new(u64::from(u32::MAX)).is_some());
        assert!(FilePosition::new(u64::from(u32::MAX) + 1).is_none());
    }
}
