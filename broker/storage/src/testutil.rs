//! Builders for valid record batches, shared by the unit tests.

use crate::batch::{compute_crc, BATCH_HEADER_LEN};

/// The header fields of a test batch; records are `payload_len` filler bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSpec {
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    pub payload_len: usize,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            base_offset: 0,
            leader_epoch: -1,
            attributes: 0,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 1,
            payload_len: 20,
        }
    }
}

/// A valid v2 batch for `spec`, with a correct CRC-32C. The filler is raised to 7
/// bytes per record if shorter (the least a record takes), so append believes the
/// record count.
pub(crate) fn batch(spec: &BatchSpec) -> Vec<u8> {
    let min = 7 * usize::try_from(spec.record_count).unwrap_or(0);
    build(&BatchSpec {
        payload_len: spec.payload_len.max(min),
        ..*spec
    })
}

/// [`batch`] without raising the filler.
fn build(spec: &BatchSpec) -> Vec<u8> {
    let total = BATCH_HEADER_LEN + spec.payload_len;
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&spec.base_offset.to_be_bytes());
    b.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    b.extend_from_slice(&spec.leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&spec.attributes.to_be_bytes());
    b.extend_from_slice(&(spec.record_count - 1).to_be_bytes());
    b.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    b.extend_from_slice(&spec.max_timestamp.to_be_bytes());
    b.extend_from_slice(&spec.producer_id.to_be_bytes());
    b.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    b.extend_from_slice(&spec.base_sequence.to_be_bytes());
    b.extend_from_slice(&spec.record_count.to_be_bytes());
    let seed = (spec.base_offset as u8).wrapping_add(spec.payload_len as u8);
    b.extend((0..spec.payload_len).map(|i| seed.wrapping_add(i as u8)));
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A plain (non-idempotent) batch of `record_count` records, `payload_len` record bytes,
/// and the given max timestamp.
pub(crate) fn simple(record_count: i32, payload_len: usize, max_timestamp: i64) -> Vec<u8> {
    batch(&BatchSpec {
        record_count,
        payload_len,
        base_timestamp: max_timestamp,
        max_timestamp,
        ..BatchSpec::default()
    })
}

/// An idempotent batch from `producer_id` at `epoch` starting at `base_sequence`.
pub(crate) fn idempotent(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    record_count: i32,
) -> Vec<u8> {
    batch(&BatchSpec {
        producer_id,
        producer_epoch: epoch,
        base_sequence,
        record_count,
        ..BatchSpec::default()
    })
}

/// An uncompressed batch of `record_count` records whose records region is `region`
/// (not checked against the count), with a correct CRC-32C.
pub(crate) fn batch_with_region(region: &[u8], record_count: i32) -> Vec<u8> {
    let mut b = build(&BatchSpec {
        record_count,
        payload_len: 0,
        ..BatchSpec::default()
    });
    b.extend_from_slice(region);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A records region of one record (offset delta 0, null key, no headers) whose value
/// is `value_len` zero bytes.
pub(crate) fn zeros_record(value_len: usize) -> Vec<u8> {
    fn zigzag(out: &mut Vec<u8>, v: i64) {
        let mut raw = ((v << 1) ^ (v >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }
    let mut body = vec![0u8, 0, 0]; // attributes, timestamp delta, offset delta
    zigzag(&mut body, -1); // null key
    zigzag(&mut body, value_len as i64);
    body.resize(body.len() + value_len, 0);
    body.push(0); // no headers
    let mut region = Vec::with_capacity(body.len() + 5);
    zigzag(&mut region, body.len() as i64);
    region.extend_from_slice(&body);
    region
}

/// An uncompressed batch of keyed records (`None` = null key / null value), offset
/// deltas 0.., all with timestamp `max_timestamp`.
pub(crate) fn keyed_batch(records: &[(Option<&str>, Option<&str>)], max_timestamp: i64) -> Vec<u8> {
    let mut region = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        crate::records::encode_record(
            &mut region,
            i as i32,
            key.map(str::as_bytes),
            value.map(str::as_bytes),
        );
    }
    let mut b = build(&BatchSpec {
        record_count: records.len() as i32,
        base_timestamp: max_timestamp,
        max_timestamp,
        payload_len: 0,
        ..BatchSpec::default()
    });
    b.extend_from_slice(&region);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// `batch` (an uncompressed batch) with its records region compressed by `codec`,
/// the codec's attribute bits set and a new CRC.
pub(crate) fn compressed(batch: &[u8], codec: crate::compression::Codec) -> Vec<u8> {
    let region = crate::compression::compress(codec, [&batch[BATCH_HEADER_LEN..]]).unwrap();
    let mut b = batch[..BATCH_HEADER_LEN].to_vec();
    b.extend_from_slice(&region);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[22] = (b[22] & !0x07) | codec.id();
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}
