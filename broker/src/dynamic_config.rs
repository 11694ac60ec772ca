//! Broker configs that may change at runtime (IncrementalAlterConfigs and AlterConfigs on
//! BROKER resources): the replication throttle rates of KIP-73. Every other broker
//! setting is static (flags, `RUNNEL_*` variables, the config file) and refused here.
//!
//! A change is a `MetadataRecord::AlterBrokerConfigs` in the metadata log, so every
//! broker applies it; the resource name is a broker id, or `""` for the default of every
//! broker. The value in force for a broker is its own, else the default, else the static
//! default (unlimited: Kafka's `Long.MAX_VALUE`).
//!
//! This module is blocking where it writes (metadata fsync or quorum commit): call it
//! from `spawn_blocking`.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use crate::context::{BrokerContext, CommitError};
use crate::metadata::{BrokerConfigSource, MetadataImage, MetadataRecord};

/// `leader.replication.throttled.rate`: bytes/s a leader sends to throttled replicas.
pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
/// `follower.replication.throttled.rate`: bytes/s a follower fetches for throttled replicas.
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
/// Every dynamic broker config, by name.
pub const DYNAMIC_BROKER_CONFIGS: [&str; 2] = [FOLLOWER_RATE, LEADER_RATE];
/// The static default of both rates: no limit (Kafka's `Long.MAX_VALUE`).
pub const UNLIMITED: i64 = i64::MAX;

/// Why a broker config change was refused or not made.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    /// The resource name is neither a broker id nor `""`.
    #[error(
        "invalid broker resource name {0:?}: a broker id, or \"\" for the default of every broker"
    )]
    InvalidResource(String),
    /// The config is not one of the dynamic ones.
    #[error("broker config {0} is read-only at runtime; set it with flags, RUNNEL_* variables or the config file (dynamic: leader.replication.throttled.rate, follower.replication.throttled.rate)")]
    ReadOnly(String),
    /// The value is not acceptable.
    #[error("invalid value {value:?} for broker config {name}: must be an integer from 0 to 9223372036854775807 (bytes/s)")]
    InvalidValue {
        /// Config name.
        name: String,
        /// The value given.
        value: String,
    },
    /// The change was not made durable.
    #[error(transparent)]
    Metadata(#[from] CommitError),
}

impl BrokerConfigError {
    /// The Kafka error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            BrokerConfigError::InvalidResource(_) => ResponseError::InvalidRequest.code(),
            BrokerConfigError::ReadOnly(_) | BrokerConfigError::InvalidValue { .. } => {
                ResponseError::InvalidConfig.code()
            }
            BrokerConfigError::Metadata(CommitError::Quorum(_)) => {
                ResponseError::RequestTimedOut.code()
            }
            BrokerConfigError::Metadata(CommitError::Log(_)) => {
                ResponseError::KafkaStorageError.code()
            }
        }
    }
}

/// The scope a BROKER resource name stands for: `Some(id)`, or `None` for `""`.
pub fn scope_of(resource_name: &str) -> Result<Option<i32>, BrokerConfigError> {
    if resource_name.is_empty() {
        return Ok(None);
    }
    resource_name
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .map(Some)
        .ok_or_else(|| BrokerConfigError::InvalidResource(resource_name.to_string()))
}

/// Checks one change: a dynamic config, and a value that is a non-negative long.
pub fn validate(name: &str, value: Option<&str>) -> Result<(), BrokerConfigError> {
    if !DYNAMIC_BROKER_CONFIGS.contains(&name) {
        return Err(BrokerConfigError::ReadOnly(name.to_string()));
    }
    match value {
        None => Ok(()),
        Some(v) if v.parse::<i64>().is_ok_and(|n| n >= 0) => Ok(()),
        Some(v) => Err(BrokerConfigError::InvalidValue {
            name: name.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Changes the dynamic configs of broker `resource_name` (or the default, `""`): `Some`
/// sets, `None` removes. With `replace` (AlterConfigs), every dynamic config of that
/// scope not named is removed too. Blocking.
pub fn alter(
    ctx: &BrokerContext,
    resource_name: &str,
    mut changes: BTreeMap<String, Option<String>>,
    replace: bool,
    validate_only: bool,
) -> Result<(), BrokerConfigError> {
    let node_id = scope_of(resource_name)?;
    for (name, value) in &changes {
        validate(name, value.as_deref())?;
    }
    let mut state = ctx.lock_metadata();
    if replace {
        let image = ctx.image();
        if let Some(set) = image.broker_configs.scope(node_id) {
            for name in set.keys() {
                changes.entry(name.clone()).or_insert(None);
            }
        }
    }
    if validate_only || changes.is_empty() {
        return Ok(());
    }
    ctx.commit(
        &mut state,
        &[MetadataRecord::AlterBrokerConfigs { node_id, changes }],
    )?;
    Ok(())
}

/// The value of dynamic config `name` in force for broker `Some(node_id)` (its own, else
/// the default), or in the default scope (`None`), with its source (`None`: the static
/// default).
pub fn effective(
    image: &MetadataImage,
    scope: Option<i32>,
    name: &str,
) -> (i64, Option<BrokerConfigSource>) {
    let set = match scope {
        Some(node_id) => image.broker_configs.effective(node_id, name),
        None => image
            .broker_configs
            .default
            .get(name)
            .map(|v| (v.as_str(), BrokerConfigSource::ClusterDefault)),
    };
    match set {
        Some((value, source)) => (value.parse().unwrap_or(UNLIMITED), Some(source)),
        None => (UNLIMITED, None),
    }
}

/// The throttle rate `name` in force for broker `node_id` in bytes/s; `None` when
/// unlimited.
pub fn throttle_rate(image: &MetadataImage, node_id: i32, name: &str) -> Option<u64> {
    let (rate, _) = effective(image, Some(node_id), name);
    (rate != UNLIMITED).then(|| u64::try_from(rate).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_throttle_rates_are_dynamic_and_take_non_negative_longs() {
        assert!(validate(LEADER_RATE, Some("0")).is_ok());
        assert!(validate(FOLLOWER_RATE, Some("9223372036854775807")).is_ok());
        assert!(validate(LEADER_RATE, None).is_ok());
        for bad in ["-1", "1.5", "", "10MB", "9223372036854775808"] {
            let e = validate(LEADER_RATE, Some(bad));
            assert!(
                matches!(e, Err(BrokerConfigError::InvalidValue { .. })),
                "{bad:?}"
            );
        }
        let e = validate("log.retention.ms", Some("1"));
        assert!(matches!(&e, Err(BrokerConfigError::ReadOnly(n)) if n == "log.retention.ms"));
        assert!(
            e.is_err_and(|e| e.to_string().contains("read-only at runtime")
                && e.code() == ResponseError::InvalidConfig.code())
        );
    }

    #[test]
    fn resource_names_are_broker_ids_or_empty() {
        assert_eq!(scope_of("").ok(), Some(None));
        assert_eq!(scope_of("2").ok(), Some(Some(2)));
        for bad in ["-1", "x", " 1", "99999999999"] {
            assert!(
                matches!(scope_of(bad), Err(BrokerConfigError::InvalidResource(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_rate_in_force_is_the_brokers_then_the_defaults_then_unlimited() {
        let mut image = MetadataImage::default();
        assert_eq!(throttle_rate(&image, 0, LEADER_RATE), None);
        image.apply(&MetadataRecord::AlterBrokerConfigs {
            node_id: None,
            changes: [(LEADER_RATE.to_string(), Some("1000".to_string()))].into(),
        });
        assert_eq!(throttle_rate(&image, 0, LEADER_RATE), Some(1000));
        assert_eq!(throttle_rate(&image, 0, FOLLOWER_RATE), None);
        image.apply(&MetadataRecord::AlterBrokerConfigs {
            node_id: Some(0),
            changes: [(LEADER_RATE.to_string(), Some("5".to_string()))].into(),
        });
        assert_eq!(throttle_rate(&image, 0, LEADER_RATE), Some(5));
        assert_eq!(throttle_rate(&image, 1, LEADER_RATE), Some(1000));
        assert_eq!(
            effective(&image, Some(1), LEADER_RATE),
            (1000, Some(BrokerConfigSource::ClusterDefault))
        );
        assert_eq!(
            effective(&image, None, LEADER_RATE),
            (1000, Some(BrokerConfigSource::ClusterDefault))
        );
        assert_eq!(effective(&image, None, FOLLOWER_RATE), (UNLIMITED, None));
    }
}
