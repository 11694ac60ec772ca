//! Bounded parsing of a v2 batch's records region: each record's key, whether its
//! value is null, its offset and timestamp deltas, with every length bounds-checked.
//! Append uses it to validate a compressed batch (and a compacted topic's keys), the
//! cleaner to filter records, and [`first_record_at_or_after`] to answer a lookup by
//! timestamp. The region of a compressed batch is decompressed first (`compression`),
//! to at most [`MAX_DECOMPRESSED_RECORDS_BYTES`].
//!
//! Record layout (Kafka's `DefaultRecord`; varints are zig-zag encoded):
//!
//! | field            | type                | notes                                  |
//! |------------------|---------------------|----------------------------------------|
//! | `length`         | varint              | bytes of the record after this field   |
//! | `attributes`     | i8                  | unused                                 |
//! | `timestampDelta` | varlong             | relative to the batch `baseTimestamp`  |
//! | `offsetDelta`    | varint              | relative to the batch `baseOffset`     |
//! | `keyLength`      | varint              | -1 for a null key                      |
//! | `key`            | bytes               |                                        |
//! | `valueLength`    | varint              | -1 for a null value (a tombstone)      |
//! | `value`          | bytes               |                                        |
//! | `headerCount`    | varint              | then per header: key length, key, value length, value |
//!
//! Records are never re-encoded: a rewritten batch keeps its base offset and base
//! timestamp, so each kept record's bytes (deltas included) are copied verbatim and
//! only the header's `batchLength`, `recordCount` and CRC change. For a compressed
//! batch the kept records are compressed again with the batch's codec. A batch
//! re-compressed for the topic's `compression.type` keeps its records region byte for
//! byte under the new codec; only the codec bits, `batchLength` and CRC change.

use std::borrow::Cow;

use crate::batch::{compute_crc, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::compression::{self, Codec, CodecError};
use crate::error::{InvalidReason, LogError};

/// Largest records region storage decompresses from one batch. Append refuses a batch
/// that would expand past it (so every stored batch can be read back), the cleaner
/// keeps such a batch whole, and a lookup by timestamp answers
/// [`LogError::UnreadableBatch`]. Producers bound a batch by `batch.size` and
/// `max.request.size` (16 KiB and 1 MiB by default; Kafka's producer fills a batch
/// up to `batch.size` *compressed*), so this is far above what a client writes, and
/// it bounds the memory one batch can claim.
pub const MAX_DECOMPRESSED_RECORDS_BYTES: usize = 64 * 1024 * 1024;

/// Smallest possible encoded record: a one-byte length and six one-byte fields.
pub(crate) const MIN_RECORD_LEN: usize = 7;

/// Why a batch's records cannot be read or rewritten.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordsError {
    /// The codec failed or the batch decompresses past the limit.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The (decompressed) records region does not parse (see [`parse_region`]).
    #[error("the records region is malformed")]
    Malformed,
    /// A rewritten batch would not fit a batch's 32-bit length.
    #[error("the rewritten batch would be {len} bytes, more than a batch can hold")]
    BatchTooLarge {
        /// Its size in bytes.
        len: usize,
    },
}

impl RecordsError {
    /// What to tell the batch's sender or reader, or `Err` when the failure is the
    /// broker's (an encoder error, a rewritten batch too large for its length field).
    pub(crate) fn reason(self) -> Result<InvalidReason, LogError> {
        match self {
            RecordsError::Codec(CodecError::UnknownCodec { id }) => {
                Ok(InvalidReason::UnknownCodec { id })
            }
            RecordsError::Codec(CodecError::Malformed { codec, .. }) => {
                Ok(InvalidReason::MalformedCompression { codec })
            }
            RecordsError::Codec(CodecError::TooLarge { codec, limit }) => {
                Ok(InvalidReason::DecompressedTooLarge { codec, limit })
            }
            RecordsError::Codec(CodecError::Compress { codec, source }) => {
                Err(LogError::Compress { codec, source })
            }
            RecordsError::Malformed => Ok(InvalidReason::MalformedRecords),
            RecordsError::BatchTooLarge { len } => Err(LogError::RecordTooLarge {
                size: len as u64,
                max: (LOG_OVERHEAD as u64) + i32::MAX as u64,
            }),
        }
    }
}

/// One record of a batch, borrowed from the batch bytes or its decompressed region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    /// The whole encoded record, length prefix included.
    pub(crate) bytes: &'a [u8],
    /// Offset relative to the batch's base offset.
    pub(crate) offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp (meaningless under
    /// `LogAppendTime`, where every record has the batch's max timestamp).
    pub(crate) timestamp_delta: i64,
    /// The key, `None` for a null key.
    pub(crate) key: Option<&'a [u8]>,
    /// The value, `None` for a null value.
    pub(crate) value: Option<&'a [u8]>,
    /// The value is null: a tombstone in a compacted log.
    pub(crate) tombstone: bool,
}

/// A cursor over a byte slice whose reads fail instead of running past the end.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.buf.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    /// An unsigned LEB128 of at most `max_bytes` bytes, zig-zag decoded.
    fn zigzag(&mut self, max_bytes: u32) -> Option<i64> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.zigzag(5)?).ok()
    }

    fn varlong(&mut self) -> Option<i64> {
        self.zigzag(10)
    }

    /// A varint length then that many bytes; `Some(None)` for length -1.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            n => Some(Some(self.take(usize::try_from(n).ok()?)?)),
        }
    }
}

/// The uncompressed records region of a batch (`batch` is the whole batch, header
/// included): borrowed from `batch` when uncompressed, else decompressed into
/// `scratch` (at most `limit` bytes) and borrowed from that.
pub(crate) fn region<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    limit: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], RecordsError> {
    let stored = batch
        .get(BATCH_HEADER_LEN..header.total_len())
        .ok_or(RecordsError::Malformed)?;
    Ok(match Codec::from_id(header.compression()) {
        None => stored,
        Some(codec) => {
            *scratch = compression::decompress(codec?, stored, limit)?;
            scratch.as_slice()
        }
    })
}

/// Every record of a data batch (`batch` is the whole batch, header included), read
/// from its [`region`].
pub(crate) fn read_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    limit: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<Vec<RecordView<'a>>, RecordsError> {
    let region = region(batch, header, limit, scratch)?;
    parse_region(region, header).ok_or(RecordsError::Malformed)
}

/// A record's timestamp and offset (Kafka's `TimestampAndOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    /// The record's timestamp: the batch's base timestamp plus the record's delta, or
    /// the batch's max timestamp under `LogAppendTime`.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
}

/// The first record of `batch` (one whole stored batch, header included, as
/// [`crate::Log::read_batch_by_timestamp`] returns it) whose timestamp is at or after
/// `timestamp`, or `None` if no record's is.
///
/// Bounded: a compressed batch is decompressed to at most
/// [`MAX_DECOMPRESSED_RECORDS_BYTES`] and every record length is checked against what
/// remains, so a batch whose header lies costs no more than its bytes. A batch whose
/// records cannot be read (they do not parse, do not match the header's count, or
/// decompress past the limit) is [`LogError::UnreadableBatch`]; a bad header is
/// `CorruptRecord`. Decompression is CPU work: call from a blocking thread.
pub fn first_record_at_or_after(
    batch: &[u8],
    timestamp: i64,
) -> crate::error::Result<Option<TimestampAndOffset>> {
    with_stored_records(batch, |header, records| {
        records
            .iter()
            .map(|r| TimestampAndOffset {
                timestamp: record_timestamp(header, r),
                offset: record_offset(header, r),
            })
            .find(|r| r.timestamp >= timestamp)
    })
}

/// Reads the records of one whole stored batch within the bounds, and hands them to
/// `f`; a batch whose records cannot be read is [`LogError::UnreadableBatch`].
fn with_stored_records<T>(
    batch: &[u8],
    f: impl FnOnce(&BatchHeader, &[RecordView<'_>]) -> T,
) -> crate::error::Result<T> {
    let header = BatchHeader::parse(batch)?;
    let mut scratch = Vec::new();
    match read_records(batch, &header, MAX_DECOMPRESSED_RECORDS_BYTES, &mut scratch) {
        Ok(records) => Ok(f(&header, &records)),
        Err(e) => Err(match e.reason() {
            Ok(reason) => LogError::UnreadableBatch {
                base_offset: header.base_offset,
                reason,
            },
            Err(e) => e,
        }),
    }
}

/// A record's timestamp: the base timestamp plus its delta, or the batch's max
/// timestamp under `LogAppendTime`.
fn record_timestamp(header: &BatchHeader, r: &RecordView<'_>) -> i64 {
    if header.is_log_append_time() {
        header.max_timestamp
    } else {
        // Java's long addition: a hostile delta wraps rather than panics.
        header.base_timestamp.wrapping_add(r.timestamp_delta)
    }
}

fn record_offset(header: &BatchHeader, r: &RecordView<'_>) -> i64 {
    header.base_offset.saturating_add(i64::from(r.offset_delta))
}

/// One record of a stored batch, copied out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp (as in [`TimestampAndOffset`]).
    pub timestamp: i64,
    /// The key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The value, `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
}

/// Every record of `batch` (one whole stored batch, header included), for readers of
/// internal topics that need keys and values (the group coordinator loading
/// `__consumer_offsets`). Bounded exactly as [`first_record_at_or_after`]: a batch
/// whose header lies, or that inflates past [`MAX_DECOMPRESSED_RECORDS_BYTES`], is an
/// error, never a large allocation. CPU work: call from a blocking thread.
pub fn records_of(batch: &[u8]) -> crate::error::Result<Vec<StoredRecord>> {
    with_stored_records(batch, |header, records| {
        records
            .iter()
            .map(|r| StoredRecord {
                offset: record_offset(header, r),
                timestamp: record_timestamp(header, r),
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
            })
            .collect()
    })
}

/// Parses every record of an uncompressed batch (`batch` is the whole batch, header
/// included); see [`parse_region`].
#[cfg(test)]
pub(crate) fn parse_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Option<Vec<RecordView<'a>>> {
    parse_region(batch.get(BATCH_HEADER_LEN..header.total_len())?, header)
}

/// Parses every record of a batch's (uncompressed) records region. Returns `None` if
/// the region is malformed: a length running past its bounds, a record count
/// different from the header's, offset deltas not strictly increasing or beyond
/// `lastOffsetDelta`. Allocation is bounded by the region's size.
pub(crate) fn parse_region<'a>(
    region: &'a [u8],
    header: &BatchHeader,
) -> Option<Vec<RecordView<'a>>> {
    let expected = usize::try_from(header.record_count).ok()?;
    let mut records = Vec::with_capacity(expected.min(region.len() / MIN_RECORD_LEN));
    let mut outer = Cursor { buf: region, at: 0 };
    let mut previous_delta = -1i32;
    while outer.at < region.len() {
        let start = outer.at;
        let length = usize::try_from(outer.varint()?).ok()?;
        let body = outer.take(length)?;
        let mut c = Cursor { buf: body, at: 0 };
        c.byte()?; // attributes
        let timestamp_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        let key = c.nullable_bytes()?;
        let value = c.nullable_bytes()?;
        let headers = c.varint()?;
        for _ in 0..headers {
            // Each header needs at least two bytes, so a huge count fails fast.
            let key_len = usize::try_from(c.varint()?).ok()?;
            c.take(key_len)?;
            c.nullable_bytes()?;
        }
        if c.at != body.len()
            || offset_delta <= previous_delta
            || offset_delta > header.last_offset_delta
        {
            return None;
        }
        previous_delta = offset_delta;
        records.push(RecordView {
            bytes: region.get(start..outer.at)?,
            offset_delta,
            timestamp_delta,
            key,
            value,
            tombstone: value.is_none(),
        });
    }
    (records.len() == expected).then_some(records)
}

/// A copy of `batch` holding only `kept` (records of that batch, in order): same base
/// offset, timestamps, producer fields, attributes (so the same codec) and
/// `lastOffsetDelta`; new `batchLength`, `recordCount` and CRC. A compressed batch's
/// kept records are compressed again with its codec. `kept` must be non-empty and
/// smaller than the original.
pub(crate) fn rebuild_batch(
    batch: &[u8],
    header: &BatchHeader,
    kept: &[RecordView<'_>],
) -> Result<Vec<u8>, RecordsError> {
    let parts = kept.iter().map(|r| r.bytes);
    let head = batch
        .get(..BATCH_HEADER_LEN)
        .ok_or(RecordsError::Malformed)?;
    let mut out = match Codec::from_id(header.compression()) {
        None => {
            let records_len: usize = kept.iter().map(|r| r.bytes.len()).sum();
            let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records_len);
            out.extend_from_slice(head);
            parts.for_each(|part| out.extend_from_slice(part));
            out
        }
        Some(codec) => {
            let compressed = compression::compress(codec?, parts)?;
            let mut out = Vec::with_capacity(BATCH_HEADER_LEN + compressed.len());
            out.extend_from_slice(head);
            out.extend_from_slice(&compressed);
            out
        }
    };
    // Fewer records than the original, whose count was an i32.
    let count = i32::try_from(kept.len()).unwrap_or(i32::MAX);
    out[57..61].copy_from_slice(&count.to_be_bytes());
    seal(out)
}

/// A copy of `batch` whose records `region` (its uncompressed records region) is
/// stored with `target` (`None`: uncompressed): same base offset, timestamps,
/// producer fields, flags, record count and record bytes; new codec bits,
/// `batchLength` and CRC.
pub(crate) fn recompress_batch(
    batch: &[u8],
    region: &[u8],
    target: Option<Codec>,
) -> Result<Vec<u8>, RecordsError> {
    let head = batch
        .get(..BATCH_HEADER_LEN)
        .ok_or(RecordsError::Malformed)?;
    let body = match target {
        None => Cow::Borrowed(region),
        Some(codec) => Cow::Owned(compression::compress(codec, [region])?),
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&body);
    // The codec is the low byte of the big-endian attributes (bytes 21-22).
    out[22] = (out[22] & !0x07) | target.map_or(0, Codec::id);
    seal(out)
}

/// Sets `batchLength` and the CRC of a batch assembled in `out`.
fn seal(mut out: Vec<u8>) -> Result<Vec<u8>, RecordsError> {
    let len = out.len();
    let batch_length =
        i32::try_from(len - LOG_OVERHEAD).map_err(|_| RecordsError::BatchTooLarge { len })?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Encodes records as a v2 records region (uncompressed): for tests and benches.
#[cfg(test)]
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    encode_record_at(out, offset_delta, 0, key, value);
}

/// [`encode_record`] with a timestamp delta.
#[cfg(test)]
pub(crate) fn encode_record_at(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    fn zigzag(out: &mut Vec<u8>, v: i64) {
        let mut raw = ((v << 1) ^ (v >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }
    let mut body = vec![0u8]; // attributes
    zigzag(&mut body, timestamp_delta);
    zigzag(&mut body, i64::from(offset_delta));
    for part in [key, value] {
        match part {
            Some(b) => {
                zigzag(&mut body, b.len() as i64);
                body.extend_from_slice(b);
            }
            None => zigzag(&mut body, -1),
        }
    }
    zigzag(&mut body, 1); // one header, to exercise header parsing
    zigzag(&mut body, 1);
    body.push(b'h');
    zigzag(&mut body, -1);
    zigzag(out, body.len() as i64);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch_with_region, compressed, keyed_batch, zeros_record};

    #[test]
    fn parses_keys_tombstones_and_deltas() {
        let b = keyed_batch(
            &[
                (Some("a"), Some("1")),
                (None, Some("2")),
                (Some("bb"), None),
            ],
            0,
        );
        let h = BatchHeader::parse(&b).unwrap();
        let records = parse_records(&b, &h).unwrap();
        let summary: Vec<_> = records
            .iter()
            .map(|r| (r.offset_delta, r.key, r.tombstone))
            .collect();
        assert_eq!(
            summary,
            [
                (0, Some(&b"a"[..]), false),
                (1, None, false),
                (2, Some(&b"bb"[..]), true)
            ]
        );
        let rebuilt = rebuild_batch(&b, &h, &[records[0], records[2]]).unwrap();
        let rh = BatchHeader::parse(&rebuilt).unwrap();
        rh.validate_crc(&rebuilt).unwrap();
        assert_eq!(
            (rh.record_count, rh.last_offset_delta, rh.base_offset),
            (2, 2, 0)
        );
        let again = parse_records(&rebuilt, &rh).unwrap();
        assert_eq!(again[1].offset_delta, 2);
    }

    #[test]
    fn compressed_regions_are_read_and_rebuilt_with_their_codec() {
        let plain = keyed_batch(
            &[
                (Some("a"), Some("1")),
                (Some("b"), Some("2")),
                (Some("c"), None),
            ],
            0,
        );
        let region_len = plain.len() - BATCH_HEADER_LEN;
        let b = compressed(&plain, Codec::Snappy);
        let h = BatchHeader::parse(&b).unwrap();
        let mut scratch = Vec::new();
        let records = read_records(&b, &h, region_len, &mut scratch).unwrap();
        let plain_h = BatchHeader::parse(&plain).unwrap();
        assert_eq!(records, parse_records(&plain, &plain_h).unwrap());
        let rebuilt = rebuild_batch(&b, &h, &[records[0], records[2]]).unwrap();
        let rh = BatchHeader::parse(&rebuilt).unwrap();
        rh.validate_crc(&rebuilt).unwrap();
        assert_eq!(
            (rh.compression(), rh.record_count, rh.last_offset_delta),
            (2, 2, 2)
        );
        let mut scratch = Vec::new();
        let again = read_records(&rebuilt, &rh, region_len, &mut scratch).unwrap();
        assert_eq!(
            (again[0].key, again[1].key),
            (Some(&b"a"[..]), Some(&b"c"[..]))
        );
        // One byte under the decompressed size, an unknown codec, garbage data.
        assert!(matches!(
            read_records(&b, &h, region_len - 1, &mut Vec::new()),
            Err(RecordsError::Codec(CodecError::TooLarge { .. }))
        ));
        let unknown = BatchHeader { attributes: 5, ..h };
        assert!(matches!(
            read_records(&b, &unknown, region_len, &mut Vec::new()),
            Err(RecordsError::Codec(CodecError::UnknownCodec { id: 5 }))
        ));
        let gzip = BatchHeader {
            attributes: 1,
            ..plain_h
        };
        assert!(read_records(&plain, &gzip, region_len, &mut Vec::new()).is_err());
    }

    /// An uncompressed batch at base offset 100, base timestamp 1000, of records at
    /// the given `(offset delta, timestamp delta)`.
    fn timed_batch(records: &[(i32, i64)]) -> Vec<u8> {
        let mut region = Vec::new();
        for &(offset_delta, timestamp_delta) in records {
            encode_record_at(&mut region, offset_delta, timestamp_delta, Some(b"k"), None);
        }
        let mut b = batch_with_region(&region, records.len() as i32);
        let last = records.last().map_or(0, |r| r.0);
        b[0..8].copy_from_slice(&100i64.to_be_bytes());
        b[23..27].copy_from_slice(&last.to_be_bytes());
        b[27..35].copy_from_slice(&1_000i64.to_be_bytes());
        b[35..43].copy_from_slice(&1_300i64.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn at(timestamp: i64, offset: i64) -> Option<TimestampAndOffset> {
        Some(TimestampAndOffset { timestamp, offset })
    }

    #[test]
    fn finds_the_first_record_at_or_after_a_timestamp() {
        // Offsets 100, 101, 103 (a gap left by compaction); timestamps out of order.
        let plain = timed_batch(&[(0, 0), (1, 300), (3, 200)]);
        for b in [
            plain.clone(),
            compressed(&plain, Codec::Gzip),
            compressed(&plain, Codec::Zstd),
        ] {
            let find = |t| first_record_at_or_after(&b, t).unwrap();
            assert_eq!(find(i64::MIN), at(1_000, 100));
            assert_eq!(find(1_000), at(1_000, 100));
            assert_eq!(find(1_001), at(1_300, 101));
            assert_eq!(find(1_200), at(1_300, 101));
            assert_eq!(find(1_300), at(1_300, 101));
            assert_eq!(find(1_301), None);
        }
        // LogAppendTime: every record has the batch's max timestamp.
        let mut stamped = plain.clone();
        stamped[22] |= 0x08;
        assert_eq!(
            first_record_at_or_after(&stamped, 1_300).unwrap(),
            at(1_300, 100)
        );
        assert_eq!(first_record_at_or_after(&stamped, 1_301).unwrap(), None);
        // A delta that would overflow wraps as Java's long addition does.
        let wrapping = timed_batch(&[(0, i64::MAX)]);
        assert_eq!(
            first_record_at_or_after(&wrapping, i64::MIN).unwrap(),
            at(1_000i64.wrapping_add(i64::MAX), 100)
        );
    }

    #[test]
    fn batches_that_lie_are_unreadable_without_being_decoded_unbounded() {
        let plain = timed_batch(&[(0, 0), (1, 10)]);
        // The header claims 2^31 - 1 records: the capacity reserved is bounded by the
        // region, the count does not match, the batch is unreadable.
        let claim = |b: &[u8], count: i32| {
            let mut b = b.to_vec();
            b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            b
        };
        for b in [
            claim(&plain, i32::MAX),
            claim(&compressed(&plain, Codec::Lz4), i32::MAX),
            claim(&plain, 3),
        ] {
            assert!(matches!(
                first_record_at_or_after(&b, 0),
                Err(LogError::UnreadableBatch {
                    base_offset: 100,
                    reason: InvalidReason::MalformedRecords
                })
            ));
        }
        // Past the decompression limit: refused as soon as the output passes it.
        let bomb = zeros_record(MAX_DECOMPRESSED_RECORDS_BYTES);
        let bomb = compressed(&batch_with_region(&bomb, 1), Codec::Zstd);
        assert!(matches!(
            first_record_at_or_after(&bomb, 0),
            Err(LogError::UnreadableBatch {
                reason: InvalidReason::DecompressedTooLarge {
                    codec: Codec::Zstd,
                    limit: MAX_DECOMPRESSED_RECORDS_BYTES
                },
                ..
            })
        ));
        // Not even a header.
        assert!(matches!(
            first_record_at_or_after(&plain[..60], 0),
            Err(LogError::CorruptRecord { .. })
        ));
    }

    #[test]
    fn malformed_regions_are_rejected_without_panicking() {
        let b = keyed_batch(&[(Some("key"), Some("value"))], 0);
        let h = BatchHeader::parse(&b).unwrap();
        // Every truncation of the region, and a wrong record count.
        for cut in BATCH_HEADER_LEN..b.len() {
            let mut short = b[..cut].to_vec();
            short[8..12].copy_from_slice(&((cut - 12) as i32).to_be_bytes());
            let sh = BatchHeader::parse(&short).unwrap();
            assert!(parse_records(&short, &sh).is_none(), "cut {cut}");
        }
        let wrong_count = BatchHeader {
            record_count: 2,
            ..h
        };
        assert!(parse_records(&b, &wrong_count).is_none());
        // Huge lengths and header counts: rejected, never allocated.
        for poison in [0x7f_u8, 0xff] {
            let mut bad = b.clone();
            for byte in &mut bad[BATCH_HEADER_LEN..] {
                *byte = poison;
            }
            assert!(parse_records(&bad, &h).is_none());
        }
        // A varint longer than five bytes.
        let mut c = Cursor {
            buf: &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            at: 0,
        };
        assert_eq!(c.varint(), None);
        let mut c = Cursor {
            buf: &[0x01, 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f],
            at: 0,
        };
        assert_eq!(
            (c.varint(), c.varint(), c.varint()),
            (Some(-1), Some(1), Some(i32::MAX))
        );
    }
}
