//! [`BrokerContext`]: everything a request handler may touch — configuration, cluster
//! metadata, hosted partitions, the request memory budget. There are no globals.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Semaphore;

use crate::cluster::{Quorum, QuorumError};
use crate::config::BrokerConfig;
use crate::flusher::Flusher;
use crate::groups::{store, GroupCoordinator};
use crate::metadata::{MetadataImage, MetadataLog, MetadataLogError, MetadataRecord, TopicImage};
use crate::ops::metrics::Metrics;
use crate::ops::status::BrokerStatus;
use crate::partitions::PartitionManager;
use crate::replication::throttle::ReplicationQuotas;
use crate::topic_config;

/// File in the data dir that says the previous stop closed every log cleanly.
const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metadata log could not be opened.
    #[error("cannot open the metadata log: {0}")]
    Metadata(#[from] crate::metadata::MetadataLogError),
    /// A partition log could not be opened or recovered.
    #[error("cannot open partition {topic}-{partition}: {source}")]
    Log {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The storage error.
        source: runnel_storage::LogError,
    },
    /// Stray partition directories (not hosted here) could not be deleted.
    #[error("cannot delete stray partition directories: {0}")]
    Strays(runnel_storage::LogError),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::InvalidSetting),
    /// The data directory cannot be prepared.
    #[error("cannot {action} {path}: {source}", path = path.display())]
    DataDir {
        /// What was being done (`create`, `remove`).
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A listener cannot be bound.
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Listen {
        /// Which listener (`kafka`, `health`, `metrics`).
        listener: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The error binding it.
        source: std::io::Error,
    },
    /// The metrics registry refused a metric (a defect).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The task opening storage panicked or was cancelled.
    #[error("the storage recovery task failed: {0}")]
    RecoveryTask(#[from] tokio::task::JoinError),
    /// The compiled-in request layouts do not parse (a defect of the build).
    #[error(transparent)]
    RequestLayouts(#[from] crate::bounds::SchemaError),
    /// The metadata quorum could not start, or the broker could not join it.
    #[error("metadata quorum: {0}")]
    Quorum(#[from] QuorumError),
    /// The data directory belongs to another cluster or broker.
    #[error(transparent)]
    Identity(#[from] crate::cluster::IdentityError),
}

/// Why a metadata change was not made.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The local metadata log failed.
    #[error(transparent)]
    Log(#[from] MetadataLogError),
    /// The metadata quorum did not commit it.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

/// Where metadata changes are made durable.
pub enum MetadataStore {
    /// A single broker's own log file.
    Local(MetadataLog),
    /// The metadata quorum shared by the brokers of a cluster.
    Quorum(Arc<Quorum>),
}

/// The metadata log and the image it builds, changed together under one lock.
pub struct MetadataState {
    /// Where changes go.
    pub store: MetadataStore,
    /// The next producer id of this broker's current block.
    pub next_producer_id: i64,
    /// The end (exclusive) of this broker's current block; none at start.
    pub producer_id_block_end: i64,
}

/// Shared state of one broker.
pub struct BrokerContext {
    /// The broker's settings.
    pub config: BrokerConfig,
    /// Host and port advertised to clients.
    pub advertised: (String, i32),
    /// Serializes metadata changes; hold it only on a blocking thread (it fsyncs).
    pub metadata: Mutex<MetadataState>,
    image: RwLock<Arc<MetadataImage>>,
    /// The partitions hosted here.
    pub partitions: PartitionManager,
    /// Consumer groups and their committed offsets.
    pub groups: GroupCoordinator,
    /// `queued.max.request.bytes`, shared by all connections.
    pub request_budget: Arc<Semaphore>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Group commit of acks=all appends.
    pub flusher: Flusher,
    /// The replication throttles' byte rates (KIP-73; `replication::throttle`).
    pub replication_quotas: ReplicationQuotas,
    /// The metadata quorum, in a cluster (also in `metadata`; here without the lock).
    quorum: Option<Arc<Quorum>>,
}

impl BrokerContext {
    /// Opens the metadata log and every partition log (with recovery). Blocking.
    ///
    /// With `quorum`, the metadata comes from the cluster's quorum (already joined), and
    /// only the partitions with a replica on this broker are opened.
    pub fn open(
        config: BrokerConfig,
        advertised: (String, i32),
        status: &BrokerStatus,
        metrics: Arc<Metrics>,
        flusher: Flusher,
        quorum: Option<Arc<Quorum>>,
    ) -> Result<Self, StartError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            action: "create",
            path: config.data_dir.clone(),
            source,
        })?;
        let marker = config.data_dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.exists();
        status.set_clean_start(clean);
        if clean {
            std::fs::remove_file(&marker).map_err(|source| StartError::DataDir {
                action: "remove",
                path: marker.clone(),
                source,
            })?;
        }
        let (store, image) = match quorum.clone() {
            Some(quorum) => {
                let image = MetadataImage::clone(&quorum.image().borrow());
                (MetadataStore::Quorum(quorum), image)
            }
            None => {
                let (mut log, mut image) =
                    MetadataLog::open(&config.data_dir.join("__cluster_metadata"))?;
                if image.cluster_id.is_empty() {
                    let record = MetadataRecord::Cluster {
                        cluster_id: config.cluster_id.clone().unwrap_or_else(new_cluster_id),
                    };
                    log.append(std::slice::from_ref(&record))?;
                    image.apply(&record);
                }
                (MetadataStore::Local(log), image)
            }
        };
        crate::cluster::identity::check_and_record(
            &config.data_dir,
            config.node_id,
            config.cluster_id.as_deref(),
            &image.cluster_id,
        )?;
        let partitions = PartitionManager::new(&config.data_dir);
        let total: i64 = image
            .topics()
            .map(|t| t.partitions_on(config.node_id).count() as i64)
            .sum();
        status.begin_recovery(u32::try_from(total).unwrap_or(u32::MAX));
        let delay = std::time::Duration::from_millis(config.debug_recovery_delay_ms);
        for topic in image.topics() {
            let log_config = topic_config::log_config(&config, &topic.configs);
            for partition in topic.partitions_on(config.node_id) {
                partitions
                    .open(&topic.name, topic.id, partition..partition + 1, &log_config)
                    .map_err(|source| StartError::Log {
                        topic: topic.name.clone(),
                        partition,
                        source,
                    })?;
                status.partition_recovered();
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
            }
        }
        let scanned = partitions
            .segments_scanned
            .load(std::sync::atomic::Ordering::Relaxed);
        status.add_segments_scanned(scanned);
        tracing::info!(
            partitions = total,
            segments_scanned = scanned,
            clean_start = clean,
            "partition logs open"
        );
        // The metadata is current here (a cluster member registered through the quorum
        // first), so a partition directory it does not give this broker is a stray.
        let strays = partitions.delete_strays().map_err(StartError::Strays)?;
        if !strays.is_empty() {
            tracing::warn!(directories = ?strays, "deleted stray replicas: partitions this broker no longer hosts");
        }
        let next_producer_id = image.next_producer_id;
        let ctx = BrokerContext {
            request_budget: Arc::new(Semaphore::new(config.queued_max_request_bytes as usize)),
            advertised,
            metadata: Mutex::new(MetadataState {
                store,
                next_producer_id,
                producer_id_block_end: next_producer_id,
            }),
            image: RwLock::new(Arc::new(image)),
            partitions,
            groups: GroupCoordinator::new(config.group_config()),
            metrics,
            flusher,
            config,
            replication_quotas: ReplicationQuotas::default(),
            quorum,
        };
        let led = store::led_partitions(&ctx, &ctx.image());
        let loaded = store::load(&ctx, &led).map_err(|source| StartError::Log {
            topic: crate::groups::offsets::OFFSETS_TOPIC.to_string(),
            partition: -1,
            source,
        })?;
        if loaded > 0 {
            tracing::info!(records = loaded, "loaded committed offsets");
        }
        Ok(ctx)
    }

    /// The current metadata image (a cheap snapshot).
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Locks the metadata for a change. Blocking: call from a blocking thread.
    pub fn lock_metadata(&self) -> MutexGuard<'_, MetadataState> {
        self.metadata.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `records` durably and publishes the new image. The caller holds the
    /// metadata lock (`state`), so changes are applied in log order.
    ///
    /// In a cluster the records go through the metadata quorum: this blocks (call it from
    /// a blocking thread) until they are committed and applied here, or the quorum's
    /// write timeout passes.
    pub fn commit(
        &self,
        state: &mut MetadataState,
        records: &[MetadataRecord],
    ) -> Result<Arc<MetadataImage>, CommitError> {
        let next = match &state.store {
            MetadataStore::Local(_) => {
                let mut next = (*self.image()).clone();
                for r in records {
                    next.apply(r);
                }
                Arc::new(next)
            }
            MetadataStore::Quorum(quorum) => {
                let handle = tokio::runtime::Handle::current();
                handle.block_on(quorum.write(records.to_vec()))?;
                let image = Arc::clone(&quorum.image().borrow());
                // Other brokers' changes may have been applied meanwhile: host them too.
                if let Err(e) = self.reconcile(&image) {
                    tracing::error!(error = %e, "cannot host what the metadata says");
                }
                return Ok(image);
            }
        };
        if let MetadataStore::Local(log) = &mut state.store {
            log.append(records)?;
        }
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&next);
        Ok(next)
    }

    /// The metadata quorum, in a cluster.
    pub fn quorum(&self) -> Option<&Arc<Quorum>> {
        self.quorum.as_ref()
    }

    /// The partition if this broker leads it, or the error code to answer: on a broker of
    /// a cluster, NOT_LEADER_OR_FOLLOWER when another broker leads it or it is offline (the
    /// client then refreshes its metadata), else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn led_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<crate::partitions::Partition>, i16> {
        self.led_partition_in_epoch(topic, partition, -1)
            .map(|(p, _)| p)
    }

    /// [`BrokerContext::led_partition`], also checking the leader epoch the client
    /// believes current (KIP-320; -1 when it does not say): an older one is
    /// FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH (this broker is behind).
    /// Returns the current leader epoch with the partition.
    pub fn led_partition_in_epoch(
        &self,
        topic: &str,
        partition: i32,
        client_epoch: i32,
    ) -> Result<(Arc<crate::partitions::Partition>, i32), i16> {
        use kafka_protocol::ResponseError;
        const UNKNOWN: i16 = ResponseError::UnknownTopicOrPartition.code();
        let mut epoch = 0;
        if self.quorum.is_some() {
            let me = self.node_id();
            let image = self.image();
            let Some(t) = image
                .topic(topic)
                .filter(|t| (0..t.partitions).contains(&partition))
            else {
                return Err(UNKNOWN);
            };
            let leadership = t.leadership(partition, me);
            epoch = leadership.leader_epoch;
            if leadership.leader != me {
                return Err(ResponseError::NotLeaderOrFollower.code());
            }
            if client_epoch >= 0 && client_epoch < leadership.leader_epoch {
                return Err(ResponseError::FencedLeaderEpoch.code());
            }
            if client_epoch > leadership.leader_epoch {
                return Err(ResponseError::UnknownLeaderEpoch.code());
            }
        }
        let hosted = self.partitions.get(topic, partition).ok_or(UNKNOWN)?;
        Ok((hosted, epoch))
    }

    /// The brokers clients may connect to: (node id, host, port, rack). The registered
    /// brokers that are not fenced in a cluster, this one alone otherwise.
    pub fn brokers(&self) -> Vec<(i32, String, i32, Option<String>)> {
        let image = self.image();
        if self.quorum.is_none() || image.brokers.is_empty() {
            let (host, port) = self.advertised.clone();
            return vec![(self.node_id(), host, port, self.config.broker_rack.clone())];
        }
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| (b.node_id, b.host.clone(), b.port, b.rack.clone()))
            .collect()
    }

    /// The leader of `partition` of `topic` for clients: `None` while the partition is
    /// offline, or while its leader is fenced and the quorum has not moved it yet.
    pub fn live_leader(
        &self,
        image: &MetadataImage,
        topic: &TopicImage,
        partition: i32,
    ) -> Option<i32> {
        let leader = topic.leader(partition, self.node_id());
        (leader >= 0 && (self.quorum.is_none() || image.is_live(leader))).then_some(leader)
    }

    /// The controller clients are told about: the metadata quorum's leader while it is a
    /// live broker, else this broker (which forwards admin changes to the quorum itself,
    /// so clients never wait on a controller that is gone).
    pub fn controller_id(&self) -> i32 {
        let me = self.node_id();
        let Some(quorum) = &self.quorum else {
            return me;
        };
        quorum
            .status()
            .leader
            .and_then(|l| i32::try_from(l).ok())
            .filter(|&l| self.image().is_live(l))
            .unwrap_or(me)
    }

    /// The broker that coordinates `group`: the live leader of its `__consumer_offsets`
    /// partition; this broker alone outside a cluster; -1 (none) in a cluster whose offsets
    /// topic this broker does not know yet or whose partition is offline.
    pub fn coordinator_of(&self, group: &str) -> i32 {
        use crate::groups::offsets::{partition_for, OFFSETS_TOPIC};
        if self.quorum.is_none() {
            return self.node_id();
        }
        let image = self.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return -1;
        };
        let partition = partition_for(group, topic.partitions);
        self.live_leader(&image, topic, partition).unwrap_or(-1)
    }

    /// Whether this broker coordinates `group` (always, outside a cluster).
    pub fn is_coordinator(&self, group: &str) -> bool {
        self.quorum.is_none() || self.coordinator_of(group) == self.node_id()
    }

    /// The brokers new replicas may go to, with their racks: the registered brokers that
    /// are not fenced, or this one alone outside a cluster.
    pub fn placement_brokers(&self) -> Vec<(i32, Option<String>)> {
        let image = self.image();
        if self.quorum.is_none() {
            return vec![(self.node_id(), self.config.broker_rack.clone())];
        }
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| (b.node_id, b.rack.clone()))
            .collect()
    }

    /// Makes this broker host what `image` says (another broker's change, committed
    /// through the quorum): opens the partitions with a replica here, deletes the topics
    /// that are gone, applies changed topic configs. Blocking; takes the metadata lock so
    /// it does not race this broker's own changes.
    pub fn apply_image(&self, image: &Arc<MetadataImage>) -> Result<(), StartError> {
        let _state = self.lock_metadata();
        self.reconcile(image)
    }

    /// [`BrokerContext::apply_image`] with the metadata lock held.
    fn reconcile(&self, image: &Arc<MetadataImage>) -> Result<(), StartError> {
        let before = self.image();
        for topic in image.topics() {
            let log_config = topic_config::log_config(&self.config, &topic.configs);
            crate::topics::open_hosted(self, topic, 0..topic.partitions, &log_config).map_err(
                |source| StartError::Log {
                    topic: topic.name.clone(),
                    partition: -1,
                    source,
                },
            )?;
            let changed = before
                .topic(&topic.name)
                .is_some_and(|old| old.configs != topic.configs);
            if changed {
                self.partitions.set_config(&topic.name, &log_config);
            }
        }
        // Replicas moved away from this broker by a reassignment.
        for partition in self.partitions.all() {
            let tp = &partition.tp;
            let moved = image
                .topic(&tp.topic)
                .is_some_and(|t| !t.has_replica(tp.partition, self.node_id()));
            if moved {
                self.partitions
                    .remove(&tp.topic, tp.partition)
                    .map_err(|source| StartError::Log {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        source,
                    })?;
            }
        }
        for gone in before.topics().filter(|t| image.topic(&t.name).is_none()) {
            self.partitions
                .delete_topic(&gone.name)
                .map_err(|source| StartError::Log {
                    topic: gone.name.clone(),
                    partition: -1,
                    source,
                })?;
        }
        // Groups follow the leadership of their offsets partition: a new coordinator loads
        // the offsets before the new image lets it answer; an old one forgets them.
        let led_before = store::led_partitions(self, &before);
        let led_after = store::led_partitions(self, image);
        let gained = led_after.difference(&led_before).copied().collect();
        let lost = led_before.difference(&led_after).copied().collect();
        let offsets_topic = crate::groups::offsets::OFFSETS_TOPIC;
        match store::load(self, &gained) {
            Ok(n) if n > 0 => {
                tracing::info!(partitions = ?gained, records = n, "coordinating the groups of {offsets_topic} partitions")
            }
            Ok(_) => {}
            Err(source) => {
                return Err(StartError::Log {
                    topic: offsets_topic.to_string(),
                    partition: -1,
                    source,
                })
            }
        }
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(image);
        crate::replication::assign_roles(self, image);
        if let Some(topic) = before.topic(offsets_topic) {
            self.groups.unload(&lost, topic.partitions);
        }
        Ok(())
    }

    /// Closes every log cleanly and, if all closed, writes the broker's clean-shutdown
    /// marker. Blocking; the last step of shutdown.
    pub fn close(&self) -> Result<(), Vec<String>> {
        let errors = self.partitions.close_all();
        if !errors.is_empty() {
            return Err(errors
                .into_iter()
                .map(|(tp, e)| format!("{tp}: {e}"))
                .collect());
        }
        let marker = self.config.data_dir.join(CLEAN_SHUTDOWN_MARKER);
        let written = std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::File::open(&self.config.data_dir).and_then(|d| d.sync_all()));
        written.map_err(|e| vec![format!("cannot write {}: {e}", marker.display())])
    }

    /// The broker id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }
}

/// A new cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka makes them.
pub(crate) fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(char::from(ALPHABET[((bits >> n) & 63) as usize]));
        }
    }
    if n > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - n)) & 63) as usize]));
    }
    out
}

/// A single broker's context on `dir`, with no topic (tests).
#[cfg(test)]
pub(crate) fn test_context(dir: &std::path::Path) -> BrokerContext {
    use clap::Parser;
    let mut config = BrokerConfig::parse_from(["runnel-broker"]);
    config.data_dir = dir.to_path_buf();
    let metrics = Arc::new(Metrics::new().expect("metrics register"));
    let (flusher, _task) = Flusher::start(
        Arc::clone(&metrics),
        tokio_util::sync::CancellationToken::new(),
    );
    BrokerContext::open(
        config,
        ("127.0.0.1".into(), 9092),
        &BrokerStatus::new(),
        metrics,
        flusher,
        None,
    )
    .expect("a broker context opens")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = super::new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, super::new_cluster_id());
    }
}
