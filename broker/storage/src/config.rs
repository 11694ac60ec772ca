//! Per-partition log settings, named after Kafka's topic configs.

/// Where a batch's stored timestamp comes from (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp each batch with the broker's clock at append.
    LogAppendTime,
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
