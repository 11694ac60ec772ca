//! The record-batch compression codecs (attribute bits 0-2). Append decompresses a
//! compressed batch to validate its records, and compresses it again when the topic's
//! `compression.type` names another codec; the cleaner decompresses to filter and
//! compresses what it keeps with the same codec; a timestamp lookup decompresses the
//! one batch it reads. Every decompression is bounded (see below).
//!
//! Each codec reads and writes the stream format Kafka's Java client uses:
//!
//! | id | codec  | format                                                                   | crate    |
//! |---:|--------|--------------------------------------------------------------------------|----------|
//! |  1 | gzip   | RFC 1952; concatenated members are read, as `GZIPInputStream` does; written at level 6 | `flate2` |
//! |  2 | snappy | xerial framing: a 16-byte header (`\x82SNAPPY\0`, version 1, compatible 1), then blocks of `[u32 BE length][raw snappy]` of at most 32 KiB of input each; a bare raw snappy block is read too | `snap` |
//! |  3 | lz4    | LZ4 frame; written as `KafkaLZ4BlockOutputStream` does: independent 64 KiB blocks, no block or content checksum | `lz4` |
//! |  4 | zstd   | zstd frames, concatenated frames read; written at level 3 (Kafka's default) | `zstd`   |
//!
//! A batch does not record its compression level, so a rewritten batch may be
//! compressed differently from the original; any Kafka client reads it.
//!
//! # Bounds
//!
//! Decompression stops with [`CodecError::TooLarge`] once the output would pass the
//! caller's limit, so a small hostile batch cannot claim gigabytes; snappy block
//! lengths are checked against the limit before anything is allocated. Beyond the
//! output, gzip and lz4 use fixed buffers (32 KiB window, 64 KiB–4 MiB block) and
//! zstd a window of at most 128 MiB (libzstd's default `windowLogMax` of 27).

use std::fmt;
use std::io::{self, Read, Write};

/// A compression codec of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Id 1.
    Gzip,
    /// Id 2.
    Snappy,
    /// Id 3.
    Lz4,
    /// Id 4.
    Zstd,
}

impl Codec {
    /// The codec for attribute bits 0-2; `None` for 0 (uncompressed) and `Some(Err)`
    /// for an id Kafka does not define (5-7).
    pub(crate) fn from_id(id: u8) -> Option<Result<Codec, CodecError>> {
        match id {
            0 => None,
            1 => Some(Ok(Codec::Gzip)),
            2 => Some(Ok(Codec::Snappy)),
            3 => Some(Ok(Codec::Lz4)),
            4 => Some(Ok(Codec::Zstd)),
            id => Some(Err(CodecError::UnknownCodec { id })),
        }
    }

    /// The attribute bits of this codec.
    pub fn id(self) -> u8 {
        match self {
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        })
    }
}

/// Why a records region could not be decompressed or compressed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    /// Attribute bits 0-2 name no codec.
    #[error("compression codec id {id} is not one Kafka defines")]
    UnknownCodec {
        /// The attribute bits.
        id: u8,
    },
    /// The compressed data is truncated or corrupt.
    #[error("the {codec} data is malformed: {source}")]
    Malformed {
        /// The batch's codec.
        codec: Codec,
        /// The decoder's complaint.
        source: io::Error,
    },
    /// The data decompresses to more than the caller allows.
    #[error("the {codec} data decompresses to more than {limit} bytes")]
    TooLarge {
        /// The batch's codec.
        codec: Codec,
        /// The caller's limit in bytes.
        limit: usize,
    },
    /// The encoder failed (it writes to memory, so this is not expected).
    #[error("compressing with {codec} failed: {source}")]
    Compress {
        /// The codec.
        codec: Codec,
        /// The encoder's error.
        source: io::Error,
    },
}

/// First 8 bytes of a xerial snappy stream; 8 more bytes (version 1, compatible
/// version 1) follow in the header.
const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
const SNAPPY_HEADER: &[u8; 16] = b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01";
/// Input bytes per snappy block (`SnappyOutputStream`'s default).
const SNAPPY_BLOCK: usize = 32 * 1024;
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// Decompresses `data`, failing with `TooLarge` as soon as the output would exceed
/// `limit` bytes.
pub(crate) fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let malformed = |source| CodecError::Malformed { codec, source };
    match codec {
        Codec::Gzip => {
            let decoder = flate2::read::MultiGzDecoder::new(data);
            read_limited(codec, decoder, data.len(), limit)
        }
        Codec::Snappy => snappy_decompress(data, limit),
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(data).map_err(malformed)?;
            let out = read_limited(codec, &mut decoder, data.len(), limit)?;
            // The reader stops quietly at a truncated frame; `finish` says whether
            // the end mark was reached.
            decoder.finish().1.map_err(malformed)?;
            Ok(out)
        }
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(malformed)?;
            read_limited(codec, decoder, data.len(), limit)
        }
    }
}

/// Compresses the concatenation of `parts`.
pub(crate) fn compress<'p>(
    codec: Codec,
    parts: impl IntoIterator<Item = &'p [u8]>,
) -> Result<Vec<u8>, CodecError> {
    let failed = |source| CodecError::Compress { codec, source };
    match codec {
        Codec::Gzip => {
            let level = flate2::Compression::new(GZIP_LEVEL);
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            write_parts(&mut encoder, parts).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Codec::Snappy => snappy_compress(parts).map_err(failed),
        Codec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(failed)?;
            write_parts(&mut encoder, parts).map_err(failed)?;
            let (out, result) = encoder.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        Codec::Zstd => {
            let mut encoder =
                zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(failed)?;
            write_parts(&mut encoder, parts).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
    }
}

fn write_parts<'p>(
    w: &mut impl Write,
    parts: impl IntoIterator<Item = &'p [u8]>,
) -> io::Result<()> {
    parts.into_iter().try_for_each(|part| w.write_all(part))
}

/// Reads `reader` (decoding `compressed_len` bytes) to its end, at most `limit` bytes.
///
/// The buffer starts at twice the compressed size (record batches typically compress
/// 2-4 times) and doubles as needed, never past `limit + 1`: fewer and larger reads
/// than `read_to_end`'s probing, and less memory zeroed ahead of the decoder.
fn read_limited(
    codec: Codec,
    mut reader: impl Read,
    compressed_len: usize,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    // One byte past the limit tells "exactly at the limit" from "beyond it".
    let cap = limit.saturating_add(1);
    let mut out = vec![
        0u8;
        compressed_len
            .saturating_mul(2)
            .clamp(4096, 1 << 20)
            .min(cap)
    ];
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if filled == cap {
                break;
            }
            let grown = filled.saturating_mul(2).min(cap);
            out.resize(grown, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(CodecError::Malformed { codec, source }),
        }
    }
    if filled > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    out.truncate(filled);
    Ok(out)
}

fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    if !data.starts_with(SNAPPY_MAGIC) {
        // Like `SnappyInputStream`: no xerial header means one raw block.
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let truncated = || CodecError::Malformed {
        codec: Codec::Snappy,
        source: io::Error::new(io::ErrorKind::UnexpectedEof, "truncated xerial stream"),
    };
    let mut rest = data.get(SNAPPY_HEADER.len()..).ok_or_else(truncated)?;
    while !rest.is_empty() {
        // Concatenated streams repeat the header, which no block length can match.
        if rest.starts_with(SNAPPY_MAGIC) {
            rest = rest.get(SNAPPY_HEADER.len()..).ok_or_else(truncated)?;
            continue;
        }
        let (len, tail) = rest.split_at_checked(4).ok_or_else(truncated)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let len = usize::try_from(len).map_err(|_| truncated())?;
        let (block, tail) = tail.split_at_checked(len).ok_or_else(truncated)?;
        snappy_block(block, &mut out, limit)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its claimed length first.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CodecError> {
    let codec = Codec::Snappy;
    let malformed = |e: snap::Error| CodecError::Malformed {
        codec,
        source: io::Error::other(e),
    };
    let len = snap::raw::decompress_len(block).map_err(malformed)?;
    let start = out.len();
    let end = start
        .checked_add(len)
        .filter(|end| *end <= limit)
        .ok_or(CodecError::TooLarge { codec, limit })?;
    out.resize(end, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(malformed)?;
    Ok(())
}

fn snappy_compress<'p>(parts: impl IntoIterator<Item = &'p [u8]>) -> io::Result<Vec<u8>> {
    let mut out = SNAPPY_HEADER.to_vec();
    let mut encoder = snap::raw::Encoder::new();
    let mut pending = Vec::with_capacity(SNAPPY_BLOCK);
    for mut part in parts {
        while !part.is_empty() {
            let n = part.len().min(SNAPPY_BLOCK - pending.len());
            let (head, tail) = part.split_at(n);
            pending.extend_from_slice(head);
            part = tail;
            if pending.len() == SNAPPY_BLOCK {
                snappy_put_block(&mut encoder, &pending, &mut out)?;
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        snappy_put_block(&mut encoder, &pending, &mut out)?;
    }
    Ok(out)
}

fn snappy_put_block(
    encoder: &mut snap::raw::Encoder,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let at = out.len();
    out.resize(at + 4 + snap::raw::max_compress_len(input.len()), 0);
    let n = encoder
        .compress(input, &mut out[at + 4..])
        .map_err(io::Error::other)?;
    out.truncate(at + 4 + n);
    // A block holds at most 32 KiB of input, so its compressed length fits.
    let n = u32::try_from(n).map_err(io::Error::other)?;
    out[at..at + 4].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::compression::{self as kp, Compressor, Decompressor};

    const ALL: [Codec; 4] = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    /// Compressible but not trivial: 100 KiB, so snappy and lz4 need several blocks.
    fn sample() -> Vec<u8> {
        (0..100 * 1024u32)
            .map(|i| (i % 251) as u8 ^ (i / 1024) as u8)
            .collect()
    }

    fn kp_compress(codec: Codec, data: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let fill = |buf: &mut BytesMut| {
            buf.extend_from_slice(data);
            Ok(())
        };
        match codec {
            Codec::Gzip => kp::Gzip::compress(&mut out, fill),
            Codec::Snappy => kp::Snappy::compress(&mut out, fill),
            Codec::Lz4 => kp::Lz4::compress(&mut out, fill),
            Codec::Zstd => kp::Zstd::compress(&mut out, fill),
        }
        .unwrap();
        out.to_vec()
    }

    fn kp_decompress(codec: Codec, data: &[u8]) -> Vec<u8> {
        let mut input = Bytes::copy_from_slice(data);
        let take = |buf: &mut Bytes| Ok(buf.to_vec());
        match codec {
            Codec::Gzip => kp::Gzip::decompress(&mut input, take),
            Codec::Snappy => kp::Snappy::decompress(&mut input, take),
            Codec::Lz4 => kp::Lz4::decompress(&mut input, take),
            Codec::Zstd => kp::Zstd::decompress(&mut input, take),
        }
        .unwrap()
    }

    #[test]
    fn round_trips_and_interoperates_with_kafka_protocol() {
        let data = sample();
        let parts: Vec<&[u8]> = data.chunks(7_000).collect();
        for codec in ALL {
            let ours = compress(codec, parts.iter().copied()).unwrap();
            assert!(ours.len() < data.len() / 2, "{codec}");
            assert_eq!(
                decompress(codec, &ours, data.len()).unwrap(),
                data,
                "{codec}"
            );
            assert_eq!(kp_decompress(codec, &ours), data, "{codec}");
            let theirs = kp_compress(codec, &data);
            assert_eq!(
                decompress(codec, &theirs, data.len()).unwrap(),
                data,
                "{codec}"
            );
        }
    }

    #[test]
    fn frames_are_the_ones_kafka_writes() {
        let snappy = compress(Codec::Snappy, [&sample()[..]]).unwrap();
        assert_eq!(&snappy[..16], SNAPPY_HEADER);
        // 100 KiB of input: blocks of 32 + 32 + 32 + 4 KiB.
        let mut rest = &snappy[16..];
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            blocks.push(snap::raw::decompress_len(&rest[4..4 + len]).unwrap());
            rest = &rest[4 + len..];
        }
        assert_eq!(blocks, [32_768, 32_768, 32_768, 4_096]);
        // LZ4 frame magic, FLG 0x60 (version 1, independent blocks, no checksums, no
        // content size), BD 0x40 (64 KiB blocks): what KafkaLZ4BlockOutputStream writes.
        let lz4 = compress(Codec::Lz4, [&b"abc"[..]]).unwrap();
        assert_eq!(lz4[..6], [0x04, 0x22, 0x4d, 0x18, 0x60, 0x40]);
        let gzip = compress(Codec::Gzip, [&b"abc"[..]]).unwrap();
        assert_eq!(gzip[..2], [0x1f, 0x8b]);
        let zstd = compress(Codec::Zstd, [&b"abc"[..]]).unwrap();
        assert_eq!(zstd[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    }

    #[test]
    fn raw_and_concatenated_streams_are_read() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"raw block")
            .unwrap();
        assert_eq!(decompress(Codec::Snappy, &raw, 100).unwrap(), b"raw block");
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Zstd] {
            let mut two = compress(codec, [&b"one "[..]]).unwrap();
            two.extend(compress(codec, [&b"two"[..]]).unwrap());
            assert_eq!(decompress(codec, &two, 100).unwrap(), b"one two", "{codec}");
        }
    }

    #[test]
    fn output_limit_boundaries() {
        let data = sample();
        for codec in ALL {
            let z = compress(codec, [&data[..]]).unwrap();
            for limit in [data.len(), data.len() + 1] {
                assert_eq!(decompress(codec, &z, limit).unwrap(), data, "{codec}");
            }
            for limit in [data.len() - 1, 0] {
                assert!(
                    matches!(
                        decompress(codec, &z, limit),
                        Err(CodecError::TooLarge { limit: l, .. }) if l == limit
                    ),
                    "{codec} at {limit}"
                );
            }
        }
    }

    #[test]
    fn a_snappy_block_claiming_4_gib_is_refused_before_allocation() {
        // A raw block whose varint length header says 2^32 - 1 bytes.
        let mut stream = SNAPPY_HEADER.to_vec();
        stream.extend_from_slice(&6u32.to_be_bytes());
        stream.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(matches!(
            decompress(Codec::Snappy, &stream, 1 << 20),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn corrupt_and_truncated_data_fails_without_panicking() {
        let data = sample();
        for codec in ALL {
            let z = compress(codec, [&data[..]]).unwrap();
            // Every truncation (stepping to keep the test fast) and some bit flips.
            for cut in (0..z.len()).step_by(z.len() / 97 + 1) {
                let got = decompress(codec, &z[..cut], data.len());
                assert!(got.map_or(true, |d| d != data), "{codec} cut at {cut}");
            }
            for at in (0..z.len()).step_by(z.len() / 31 + 1) {
                let mut bad = z.clone();
                bad[at] ^= 0x5a;
                let _ = decompress(codec, &bad, data.len());
            }
            assert!(
                decompress(codec, &[0xff; 64], data.len()).is_err(),
                "{codec}"
            );
        }
        assert!(matches!(
            Codec::from_id(5),
            Some(Err(CodecError::UnknownCodec { id: 5 }))
        ));
        assert!(Codec::from_id(0).is_none());
        for codec in ALL {
            assert!(matches!(Codec::from_id(codec.id()), Some(Ok(c)) if c == codec));
        }
    }
}
