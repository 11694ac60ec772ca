//! The mutation engine. A frame is a corpus frame with one to six mutations stacked on
//! it (or, now and then, none, so topics, records and groups come into being and the
//! handlers' deeper paths are reached). The mutations aim at what a decoder trusts:
//!
//! | mutation   | what it does                                                            |
//! |------------|-------------------------------------------------------------------------|
//! | `Int32`    | an i32 that looks like a count or length (0..=bytes left, or -1) set to a boundary |
//! | `Int16`    | the same for an i16 (string lengths)                                    |
//! | `Varint`   | a varint that looks like a compact length replaced by a boundary, an overlong or an unterminated one |
//! | `BitFlip`  | one to four bits flipped                                                |
//! | `ByteSet`  | a byte set to 0x00, 0x01, 0x7f, 0x80 or 0xff                            |
//! | `Insert`   | up to 16 bytes inserted                                                 |
//! | `Delete`   | up to 16 bytes deleted                                                  |
//! | `Duplicate`| a range repeated in place (an array element twice)                      |
//! | `Truncate` | the frame cut short                                                     |
//! | `Splice`   | the head of this frame and the tail of another corpus frame             |
//! | `Version`  | the header's version set to another one served for the API (rarely, one that is not) |
//! | `ApiKey`   | the header's API key set to another served API, the body kept           |
//!
//! Every choice comes from one RNG seeded by `(seed, iteration)`.

use bytes::Bytes;
use runnel_broker::dispatch::ROUTES;

use crate::corpus::CorpusFrame;

/// Largest frame the engine builds; growth stops here.
pub const MAX_FRAME: usize = 256 * 1024;

/// Bytes at the start of every request header: api key, version, correlation id.
const FIXED_HEADER: usize = 8;

/// One kind of mutation (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The corpus frame as it is.
    Unchanged,
    /// A count or length as i32.
    Int32,
    /// A count or length as i16.
    Int16,
    /// A count or length as varint.
    Varint,
    /// Bits flipped.
    BitFlip,
    /// A byte set to an edge value.
    ByteSet,
    /// Bytes inserted.
    Insert,
    /// Bytes deleted.
    Delete,
    /// A range repeated.
    Duplicate,
    /// Cut short.
    Truncate,
    /// Two corpus frames joined.
    Splice,
    /// Another version in the header.
    Version,
    /// Another API key in the header.
    ApiKey,
}

const WEIGHTS: &[(Op, u32)] = &[
    (Op::Int32, 20),
    (Op::Int16, 12),
    (Op::Varint, 14),
    (Op::BitFlip, 10),
    (Op::ByteSet, 6),
    (Op::Insert, 6),
    (Op::Delete, 6),
    (Op::Duplicate, 5),
    (Op::Truncate, 5),
    (Op::Splice, 6),
    (Op::Version, 8),
    (Op::ApiKey, 2),
];

/// A generated frame and how it was made.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Header and body, no size prefix.
    pub bytes: Bytes,
    /// Index of the corpus frame it started from.
    pub source: usize,
    /// The mutations applied, in order.
    pub ops: Vec<Op>,
}

/// SplitMix64's finalizer: decorrelates neighbouring seeds and iterations.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The RNG of one iteration.
pub fn rng_for(seed: u64, iteration: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(mix(seed ^ mix(iteration)))
}

/// The frame of `iteration` under `seed`. `corpus` must not be empty.
pub fn generate(corpus: &[CorpusFrame], seed: u64, iteration: u64) -> Generated {
    let mut rng = rng_for(seed, iteration);
    let source = rng.usize(..corpus.len());
    let mut frame = corpus[source].bytes.to_vec();
    if rng.u32(..10) == 0 {
        return Generated {
            bytes: Bytes::from(frame),
            source,
            ops: vec![Op::Unchanged],
        };
    }
    let count = match rng.u32(..8) {
        0..=3 => 1,
        4 | 5 => 2,
        _ => rng.usize(3..=6),
    };
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op = pick(&mut rng);
        apply(op, &mut frame, &mut rng, corpus);
        ops.push(op);
    }
    frame.truncate(MAX_FRAME);
    Generated {
        bytes: Bytes::from(frame),
        source,
        ops,
    }
}

fn pick(rng: &mut fastrand::Rng) -> Op {
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut n = rng.u32(..total);
    for &(op, w) in WEIGHTS {
        if n < w {
            return op;
        }
        n -= w;
    }
    Op::BitFlip
}

/// Applies one mutation in place.
pub fn apply(op: Op, frame: &mut Vec<u8>, rng: &mut fastrand::Rng, corpus: &[CorpusFrame]) {
    match op {
        Op::Unchanged => {}
        Op::Int32 => int32(frame, rng),
        Op::Int16 => int16(frame, rng),
        Op::Varint => varint(frame, rng),
        Op::BitFlip => {
            if !frame.is_empty() {
                for _ in 0..rng.usize(1..=4) {
                    let i = rng.usize(..frame.len());
                    frame[i] ^= 1 << rng.u32(..8);
                }
            }
        }
        Op::ByteSet => {
            if !frame.is_empty() {
                let i = rng.usize(..frame.len());
                frame[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.usize(..5)];
            }
        }
        Op::Insert => {
            if frame.len() < MAX_FRAME {
                let at = rng.usize(..=frame.len());
                let n = rng.usize(1..=16);
                let fill: Vec<u8> = match rng.u32(..3) {
                    0 => vec![0xff; n],
                    1 => vec![0x00; n],
                    _ => (0..n).map(|_| rng.u8(..)).collect(),
                };
                frame.splice(at..at, fill);
            }
        }
        Op::Delete => {
            if !frame.is_empty() {
                let at = rng.usize(..frame.len());
                let n = rng.usize(1..=16).min(frame.len() - at);
                frame.drain(at..at + n);
            }
        }
        Op::Duplicate => {
            if !frame.is_empty() && frame.len() < MAX_FRAME {
                let at = rng.usize(..frame.len());
                let n = rng.usize(1..=64).min(frame.len() - at);
                let copy = frame[at..at + n].to_vec();
                frame.splice(at + n..at + n, copy);
            }
        }
        Op::Truncate => {
            if !frame.is_empty() {
                // Mostly past the fixed header, so the body decoder is what runs out.
                let from = if rng.u32(..8) == 0 { 0 } else { FIXED_HEADER };
                let to = rng.usize(from.min(frame.len() - 1)..frame.len());
                frame.truncate(to);
            }
        }
        Op::Splice => splice(frame, rng, corpus),
        Op::Version => version(frame, rng),
        Op::ApiKey => {
            if frame.len() >= 2 {
                let route = ROUTES[rng.usize(..ROUTES.len())];
                frame[0..2].copy_from_slice(&(route.key as i16).to_be_bytes());
            }
        }
    }
}

/// Positions past the fixed header where `width` big-endian bytes read as a count or a
/// length that the rest of the frame could back (or -1, a null).
fn length_positions(frame: &[u8], width: usize) -> Vec<usize> {
    let mut out = Vec::new();
    if frame.len() < FIXED_HEADER + width {
        return out;
    }
    for p in FIXED_HEADER..=frame.len() - width {
        let v: i64 = match width {
            2 => i64::from(i16::from_be_bytes([frame[p], frame[p + 1]])),
            _ => i64::from(i32::from_be_bytes([
                frame[p],
                frame[p + 1],
                frame[p + 2],
                frame[p + 3],
            ])),
        };
        let left = (frame.len() - p - width) as i64;
        if v == -1 || (1..=left).contains(&v) {
            out.push(p);
        }
    }
    out
}

fn position(frame: &[u8], width: usize, rng: &mut fastrand::Rng) -> Option<usize> {
    let candidates = length_positions(frame, width);
    if !candidates.is_empty() && rng.u32(..8) != 0 {
        return Some(candidates[rng.usize(..candidates.len())]);
    }
    (frame.len() >= width).then(|| rng.usize(..=frame.len() - width))
}

fn int32(frame: &mut [u8], rng: &mut fastrand::Rng) {
    let Some(p) = position(frame, 4, rng) else {
        return;
    };
    let old = i32::from_be_bytes([frame[p], frame[p + 1], frame[p + 2], frame[p + 3]]);
    let left = i32::try_from(frame.len() - p - 4).unwrap_or(i32::MAX);
    let values = [
        0,
        -1,
        1,
        0x7fff,
        0xffff,
        0x0100_0000,
        i32::MAX,
        i32::MIN,
        old.wrapping_add(1),
        old.wrapping_sub(1),
        left.saturating_add(1),
        -2,
    ];
    let v = values[rng.usize(..values.len())];
    frame[p..p + 4].copy_from_slice(&v.to_be_bytes());
}

fn int16(frame: &mut [u8], rng: &mut fastrand::Rng) {
    let Some(p) = position(frame, 2, rng) else {
        return;
    };
    let old = i16::from_be_bytes([frame[p], frame[p + 1]]);
    let left = i16::try_from(frame.len() - p - 2).unwrap_or(i16::MAX);
    let values = [
        0,
        -1,
        1,
        0x7fff,
        i16::MIN,
        0xff,
        old.wrapping_add(1),
        old.wrapping_sub(1),
        left.saturating_add(1),
        -2,
    ];
    let v = values[rng.usize(..values.len())];
    frame[p..p + 2].copy_from_slice(&v.to_be_bytes());
}

/// Unsigned LEB128, as Kafka's compact lengths and record fields use.
pub fn encode_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The varint at `p`: its value and length, if it ends within 10 bytes.
pub fn decode_varint(frame: &[u8], p: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in frame.get(p..)?.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn varint(frame: &mut Vec<u8>, rng: &mut fastrand::Rng) {
    if frame.len() <= FIXED_HEADER {
        return;
    }
    // Compact lengths are stored +1: a small varint whose value-1 fits in what is left.
    let candidates: Vec<(usize, usize)> = (FIXED_HEADER..frame.len())
        .filter_map(|p| {
            let (v, n) = decode_varint(frame, p)?;
            let left = (frame.len() - p - n) as u64;
            (v >= 2 && v <= left + 1).then_some((p, n))
        })
        .collect();
    let (p, n) = if !candidates.is_empty() && rng.u32(..8) != 0 {
        candidates[rng.usize(..candidates.len())]
    } else {
        let p = rng.usize(FIXED_HEADER..frame.len());
        (p, decode_varint(frame, p).map_or(1, |(_, n)| n))
    };
    let left = (frame.len() - p - n) as u64;
    let replacement = match rng.u32(..12) {
        0 => encode_varint(0),
        1 => encode_varint(1),
        2 => encode_varint(left + 2),
        3 => encode_varint(0x7fff_ffff),
        4 => encode_varint(0xffff_ffff),
        5 => encode_varint(0x8000_0000),
        6 => encode_varint(u64::MAX),
        7 => encode_varint(0xffff_fffe), // zigzag i32::MAX
        8 => encode_varint(1 << 28),
        9 => vec![0x80, 0x80, 0x80, 0x80, 0x00], // overlong zero
        10 => vec![0xff; 11],                    // never terminates
        _ => encode_varint(u64::from(rng.u32(..))),
    };
    frame.splice(p..p + n, replacement);
}

fn splice(frame: &mut Vec<u8>, rng: &mut fastrand::Rng, corpus: &[CorpusFrame]) {
    let key = frame.get(0..2).map(|k| [k[0], k[1]]);
    let same: Vec<&CorpusFrame> = corpus
        .iter()
        .filter(|c| Some([c.bytes[0], c.bytes[1]]) == key)
        .collect();
    let other = if !same.is_empty() && rng.bool() {
        same[rng.usize(..same.len())]
    } else {
        &corpus[rng.usize(..corpus.len())]
    };
    let cut = rng.usize(FIXED_HEADER.min(frame.len())..=frame.len());
    let from = rng.usize(FIXED_HEADER.min(other.bytes.len())..=other.bytes.len());
    frame.truncate(cut);
    frame.extend_from_slice(&other.bytes[from..]);
}

fn version(frame: &mut [u8], rng: &mut fastrand::Rng) {
    if frame.len() < 4 {
        return;
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let route = ROUTES.iter().find(|r| r.key as i16 == key);
    let v = match route {
        Some(r) if rng.u32(..8) != 0 => rng.i16(r.min..=r.max),
        Some(r) => [r.min - 1, r.max + 1, i16::MAX, -1][rng.usize(..4)],
        None => rng.i16(..),
    };
    frame[2..4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<CorpusFrame> {
        crate::corpus::load(&crate::corpus::default_dir()).expect("corpus")
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, 0xffff_ffff, u64::MAX] {
            let bytes = encode_varint(v);
            assert_eq!(decode_varint(&bytes, 0), Some((v, bytes.len())));
        }
        assert_eq!(encode_varint(u64::MAX).len(), 10);
        assert_eq!(decode_varint(&[0xff; 11], 0), None);
    }

    #[test]
    fn length_positions_are_counts_the_frame_could_back() {
        // header (8 bytes), then i32 2, then 8 bytes: only the count is a candidate as i32.
        let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 9];
        frame.extend_from_slice(&2i32.to_be_bytes());
        frame.extend_from_slice(&[0x40; 8]);
        assert_eq!(length_positions(&frame, 4), vec![8]);
    }

    #[test]
    fn a_seed_and_an_iteration_always_give_the_same_frame() {
        let corpus = corpus();
        for i in [0, 1, 17, 99_999] {
            let a = generate(&corpus, 7, i);
            let b = generate(&corpus, 7, i);
            assert_eq!(a.bytes, b.bytes);
            assert_eq!(a.ops, b.ops);
        }
        let differ = (0..100)
            .filter(|&i| generate(&corpus, 7, i).bytes != generate(&corpus, 8, i).bytes)
            .count();
        assert!(differ > 90, "{differ}");
    }

    #[test]
    fn every_mutation_is_drawn_and_frames_stay_bounded() {
        let corpus = corpus();
        let mut seen = std::collections::HashSet::new();
        for i in 0..5_000 {
            let g = generate(&corpus, 1, i);
            assert!(g.bytes.len() <= MAX_FRAME);
            seen.extend(g.ops.iter().map(|o| format!("{o:?}")));
        }
        assert_eq!(seen.len(), WEIGHTS.len() + 1, "{seen:?}");
    }
}
