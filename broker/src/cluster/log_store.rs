//! The Raft log on disk, in `<data>/__cluster_metadata/raft/`.
//!
//! | file          | content                                                          |
//! |---------------|------------------------------------------------------------------|
//! | `log`         | one entry per line, in the metadata log's line format (CRC-32C, JSON) |
//! | `vote`        | the vote this voter granted or holds (JSON), replaced atomically  |
//! | `purged`      | the last log id dropped after a snapshot (JSON), replaced atomically |
//! | `committed`   | the last committed log id known (JSON); a hint, not needed for safety |
//!
//! Appends are written and fsynced before openraft is told they are durable; the vote
//! is durable before it is used. Opening reads every line; the first torn or corrupt
//! line ends the log and is cut off (it was never acknowledged). Metadata is small, so
//! the entries are also kept in memory; a purge rewrites the file without the prefix.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use runnel_storage::{write_atomic, Durability};

use super::{NodeId, TypeConfig};
use crate::metadata::{decode_line, encode_line};

type Entry = openraft::Entry<TypeConfig>;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

const LOG_FILE: &str = "log";
const VOTE_FILE: &str = "vote";
const PURGED_FILE: &str = "purged";
const COMMITTED_FILE: &str = "committed";
/// Largest small state file (vote, purged, committed) read back.
const MAX_STATE_FILE: u64 = 64 * 1024;

/// The durable Raft log of one voter. Cheap to clone: clones share the files.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Entries after the last purge, by index, with the byte offset of their line.
    entries: BTreeMap<u64, (Entry, u64)>,
    /// Length of the valid part of `log`.
    len: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &dyn std::error::Error,
) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::error(e.to_string())),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn or corrupt tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut entries = BTreeMap::new();
        let mut len: u64 = 0;
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            let Some(entry) = decode_line::<Entry>(&line) else {
                tracing::warn!(path = %path.display(), offset = len, "Raft log has a torn or corrupt tail; truncating it");
                break;
            };
            entries.insert(entry.log_id.index, (entry, len));
            len += n as u64;
        }
        drop(reader);
        file.set_len(len)?;
        file.sync_all()?;
        let last_purged = read_state(&dir.join(PURGED_FILE))?;
        let vote = read_state(&dir.join(VOTE_FILE))?;
        let committed = read_state(&dir.join(COMMITTED_FILE))?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                len,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this voter has ever taken part in a quorum: it holds a vote, an entry or a
    /// purged prefix. A voter listed in `controller.quorum.voters` whose store is empty
    /// while its peers' are not has lost its volume.
    pub fn is_pristine(&self) -> bool {
        let inner = self.lock();
        inner.vote.is_none() && inner.entries.is_empty() && inner.last_purged.is_none()
    }
}

/// Reads a small JSON state file; a missing file is `None`, and so is a garbled one (it
/// is only ever replaced atomically, so garbage means it never held a value that was used).
fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_STATE_FILE => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let bytes = std::fs::read(path)?;
    Ok(serde_json::from_slice(&bytes).ok())
}

fn write_state<T: serde::Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
    durability: Durability,
    subject: ErrorSubject<NodeId>,
) -> StorageResult<()> {
    let json =
        serde_json::to_vec(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, &e))?;
    write_atomic(dir, name, &json, durability).map_err(|e| io_error(subject, ErrorVerb::Write, &e))
}

impl Inner {
    fn append(&mut self, entries: Vec<Entry>) -> StorageResult<()> {
        let mut buf = Vec::new();
        let mut lines = Vec::with_capacity(entries.len());
        for entry in entries {
            let start = buf.len() as u64;
            encode_line(&entry, &mut buf)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
            lines.push((entry, self.len + start));
        }
        let logs = |e: std::io::Error| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e);
        self.file.write_all(&buf).map_err(logs)?;
        self.file.sync_data().map_err(logs)?;
        self.len += buf.len() as u64;
        for (entry, offset) in lines {
            self.entries.insert(entry.log_id.index, (entry, offset));
        }
        Ok(())
    }

    /// Drops every entry from `index` on.
    fn truncate(&mut self, index: u64) -> StorageResult<()> {
        let Some(offset) = self.entries.range(index..).next().map(|(_, (_, off))| *off) else {
            return Ok(());
        };
        let logs = |e: std::io::Error| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e);
        self.file.set_len(offset).map_err(logs)?;
        self.file.sync_all().map_err(logs)?;
        self.len = offset;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Drops every entry up to `log_id` and rewrites the file without them.
    fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        write_state(
            &self.dir,
            PURGED_FILE,
            &log_id,
            Durability::Durable,
            ErrorSubject::Logs,
        )?;
        self.last_purged = Some(log_id);
        let kept = self.entries.split_off(&(log_id.index + 1));
        let mut buf = Vec::new();
        let mut entries = BTreeMap::new();
        for (index, (entry, _)) in kept {
            let offset = buf.len() as u64;
            encode_line(&entry, &mut buf)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
            entries.insert(index, (entry, offset));
        }
        write_atomic(&self.dir, LOG_FILE, &buf, Durability::Durable)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        let path = self.dir.join(LOG_FILE);
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        self.len = buf.len() as u64;
        self.entries = entries;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let inner = self.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut inner = self.lock();
        write_state(
            &inner.dir,
            VOTE_FILE,
            vote,
            Durability::Durable,
            ErrorSubject::Vote,
        )?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let mut inner = self.lock();
        // A hint that lets a restarted voter apply what it knows is committed before it
        // hears from a leader; losing it costs only that, so no directory fsync.
        write_state(
            &inner.dir,
            COMMITTED_FILE,
            &committed,
            Durability::OldOrNew,
            ErrorSubject::Store,
        )?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let inner = self.lock();
        // Never claim more than the log holds (the file is written after the entries).
        let last = inner.entries.keys().next_back().copied();
        Ok(inner
            .committed
            .filter(|c| last.is_some_and(|l| c.index <= l) || Some(*c) == inner.last_purged))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.lock().append(entries.into_iter().collect());
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.lock().truncate(log_id.index)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.lock().purge(log_id)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::cluster::Command;
    use crate::metadata::MetadataRecord;

    fn entry(term: u64, index: u64, next: i64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Normal(Command {
                records: vec![MetadataRecord::ProducerIds { next }],
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    #[test]
    fn entries_vote_and_purge_survive_reopen_and_a_torn_tail_is_cut() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = LogStore::open(dir.path())?;
            assert!(store.is_pristine());
            let mut inner = store.lock();
            inner.append((1..=5).map(|i| entry(1, i, i as i64)).collect())?;
            inner.truncate(4)?;
            inner.append(vec![entry(2, 4, 40)])?;
            inner.purge(LogId::new(CommittedLeaderId::new(1, 0), 2))?;
            inner.append(vec![entry(2, 5, 50)])?;
            write_state(
                dir.path(),
                VOTE_FILE,
                &Vote::new(2, 1),
                Durability::Durable,
                ErrorSubject::Vote,
            )?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))?;
        file.write_all(b"0badc0de {\"log_id\":")?;
        drop(file);

        let store = LogStore::open(dir.path())?;
        assert!(!store.is_pristine());
        assert_eq!(indexes(&store), vec![3, 4, 5]);
        let inner = store.lock();
        let payloads: Vec<_> = inner
            .entries
            .values()
            .map(|(e, _)| (e.log_id.leader_id.term, e.payload.clone()))
            .collect();
        assert_eq!(payloads[1], (2, entry(2, 4, 40).payload));
        assert_eq!(inner.vote, Some(Vote::new(2, 1)));
        assert_eq!(inner.last_purged.map(|l| l.index), Some(2));
        assert_eq!(
            inner.len,
            std::fs::metadata(dir.path().join(LOG_FILE))?.len()
        );
        Ok(())
    }

    #[test]
    fn a_flipped_byte_ends_the_log_there() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = LogStore::open(dir.path())?;
            store
                .lock()
                .append((1..=3).map(|i| entry(1, i, i as i64)).collect())?;
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path)?;
        let second = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
        bytes[second + 30] ^= 0x01;
        std::fs::write(&path, &bytes)?;
        let store = LogStore::open(dir.path())?;
        assert_eq!(indexes(&store), vec![1]);
        Ok(())
    }
}
