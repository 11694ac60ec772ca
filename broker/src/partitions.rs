//! The partitions this broker hosts: one [`Partition`] (a storage [`Log`] behind a mutex)
//! per topic partition, opened at start-up and created or removed by metadata changes.
//!
//! Each partition directory holds `partition.metadata` (Kafka's name and layout) naming
//! the id of the topic it belongs to. At start-up, directories of partitions this broker
//! no longer hosts (moved away or deleted while it was down) are deleted: stray replicas,
//! as Kafka calls them. A directory left by a deleted topic is never opened as the new
//! topic of the same name.
//!
//! Concurrency: the map is behind a `RwLock` held only to look up, insert or remove; each
//! log is behind its own `Mutex`, taken on a blocking thread (`spawn_blocking`) because
//! storage calls do file I/O. Appends wake long-polling fetches through `appended`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use runnel_storage::{Durability, Log, LogConfig, LogDirHealth, LogError};
use tokio::sync::Notify;
use uuid::Uuid;

/// The file in a partition directory that names the topic's id.
const PARTITION_METADATA: &str = "partition.metadata";
/// `partition.metadata` is two short lines; anything longer is not ours.
const MAX_PARTITION_METADATA_LEN: u64 = 256;
/// The suffix of a directory renamed before it is deleted: a crash in the middle of the
/// deletion leaves one, which is never opened as a partition and goes at the next start.
const STRAY_SUFFIX: &str = "-stray";

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One hosted partition.
pub struct Partition {
    /// Which partition this is.
    pub tp: TopicPartition,
    log: Mutex<Log>,
    /// Role, high watermark and followers' progress (see `crate::replication`).
    pub replica: crate::replication::ReplicaState,
}

impl Partition {
    /// The high watermark: what consumers may read below.
    pub fn high_watermark(&self, log: &Log) -> i64 {
        self.replica.high_watermark(log.log_end_offset())
    }

    /// Locks the log. Call from a blocking thread: storage calls do file I/O.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        // A panic while holding the lock would leave the log in an unknown state; storage
        // never panics on a request path, so recover the guard instead of propagating.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The log, if nobody holds it now (a flush or compaction may hold it for long).
    pub fn try_log(&self) -> Option<MutexGuard<'_, Log>> {
        match self.log.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// How long opening a partition waits for the copy of it moved away earlier to be
/// released by the requests that held it (fetches and flushes take milliseconds).
const RETIRED_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// All hosted partitions.
pub struct PartitionManager {
    data_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Replicas this broker no longer hosts (moved away) whose data waits for the last
    /// request holding them to finish before it is deleted.
    retired: Mutex<Vec<Arc<Partition>>>,
    /// Notified after every append, for fetches waiting on `min_bytes`.
    pub appended: Notify,
    /// Notified when a follower has caught up with a leader here: the ISR may grow.
    pub isr_wanted: Notify,
    /// Segments that opening logs had to scan (recovery after an unclean stop).
    pub segments_scanned: std::sync::atomic::AtomicUsize,
    /// The data directory's health, shared by every log: one failed write or fsync
    /// takes them all offline (Kafka's log directory failure).
    health: Arc<LogDirHealth>,
}

impl PartitionManager {
    /// An empty manager for logs under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        PartitionManager {
            data_dir: data_dir.to_path_buf(),
            partitions: RwLock::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            appended: Notify::new(),
            isr_wanted: Notify::new(),
            segments_scanned: std::sync::atomic::AtomicUsize::new(0),
            health: LogDirHealth::new(data_dir),
        }
    }

    /// The data directory's health: failed once a write or fsync of any hosted log
    /// failed; the broker then shuts down.
    pub fn dir_health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    fn dir_of(&self, tp: &TopicPartition) -> PathBuf {
        self.data_dir.join(tp.to_string())
    }

    /// The partition, if hosted here.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.read_map().get(&tp).cloned()
    }

    /// Opens (recovering, or creating when absent) the log of each partition in
    /// `partitions` of `topic`, whose id is `topic_id`. A directory that names another
    /// topic id (a topic of the same name deleted while this broker was down) is deleted
    /// first. Blocking.
    pub fn open(
        &self,
        topic: &str,
        topic_id: Uuid,
        partitions: std::ops::Range<i32>,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        for partition in partitions {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            if self.read_map().contains_key(&tp) {
                continue;
            }
            // A replica moved away and back again: the old copy goes first, so two logs
            // never share one directory.
            self.wait_retired(&tp)?;
            let dir = self.dir_of(&tp);
            let stored = read_topic_id(&dir)?;
            if stored.is_some_and(|stored| stored != topic_id) {
                tracing::warn!(partition = %tp, ?stored, %topic_id,
                    "deleting a copy of an earlier topic of the same name");
                self.delete_dir(&dir)?;
            }
            let log = Log::open_in(&dir, config.clone(), Arc::clone(&self.health))?;
            if stored != Some(topic_id) {
                let contents = format!("version: 0\ntopic_id: {topic_id}\n");
                runnel_storage::write_atomic(
                    &dir,
                    PARTITION_METADATA,
                    contents.as_bytes(),
                    Durability::Durable,
                )?;
            }
            self.segments_scanned.fetch_add(
                log.segments_scanned_at_open(),
                std::sync::atomic::Ordering::Relaxed,
            );
            let p = Arc::new(Partition {
                tp: tp.clone(),
                log: Mutex::new(log),
                replica: crate::replication::ReplicaState::default(),
            });
            self.write_map().insert(tp, p);
        }
        Ok(())
    }

    /// Applies a changed topic config to every partition of `topic`. Blocking.
    pub fn set_config(&self, topic: &str, config: &LogConfig) {
        for p in self.partitions_of(topic) {
            p.log().set_config(config.clone());
        }
    }

    /// Stops hosting `topic` and deletes its data. Blocking.
    pub fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        let removed: Vec<Arc<Partition>> = {
            let mut map = self.write_map();
            let keys: Vec<TopicPartition> =
                map.keys().filter(|tp| tp.topic == topic).cloned().collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for p in removed {
            // In-flight requests may still hold the partition; its files go regardless.
            let dir = self.dir_of(&p.tp);
            drop(p);
            self.delete_dir(&dir)?;
        }
        Ok(())
    }

    /// Stops hosting `partition` of `topic` (its replica moved to other brokers). Its
    /// data is deleted now, or, while a request (a fetch, a flush) still holds the
    /// partition, by a later [`PartitionManager::delete_retired`]: deleting files under
    /// a running write would fail it, and a failed write takes the log directory offline.
    /// Blocking.
    pub fn remove(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        if let Some(p) = self.write_map().remove(&tp) {
            self.lock_retired().push(p);
        }
        self.delete_retired()
    }

    /// Deletes the data of retired replicas no request holds any more. Blocking. The
    /// list stays locked throughout, so [`PartitionManager::open`] never opens a
    /// directory while it is being deleted.
    pub fn delete_retired(&self) -> Result<(), LogError> {
        let mut retired = self.lock_retired();
        let mut result = Ok(());
        for p in std::mem::take(&mut *retired) {
            match Arc::try_unwrap(p) {
                Ok(p) => {
                    let dir = self.dir_of(&p.tp);
                    match self.delete_dir(&dir) {
                        Ok(()) => tracing::info!(partition = %p.tp, "deleted a replica moved away"),
                        Err(e) => result = Err(e),
                    }
                }
                Err(p) => retired.push(p),
            }
        }
        result
    }

    /// Waits (at most [`RETIRED_WAIT`]) until the retired copy of `tp`, if any, is
    /// deleted. Blocking.
    fn wait_retired(&self, tp: &TopicPartition) -> Result<(), LogError> {
        let deadline = std::time::Instant::now() + RETIRED_WAIT;
        loop {
            self.delete_retired()?;
            if !self.lock_retired().iter().any(|p| p.tp == *tp) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(LogError::Io {
                    path: self.dir_of(tp),
                    source: std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "the copy of this replica moved away earlier is still in use",
                    ),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Deletes the directories of partitions this broker does not host: replicas moved
    /// away or topics deleted while it was down, and deletions a crash interrupted. Call
    /// once every partition the metadata gives this broker is open. Only directories
    /// named like a partition (`<topic>-<index>`) are touched. Blocking.
    pub fn delete_strays(&self) -> Result<Vec<String>, LogError> {
        let entries = std::fs::read_dir(&self.data_dir).map_err(|source| LogError::Io {
            path: self.data_dir.clone(),
            source,
        })?;
        let mut deleted = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| LogError::Io {
                path: self.data_dir.clone(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.ends_with(STRAY_SUFFIX) {
                // Renamed already: no partition's name to free first.
                remove_dir(&entry.path())?;
            } else if parse_partition_dir(&name)
                .is_some_and(|tp| !self.read_map().contains_key(&tp))
            {
                self.delete_dir(&entry.path())?;
            } else {
                continue;
            }
            deleted.push(name);
        }
        Ok(deleted)
    }

    /// Deletes a partition directory (a topic deleted, a replica moved away, a stray):
    /// renamed first, durably, so a crash never leaves half a log under a partition's
    /// name; what the removal leaves goes at the next start ([`Self::delete_strays`]).
    fn delete_dir(&self, dir: &Path) -> Result<(), LogError> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let doomed = self
            .data_dir
            .join(format!("{name}.{}{STRAY_SUFFIX}", Uuid::new_v4().simple()));
        match std::fs::rename(dir, &doomed) {
            Ok(()) => runnel_storage::sync_dir(&self.data_dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(LogError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
        remove_dir(&doomed)
    }

    fn lock_retired(&self) -> MutexGuard<'_, Vec<Arc<Partition>>> {
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes and closes every log cleanly, so the next start skips recovery. Blocking.
    pub fn close_all(&self) -> Vec<(TopicPartition, LogError)> {
        let all: Vec<Arc<Partition>> = self.write_map().drain().map(|(_, p)| p).collect();
        let mut errors = Vec::new();
        for p in all {
            let tp = p.tp.clone();
            let result = match Arc::try_unwrap(p) {
                Ok(p) => p
                    .log
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .close(),
                Err(p) => p.log().flush(),
            };
            if let Err(e) = result {
                errors.push((tp, e));
            }
        }
        errors
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read_map().values().cloned().collect()
    }

    /// Every hosted partition of `topic`.
    pub fn partitions_of(&self, topic: &str) -> Vec<Arc<Partition>> {
        self.read_map()
            .values()
            .filter(|p| p.tp.topic == topic)
            .cloned()
            .collect()
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The topic id `dir/partition.metadata` names: `None` when the file is absent (a new
/// directory, or one written before the file existed) or not ours (oversized, or naming
/// no id), in which case it is rewritten and the data kept.
fn read_topic_id(dir: &Path) -> Result<Option<Uuid>, LogError> {
    let path = dir.join(PARTITION_METADATA);
    let Some(bytes) = runnel_storage::read_bounded(&path, MAX_PARTITION_METADATA_LEN)? else {
        return Ok(None);
    };
    let id = std::str::from_utf8(&bytes).ok().and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("topic_id:"))
            .and_then(|id| Uuid::parse_str(id.trim()).ok())
    });
    if id.is_none() {
        tracing::warn!(path = %path.display(), "partition.metadata names no topic id, rewritten");
    }
    Ok(id)
}

/// The partition a directory named `<topic>-<index>` holds, if the name is one: a legal
/// topic name (Kafka's characters) and a non-negative index.
fn parse_partition_dir(name: &str) -> Option<TopicPartition> {
    let (topic, index) = name.rsplit_once('-')?;
    if crate::topics::validate_name(topic).is_err()
        || index.is_empty()
        || !index.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(TopicPartition {
        topic: topic.to_string(),
        partition: index.parse().ok()?,
    })
}

fn remove_dir(dir: &Path) -> Result<(), LogError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LogError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_moved_away_is_deleted_once_released_and_never_shares_its_directory(
    ) -> Result<(), LogError> {
        let dir = tempfile::tempdir().map_err(|source| LogError::Io {
            path: PathBuf::from("tempdir"),
            source,
        })?;
        let manager = Arc::new(PartitionManager::new(dir.path()));
        manager.open("t", Uuid::nil(), 0..2, &LogConfig::default())?;
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let path = manager.dir_of(&tp);
        // A request still holds partition 0 when it moves away: its files stay.
        let held = manager.get("t", 0);
        manager.remove("t", 0)?;
        assert!(manager.get("t", 0).is_none());
        assert!(path.exists(), "deleted under a request that holds it");
        // It moves back while still held: opening waits for the old copy to go.
        let reopening = {
            let manager = Arc::clone(&manager);
            std::thread::spawn(move || manager.open("t", Uuid::nil(), 0..1, &LogConfig::default()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !reopening.is_finished(),
            "opened while the old copy was held"
        );
        drop(held);
        reopening.join().map_err(|_| LogError::Io {
            path: path.clone(),
            source: std::io::Error::other("the opening thread panicked"),
        })??;
        assert!(manager.get("t", 0).is_some());
        assert!(manager.lock_retired().is_empty());
        // Partition 1 was never touched.
        assert!(manager.get("t", 1).is_some());
        Ok(())
    }

    #[test]
    fn stray_directories_go_and_nothing_else_does() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let manager = PartitionManager::new(dir.path());
        let id = Uuid::new_v4();
        manager.open("kept", id, 0..1, &LogConfig::default())?;
        manager.open("moved-away", id, 3..4, &LogConfig::default())?;
        // What the last run left: a partition the metadata no longer gives this broker,
        // a deletion a crash interrupted, and things that are not partitions.
        manager
            .get("moved-away", 3)
            .ok_or("moved-away-3 not open")?
            .log()
            .flush()?;
        manager.write_map().clear();
        manager.open("kept", id, 0..1, &LogConfig::default())?;
        let interrupted = dir.path().join("gone-1.0123abcd-stray");
        std::fs::create_dir_all(interrupted.join("inner"))?;
        for other in ["__cluster_metadata", "lost+found", "not-a-partition-x"] {
            std::fs::create_dir_all(dir.path().join(other))?;
        }
        std::fs::write(dir.path().join("meta.properties"), "node.id=0\n")?;

        let mut deleted = manager.delete_strays()?;
        deleted.sort();
        assert_eq!(deleted, ["gone-1.0123abcd-stray", "moved-away-3"]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(
            left,
            [
                "__cluster_metadata",
                "kept-0",
                "lost+found",
                "meta.properties",
                "not-a-partition-x"
            ]
        );
        Ok(())
    }

    #[test]
    fn a_directory_of_an_earlier_topic_of_the_same_name_is_not_reopened(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let manager = PartitionManager::new(dir.path());
            manager.open("t", old, 0..1, &LogConfig::default())?;
            let p = manager.get("t", 0).ok_or("t-0 not open")?;
            let mut log = p.log();
            log.append(&crate::records::test_batch(3), 0, 1_700_000_000_000)?;
            log.flush()?;
        }
        let text = std::fs::read_to_string(dir.path().join("t-0").join(PARTITION_METADATA))?;
        assert_eq!(text, format!("version: 0\ntopic_id: {old}\n"));

        // The same topic again: its data is there.
        let manager = PartitionManager::new(dir.path());
        manager.open("t", old, 0..1, &LogConfig::default())?;
        let end = |m: &PartitionManager| m.get("t", 0).map(|p| p.log().log_end_offset());
        assert_eq!(end(&manager), Some(3));
        // A new topic of the same name: it starts empty.
        let manager = PartitionManager::new(dir.path());
        manager.open("t", new, 0..1, &LogConfig::default())?;
        assert_eq!(end(&manager), Some(0));
        let text = std::fs::read_to_string(dir.path().join("t-0").join(PARTITION_METADATA))?;
        assert_eq!(text, format!("version: 0\ntopic_id: {new}\n"));
        Ok(())
    }
}
