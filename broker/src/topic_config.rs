//! Topic-level configs, by Kafka's names: which exist, their defaults, how they are
//! validated, and how they become the storage engine's [`LogConfig`].

use std::collections::BTreeMap;

use runnel_storage::{CleanupPolicy, CompressionType, LogConfig, TimestampType};

use crate::config::BrokerConfig;

/// What kind of value a config takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// An integer in `min..=max`.
    Long { min: i64, max: i64 },
    /// One of the listed words.
    OneOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// Kafka's throttled-replica list: `*` or `partition:broker,...` (see
    /// `replication::throttle`).
    ReplicaList,
}

/// One known topic config.
#[derive(Debug)]
pub struct ConfigDef {
    /// Kafka's name, e.g. `retention.ms`.
    pub name: &'static str,
    kind: Kind,
    /// Documentation shown by DescribeConfigs (v3+).
    pub doc: &'static str,
}

/// Kafka's `compression.type` values (`CompressionType::name` of each).
const COMPRESSION_TYPES: [&str; 6] = ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const LONG: i64 = i64::MAX;
const INT: i64 = i32::MAX as i64;

/// Every topic config the broker accepts.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: Kind::OneOf(&["delete", "compact", "compact,delete", "delete,compact"]),
        doc: "delete old segments, compact by key, or both",
    },
    ConfigDef {
        name: "compression.type",
        kind: Kind::OneOf(&COMPRESSION_TYPES),
        doc: "codec batches are stored with: producer keeps the producer's bytes, any other value re-compresses batches with another codec on append",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: Kind::Long { min: 0, max: LONG },
        doc: "how long tombstones are kept in compacted topics",
    },
    ConfigDef {
        name: "flush.messages",
        kind: Kind::Long { min: 1, max: LONG },
        doc: "records between forced fsyncs",
    },
    ConfigDef {
        name: "flush.ms",
        kind: Kind::Long { min: 0, max: LONG },
        doc: "milliseconds between forced fsyncs",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: Kind::Long { min: 0, max: INT },
        doc: "bytes between offset index entries",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        kind: Kind::ReplicaList,
        doc: "replicas (partition:broker, or *) whose data the leader sends at most at leader.replication.throttled.rate while they are out of sync; partitions being reassigned are throttled too",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        kind: Kind::ReplicaList,
        doc: "replicas (partition:broker, or *) that fetch at most at follower.replication.throttled.rate while out of sync; replicas a reassignment adds are throttled too",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: Kind::Long { min: 0, max: INT },
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "whether record timestamps are the producer's or the broker's",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::OneOf(&["0.5"]),
        doc: "dirty ratio that triggers compaction",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: Kind::Long { min: 0, max: LONG },
        doc: "minimum age before a record may be compacted",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: Kind::Long { min: 1, max: INT },
        doc: "replicas that must acknowledge an acks=all write",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: Kind::Long { min: -1, max: LONG },
        doc: "partition size beyond which old segments are deleted (-1: no limit)",
    },
    ConfigDef {
        name: "retention.ms",
        kind: Kind::Long { min: -1, max: LONG },
        doc: "age beyond which old segments are deleted (-1: no limit)",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: Kind::Long { min: 14, max: INT },
        doc: "size at which a segment is rolled",
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: Kind::Long { min: 4, max: INT },
        doc: "maximum size of a segment's index",
    },
    ConfigDef {
        name: "segment.ms",
        kind: Kind::Long { min: 1, max: LONG },
        doc: "age at which a segment is rolled",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        doc: "whether an out-of-sync replica may become leader",
    },
];

impl ConfigDef {
    /// The `config_type` DescribeConfigs v3+ reports (Kafka's `ConfigType` ids).
    pub fn config_type(&self) -> i8 {
        match self.kind {
            Kind::Long { .. } => 5,
            Kind::Bool => 1,
            Kind::OneOf(_) if self.name == "cleanup.policy" => 7,
            Kind::ReplicaList => 7,
            Kind::OneOf(_) => 2,
        }
    }
}

/// The definition of a known topic config.
pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The default value of each topic config, derived from the broker settings.
pub fn defaults(broker: &BrokerConfig) -> BTreeMap<&'static str, String> {
    let mut d = BTreeMap::new();
    d.insert("cleanup.policy", broker.log_cleanup_policy.clone());
    d.insert("compression.type", "producer".to_string());
    d.insert("delete.retention.ms", "86400000".to_string());
    d.insert(
        "flush.messages",
        broker.log_flush_interval_messages.to_string(),
    );
    d.insert("flush.ms", broker.log_flush_interval_ms.to_string());
    d.insert("follower.replication.throttled.replicas", String::new());
    d.insert("leader.replication.throttled.replicas", String::new());
    d.insert("index.interval.bytes", "4096".to_string());
    d.insert("max.message.bytes", broker.message_max_bytes.to_string());
    d.insert("message.timestamp.type", "CreateTime".to_string());
    d.insert("min.cleanable.dirty.ratio", "0.5".to_string());
    d.insert("min.compaction.lag.ms", "0".to_string());
    d.insert(
        "min.insync.replicas",
        broker.min_insync_replicas.to_string(),
    );
    d.insert("retention.bytes", broker.log_retention_bytes.to_string());
    d.insert("retention.ms", broker.log_retention_ms.to_string());
    d.insert("segment.bytes", broker.log_segment_bytes.to_string());
    d.insert("segment.index.bytes", "10485760".to_string());
    d.insert("segment.ms", broker.log_roll_ms.to_string());
    d.insert("unclean.leader.election.enable", "false".to_string());
    d
}

/// A config that cannot be accepted, with a sentence saying why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

fn definition(name: &str) -> Result<&'static ConfigDef, InvalidConfig> {
    lookup(name).ok_or_else(|| InvalidConfig(format!("unknown topic config {name:?}")))
}

/// Checks that `name` is a known topic config.
pub fn check_known(name: &str) -> Result<(), InvalidConfig> {
    definition(name).map(|_| ())
}

/// Checks one config name and value.
pub fn validate(name: &str, value: &str) -> Result<(), InvalidConfig> {
    let def = definition(name)?;
    if name == "unclean.leader.election.enable" && value == "true" {
        return Err(InvalidConfig(
            "unclean.leader.election.enable=true is not supported: a replica outside the ISR \
             never becomes leader here, so acknowledged records are never lost to an election"
                .to_string(),
        ));
    }
    if def.kind == Kind::ReplicaList {
        return crate::replication::throttle::ThrottledReplicas::parse(name, value).map(drop);
    }
    let ok = match def.kind {
        Kind::ReplicaList => true,
        Kind::Long { min, max } => value.parse::<i64>().is_ok_and(|v| (min..=max).contains(&v)),
        Kind::OneOf(words) => words.contains(&value),
        Kind::Bool => value == "true" || value == "false",
    };
    if ok {
        return Ok(());
    }
    let rule = match def.kind {
        Kind::Long { min, max } => format!("an integer from {min} to {max}"),
        Kind::OneOf(words) => format!("one of {}", words.join(" | ")),
        Kind::Bool => "true or false".to_string(),
        Kind::ReplicaList => "* or partition:broker,...".to_string(),
    };
    Err(InvalidConfig(format!(
        "invalid value {value:?} for topic config {name}: must be {rule}"
    )))
}

/// Checks a whole set of configs.
pub fn validate_all<'a>(
    configs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), InvalidConfig> {
    configs.into_iter().try_for_each(|(k, v)| validate(k, v))
}

/// The engine's cleanup policy for a validated `cleanup.policy` value.
fn cleanup_policy(value: &str) -> CleanupPolicy {
    let compact = value.split(',').any(|p| p.trim() == "compact");
    let delete = value.split(',').any(|p| p.trim() == "delete");
    match (compact, delete) {
        (true, true) => CleanupPolicy::CompactDelete,
        (true, false) => CleanupPolicy::Compact,
        _ => CleanupPolicy::Delete,
    }
}

/// The storage settings for a topic with the given overrides.
pub fn log_config(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let get = |name: &str, default: u64| -> u64 {
        overrides
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let signed = |name: &str, default: i64| -> i64 {
        overrides
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    // flush.* of i64::MAX (Kafka's "never") maps to the engine's u64::MAX.
    let flush = |name: &str, default: i64| -> u64 {
        match signed(name, default) {
            i64::MAX => u64::MAX,
            v => u64::try_from(v).unwrap_or(u64::MAX),
        }
    };
    let policy = overrides
        .get("cleanup.policy")
        .unwrap_or(&broker.log_cleanup_policy);
    let base = LogConfig::default();
    // Settings of the log engine not mapped here keep their (Kafka) defaults; the update
    // syntax keeps this building as the engine gains settings.
    #[allow(clippy::needless_update)]
    LogConfig {
        retention_ms: signed("retention.ms", broker.log_retention_ms),
        retention_bytes: signed("retention.bytes", broker.log_retention_bytes),
        cleanup_policy: cleanup_policy(policy),
        compression_type: overrides
            .get("compression.type")
            .and_then(|v| CompressionType::from_name(v))
            .unwrap_or_default(),
        delete_retention_ms: signed("delete.retention.ms", base.delete_retention_ms),
        min_compaction_lag_ms: signed("min.compaction.lag.ms", base.min_compaction_lag_ms),
        flush_messages: flush("flush.messages", broker.log_flush_interval_messages),
        flush_ms: flush("flush.ms", broker.log_flush_interval_ms),
        segment_bytes: get("segment.bytes", broker.log_segment_bytes),
        segment_ms: get("segment.ms", broker.log_roll_ms),
        index_interval_bytes: get("index.interval.bytes", base.index_interval_bytes),
        segment_index_bytes: get("segment.index.bytes", base.segment_index_bytes),
        max_message_bytes: get("max.message.bytes", broker.message_max_bytes),
        timestamp_type: match overrides.get("message.timestamp.type").map(String::as_str) {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        },
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn unclean_leader_election_can_only_stay_off() {
        assert!(validate("unclean.leader.election.enable", "false").is_ok());
        let refused = validate("unclean.leader.election.enable", "true");
        assert!(refused.is_err_and(|e| e.0.contains("not supported")));
    }

    #[test]
    fn validation_names_key_value_and_rule() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("cleanup.policy", "compact").is_ok());
        let err = validate("retention.ms", "soon").err().map(|e| e.0);
        assert_eq!(
            err.as_deref(),
            Some("invalid value \"soon\" for topic config retention.ms: must be an integer from -1 to 9223372036854775807")
        );
        assert!(validate("segment.bytes", "13").is_err());
        assert!(validate("no.such.config", "1").is_err());
    }

    #[test]
    fn compression_type_takes_kafkas_values_and_reaches_the_log_config() {
        let names: Vec<&str> = CompressionType::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, COMPRESSION_TYPES);
        let broker = BrokerConfig::for_tests(PathBuf::from("/nonexistent"));
        for c in CompressionType::ALL {
            assert!(validate("compression.type", c.name()).is_ok());
            let overrides = [("compression.type".to_string(), c.name().to_string())].into();
            assert_eq!(log_config(&broker, &overrides).compression_type, c);
        }
        for bad in ["none", "GZIP", "lz4 ", "", "brotli"] {
            assert!(validate("compression.type", bad).is_err(), "{bad:?}");
        }
        let err = validate("compression.type", "none").err().map(|e| e.0);
        assert_eq!(
            err.as_deref(),
            Some("invalid value \"none\" for topic config compression.type: must be one of uncompressed | zstd | lz4 | snappy | gzip | producer")
        );
        assert_eq!(
            log_config(&broker, &BTreeMap::new()).compression_type,
            CompressionType::Producer
        );
    }

    #[test]
    fn throttled_replica_lists_are_topic_configs() {
        assert!(validate("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(validate("follower.replication.throttled.replicas", "*").is_ok());
        assert!(validate("follower.replication.throttled.replicas", "").is_ok());
        let e = validate("leader.replication.throttled.replicas", "0-1");
        assert!(e.is_err_and(|e| e.0.contains("partition:broker")));
        assert_eq!(
            lookup("leader.replication.throttled.replicas").map(ConfigDef::config_type),
            Some(7)
        );
    }

    #[test]
    fn every_config_has_a_valid_default() {
        let broker = BrokerConfig::for_tests(PathBuf::from("/nonexistent"));
        let d = defaults(&broker);
        for def in TOPIC_CONFIGS {
            let value = d.get(def.name);
            assert!(value.is_some(), "{} has no default", def.name);
            assert!(
                validate(def.name, value.map_or("", String::as_str)).is_ok(),
                "{}",
                def.name
            );
        }
    }

    #[test]
    fn overrides_reach_the_log_config() {
        let broker = BrokerConfig::for_tests(PathBuf::from("/nonexistent"));
        let overrides = [
            ("segment.bytes".to_string(), "1000".to_string()),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
        ]
        .into();
        let c = log_config(&broker, &overrides);
        assert_eq!(c.segment_bytes, 1000);
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.max_message_bytes, broker.message_max_bytes);
        assert_eq!(c.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(
            c.flush_messages,
            u64::MAX,
            "Kafka's never is the engine's never"
        );
        let compacted = [
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("flush.messages".to_string(), "10".to_string()),
        ]
        .into();
        let c = log_config(&broker, &compacted);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!((c.retention_ms, c.flush_messages), (-1, 10));
    }
}
