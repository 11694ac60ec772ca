//! [`LogDirHealth`]: whether a log directory may still be written, shared by every
//! [`Log`] in it (Kafka's `LogDirFailureChannel`).
//!
//! A write or fsync that fails leaves the directory *failed* for good: the kernel may
//! have dropped the dirty pages it could not write back and cleared the error, so an
//! fsync retried after EIO can succeed although the data is gone (the "fsyncgate"
//! lesson). From then on every mutating call of every log sharing the health, every
//! flush handle's sync and every `mark_*` returns [`LogError::LogDirFailed`]: nothing
//! more is reported durable, the recovery point stays where the last real fsync put it,
//! and `close` writes no clean-shutdown marker, so the next open scans and cuts
//! whatever did not reach the disk. Reads go on.
//!
//! Listeners registered with [`LogDirHealth::on_failure`] hear of the failure once (and
//! log it: storage does not); the broker shuts down from there, as Kafka does when its
//! last log directory fails.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{LogError, Result};
use crate::log::Log;

/// A log directory's state: usable, or failed by an I/O error. `Send + Sync`; share it
/// as `Arc<LogDirHealth>` between the logs of one directory.
pub struct LogDirHealth {
    dir: PathBuf,
    failure: OnceLock<Failure>,
    listeners: Mutex<Vec<Listener>>,
}

type Listener = Box<dyn Fn(&LogError) + Send + Sync>;

/// The first I/O error, kept to build a fresh `io::Error` for each refusal.
#[derive(Debug)]
struct Failure {
    path: PathBuf,
    kind: io::ErrorKind,
    errno: Option<i32>,
    message: String,
}

impl std::fmt::Debug for LogDirHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDirHealth")
            .field("dir", &self.dir)
            .field("failure", &self.failure.get())
            .finish_non_exhaustive()
    }
}

impl LogDirHealth {
    /// A healthy directory `dir` (the broker's data directory, or one log's directory).
    pub fn new(dir: &Path) -> Arc<LogDirHealth> {
        Arc::new(LogDirHealth {
            dir: dir.to_path_buf(),
            failure: OnceLock::new(),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// The directory this health is about.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an I/O error has failed the directory. One atomic load.
    pub fn is_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    /// [`LogError::LogDirFailed`] if the directory has failed.
    pub fn check(&self) -> Result<()> {
        match self.failure.get() {
            None => Ok(()),
            Some(failure) => Err(self.error(failure)),
        }
    }

    /// Calls `listener` once when the directory fails, with the error that failed it
    /// (at once, on this thread, if it has already failed). It runs on the thread that
    /// saw the I/O error, possibly under a log's lock: keep it short (cancel a token).
    pub fn on_failure(&self, listener: impl Fn(&LogError) + Send + Sync + 'static) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        match self.failure.get() {
            Some(failure) => {
                drop(listeners);
                listener(&self.error(failure));
            }
            None => listeners.push(Box::new(listener)),
        }
    }

    /// Passes `result` through; an I/O error in it fails the directory first.
    pub(crate) fn record<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(LogError::Io { path, source }) = &result {
            self.fail(path, source);
        }
        result
    }

    /// Fails the directory with the I/O error `source` on `path`, unless it has failed
    /// already; tells the listeners.
    fn fail(&self, path: &Path, source: &io::Error) {
        let first = Failure {
            path: path.to_path_buf(),
            kind: source.kind(),
            errno: source.raw_os_error(),
            message: source.to_string(),
        };
        // Set under the listeners' lock, so `on_failure` either sees the failure or
        // has its listener taken here; the listeners run after the lock is released.
        let listeners = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            if self.failure.set(first).is_err() {
                return;
            }
            std::mem::take(&mut *listeners)
        };
        if let Some(failure) = self.failure.get() {
            let error = self.error(failure);
            for listener in listeners {
                listener(&error);
            }
        }
    }

    fn error(&self, failure: &Failure) -> LogError {
        let source = match failure.errno {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::new(failure.kind, failure.message.clone()),
        };
        LogError::LogDirFailed {
            dir: self.dir.clone(),
            path: failure.path.clone(),
            source,
        }
    }
}

impl Log {
    /// The health of the directory this log is in (shared with the other logs opened
    /// with the same [`LogDirHealth`]).
    pub fn dir_health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    /// Runs a mutating step: refused once the directory failed; an I/O error in it
    /// fails the directory.
    pub(crate) fn guarded<T>(&mut self, step: impl FnOnce(&mut Log) -> Result<T>) -> Result<T> {
        self.health.check()?;
        let health = Arc::clone(&self.health);
        health.record(step(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_first_error_fails_the_directory_and_listeners_hear_once() {
        let dir = tempfile::tempdir().unwrap();
        let health = LogDirHealth::new(dir.path());
        let heard = Arc::new(AtomicUsize::new(0));
        let h = Arc::clone(&heard);
        health.on_failure(move |e| {
            assert!(matches!(e, LogError::LogDirFailed { .. }));
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert!(health.check().is_ok());
        let eio = || io::Error::from_raw_os_error(crate::fs::EIO);
        let _ = health.record::<()>(Err(LogError::io("/x/a.log")(eio())));
        let _ = health.record::<()>(Err(LogError::io("/x/b.log")(eio())));
        assert!(health.is_failed());
        assert_eq!(heard.load(Ordering::SeqCst), 1);
        let e = health.check().unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("a.log") && text.contains(&dir.path().display().to_string()),
            "{text}"
        );
        match e {
            LogError::LogDirFailed { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(crate::fs::EIO));
            }
            other => panic!("{other:?}"),
        }
        // A late listener hears at once.
        let h = Arc::clone(&heard);
        health.on_failure(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(heard.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn errors_other_than_io_leave_the_directory_alone() {
        let dir = tempfile::tempdir().unwrap();
        let health = LogDirHealth::new(dir.path());
        let _ = health.record::<()>(Err(LogError::InvalidTruncation { offset: -1 }));
        assert!(!health.is_failed());
    }
}
