//! Runnel's synchronous log engine: one [`Log`] per partition, modelled on Kafka's
//! `UnifiedLog`/`LocalLog`/`LogSegment`.
//!
//! Storage knows v2 record-batch headers, not wire messages: a produce payload's
//! `records` bytes go in through [`Log::append`] (a follower's fetched batches through
//! [`Log::append_as_follower`], unchanged) and come back, byte-identical apart
//! from the patched base offset and leader epoch, from [`Log::read`], or as regions
//! of the segment files from [`Log::read_regions`] for sending without a copy. Records
//! inside a batch are read, always within bounds, only where something needs them:
//! append validates a compressed batch's records, checks keys in a compacted topic and
//! re-compresses a batch for the topic's `compression.type` (`validate`); the cleaner
//! filters by key; [`first_record_at_or_after`] finds a timestamp in one batch. The
//! on-disk layout and durability order are documented on the [`log`] module; the
//! batch header table on [`batch`].
//!
//! All calls block on file I/O. The broker owns each `Log` behind a lock and calls it
//! from blocking threads.
//!
//! # Modules
//!
//! | module           | concept                                                         |
//! |------------------|-----------------------------------------------------------------|
//! | [`log`]          | `Log`: open, flush, truncate, close, delete; the on-disk layout |
//! | `append`         | the append path: header checks, offsets, idempotence, rolling   |
//! | `follower`       | the follower's append: the leader's batches stored byte for byte |
//! | `leader_epoch`   | leader-epoch cache and `leader-epoch-checkpoint` (KIP-101/279)  |
//! | `validate`       | record checks and re-compression of incoming batches            |
//! | `read`           | reads by offset (as file regions or bytes) and by timestamp     |
//! | `region`         | `FileRegion`/`FileSlice`: batches to send from the files        |
//! | [`batch`]        | the 61-byte v2 record-batch header                              |
//! | `config`         | `LogConfig`, `TimestampType`, `CleanupPolicy`, `CompressionType` |
//! | `segment`        | one segment: `.log` plus its indexes                            |
//! | `segment_list`   | the ordered segments, the last one active                      |
//! | `index`          | the sparse `.index` and `.timeindex` files                      |
//! | `recovery`       | opening a directory: trusting or scanning each segment          |
//! | `producer_state` | idempotent-producer sequences and their snapshot                |
//! | `checkpoint`     | crash-safe small files: recovery point, markers                 |
//! | `retention`      | retention by time/size, DeleteRecords: the log start offset     |
//! | `cleaner`        | compaction: latest record per key, crash-safe segment swap      |
//! | `records`        | bounded parsing of a batch's records region; lookup by timestamp |
//! | `compression`    | bounded gzip/snappy/lz4/zstd codecs                             |
//! | `flush`          | flush policy, `FlushHandle` for grouped fsync outside the lock  |
//! | `health`         | `LogDirHealth`: a failed write or fsync takes the directory offline |
//! | [`fs`]           | the file-system seam: writes and fsyncs that tests can make fail |
//! | [`error`]        | `LogError`                                                      |

#![warn(missing_docs)]

mod append;
pub mod batch;
mod checkpoint;
mod cleaner;
mod compression;
mod config;
pub mod error;
mod flush;
mod follower;
pub mod fs;
mod health;
mod index;
mod leader_epoch;
pub mod log;
mod producer_state;
mod read;
mod records;
mod recovery;
mod region;
mod retention;
mod segment;
mod segment_list;
#[cfg(test)]
mod testutil;
mod validate;

pub use batch::{BatchHeader, BATCH_HEADER_LEN};
pub use checkpoint::{read_bounded, sync_dir, write_atomic, Durability};
pub use cleaner::CompactionOutcome;
pub use compression::Codec;
pub use config::{CleanupPolicy, CompressionType};
pub use error::{CorruptReason, InvalidReason, LogError, RecordError, RecordErrorReason, Result};
pub use flush::{FlushHandle, MIN_PREALLOCATE};
pub use health::LogDirHealth;
pub use log::{AppendInfo, Log, LogConfig, ReadSlice, TimestampType};
pub use records::{
    first_record_at_or_after, records_of, StoredRecord, TimestampAndOffset,
    MAX_DECOMPRESSED_RECORDS_BYTES,
};
pub use region::{FileRegion, FileSlice};
pub use retention::RetentionOutcome;
