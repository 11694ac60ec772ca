//! Small files that must never be seen half-written: checkpoints and markers.
//!
//! Every write goes to `<name>.tmp`, is fsynced, renamed over `<name>`, and (for
//! [`Durability::Durable`]) the directory is fsynced, so after a crash the file holds
//! either the old or the new contents, never a mix. Leftover `.tmp` files are deleted
//! when the log opens.
//!
//! The recovery-point checkpoint is text: a version line `0` then the offset, each
//! followed by `\n`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::error::{LogError, Result};

/// Suffix of a checkpoint being written.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
const OFFSET_CHECKPOINT_VERSION: &str = "0";
/// An offset checkpoint is two short lines; anything longer is not ours.
const MAX_OFFSET_CHECKPOINT_LEN: u64 = 64;

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    crate::fs::sync_dir(dir).map_err(LogError::io(dir))
}

/// What a crash right after a checkpoint write may leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The directory is fsynced too: after a crash the new contents are there.
    Durable,
    /// The directory is not fsynced: after a crash the file holds the old or the new
    /// contents. For checkpoints whose old value is still safe to act on (a recovery
    /// point or producer snapshot that only lags), saving an fsync per flush.
    OldOrNew,
}

/// Atomically replaces `dir/name` with `contents` (write-temp, fsync, rename, and
/// fsync-dir when `durability` asks for it).
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8], durability: Durability) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(LogError::io(&tmp))?;
    crate::fs::write_all(&mut file, contents, &tmp).map_err(LogError::io(&tmp))?;
    crate::fs::sync_all(&file, &tmp).map_err(LogError::io(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(LogError::io(&path))?;
    match durability {
        Durability::Durable => sync_dir(dir),
        Durability::OldOrNew => Ok(()),
    }
}

/// Reads `path` whole if it exists and is at most `max_len` bytes.
///
/// Returns `Ok(None)` when the file is missing or larger than `max_len` (the caller
/// treats both as "no usable checkpoint"); the size is checked before allocating.
pub fn read_bounded(path: &Path, max_len: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(path)(e)),
    };
    let len = file.metadata().map_err(LogError::io(path))?.len();
    if len > max_len {
        tracing::warn!(path = %path.display(), len, max_len, "ignoring oversized checkpoint");
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_len)
        .read_to_end(&mut buf)
        .map_err(LogError::io(path))?;
    Ok(Some(buf))
}

/// Persists one offset atomically.
pub(crate) fn write_offset(
    dir: &Path,
    name: &str,
    offset: i64,
    durability: Durability,
) -> Result<()> {
    let text = format!("{OFFSET_CHECKPOINT_VERSION}\n{offset}\n");
    write_atomic(dir, name, text.as_bytes(), durability)
}

/// Reads an offset written by [`write_offset`]. A missing or unparsable file gives
/// `None`: every offset checkpoint is an optimisation the log can do without.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>> {
    let path = dir.join(name);
    let Some(bytes) = read_bounded(&path, MAX_OFFSET_CHECKPOINT_LEN)? else {
        return Ok(None);
    };
    let parsed = std::str::from_utf8(&bytes).ok().and_then(|text| {
        let mut lines = text.split('\n');
        let version = lines.next()?;
        let offset = lines.next()?.parse::<i64>().ok()?;
        let rest_empty = lines.all(str::is_empty);
        (version == OFFSET_CHECKPOINT_VERSION && rest_empty && offset >= 0).then_some(offset)
    });
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "ignoring unreadable offset checkpoint");
    }
    Ok(parsed)
}

/// Creates an empty marker file durably.
pub(crate) fn write_marker(dir: &Path, name: &str) -> Result<()> {
    write_atomic(dir, name, b"", Durability::Durable)
}

/// Removes a file if present and makes the removal durable. Returns whether it existed.
pub(crate) fn remove_durably(dir: &Path, name: &str) -> Result<bool> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LogError::io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), "rp").unwrap(), None);
        write_offset(dir.path(), "rp", 42, Durability::Durable).unwrap();
        assert_eq!(read_offset(dir.path(), "rp").unwrap(), Some(42));
        write_offset(dir.path(), "rp", 7, Durability::OldOrNew).unwrap();
        assert_eq!(read_offset(dir.path(), "rp").unwrap(), Some(7));
        assert!(!dir.path().join("rp.tmp").exists());
    }

    #[test]
    fn garbage_and_oversized_checkpoints_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [&b"1\n5\n"[..], b"0\n-3\n", b"0\nabc\n", b"0\n5\nextra", b""] {
            fs::write(dir.path().join("rp"), bad).unwrap();
            assert_eq!(read_offset(dir.path(), "rp").unwrap(), None, "{bad:?}");
        }
        fs::write(dir.path().join("rp"), vec![b'0'; 65]).unwrap();
        assert_eq!(read_offset(dir.path(), "rp").unwrap(), None);
        fs::write(dir.path().join("rp"), b"0\n5").unwrap();
        assert_eq!(read_offset(dir.path(), "rp").unwrap(), Some(5));
    }

    #[test]
    fn read_bounded_limits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, [1u8; 10]).unwrap();
        assert_eq!(read_bounded(&p, 9).unwrap(), None);
        assert_eq!(read_bounded(&p, 10).unwrap().unwrap().len(), 10);
        assert_eq!(read_bounded(&p, 11).unwrap().unwrap().len(), 10);
    }

    #[test]
    fn markers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!remove_durably(dir.path(), "m").unwrap());
        write_marker(dir.path(), "m").unwrap();
        assert!(dir.path().join("m").exists());
        assert!(remove_durably(dir.path(), "m").unwrap());
        assert!(!dir.path().join("m").exists());
    }
}
