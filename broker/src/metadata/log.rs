//! The metadata log on local disk: `<data>/__cluster_metadata/metadata.log`.
//!
//! | part      | content                                               |
//! |-----------|-------------------------------------------------------|
//! | line      | `<crc32c as 8 hex digits> <record as JSON>\n`         |
//! | crc32c    | CRC-32C of the JSON bytes                             |
//!
//! Each append is fsynced before it returns. Opening replays every line; the first line
//! that is torn (no newline) or fails its CRC ends the log and is cut off, like a torn
//! tail of a partition log.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::{MetadataImage, MetadataRecord};

/// Why the metadata log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    /// A file operation failed.
    #[error("metadata log {path}: {op} failed: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be serialized.
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The append-only metadata log file.
pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

impl MetadataLog {
    /// Opens the log in `dir` (created if absent), replays it into a fresh image and
    /// truncates a torn or corrupt tail.
    pub fn open(dir: &Path) -> Result<(MetadataLog, MetadataImage), MetadataLogError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataLogError::Io { path, op, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let path = dir.join("metadata.log");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut image = MetadataImage::default();
        let mut valid_len: u64 = 0;
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io("read", &path))?;
            if n == 0 {
                break;
            }
            match decode_line(&line) {
                Some(record) => {
                    image.apply(&record);
                    valid_len += n as u64;
                }
                None => {
                    tracing::warn!(path = %path.display(), offset = valid_len, "metadata log has a torn or corrupt tail; truncating it");
                    break;
                }
            }
        }
        drop(reader);
        file.set_len(valid_len).map_err(io("truncate", &path))?;
        file.sync_all().map_err(io("fsync", &path))?;
        Ok((MetadataLog { path, file }, image))
    }

    /// Appends records durably (written and fsynced) in one write.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
        let mut buf = Vec::new();
        for record in records {
            encode_line(record, &mut buf)?;
        }
        let err = |op| {
            let path = self.path.clone();
            move |source| MetadataLogError::Io { path, op, source }
        };
        self.file.write_all(&buf).map_err(err("write"))?;
        self.file.sync_data().map_err(err("fsync"))?;
        Ok(())
    }
}

/// Appends `value` to `buf` as one line of this file format: CRC-32C, space, JSON, newline.
/// The metadata quorum's Raft log uses the same lines.
pub(crate) fn encode_line<T: serde::Serialize>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let json = serde_json::to_vec(value)?;
    buf.extend_from_slice(format!("{:08x} ", crc32c::crc32c(&json)).as_bytes());
    buf.extend_from_slice(&json);
    buf.push(b'\n');
    Ok(())
}

/// The value of one line (with its newline), or `None` when the line is torn or its CRC
/// or JSON is bad.
pub(crate) fn decode_line<T: serde::de::DeserializeOwned>(line: &[u8]) -> Option<T> {
    let line = line.strip_suffix(b"\n")?;
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc != crc32c::crc32c(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_and_cuts_a_torn_tail() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let (mut log, image) = MetadataLog::open(dir.path())?;
            assert!(image.cluster_id.is_empty());
            log.append(&[MetadataRecord::Cluster {
                cluster_id: "c1".into(),
            }])?;
            log.append(&[MetadataRecord::ProducerIds { next: 1000 }])?;
        }
        // A torn third record.
        let path = dir.path().join("metadata.log");
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(b"0000abcd {\"type\":\"Pro")?;
        drop(f);
        let before = std::fs::metadata(&path)?.len();
        let (mut log, image) = MetadataLog::open(dir.path())?;
        assert_eq!(image.cluster_id, "c1");
        assert_eq!(image.next_producer_id, 1000);
        assert!(std::fs::metadata(&path)?.len() < before);
        log.append(&[MetadataRecord::ProducerIds { next: 2000 }])?;
        drop(log);
        let (_, image) = MetadataLog::open(dir.path())?;
        assert_eq!(image.next_producer_id, 2000);
        Ok(())
    }

    #[test]
    fn a_flipped_byte_ends_the_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (mut log, _) = MetadataLog::open(dir.path())?;
        log.append(&[
            MetadataRecord::ProducerIds { next: 1 },
            MetadataRecord::ProducerIds { next: 2 },
        ])?;
        drop(log);
        let path = dir.path().join("metadata.log");
        let mut bytes = std::fs::read(&path)?;
        let second = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
        bytes[second + 20] ^= 0x01;
        std::fs::write(&path, &bytes)?;
        let (_, image) = MetadataLog::open(dir.path())?;
        assert_eq!(image.next_producer_id, 1);
        Ok(())
    }
}
