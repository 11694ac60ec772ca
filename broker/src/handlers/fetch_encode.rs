//! The Fetch response encoder for records that stay in the segment files: the frame is
//! a list of [`Chunk`]s, encoded bytes interleaved with the file regions of each
//! partition's `records`, which the connection sends with `sendfile(2)`.
//!
//! Everything but the records is encoded here by hand, field for field as
//! `FetchResponse.json` (and `kafka-protocol`'s generated encoder) lays it out; a
//! property test checks that the result, regions read back, is byte-identical to
//! `kafka-protocol`'s encoding of the same response. Tagged fields are never emitted:
//! `diverging_epoch`, `current_leader`, `snapshot_id` and `node_endpoints` are always
//! their defaults here, which `kafka-protocol` does not write either.
//!
//! | field (in order)                        | versions | encoding                              |
//! |-----------------------------------------|----------|---------------------------------------|
//! | size                                    | all      | i32: header + body, regions included  |
//! | correlation_id                          | all      | i32 (response header v0)              |
//! | header tagged fields                    | 12+      | varint 0 (response header v1)         |
//! | throttle_time_ms                        | all      | i32                                   |
//! | error_code, session_id                  | 7+       | i16, i32                              |
//! | responses                               | all      | array (compact 12+)                   |
//! | · topic                                 | ..=12    | string (compact 12)                   |
//! | · topic_id                              | 13+      | uuid                                  |
//! | · partitions                            | all      | array (compact 12+)                   |
//! | · · partition_index, error_code         | all      | i32, i16                              |
//! | · · high_watermark, last_stable_offset  | all      | i64, i64                              |
//! | · · log_start_offset                    | 5+       | i64                                   |
//! | · · aborted_transactions                | all      | nullable array (compact 12+) of (producer_id i64, first_offset i64, tags 12+) |
//! | · · preferred_read_replica              | 11+      | i32                                   |
//! | · · records                             | all      | nullable bytes (compact 12+): the regions |
//! | · · tagged fields                       | 12+      | varint 0                              |
//! | · tagged fields                         | 12+      | varint 0                              |
//! | tagged fields                           | 12+      | varint 0                              |

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::TopicName;
use runnel_storage::FileRegion;
use uuid::Uuid;

use crate::sendfile::Chunk;

/// Lowest Fetch version this encoder writes.
pub const MIN_VERSION: i16 = 4;
/// Highest Fetch version this encoder writes.
pub const MAX_VERSION: i16 = 16;

/// A Fetch response whose records are regions of segment files.
#[derive(Debug, Clone, Default)]
pub struct FetchReply {
    /// Quota throttle time.
    pub throttle_time_ms: i32,
    /// Top-level error (v7+).
    pub error_code: i16,
    /// Fetch session id (v7+; must be 0 before).
    pub session_id: i32,
    /// One entry per topic, in request order.
    pub topics: Vec<TopicReply>,
}

/// One topic of a [`FetchReply`].
#[derive(Debug, Clone, Default)]
pub struct TopicReply {
    /// The topic's name (written up to v12).
    pub name: TopicName,
    /// The topic's id (written from v13).
    pub topic_id: Uuid,
    /// One entry per partition asked for.
    pub partitions: Vec<PartitionReply>,
}

/// One partition of a [`TopicReply`].
#[derive(Debug, Clone)]
pub struct PartitionReply {
    /// The partition.
    pub partition_index: i32,
    /// The partition's error.
    pub error_code: i16,
    /// The high watermark.
    pub high_watermark: i64,
    /// The last stable offset.
    pub last_stable_offset: i64,
    /// The log start offset (v5+).
    pub log_start_offset: i64,
    /// Aborted transactions in the records, or null.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// The replica the client should fetch from instead (v11+; -1 before).
    pub preferred_read_replica: i32,
    /// The record batches, as consecutive file regions, or null.
    pub records: Option<Vec<FileRegion>>,
}

impl PartitionReply {
    /// A partition with no records (empty, not null), offsets unknown (-1).
    pub fn empty(partition_index: i32) -> PartitionReply {
        PartitionReply {
            partition_index,
            error_code: 0,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: Some(Vec::new()),
            preferred_read_replica: -1,
            records: Some(Vec::new()),
        }
    }

    /// Bytes of records.
    pub fn records_len(&self) -> u64 {
        self.records
            .iter()
            .flatten()
            .map(FileRegion::len)
            .sum::<u64>()
    }
}

/// An aborted transaction in a partition's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The transaction's producer.
    pub producer_id: i64,
    /// Its first offset.
    pub first_offset: i64,
}

/// Why a [`FetchReply`] cannot be encoded at a version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The version is outside what this encoder writes.
    #[error("Fetch v{0} cannot be encoded (supported: v4 to v16)")]
    UnsupportedVersion(i16),
    /// A field with a non-default value does not exist at the version.
    #[error("field {field} is set but does not exist in Fetch v{version}")]
    FieldNotInVersion {
        /// The field's name.
        field: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// A string, array or the whole frame is longer than its length field allows.
    #[error("{what} of {len} is too long to encode")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: u64,
    },
}

/// Encodes `reply` as a complete response frame (size prefix, response header, body)
/// for Fetch `version`. Byte chunks are slices of one buffer; the regions are not read.
pub fn encode(
    correlation_id: i32,
    version: i16,
    reply: &FetchReply,
) -> Result<Vec<Chunk>, EncodeError> {
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(EncodeError::UnsupportedVersion(version));
    }
    let flexible = version >= 12;
    let mut w = ChunkWriter::new(flexible);
    w.buf.put_i32(0); // the size, patched by `finish`
    w.buf.put_i32(correlation_id);
    w.tags();
    w.buf.put_i32(reply.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(reply.error_code);
        w.buf.put_i32(reply.session_id);
    } else if reply.session_id != 0 {
        return Err(not_in("session_id", version));
    }
    w.array_len(Some(reply.topics.len()))?;
    for topic in &reply.topics {
        if version <= 12 {
            w.string(topic.name.0.as_str())?;
        } else {
            w.buf.put_slice(topic.topic_id.as_bytes());
        }
        w.array_len(Some(topic.partitions.len()))?;
        for p in &topic.partitions {
            encode_partition(&mut w, version, p)?;
        }
        w.tags();
    }
    w.tags();
    w.finish()
}

fn encode_partition(
    w: &mut ChunkWriter,
    version: i16,
    p: &PartitionReply,
) -> Result<(), EncodeError> {
    w.buf.put_i32(p.partition_index);
    w.buf.put_i16(p.error_code);
    w.buf.put_i64(p.high_watermark);
    w.buf.put_i64(p.last_stable_offset);
    if version >= 5 {
        w.buf.put_i64(p.log_start_offset);
    }
    w.array_len(p.aborted_transactions.as_ref().map(Vec::len))?;
    for aborted in p.aborted_transactions.iter().flatten() {
        w.buf.put_i64(aborted.producer_id);
        w.buf.put_i64(aborted.first_offset);
        w.tags();
    }
    if version >= 11 {
        w.buf.put_i32(p.preferred_read_replica);
    } else if p.preferred_read_replica != -1 {
        return Err(not_in("preferred_read_replica", version));
    }
    match &p.records {
        None => w.null_bytes(),
        Some(regions) => {
            w.bytes_len(p.records_len())?;
            for region in regions.iter().filter(|r| !r.is_empty()) {
                w.region(region.clone());
            }
        }
    }
    w.tags();
    Ok(())
}

fn not_in(field: &'static str, version: i16) -> EncodeError {
    EncodeError::FieldNotInVersion { field, version }
}

/// One buffer of encoded bytes, and the regions to send between its parts.
struct ChunkWriter {
    flexible: bool,
    buf: BytesMut,
    /// Each region with the buffer length at which it is sent.
    regions: Vec<(usize, FileRegion)>,
    region_bytes: u64,
}

impl ChunkWriter {
    fn new(flexible: bool) -> ChunkWriter {
        ChunkWriter {
            flexible,
            buf: BytesMut::with_capacity(256),
            regions: Vec::new(),
            region_bytes: 0,
        }
    }

    fn varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            // Truncation intended: the low seven bits, with the continuation bit.
            self.buf.put_u8((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    /// An empty tagged-field section, in flexible versions.
    fn tags(&mut self) {
        if self.flexible {
            self.varint(0);
        }
    }

    /// An array length (`None`: a null array).
    fn array_len(&mut self, len: Option<usize>) -> Result<(), EncodeError> {
        let too_long = |len: usize| EncodeError::TooLong {
            what: "an array",
            len: len as u64,
        };
        match (len, self.flexible) {
            (None, true) => self.varint(0),
            (None, false) => self.buf.put_i32(-1),
            (Some(n), true) => {
                let n = u32::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(|| too_long(n))?;
                self.varint(n);
            }
            (Some(n), false) => self.buf.put_i32(i32::try_from(n).map_err(|_| too_long(n))?),
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        let too_long = || EncodeError::TooLong {
            what: "a string",
            len: s.len() as u64,
        };
        if self.flexible {
            let n = u32::try_from(s.len())
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or_else(too_long)?;
            self.varint(n);
        } else {
            self.buf
                .put_i16(i16::try_from(s.len()).map_err(|_| too_long())?);
        }
        self.buf.put_slice(s.as_bytes());
        Ok(())
    }

    fn null_bytes(&mut self) {
        if self.flexible {
            self.varint(0);
        } else {
            self.buf.put_i32(-1);
        }
    }

    /// The length of a non-null bytes field whose contents follow as regions.
    fn bytes_len(&mut self, len: u64) -> Result<(), EncodeError> {
        let too_long = EncodeError::TooLong {
            what: "records",
            len,
        };
        if self.flexible {
            let n = u32::try_from(len)
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or(too_long)?;
            self.varint(n);
        } else {
            self.buf.put_i32(i32::try_from(len).map_err(|_| too_long)?);
        }
        Ok(())
    }

    fn region(&mut self, region: FileRegion) {
        self.region_bytes += region.len();
        self.regions.push((self.buf.len(), region));
    }

    /// Patches the size prefix and cuts the buffer around the regions.
    fn finish(mut self) -> Result<Vec<Chunk>, EncodeError> {
        let size = (self.buf.len() as u64 - 4)
            .checked_add(self.region_bytes)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or(EncodeError::TooLong {
                what: "a response frame",
                len: self.buf.len() as u64 + self.region_bytes,
            })?;
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        let bytes = self.buf.freeze();
        let mut chunks = Vec::with_capacity(2 * self.regions.len() + 1);
        let mut done = 0;
        for (at, region) in self.regions {
            if at > done {
                chunks.push(Chunk::Bytes(bytes.slice(done..at)));
                done = at;
            }
            chunks.push(Chunk::File(region));
        }
        if done < bytes.len() {
            chunks.push(Chunk::Bytes(bytes.slice(done..)));
        }
        Ok(chunks)
    }
}

#[cfg(test)]
#[path = "fetch_encode_tests.rs"]
mod tests;
