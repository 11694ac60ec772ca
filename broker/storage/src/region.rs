//! [`FileRegion`] and [`FileSlice`]: what a read returns when the bytes are to be sent
//! from the segment files rather than copied (`sendfile(2)`).
//!
//! A region names a byte range of one segment's `.log` file through a shared handle
//! on that file, not through its path. Retention, DeleteRecords and compaction replace
//! or delete segment files while a region may still be waiting to be sent; the open
//! handle keeps the file's contents (its inode) readable until the last region is
//! dropped, as Kafka's `FileRecords` do. Only a truncation of the same file (recovery
//! of a torn tail, `Log::truncate_to`) can make a region's range shorter than it was:
//! readers of a region must treat a short file as an error, never pad or shorten.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{LogError, Result};

/// A byte range of a segment's `.log` file: whole record batches, read-only.
///
/// Cloning is cheap (two reference counts). The handle stays open, and the range
/// readable, for as long as the region lives, whatever happens to the segment.
#[derive(Debug, Clone)]
pub struct FileRegion {
    file: Arc<File>,
    path: Arc<Path>,
    position: u64,
    len: u64,
}

impl FileRegion {
    /// The `len` bytes at `position` of `file` (opened from `path`, which is kept
    /// only for error messages). The range is not checked against the file's length:
    /// reading a region of a file that has become shorter fails.
    pub fn new(file: Arc<File>, path: Arc<Path>, position: u64, len: u64) -> FileRegion {
        FileRegion {
            file,
            path,
            position,
            len,
        }
    }

    /// Position of the first byte in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path the file was opened from (it may since have been deleted or replaced).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether both regions read the same open file (not merely the same path).
    pub fn same_file(&self, other: &FileRegion) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }

    /// Appends the region's bytes to `out`. A file shorter than the region is an error.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let len = usize::try_from(self.len).map_err(|_| {
            LogError::io(&self.path)(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "file region does not fit in memory",
            ))
        })?;
        let start = out.len();
        out.resize(start + len, 0);
        self.file
            .read_exact_at(&mut out[start..], self.position)
            .map_err(|e| {
                out.truncate(start);
                LogError::io(&self.path)(e)
            })
    }
}

/// For `sendfile(2)` and `posix_fadvise(2)`: the descriptor of the file, to be used
/// only for reading.
impl AsFd for FileRegion {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// What [`crate::Log::read_regions`] returns: whole record batches as file regions, in
/// offset order, plus the partition state a fetch answers with.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// Consecutive batches, one region per segment touched; no empty region.
    pub regions: Vec<FileRegion>,
    /// Base offset of the first batch (may be below the offset asked for, when that
    /// offset is inside a batch); the offset asked for when there are no regions.
    pub first_offset: i64,
    /// The high watermark (the log end offset on a single node).
    pub high_watermark: i64,
    /// The log start offset.
    pub log_start_offset: i64,
}

impl FileSlice {
    /// Total bytes of all regions.
    pub fn len(&self) -> u64 {
        self.regions.iter().map(FileRegion::len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Reads every region into one buffer of exactly [`Self::len`] bytes.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        // Only a capacity hint: `read_into` checks each region's length.
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        for region in &self.regions {
            region.read_into(&mut out)?;
        }
        Ok(out)
    }
}
