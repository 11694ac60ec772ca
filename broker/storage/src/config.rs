//! Per-partition log settings, named after Kafka's topic configs.

use crate::compression::Codec;

/// Where a batch's stored timestamp comes from (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp each batch with the broker's clock at append.
    LogAppendTime,
}

/// What happens to old data (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete`: whole segments are deleted by `retention.ms` / `retention.bytes`.
    #[default]
    Delete,
    /// `compact`: the cleaner keeps the latest record per key; nothing is deleted by age.
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether retention by time and size applies ([`crate::Log::apply_retention`]).
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// Whether the cleaner compacts the log ([`crate::Log::compact`]).
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// The codec stored batches get (`compression.type`). Anything but `Producer` makes
/// append re-compress a batch whose codec differs, as Kafka does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    /// `producer`: batches are stored with the codec they came with, byte for byte.
    #[default]
    Producer,
    /// `uncompressed`: compressed batches are stored decompressed.
    Uncompressed,
    /// `gzip`.
    Gzip,
    /// `snappy`.
    Snappy,
    /// `lz4`.
    Lz4,
    /// `zstd`.
    Zstd,
}

impl CompressionType {
    /// Every value, in the order Kafka documents them.
    pub const ALL: [CompressionType; 6] = [
        CompressionType::Uncompressed,
        CompressionType::Zstd,
        CompressionType::Lz4,
        CompressionType::Snappy,
        CompressionType::Gzip,
        CompressionType::Producer,
    ];

    /// Kafka's name for the value (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    /// The value Kafka calls `name`, if any.
    pub fn from_name(name: &str) -> Option<CompressionType> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The codec a batch compressed with `source` is stored with: `source` itself
    /// under `Producer`, `None` meaning uncompressed.
    pub(crate) fn target(self, source: Option<Codec>) -> Option<Codec> {
        match self {
            CompressionType::Producer => source,
            CompressionType::Uncompressed => None,
            CompressionType::Gzip => Some(Codec::Gzip),
            CompressionType::Snappy => Some(Codec::Snappy),
            CompressionType::Lz4 => Some(Codec::Lz4),
            CompressionType::Zstd => Some(Codec::Zstd),
        }
    }
}

/// Settings of one partition log. Changing them at runtime ([`crate::Log::set_config`])
/// affects later appends; existing segments are not rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow beyond this. Capped
    /// at `i32::MAX` because index entries store 32-bit file positions.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this,
    /// measured as Kafka does (see [`crate::Log::append`]).
    pub segment_ms: u64,
    /// `index.interval.bytes`: bytes of batches between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: largest `.index`/`.timeindex`; roll when either is full.
    pub segment_index_bytes: u64,
    /// `max.message.bytes`: the largest batch accepted, in bytes.
    pub max_message_bytes: u64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `retention.ms`: a non-active segment whose largest timestamp is older than this
    /// is deleted; -1 (any negative value) keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`: oldest segments are deleted while the log would stay at or
    /// above this size without them; -1 (any negative value) means no limit.
    pub retention_bytes: i64,
    /// `cleanup.policy`. Under `compact`, append refuses records without a key.
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type`: the codec batches are stored with.
    pub compression_type: CompressionType,
    /// `delete.retention.ms`: how long a tombstone (a record with a null value) stays
    /// in a compacted log after its segment's largest timestamp.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments with records newer than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `flush.messages`: [`crate::Log::needs_flush`] says yes once this many messages
    /// are unflushed; `u64::MAX` means never by count.
    pub flush_messages: u64,
    /// `flush.ms`: [`crate::Log::needs_flush`] says yes once unflushed data is this old
    /// (measured from the last flush); `u64::MAX` means never by time.
    pub flush_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            compression_type: CompressionType::Producer,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            flush_messages: u64::MAX,
            flush_ms: u64::MAX,
        }
    }
}

impl LogConfig {
    /// `segment_bytes`, capped so every position in a segment fits an index entry.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.segment_ms, 604_800_000);
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.segment_index_bytes, 10 << 20);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.timestamp_type, TimestampType::CreateTime);
        assert_eq!((c.retention_ms, c.retention_bytes), (604_800_000, -1));
        assert_eq!(c.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(c.compression_type, CompressionType::Producer);
        assert_eq!(
            (c.delete_retention_ms, c.min_compaction_lag_ms),
            (86_400_000, 0)
        );
        assert_eq!((c.flush_messages, c.flush_ms), (u64::MAX, u64::MAX));
        assert!(CleanupPolicy::CompactDelete.deletes() && CleanupPolicy::CompactDelete.compacts());
        assert!(!CleanupPolicy::Compact.deletes() && !CleanupPolicy::Delete.compacts());
    }

    #[test]
    fn compression_types_are_kafkas_words() {
        let names: Vec<&str> = CompressionType::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]
        );
        for c in CompressionType::ALL {
            assert_eq!(CompressionType::from_name(c.name()), Some(c));
        }
        assert_eq!(CompressionType::from_name("none"), None);
        assert_eq!(CompressionType::from_name("GZIP"), None);
        assert_eq!(
            CompressionType::Producer.target(Some(Codec::Lz4)),
            Some(Codec::Lz4)
        );
        assert_eq!(CompressionType::Producer.target(None), None);
        assert_eq!(CompressionType::Uncompressed.target(Some(Codec::Lz4)), None);
        assert_eq!(CompressionType::Zstd.target(None), Some(Codec::Zstd));
    }

    #[test]
    fn segment_bytes_is_capped_for_32_bit_positions() {
        let c = LogConfig {
            segment_bytes: u64::MAX,
            ..LogConfig::default()
        };
        assert_eq!(c.effective_segment_bytes(), i32::MAX as u64);
    }
}
