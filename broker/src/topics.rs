//! Topic administration shared by the admin APIs and Metadata's auto-creation: create,
//! delete, grow partitions, change configs, hand out producer ids. Each function validates,
//! appends the metadata records durably, then applies them to the hosted partitions.
//!
//! All functions are blocking (metadata fsync, log creation): call them from
//! `spawn_blocking`. They serialize on the metadata lock.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use runnel_storage::LogError;
use uuid::Uuid;

use crate::cluster::placement;
use crate::context::BrokerContext;
use crate::context::CommitError;
use crate::metadata::{MetadataRecord, TopicImage, PRODUCER_ID_BLOCK};
use crate::topic_config;

/// Largest topic name Kafka allows.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Largest partition count one request may ask for, to bound the work it causes.
pub const MAX_PARTITIONS: i32 = 10_000;
/// Why a topic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The producer-id block this broker reserved is not in the metadata it got back.
    #[error("the reserved producer-id block is missing from the metadata")]
    ProducerIdBlockLost,
    /// The name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// The rule broken.
        reason: &'static str,
    },
    /// A topic with this name exists.
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    /// No topic with this name.
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    /// A new topic's partition count is outside what a topic may have.
    #[error("number of partitions must be from 1 to {MAX_PARTITIONS}, got {count}")]
    PartitionCountOutOfRange {
        /// The count asked for.
        count: i32,
    },
    /// Partitions can only be added: the new count is not larger than the current one.
    #[error("topic {topic} has {current} partitions; the new count {count} must be larger")]
    PartitionCountNotLarger {
        /// The topic.
        topic: String,
        /// Its partitions now.
        current: i32,
        /// The count asked for.
        count: i32,
    },
    /// A client's replica assignment is not usable.
    #[error("invalid replica assignment: {0}")]
    InvalidAssignment(String),
    /// The replication factor is below 1 or larger than the brokers available.
    #[error("replication factor {factor} is not from 1 to the {brokers} available broker(s)")]
    ReplicationFactorTooLarge {
        /// The factor asked for.
        factor: i16,
        /// Brokers in the cluster.
        brokers: usize,
    },
    /// A config name or value is not acceptable.
    #[error(transparent)]
    InvalidConfig(#[from] topic_config::InvalidConfig),
    /// The metadata change was not made durable (the log failed, or the quorum did not
    /// commit it in time).
    #[error(transparent)]
    Metadata(#[from] CommitError),
    /// A partition log failed.
    #[error(transparent)]
    Storage(#[from] LogError),
}

impl TopicError {
    /// The Kafka error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            TopicError::InvalidName { .. } => ResponseError::InvalidTopicException.code(),
            TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition.code(),
            TopicError::PartitionCountOutOfRange { .. }
            | TopicError::PartitionCountNotLarger { .. } => ResponseError::InvalidPartitions.code(),
            TopicError::InvalidAssignment(_) => ResponseError::InvalidReplicaAssignment.code(),
            TopicError::ReplicationFactorTooLarge { .. } => {
                ResponseError::InvalidReplicationFactor.code()
            }
            TopicError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
            TopicError::ProducerIdBlockLost => ResponseError::UnknownServerError.code(),
            TopicError::Metadata(CommitError::Quorum(_)) => ResponseError::RequestTimedOut.code(),
            TopicError::Metadata(CommitError::Log(_)) | TopicError::Storage(_) => {
                ResponseError::KafkaStorageError.code()
            }
        }
    }
}

/// Checks a topic name against Kafka's rules.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "'.' and '..' are not allowed"
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        "it is longer than 249 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(TopicError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Creates a topic. `partitions` and `replication_factor` of -1 mean the broker defaults.
pub fn create_topic(
    ctx: &BrokerContext,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicImage, TopicError> {
    create_topic_as(
        ctx,
        name,
        Layout::Spread {
            partitions,
            replication_factor,
        },
        configs,
        validate_only,
    )
}

/// How a new topic's replicas are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `partitions` partitions of `replication_factor` replicas each, placed over the live
    /// brokers (-1 for the broker defaults).
    Spread {
        /// Partition count, or -1.
        partitions: i32,
        /// Replication factor, or -1.
        replication_factor: i16,
    },
    /// The replicas of each partition as the client gave them, preferred leader first.
    Explicit(Vec<Vec<i32>>),
}

/// The brokers a replica list may name: the registered ones; on a single broker, itself.
pub fn known_brokers(ctx: &BrokerContext) -> Vec<i32> {
    if ctx.quorum().is_none() {
        vec![ctx.node_id()]
    } else {
        ctx.image().brokers.keys().copied().collect()
    }
}

/// Why one partition's replica list cannot be used, if it cannot: it is empty, names a
/// broker twice, or names one not in `known`.
pub fn replica_list_problem(replicas: &[i32], known: &[i32]) -> Option<String> {
    if replicas.is_empty() {
        return Some("the replica list is empty".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for &broker in replicas {
        if !seen.insert(broker) {
            return Some(format!("broker {broker} is named twice"));
        }
        if !known.contains(&broker) {
            return Some(format!("broker {broker} is not registered"));
        }
    }
    None
}

/// Checks a client's replica assignment: every partition names the same number of
/// distinct, registered brokers (on a single broker, itself).
pub fn check_assignment(ctx: &BrokerContext, replicas: &[Vec<i32>]) -> Result<(), TopicError> {
    let known = known_brokers(ctx);
    let factor = replicas.first().map_or(0, Vec::len);
    for (p, r) in replicas.iter().enumerate() {
        let problem = if r.len() == factor {
            replica_list_problem(r, &known)
        } else {
            Some(format!(
                "{} replicas; every partition needs the same number",
                r.len()
            ))
        };
        if let Some(problem) = problem {
            return Err(TopicError::InvalidAssignment(format!(
                "partition {p}: {problem}"
            )));
        }
    }
    Ok(())
}

/// Creates a topic laid out as `layout`.
pub fn create_topic_as(
    ctx: &BrokerContext,
    name: &str,
    layout: Layout,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicImage, TopicError> {
    validate_name(name)?;
    let (partitions, replication_factor, explicit) = match layout {
        Layout::Spread {
            partitions,
            replication_factor,
        } => (partitions, replication_factor, None),
        Layout::Explicit(replicas) => {
            check_assignment(ctx, &replicas)?;
            let count = i32::try_from(replicas.len()).unwrap_or(i32::MAX);
            (count, 1, Some(replicas))
        }
    };
    let partitions = if partitions == -1 {
        ctx.config.num_partitions
    } else {
        partitions
    };
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(TopicError::PartitionCountOutOfRange { count: partitions });
    }
    let factor = if replication_factor == -1 {
        ctx.config.default_replication_factor
    } else {
        replication_factor
    };
    topic_config::validate_all(&configs)?;
    let mut state = ctx.lock_metadata();
    if ctx.image().topic(name).is_some() {
        return Err(TopicError::AlreadyExists(name.to_string()));
    }
    let replicas = match explicit {
        Some(replicas) => replicas,
        None => place(ctx, 0, partitions, factor)?,
    };
    let topic = TopicImage::new(name, Uuid::new_v4(), partitions, configs, replicas);
    if validate_only {
        return Ok(topic);
    }
    ctx.commit(
        &mut state,
        &[MetadataRecord::CreateTopic {
            name: topic.name.clone(),
            id: topic.id,
            partitions,
            configs: topic.configs.clone(),
            replicas: topic.replicas.clone(),
        }],
    )?;
    let log_config = topic_config::log_config(&ctx.config, &topic.configs);
    open_hosted(ctx, &topic, 0..partitions, &log_config)?;
    tracing::info!(topic = name, partitions, "created topic");
    Ok(topic)
}

/// Deletes a topic and its data.
pub fn delete_topic(ctx: &BrokerContext, name: &str) -> Result<TopicImage, TopicError> {
    let mut state = ctx.lock_metadata();
    let topic = ctx
        .image()
        .topic(name)
        .cloned()
        .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
    ctx.commit(
        &mut state,
        &[MetadataRecord::DeleteTopic {
            name: name.to_string(),
        }],
    )?;
    ctx.partitions.delete_topic(name)?;
    tracing::info!(topic = name, "deleted topic");
    Ok(topic)
}

/// Grows a topic to `count` partitions.
/// `assignments`, when given, are the new partitions' replicas (one list per new
/// partition), else they are placed over the live brokers.
pub fn create_partitions(
    ctx: &BrokerContext,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), TopicError> {
    let mut state = ctx.lock_metadata();
    let topic = ctx
        .image()
        .topic(name)
        .cloned()
        .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
    if count <= topic.partitions {
        return Err(TopicError::PartitionCountNotLarger {
            topic: name.to_string(),
            current: topic.partitions,
            count,
        });
    }
    if count > MAX_PARTITIONS {
        return Err(TopicError::PartitionCountOutOfRange { count });
    }
    // New partitions get as many replicas as the topic's first partition has.
    let factor = topic.replicas(0, ctx.node_id()).len();
    let replicas = match assignments {
        Some(given) => {
            check_assignment(ctx, &given)?;
            let added = usize::try_from(count - topic.partitions).unwrap_or(0);
            if given.len() != added || given.first().map(Vec::len) != Some(factor) {
                return Err(TopicError::InvalidAssignment(format!(
                    "{added} new partitions need {added} assignments of {factor} replicas each"
                )));
            }
            given
        }
        None => place(
            ctx,
            topic.partitions,
            count - topic.partitions,
            i16::try_from(factor).unwrap_or(i16::MAX),
        )?,
    };
    if validate_only {
        return Ok(());
    }
    let image = ctx.commit(
        &mut state,
        &[MetadataRecord::CreatePartitions {
            name: name.to_string(),
            partitions: count,
            replicas,
        }],
    )?;
    if let Some(grown) = image.topic(name) {
        let log_config = topic_config::log_config(&ctx.config, &grown.configs);
        open_hosted(ctx, grown, topic.partitions..count, &log_config)?;
    }
    Ok(())
}

/// Changes topic configs: `Some` sets, `None` resets to the default. With `replace`, every
/// config not named is reset too (AlterConfigs semantics).
pub fn alter_topic_configs(
    ctx: &BrokerContext,
    name: &str,
    mut changes: BTreeMap<String, Option<String>>,
    replace: bool,
    validate_only: bool,
) -> Result<(), TopicError> {
    for (key, value) in &changes {
        match value {
            Some(v) => topic_config::validate(key, v)?,
            None => topic_config::check_known(key)?,
        }
    }
    let mut state = ctx.lock_metadata();
    let topic = ctx
        .image()
        .topic(name)
        .cloned()
        .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
    if replace {
        for key in topic.configs.keys() {
            changes.entry(key.clone()).or_insert(None);
        }
    }
    if validate_only || changes.is_empty() {
        return Ok(());
    }
    let image = ctx.commit(
        &mut state,
        &[MetadataRecord::AlterTopicConfigs {
            name: name.to_string(),
            changes,
        }],
    )?;
    if let Some(topic) = image.topic(name) {
        let log_config = topic_config::log_config(&ctx.config, &topic.configs);
        ctx.partitions.set_config(name, &log_config);
    }
    Ok(())
}

/// Replicas for partitions `first..first + count` with `factor` replicas each, over the
/// registered brokers, starting the round at a random broker as Kafka does.
fn place(
    ctx: &BrokerContext,
    first: i32,
    count: i32,
    factor: i16,
) -> Result<Vec<Vec<i32>>, TopicError> {
    let brokers = ctx.placement_brokers();
    let start = usize::from(Uuid::new_v4().as_bytes()[0]);
    placement::assign(&brokers, first, count, i32::from(factor), start).map_err(|_| {
        TopicError::ReplicationFactorTooLarge {
            factor,
            brokers: brokers.len(),
        }
    })
}

/// Opens the partitions in `range` of `topic` that have a replica on this broker.
pub(crate) fn open_hosted(
    ctx: &BrokerContext,
    topic: &TopicImage,
    range: std::ops::Range<i32>,
    log_config: &runnel_storage::LogConfig,
) -> Result<(), LogError> {
    for partition in topic
        .partitions_on(ctx.node_id())
        .filter(|p| range.contains(p))
    {
        ctx.partitions
            .open(&topic.name, topic.id, partition..partition + 1, log_config)?;
    }
    Ok(())
}

/// Hands out a new producer id, never reused across restarts nor by two brokers: each
/// broker reserves blocks of ids through the metadata log, and the log's order decides
/// where each block starts. Ids of a block not used up before a restart are skipped.
pub fn allocate_producer_id(ctx: &BrokerContext) -> Result<i64, TopicError> {
    let mut state = ctx.lock_metadata();
    if state.next_producer_id >= state.producer_id_block_end {
        let me = ctx.node_id();
        let image = ctx.commit(
            &mut state,
            &[MetadataRecord::ProducerIdBlock { node_id: me }],
        )?;
        let start = image
            .producer_id_blocks
            .get(&me)
            .copied()
            .ok_or(TopicError::ProducerIdBlockLost)?;
        state.next_producer_id = start;
        state.producer_id_block_end = start + PRODUCER_ID_BLOCK;
    }
    let id = state.next_producer_id;
    state.next_producer_id += 1;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(
                matches!(validate_name(bad), Err(TopicError::InvalidName { .. })),
                "{bad}"
            );
        }
        assert!(validate_name(&"x".repeat(249)).is_ok());
    }
}
