//! Opening a partition directory: finding segments, deciding which to trust, and
//! scanning the rest batch by batch.
//!
//! Recovery mode is decided per segment:
//!
//! | segment                                             | treatment                       |
//! |-----------------------------------------------------|---------------------------------|
//! | clean shutdown marker present                       | trusted; indexes checked        |
//! | wholly before the recovery point                    | trusted; indexes checked        |
//! | contains or follows the recovery point (no marker)  | scanned: length, magic, CRC-32C |
//! | trusted, but an index is missing or inconsistent    | scanned                         |
//!
//! A scan validates every batch (header, length within the file, offsets increasing,
//! at least as many offsets as records,
//! CRC-32C streamed through a fixed buffer so a garbage length never allocates),
//! rebuilds both indexes, and stops at the first invalid or torn batch: the segment is
//! cut there and every later segment is deleted, so a corrupt batch is never served.
//! When everything from that point to the end of the file is zero bytes, it is the
//! preallocated tail of an active segment (see `segment.rs`): the segment is cut there
//! quietly and later segments stay.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::checkpoint::{sync_dir, TMP_SUFFIX};
use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::segment::{
    remove_if_exists, remove_segment_files, LogSegment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Read-buffer size of the recovery scan.
const SCAN_BUFFER: usize = 64 * 1024;

/// What loading a directory produced.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Segments in base-offset order; never empty.
    pub(crate) segments: Vec<LogSegment>,
    /// Whether any batch or segment was cut (the recovery point must not exceed the end).
    pub(crate) truncated: bool,
    /// Base offsets of segments that were scanned (they must be fsynced before the
    /// recovery point can move past them).
    pub(crate) scanned: Vec<i64>,
}

/// Loads the segments in `dir`. `recovery_point` is `None` after a clean shutdown
/// (nothing needs scanning) and otherwise the offset below which data was fsynced.
pub(crate) fn load_segments(
    dir: &Path,
    config: &LogConfig,
    recovery_point: Option<i64>,
    now_ms: i64,
) -> Result<Loaded> {
    let bases = list_segments(dir)?;
    let mut loaded = Loaded {
        segments: Vec::with_capacity(bases.len().max(1)),
        truncated: false,
        scanned: Vec::new(),
    };
    if bases.is_empty() {
        loaded
            .segments
            .push(LogSegment::create(dir, 0, config, now_ms)?);
        sync_dir(dir)?;
        return Ok(loaded);
    }
    // The segment holding the recovery point and all after it need a scan.
    let scan_from = recovery_point.map(|rp| bases.partition_point(|&b| b <= rp).saturating_sub(1));
    let mut prev_next_offset = bases[0];
    for (i, &base) in bases.iter().enumerate() {
        if base < prev_next_offset {
            tracing::warn!(dir = %dir.display(), base, prev_next_offset, "segment overlaps the one before it; deleting it and all later segments");
            delete_segments(dir, &bases[i..])?;
            loaded.truncated = true;
            break;
        }
        let mut segment = LogSegment::open(dir, base, config, now_ms)?;
        let trusted = scan_from.is_none_or(|from| i < from);
        let needs_scan = !trusted || !segment.load_clean()?;
        if needs_scan {
            if trusted {
                tracing::warn!(segment = %segment.log_path().display(), "segment index missing or inconsistent; rebuilding");
            }
            let cut = scan_segment(&mut segment, prev_next_offset, config.index_interval_bytes)?;
            loaded.scanned.push(base);
            if cut {
                loaded.truncated = true;
                loaded.segments.push(segment);
                delete_segments(dir, &bases[i + 1..])?;
                break;
            }
        }
        prev_next_offset = segment.next_offset().max(base);
        loaded.segments.push(segment);
    }
    // A scan filled the in-memory index entries meant for the active segment only.
    if let Some((_, rolled)) = loaded.segments.split_last_mut() {
        for segment in rolled {
            segment.cool_indexes()?;
        }
    }
    Ok(loaded)
}

/// Base offsets of the segments in `dir`, sorted; removes leftovers (checkpoint temp
/// files, indexes without a `.log`).
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            remove_if_exists(&entry.path())?;
        } else if let Some(base) = parse_base(name, LOG_SUFFIX) {
            bases.push(base);
        } else if let Some(base) =
            parse_base(name, INDEX_SUFFIX).or_else(|| parse_base(name, TIME_INDEX_SUFFIX))
        {
            index_files.push((base, entry.path()));
        }
    }
    bases.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            remove_if_exists(&path)?;
        }
    }
    Ok(bases)
}

/// The base offset in a `<20 digits><suffix>` file name.
fn parse_base(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()
}

fn delete_segments(dir: &Path, bases: &[i64]) -> Result<()> {
    for &base in bases {
        tracing::warn!(dir = %dir.display(), base, "deleting segment after the recovery cut");
        remove_segment_files(dir, base)?;
    }
    if !bases.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `Read` over a file at an explicit position, leaving the file cursor alone.
struct PositionalReader<'a> {
    file: &'a File,
    position: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Validates every batch of `segment` from the start, rebuilding its indexes, and
/// cuts the file at the first invalid or torn batch. `min_offset` is the smallest
/// base offset the first batch may have. Returns whether bytes were cut.
pub(crate) fn scan_segment(
    segment: &mut LogSegment,
    min_offset: i64,
    index_interval_bytes: u64,
) -> Result<bool> {
    let path = segment.log_path().to_path_buf();
    let file_len = segment
        .log_file()
        .metadata()
        .map_err(LogError::io(&path))?
        .len();
    segment.begin_rebuild()?;
    let file = segment
        .log_file()
        .try_clone()
        .map_err(LogError::io(&path))?;
    let mut reader = BufReader::with_capacity(
        SCAN_BUFFER,
        PositionalReader {
            file: &file,
            position: 0,
        },
    );
    let mut chunk = vec![0u8; SCAN_BUFFER];
    let mut position = 0u64;
    let mut expected = min_offset.max(segment.base_offset());
    let mut stop_reason = None;
    while position < file_len {
        match next_valid_batch(&mut reader, &mut chunk, file_len - position, expected) {
            Ok(header) => {
                segment.note_batch(position, &header, index_interval_bytes)?;
                position += header.total_len() as u64;
                expected = header.last_offset().saturating_add(1);
            }
            Err(ScanStop::Invalid(reason)) => {
                stop_reason = Some(reason);
                break;
            }
            Err(ScanStop::Io(e)) => return Err(LogError::io(&path)(e)),
        }
    }
    if position == file_len {
        return Ok(false);
    }
    if all_zero(&file, &mut chunk, position, file_len).map_err(LogError::io(&path))? {
        // Zeros written ahead of the appends (segment.rs): the end of the data, not a
        // damaged batch. Later segments stay.
        tracing::debug!(segment = %path.display(), position, zero_bytes = file_len - position, "cutting the preallocated tail");
        segment.cut_file_to_size()?;
        return Ok(false);
    }
    tracing::warn!(
        segment = %path.display(),
        position,
        cut_bytes = file_len - position,
        reason = stop_reason.unwrap_or("unknown"),
        "truncating log segment at the first invalid batch"
    );
    segment.cut_file_to_size()?;
    Ok(true)
}

/// Whether `file` holds only zero bytes from `from` to `to`, read through `buf`
/// (reads stop at the first other byte).
fn all_zero(file: &File, buf: &mut [u8], from: u64, to: u64) -> io::Result<bool> {
    let mut position = from;
    while position < to {
        let want = usize::try_from(to - position).map_or(buf.len(), |n| n.min(buf.len()));
        let read = file.read_at(&mut buf[..want], position)?;
        if read == 0 {
            return Ok(true);
        }
        if buf[..read].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        position += read as u64;
    }
    Ok(true)
}

enum ScanStop {
    Invalid(&'static str),
    Io(io::Error),
}

impl From<io::Error> for ScanStop {
    fn from(e: io::Error) -> Self {
        ScanStop::Io(e)
    }
}

/// Reads and validates one batch; `remaining` bytes are left in the file.
fn next_valid_batch(
    reader: &mut impl Read,
    chunk: &mut [u8],
    remaining: u64,
    expected: i64,
) -> std::result::Result<BatchHeader, ScanStop> {
    if remaining < BATCH_HEADER_LEN as u64 {
        return Err(ScanStop::Invalid("torn batch header"));
    }
    let mut head = [0u8; BATCH_HEADER_LEN];
    reader.read_exact(&mut head)?;
    let header = BatchHeader::parse(&head).map_err(|_| ScanStop::Invalid("bad batch header"))?;
    let total = header.total_len() as u64;
    if total > remaining {
        return Err(ScanStop::Invalid("torn batch"));
    }
    if header.base_offset < expected {
        return Err(ScanStop::Invalid("offsets go backwards"));
    }
    // Compaction keeps `lastOffsetDelta` while dropping records, so fewer records
    // than offsets is valid on disk (appends still require them equal).
    if header.record_count < 1
        || i64::from(header.last_offset_delta) < i64::from(header.record_count) - 1
    {
        return Err(ScanStop::Invalid("record count mismatch"));
    }
    let mut crc = crc32c::crc32c(&head[21..]);
    let mut left = total - BATCH_HEADER_LEN as u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        reader.read_exact(&mut chunk[..n])?;
        crc = crc32c::crc32c_append(crc, &chunk[..n]);
        left -= n as u64;
    }
    if crc != header.crc {
        return Err(ScanStop::Invalid("CRC mismatch"));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch, BatchSpec};

    #[test]
    fn parses_only_canonical_names() {
        assert_eq!(parse_base("00000000000000000042.log", LOG_SUFFIX), Some(42));
        assert_eq!(parse_base("0000000000000000042.log", LOG_SUFFIX), None);
        assert_eq!(parse_base("0000000000000000004x.log", LOG_SUFFIX), None);
        assert_eq!(parse_base("00000000000000000042.index", LOG_SUFFIX), None);
        assert_eq!(parse_base("99999999999999999999.log", LOG_SUFFIX), None);
    }

    #[test]
    fn scan_cuts_garbage_tail_without_trusting_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default();
        let mut segment = LogSegment::create(dir.path(), 0, &config, 0).unwrap();
        let mut data = Vec::new();
        for base in 0..3 {
            data.extend(batch(&BatchSpec {
                base_offset: base,
                ..BatchSpec::default()
            }));
        }
        let good = data.len() as u64;
        // A header claiming a 2 GiB batch, then a few bytes: torn, never allocated.
        let mut huge = batch(&BatchSpec {
            base_offset: 3,
            ..BatchSpec::default()
        });
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        data.extend(huge);
        fs::write(dir.path().join("00000000000000000000.log"), &data).unwrap();
        let cut = scan_segment(&mut segment, 0, config.index_interval_bytes).unwrap();
        assert!(cut);
        assert_eq!((segment.size(), segment.next_offset()), (good, 3));
        assert_eq!(fs::metadata(segment.log_path()).unwrap().len(), good);
        // Offsets going backwards also stop the scan.
        let mut segment = LogSegment::open(dir.path(), 0, &config, 0).unwrap();
        assert!(scan_segment(&mut segment, 2, config.index_interval_bytes).unwrap());
        assert_eq!(segment.size(), 0);
    }

    #[test]
    fn listing_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000010.log",
            "00000000000000000005.index",
            "00000000000000000005.timeindex",
            "recovery-point.tmp",
            "unrelated.txt",
        ] {
            fs::write(d.join(name), b"").unwrap();
        }
        assert_eq!(list_segments(d).unwrap(), vec![0, 10]);
        assert!(d.join("00000000000000000000.index").exists());
        assert!(!d.join("00000000000000000005.index").exists());
        assert!(!d.join("00000000000000000005.timeindex").exists());
        assert!(!d.join("recovery-point.tmp").exists());
        assert!(d.join("unrelated.txt").exists());
    }
}
