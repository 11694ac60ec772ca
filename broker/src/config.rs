//! Broker configuration: command-line flags (with `RUNNEL_*` environment variables) and
//! the broker-wide defaults that Kafka names `num.partitions`, `socket.request.max.bytes`, ...

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Default `socket.request.max.bytes`: the largest request frame accepted (100 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 100 * 1024 * 1024;

/// Settings of one broker process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "runnel-broker",
    version,
    about = "A Kafka-compatible broker: the Kafka wire protocol over durable segment storage"
)]
pub struct BrokerConfig {
    /// Address the Kafka listener binds to.
    #[arg(long, env = "RUNNEL_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// HOST:PORT that clients are told to connect to (Metadata); defaults to the listen address.
    #[arg(long, env = "RUNNEL_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,

    /// Directory holding the partition logs and the cluster metadata log.
    #[arg(long, env = "RUNNEL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// This broker's id (`node.id`), from 0. Under the operator: the pod's ordinal.
    #[arg(long, env = "RUNNEL_NODE_ID", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    pub node_id: i32,

    /// `cluster.id`: the cluster this broker belongs to. Optional; when set, a data
    /// directory or a quorum of another cluster is refused. Kafka's ids are URL-safe
    /// base64 and may start with `-`, so `--cluster-id -x…` is read as the value.
    #[arg(long, env = "RUNNEL_CLUSTER_ID", allow_hyphen_values = true)]
    pub cluster_id: Option<String>,

    /// `controller.quorum.voters`: the metadata quorum's voters as `id@host:port,...`
    /// (their controller addresses). Unset: this broker is a cluster of its own.
    #[arg(long, env = "RUNNEL_CONTROLLER_QUORUM_VOTERS")]
    pub controller_quorum_voters: Option<String>,

    /// Where this broker serves the metadata quorum to other brokers (gRPC); needed with
    /// `--controller-quorum-voters`.
    #[arg(long, env = "RUNNEL_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,

    /// `broker.heartbeat.interval.ms`: how often a broker of a cluster tells the active
    /// controller it is alive (Kafka: 2000). A broker silent for two intervals whose
    /// listener refuses connections is fenced without waiting for its session.
    #[arg(long, env = "RUNNEL_BROKER_HEARTBEAT_INTERVAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub broker_heartbeat_interval_ms: u64,

    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced: clients
    /// are not sent to it and the partitions it leads are offline.
    #[arg(long, env = "RUNNEL_BROKER_SESSION_TIMEOUT_MS", default_value_t = 9000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub broker_session_timeout_ms: u64,

    /// `replica.lag.time.max.ms`: a follower that has not caught up with its leader for
    /// this long leaves the ISR.
    #[arg(long, env = "RUNNEL_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub replica_lag_time_max_ms: u64,

    /// `auto.leader.rebalance.enable`: the active controller moves leadership back to
    /// each partition's preferred replica (its first) once that replica is back in the
    /// ISR and a broker's share of partitions led elsewhere exceeds
    /// `leader.imbalance.per.broker.percentage`.
    #[arg(long, env = "RUNNEL_AUTO_LEADER_REBALANCE_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance_enable: bool,

    /// `leader.imbalance.check.interval.seconds`: how often leadership balance is checked.
    #[arg(long, env = "RUNNEL_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub leader_imbalance_check_interval_seconds: u64,

    /// `leader.imbalance.per.broker.percentage`: how many of a broker's preferred
    /// partitions may be led by others before leadership is moved back.
    #[arg(long, env = "RUNNEL_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub leader_imbalance_per_broker_percentage: u32,

    /// What an acks=all acknowledgement promises: `fsync` (the default) — the batch is
    /// fsynced on the leader and on every other ISR member (followers fsync before they
    /// fetch again); `replication` — Kafka's default: it is in every ISR member's page
    /// cache, and survives as long as one of them does not lose power.
    #[arg(long, env = "RUNNEL_ACKS_ALL_DURABILITY", value_enum, default_value_t = Durability::Fsync)]
    pub acks_all_durability: Durability,

    /// `broker.rack`: replicas of a partition are spread over racks.
    #[arg(long, env = "RUNNEL_BROKER_RACK")]
    pub broker_rack: Option<String>,

    /// `num.partitions`: partitions of an auto-created topic, and of CreateTopics asking for -1.
    #[arg(long, env = "RUNNEL_NUM_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub num_partitions: i32,

    /// `auto.create.topics.enable`: Metadata for an unknown topic creates it.
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics_enable: bool,

    /// `socket.request.max.bytes`: requests larger than this close the connection.
    #[arg(long, env = "RUNNEL_SOCKET_REQUEST_MAX_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES, value_parser = clap::value_parser!(u32).range(1024..=1_073_741_824))]
    pub socket_request_max_bytes: u32,

    /// `queued.max.request.bytes`: request bytes held in memory across all connections.
    #[arg(long, env = "RUNNEL_QUEUED_MAX_REQUEST_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub queued_max_request_bytes: u32,

    /// `max.connections`: connections served at once; further ones wait in the accept queue.
    #[arg(long, env = "RUNNEL_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Requests a connection may have in flight (pipelined) before the broker stops reading from it.
    #[arg(long, env = "RUNNEL_MAX_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_in_flight_requests: u32,

    /// `connections.max.idle.ms`: a connection that sends no request, or takes no
    /// response, for this long is closed.
    #[arg(
        long,
        env = "RUNNEL_CONNECTIONS_MAX_IDLE_MS",
        default_value_t = 600_000
    )]
    pub connections_max_idle_ms: u64,

    /// How long shutdown waits for in-flight requests before closing the logs.
    #[arg(long, env = "RUNNEL_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// `message.max.bytes`: the largest record batch accepted, unless a topic sets `max.message.bytes`.
    #[arg(long, env = "RUNNEL_MESSAGE_MAX_BYTES", default_value_t = 1_048_588)]
    pub message_max_bytes: u64,

    /// `log.segment.bytes`: default segment size.
    #[arg(long, env = "RUNNEL_LOG_SEGMENT_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub log_segment_bytes: u64,

    /// `group.min.session.timeout.ms`: shortest session timeout a consumer may ask for.
    #[arg(
        long,
        env = "RUNNEL_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub group_min_session_timeout_ms: u64,

    /// `group.max.session.timeout.ms`: longest session timeout a consumer may ask for.
    #[arg(
        long,
        env = "RUNNEL_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: u64,

    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members
    /// before its first rebalance.
    #[arg(
        long,
        env = "RUNNEL_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// `group.max.size`: members one group may have.
    #[arg(long, env = "RUNNEL_GROUP_MAX_SIZE", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub group_max_size: u32,

    /// `offsets.retention.minutes`: committed offsets of a group that has been empty this
    /// long are deleted.
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_MINUTES", default_value_t = 10_080, value_parser = clap::value_parser!(u64).range(1..))]
    pub offsets_retention_minutes: u64,

    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_CHECK_INTERVAL_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub offsets_retention_check_interval_ms: u64,

    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    #[arg(long, env = "RUNNEL_OFFSETS_TOPIC_NUM_PARTITIONS", default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub offsets_topic_num_partitions: i32,

    /// `offsets.topic.replication.factor`: replicas of each `__consumer_offsets`
    /// partition, at most as many as live brokers when the topic is created.
    #[arg(long, env = "RUNNEL_OFFSETS_TOPIC_REPLICATION_FACTOR", default_value_t = 3, value_parser = clap::value_parser!(i16).range(1..=100))]
    pub offsets_topic_replication_factor: i16,

    /// `log.retention.ms`: default `retention.ms` of topics (-1: keep forever).
    #[arg(
        long,
        env = "RUNNEL_LOG_RETENTION_MS",
        default_value_t = 604_800_000,
        allow_negative_numbers = true
    )]
    pub log_retention_ms: i64,

    /// `log.retention.bytes`: default `retention.bytes` of topics (-1: no limit).
    #[arg(long, env = "RUNNEL_LOG_RETENTION_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub log_retention_bytes: i64,

    /// `log.roll.ms`: default `segment.ms` of topics.
    #[arg(long, env = "RUNNEL_LOG_ROLL_MS", default_value_t = 604_800_000)]
    pub log_roll_ms: u64,

    /// `log.cleanup.policy`: default `cleanup.policy` of topics (delete, compact, or both).
    #[arg(long, env = "RUNNEL_LOG_CLEANUP_POLICY", default_value = "delete")]
    pub log_cleanup_policy: String,

    /// `log.retention.check.interval.ms`: how often segments past retention are deleted.
    #[arg(long, env = "RUNNEL_LOG_RETENTION_CHECK_INTERVAL_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_retention_check_interval_ms: u64,

    /// `log.cleaner.backoff.ms`: how often compacted topics are cleaned.
    #[arg(long, env = "RUNNEL_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_cleaner_backoff_ms: u64,

    /// `log.flush.interval.messages`: default `flush.messages` of topics.
    #[arg(long, env = "RUNNEL_LOG_FLUSH_INTERVAL_MESSAGES", default_value_t = i64::MAX)]
    pub log_flush_interval_messages: i64,

    /// `log.flush.interval.ms`: default `flush.ms` of topics.
    #[arg(long, env = "RUNNEL_LOG_FLUSH_INTERVAL_MS", default_value_t = i64::MAX)]
    pub log_flush_interval_ms: i64,

    /// `min.insync.replicas`: default for topics.
    #[arg(long, env = "RUNNEL_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub min_insync_replicas: i64,

    /// `default.replication.factor`: replication factor of auto-created topics and of
    /// CreateTopics asking for -1. A single broker holds one replica.
    #[arg(long, env = "RUNNEL_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: i16,

    /// Address of the gRPC health (`grpc.health.v1`) and admin service; off when unset.
    #[arg(long, env = "RUNNEL_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// Address of the Prometheus endpoint (`/metrics`); off when unset.
    #[arg(long, env = "RUNNEL_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A TOML file of settings by Kafka's names (`"num.partitions" = 3`) or flag names.
    /// Flags and `RUNNEL_*` variables override it.
    #[arg(long, env = "RUNNEL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Test aid: pause this long after opening each partition log at start-up, to make
    /// recovery progress observable.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_recovery_delay_ms: u64,

    /// Test hook, never for production: while this file exists, fsyncs (and, if the
    /// file says `write`, writes) of partition logs under the data directory fail with
    /// EIO (`ENOSPC` in the file picks that errno), as a failing disk would; the
    /// metadata quorum's files are spared. The first failure takes the data directory
    /// offline and the broker shuts down (see `runnel_storage::fs`). Every log file
    /// operation reads this file while the flag is set.
    #[arg(long, hide = true)]
    pub debug_fail_fsync_after_file: Option<PathBuf>,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "RUNNEL_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// What an acks=all acknowledgement promises (`--acks-all-durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// On disk on every ISR member.
    Fsync,
    /// In the page cache of every ISR member (Kafka's default).
    Replication,
}

/// A broker setting that breaks a rule clap cannot check alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSetting {
    /// `--advertised-listener` is not `HOST:PORT`.
    #[error("--advertised-listener {0:?} is invalid: expected HOST:PORT with a port 0-65535")]
    AdvertisedListener(String),
    /// A broker default of a topic config breaks that config's rule.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Value {
        /// The broker setting's Kafka name.
        key: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// `default.replication.factor` other than 1 on a broker without a quorum.
    #[error(
        "invalid value {0} for default.replication.factor: must be 1 (this broker runs alone)"
    )]
    ReplicationFactor(i16),
    /// `controller.quorum.voters` is not `id@host:port,...`.
    #[error(transparent)]
    Voters(#[from] crate::cluster::VotersError),
    /// A quorum without a controller listener.
    #[error("--controller-quorum-voters needs --controller-listen (where this broker serves the quorum)")]
    ControllerListen,
    /// A session no longer than the heartbeat interval.
    #[error("broker.session.timeout.ms ({session}) must be longer than broker.heartbeat.interval.ms ({heartbeat})")]
    Sessions {
        /// `broker.heartbeat.interval.ms`.
        heartbeat: u64,
        /// `broker.session.timeout.ms`.
        session: u64,
    },
    /// `cluster.id` that Kafka would not accept.
    #[error("invalid cluster.id {0:?}: 1 to 64 characters of letters, digits, '-' and '_'")]
    ClusterId(String),
    /// The group session timeout bounds are reversed.
    #[error(
        "group.min.session.timeout.ms ({min}) must not exceed group.max.session.timeout.ms ({max})"
    )]
    SessionTimeouts {
        /// `group.min.session.timeout.ms`.
        min: u64,
        /// `group.max.session.timeout.ms`.
        max: u64,
    },
    /// The request budget cannot hold one largest request.
    #[error(
        "queued.max.request.bytes ({queued}) must be at least socket.request.max.bytes ({max})"
    )]
    RequestBudget {
        /// `queued.max.request.bytes`.
        queued: u32,
        /// `socket.request.max.bytes`.
        max: u32,
    },
}

impl BrokerConfig {
    /// The (host, port) advertised to clients in Metadata and DescribeCluster.
    pub fn advertised(&self) -> (String, i32) {
        if let Some(adv) = &self.advertised_listener {
            if let Some((host, port)) = adv.rsplit_once(':') {
                if let Ok(port) = port.parse::<u16>() {
                    return (host.trim_matches(['[', ']']).to_string(), i32::from(port));
                }
            }
        }
        (self.listen.ip().to_string(), i32::from(self.listen.port()))
    }

    /// Checks the settings that clap cannot check alone.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(adv) = &self.advertised_listener {
            let valid = adv
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !valid {
                return Err(InvalidSetting::AdvertisedListener(adv.clone()));
            }
        }
        for (key, topic_key, value) in [
            (
                "log.retention.ms",
                "retention.ms",
                self.log_retention_ms.to_string(),
            ),
            (
                "log.retention.bytes",
                "retention.bytes",
                self.log_retention_bytes.to_string(),
            ),
            ("log.roll.ms", "segment.ms", self.log_roll_ms.to_string()),
            (
                "log.cleanup.policy",
                "cleanup.policy",
                self.log_cleanup_policy.clone(),
            ),
            (
                "log.flush.interval.messages",
                "flush.messages",
                self.log_flush_interval_messages.to_string(),
            ),
            (
                "log.flush.interval.ms",
                "flush.ms",
                self.log_flush_interval_ms.to_string(),
            ),
            (
                "min.insync.replicas",
                "min.insync.replicas",
                self.min_insync_replicas.to_string(),
            ),
            (
                "log.segment.bytes",
                "segment.bytes",
                self.log_segment_bytes.to_string(),
            ),
            (
                "message.max.bytes",
                "max.message.bytes",
                self.message_max_bytes.to_string(),
            ),
        ] {
            crate::topic_config::validate(topic_key, &value).map_err(|e| {
                InvalidSetting::Value {
                    key,
                    reason: e.0.rsplit(": ").next().unwrap_or(&e.0).to_string(),
                    value,
                }
            })?;
        }
        if let Some(voters) = &self.controller_quorum_voters {
            crate::cluster::parse_voters(voters)?;
            if self.controller_listen.is_none() {
                return Err(InvalidSetting::ControllerListen);
            }
            if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
                return Err(InvalidSetting::Sessions {
                    heartbeat: self.broker_heartbeat_interval_ms,
                    session: self.broker_session_timeout_ms,
                });
            }
        }
        if let Some(id) = &self.cluster_id {
            let valid = (1..=64).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(InvalidSetting::ClusterId(id.clone()));
            }
        }
        if self.default_replication_factor < 1
            || (self.default_replication_factor != 1 && self.controller_quorum_voters.is_none())
        {
            return Err(InvalidSetting::ReplicationFactor(
                self.default_replication_factor,
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(InvalidSetting::SessionTimeouts {
                min: self.group_min_session_timeout_ms,
                max: self.group_max_session_timeout_ms,
            });
        }
        if self.queued_max_request_bytes < self.socket_request_max_bytes {
            return Err(InvalidSetting::RequestBudget {
                queued: self.queued_max_request_bytes,
                max: self.socket_request_max_bytes,
            });
        }
        Ok(())
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::groups::GroupConfig {
        crate::groups::GroupConfig {
            min_session_timeout: Duration::from_millis(self.group_min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(self.group_max_session_timeout_ms),
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            max_size: self.group_max_size as usize,
            offsets_retention: Duration::from_secs(
                self.offsets_retention_minutes.saturating_mul(60),
            ),
            offsets_partitions: self.offsets_topic_num_partitions,
            max_metadata_bytes: 4096,
        }
    }

    /// Idle connection timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.connections_max_idle_ms)
    }

    /// The metadata quorum's voters, if this broker is part of a cluster.
    pub fn voters(&self) -> Option<std::collections::BTreeMap<u64, String>> {
        let voters = self.controller_quorum_voters.as_deref()?;
        crate::cluster::parse_voters(voters).ok()
    }

    /// Configuration for tests and embedding: listens on `127.0.0.1:0` with data in `data_dir`.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut config = BrokerConfig::parse_from(["runnel-broker"]);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.data_dir = data_dir;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_id_may_start_with_a_hyphen() {
        // Kafka's ids are URL-safe base64 of 16 random bytes: about one in 64 starts so.
        let id = "-iWa2ChfSnScMm-gpxBmHg";
        let config = BrokerConfig::try_parse_from(["runnel-broker", "--cluster-id", id]);
        assert_eq!(config.ok().and_then(|c| c.cluster_id).as_deref(), Some(id));
    }
}
