//! Helpers shared by the integration tests: valid v2 batches and directory inspection.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

/// A valid v2 batch: `record_count` records (the records region is `payload_len`
/// filler bytes derived from `seed`, raised to 7 per record, the least a record takes,
/// so append believes the count), max timestamp `max_timestamp`, no producer id.
pub fn batch(record_count: i32, payload_len: usize, max_timestamp: i64, seed: u8) -> Vec<u8> {
    let payload_len = payload_len.max(7 * usize::try_from(record_count).unwrap_or(0));
    let total = 61 + payload_len;
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset: assigned by the log
    b.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, set below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(record_count - 1).to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes()); // base timestamp
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&record_count.to_be_bytes());
    b.extend((0..payload_len).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8)));
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// `batch` as the log stores it: base offset and (if `epoch >= 0`) leader epoch patched.
pub fn as_stored(mut b: Vec<u8>, base_offset: i64, epoch: i32) -> Vec<u8> {
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    if epoch >= 0 {
        b[12..16].copy_from_slice(&epoch.to_be_bytes());
    }
    b
}

/// The `.log` files in `dir`, oldest first.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    files_with(dir, ".log")
}

/// Files in `dir` ending with `suffix`, sorted by name.
pub fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// `batch` from an idempotent producer: `producer_id` at `producer_epoch`, first
/// sequence `base_sequence`.
pub fn producer_batch(
    record_count: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let mut b = batch(record_count, 8, 1_000, base_sequence as u8);
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The leader-epoch entries a log should hold for `batches` (in offset order): one
/// `(epoch, base offset)` per batch whose epoch is above every earlier one.
pub fn expected_epochs<'a>(batches: impl IntoIterator<Item = &'a [u8]>) -> Vec<(i32, i64)> {
    let mut entries: Vec<(i32, i64)> = Vec::new();
    for b in batches {
        let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
        let epoch = i32::from_be_bytes(b[12..16].try_into().unwrap());
        if epoch >= 0 && entries.last().is_none_or(|&(latest, _)| epoch > latest) {
            entries.push((epoch, base));
        }
    }
    entries
}
