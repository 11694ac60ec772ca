//! [`BrokerContext`]: everything a request handler may touch — configuration, cluster
//! metadata, hosted partitions, the request memory budget. There are no globals.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Semaphore;

use crate::config::BrokerConfig;
use crate::flusher::Flusher;
use crate::groups::{store, GroupCoordinator};
use crate::metadata::{MetadataImage, MetadataLog, MetadataRecord};
use crate::ops::metrics::Metrics;
use crate::ops::status::BrokerStatus;
use crate::partitions::PartitionManager;
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
}

/// The metadata log and the image it builds, changed together under one lock.
pub struct MetadataState {
    /// The durable log of metadata records.
    pub log: MetadataLog,
    /// Producer ids handed out so far from the current block.
    pub next_producer_id: i64,
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
}

impl BrokerContext {
    /// Opens the metadata log and every partition log (with recovery). Blocking.
    pub fn open(
        config: BrokerConfig,
        advertised: (String, i32),
        status: &BrokerStatus,
        metrics: Arc<Metrics>,
        flusher: Flusher,
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
        let (mut log, mut image) = MetadataLog::open(&config.data_dir.join("__cluster_metadata"))?;
        if image.cluster_id.is_empty() {
            let record = MetadataRecord::Cluster {
                cluster_id: new_cluster_id(),
            };
            log.append(std::slice::from_ref(&record))?;
            image.apply(&record);
        }
        let partitions = PartitionManager::new(&config.data_dir);
        let total: i64 = image.topics().map(|t| i64::from(t.partitions)).sum();
        status.begin_recovery(u32::try_from(total).unwrap_or(u32::MAX));
        let delay = std::time::Duration::from_millis(config.debug_recovery_delay_ms);
        for topic in image.topics() {
            let log_config = topic_config::log_config(&config, &topic.configs);
            for partition in 0..topic.partitions {
                partitions
                    .open(&topic.name, partition..partition + 1, &log_config)
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
        let next_producer_id = image.next_producer_id;
        let ctx = BrokerContext {
            request_budget: Arc::new(Semaphore::new(config.queued_max_request_bytes as usize)),
            advertised,
            metadata: Mutex::new(MetadataState {
                log,
                next_producer_id,
            }),
            image: RwLock::new(Arc::new(image)),
            partitions,
            groups: GroupCoordinator::new(config.group_config()),
            metrics,
            flusher,
            config,
        };
        let loaded = store::load(&ctx).map_err(|source| StartError::Log {
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
    pub fn commit(
        &self,
        state: &mut MetadataState,
        records: &[MetadataRecord],
    ) -> Result<Arc<MetadataImage>, crate::metadata::MetadataLogError> {
        state.log.append(records)?;
        let mut next = (*self.image()).clone();
        for r in records {
            next.apply(r);
        }
        let next = Arc::new(next);
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&next);
        Ok(next)
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
fn new_cluster_id() -> String {
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
