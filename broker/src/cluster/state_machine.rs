//! The state machine of the metadata quorum: the [`MetadataImage`] that the committed
//! log builds, published to the broker on every apply, and its snapshots.
//!
//! The image lives in memory; a snapshot (`<raft dir>/snapshot`, JSON, replaced
//! atomically and fsynced) is what a restart starts from before openraft re-applies the
//! committed entries after it, and what a voter that is too far behind is sent.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use runnel_storage::{write_atomic, Durability};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Applied, NodeId, SnapshotState, TypeConfig};
use crate::metadata::MetadataImage;

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The metadata state machine of one voter.
pub struct StateMachine {
    dir: PathBuf,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    image: MetadataImage,
    /// The last snapshot built or installed, shared with the snapshot builders.
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Every applied change is published here; the broker reads the latest image.
    publish: watch::Sender<Arc<MetadataImage>>,
}

fn snapshot_error(verb: ErrorVerb, e: &dyn std::error::Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(
            ErrorSubject::Snapshot(None),
            verb,
            AnyError::error(e.to_string()),
        ),
    }
}

impl StateMachine {
    /// Opens the state machine in `dir` from its last snapshot, if any.
    pub fn open(
        dir: &Path,
        publish: watch::Sender<Arc<MetadataImage>>,
    ) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SNAPSHOT_FILE);
        let snapshot: Option<StoredSnapshot> = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut sm = StateMachine {
            dir: dir.to_path_buf(),
            applied: None,
            membership: Membership::default(),
            image: MetadataImage::default(),
            snapshot: Arc::default(),
            publish,
        };
        if let Some(snapshot) = snapshot {
            sm.restore(snapshot)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        }
        Ok(sm)
    }

    fn restore(&mut self, snapshot: StoredSnapshot) -> StorageResult<()> {
        let state: SnapshotState = serde_json::from_slice(&snapshot.data)
            .map_err(|e| snapshot_error(ErrorVerb::Read, &e))?;
        self.applied = snapshot.meta.last_log_id;
        self.membership = snapshot.meta.last_membership.clone();
        self.image = state.image;
        *lock(&self.snapshot) = Some(snapshot);
        self.publish.send_replace(Arc::new(self.image.clone()));
        Ok(())
    }
}

fn lock(
    snapshot: &Mutex<Option<StoredSnapshot>>,
) -> std::sync::MutexGuard<'_, Option<StoredSnapshot>> {
    snapshot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `snapshot` durably and makes it the current one.
fn store_snapshot(
    dir: &Path,
    current: &Mutex<Option<StoredSnapshot>>,
    snapshot: StoredSnapshot,
) -> StorageResult<()> {
    let json = serde_json::to_vec(&snapshot).map_err(|e| snapshot_error(ErrorVerb::Write, &e))?;
    write_atomic(dir, SNAPSHOT_FILE, &json, Durability::Durable)
        .map_err(|e| snapshot_error(ErrorVerb::Write, &e))?;
    *lock(current) = Some(snapshot);
    Ok(())
}

/// Builds a snapshot from the state at the time the builder was taken.
pub struct Builder {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    state: SnapshotState,
    dir: PathBuf,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data =
            serde_json::to_vec(&self.state).map_err(|e| snapshot_error(ErrorVerb::Write, &e))?;
        let stored = StoredSnapshot {
            meta: self.meta.clone(),
            data: data.clone(),
        };
        store_snapshot(&self.dir, &self.current, stored)?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut changed = false;
        for entry in entries {
            self.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => {
                    for record in &command.records {
                        self.image.apply(record);
                    }
                    changed |= !command.records.is_empty();
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            replies.push(Applied {
                index: entry.log_id.index,
            });
        }
        if changed {
            self.publish.send_replace(Arc::new(self.image.clone()));
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let state = SnapshotState {
            image: self.image.clone(),
        };
        let snapshot_id = match self.applied {
            Some(id) => format!("{}-{}", id.leader_id.term, id.index),
            None => "empty".to_string(),
        };
        Builder {
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            state,
            dir: self.dir.clone(),
            current: Arc::clone(&self.snapshot),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        store_snapshot(&self.dir, &self.snapshot, stored.clone())?;
        self.restore(stored)
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(lock(&self.snapshot).as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
