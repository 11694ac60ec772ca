//! Prometheus metrics (`--metrics-listen`, path `/metrics`, text format). Counters and
//! histograms are updated on the request path; per-partition and consumer-lag gauges are
//! computed when scraped, so they always match the logs and committed offsets.
//!
//! Names follow Prometheus conventions: base units, `_total` for counters, `_seconds`
//! and `_bytes` suffixes.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio_util::sync::CancellationToken;

use crate::context::BrokerContext;

/// Latency buckets from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Every metric the broker exports.
pub struct Metrics {
    registry: Registry,
    /// Requests handled, by API.
    pub requests: IntCounterVec,
    /// Requests that failed at the protocol level (unsupported, malformed) or whose
    /// partitions got an error code, by API.
    pub request_errors: IntCounterVec,
    /// Time from a request's arrival to its response, by API.
    pub request_duration: HistogramVec,
    /// Time a request waited between arriving and its handler starting.
    pub request_queue_time: Histogram,
    /// Open client connections.
    pub connections: IntGauge,
    /// Record-batch bytes appended, by topic.
    pub bytes_in: IntCounterVec,
    /// Record-batch bytes sent to consumers, by topic.
    pub bytes_out: IntCounterVec,
    /// Records appended, by topic.
    pub records_in: IntCounterVec,
    /// Duration of log fsyncs.
    pub flush_duration: Histogram,
    /// Bytes of throttled partitions replicated, by direction (`leader`: sent to
    /// followers, `follower`: fetched from leaders).
    pub replication_throttled_bytes: IntCounterVec,
    /// Partitions held back by a replication throttle over its rate, by direction.
    pub replication_throttled_partitions: IntCounterVec,
    partitions: IntGauge,
    log_start_offset: IntGaugeVec,
    high_watermark: IntGaugeVec,
    size: IntGaugeVec,
    under_replicated: IntGauge,
    offline: IntGauge,
    isr_size: IntGaugeVec,
    follower_lag: IntGaugeVec,
    group_lag: IntGaugeVec,
    group_lag_sum: IntGaugeVec,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(registry: &Registry, name: &str, help: &str) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "runnel_request_duration_seconds",
                "Time from a request's arrival to its response, by Kafka API.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["api"],
        )?;
        r.register(Box::new(request_duration.clone()))?;
        let metrics = Metrics {
            requests: counter(
                &r,
                "runnel_requests_total",
                "Kafka requests handled, by API.",
                &["api"],
            )?,
            request_errors: counter(
                &r,
                "runnel_request_errors_total",
                "Kafka requests that failed or carried partition errors, by API.",
                &["api"],
            )?,
            request_duration,
            replication_throttled_bytes: counter(
                &r,
                "runnel_replication_throttled_bytes_total",
                "Bytes of throttled partitions replicated (KIP-73), by direction: leader (sent) or follower (fetched).",
                &["direction"],
            )?,
            replication_throttled_partitions: counter(
                &r,
                "runnel_replication_throttled_partitions_total",
                "Times a partition was held back because its replication throttle was over its rate, by direction.",
                &["direction"],
            )?,
            request_queue_time: histogram(
                &r,
                "runnel_request_queue_time_seconds",
                "Time a request waited before its handler started.",
            )?,
            connections: gauge(&r, "runnel_connections_active", "Open client connections.")?,
            bytes_in: counter(
                &r,
                "runnel_topic_bytes_in_total",
                "Record-batch bytes appended, by topic.",
                &["topic"],
            )?,
            bytes_out: counter(
                &r,
                "runnel_topic_bytes_out_total",
                "Record-batch bytes fetched by consumers, by topic.",
                &["topic"],
            )?,
            records_in: counter(
                &r,
                "runnel_topic_records_in_total",
                "Records appended, by topic.",
                &["topic"],
            )?,
            flush_duration: histogram(
                &r,
                "runnel_log_flush_duration_seconds",
                "Duration of partition log fsyncs.",
            )?,
            partitions: gauge(&r, "runnel_partitions", "Partitions hosted by this broker.")?,
            log_start_offset: gauge_vec(
                &r,
                "runnel_partition_log_start_offset",
                "First offset in the partition log.",
                &["topic", "partition"],
            )?,
            high_watermark: gauge_vec(
                &r,
                "runnel_partition_high_watermark",
                "High watermark of the partition.",
                &["topic", "partition"],
            )?,
            size: gauge_vec(
                &r,
                "runnel_partition_size_bytes",
                "Bytes in the partition's segments.",
                &["topic", "partition"],
            )?,
            under_replicated: gauge(
                &r,
                "runnel_under_replicated_partitions",
                "Partitions led here whose ISR is smaller than their replica set.",
            )?,
            offline: gauge(
                &r,
                "runnel_offline_partitions",
                "Partitions without a live leader (counted by the active controller; 0 on other brokers, as in Kafka).",
            )?,
            isr_size: gauge_vec(
                &r,
                "runnel_partition_isr_size",
                "In-sync replicas of each partition led by this broker.",
                &["topic", "partition"],
            )?,
            follower_lag: gauge_vec(
                &r,
                "runnel_partition_follower_lag",
                "Records each follower lacks of a partition led here (log end minus its fetch offset).",
                &["topic", "partition", "replica"],
            )?,
            group_lag: gauge_vec(
                &r,
                "runnel_consumer_group_lag",
                "High watermark minus committed offset, by group, topic and partition.",
                &["group", "topic", "partition"],
            )?,
            group_lag_sum: gauge_vec(
                &r,
                "runnel_consumer_group_lag_sum",
                "Total lag of a consumer group over its committed partitions.",
                &["group"],
            )?,
            registry: r,
        };
        // Both directions are exported from the start, at 0.
        for direction in ["leader", "follower"] {
            metrics
                .replication_throttled_bytes
                .with_label_values(&[direction]);
            metrics
                .replication_throttled_partitions
                .with_label_values(&[direction]);
        }
        Ok(metrics)
    }

    /// Recomputes the scrape-time gauges from the logs and committed offsets. Blocking
    /// (takes each log's lock briefly).
    pub fn refresh(&self, ctx: &BrokerContext) {
        let image = ctx.image();
        self.log_start_offset.reset();
        self.high_watermark.reset();
        self.size.reset();
        self.isr_size.reset();
        self.follower_lag.reset();
        let mut count = 0;
        let mut high_watermarks = std::collections::HashMap::new();
        for topic in image.topics() {
            for p in ctx.partitions.partitions_of(&topic.name) {
                count += 1;
                let log = p.log();
                let (start, hw, size, end) = (
                    log.log_start_offset(),
                    p.high_watermark(&log),
                    log.size_bytes(),
                    log.log_end_offset(),
                );
                drop(log);
                let partition = p.tp.partition.to_string();
                let labels = [topic.name.as_str(), partition.as_str()];
                if let crate::replication::Role::Leader { isr, .. } = p.replica.role() {
                    self.isr_size
                        .with_label_values(&labels)
                        .set(i64::try_from(isr.len()).unwrap_or(i64::MAX));
                    for (replica, progress) in p.replica.followers() {
                        let replica = replica.to_string();
                        self.follower_lag
                            .with_label_values(&[labels[0], labels[1], replica.as_str()])
                            .set(end.saturating_sub(progress.fetch_offset).max(0));
                    }
                }
                self.log_start_offset.with_label_values(&labels).set(start);
                self.high_watermark.with_label_values(&labels).set(hw);
                self.size
                    .with_label_values(&labels)
                    .set(i64::try_from(size).unwrap_or(i64::MAX));
                high_watermarks.insert((topic.name.clone(), p.tp.partition), hw);
            }
        }
        self.partitions.set(count);
        let (under_replicated, offline) = leadership_counts(ctx, &image);
        self.under_replicated.set(under_replicated);
        self.offline.set(offline);
        self.group_lag.reset();
        self.group_lag_sum.reset();
        let groups = ctx.groups.lock();
        for (group, entry) in groups.iter() {
            let mut sum = 0;
            for ((topic, partition), committed) in &entry.offsets {
                let Some(hw) = high_watermarks.get(&(topic.clone(), *partition)) else {
                    continue;
                };
                let lag = (hw - committed.offset).max(0);
                sum += lag;
                self.group_lag
                    .with_label_values(&[group.as_str(), topic.as_str(), &partition.to_string()])
                    .set(lag);
            }
            self.group_lag_sum
                .with_label_values(&[group.as_str()])
                .set(sum);
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

/// The running `/metrics` HTTP endpoint.
pub struct MetricsEndpoint {
    /// The bound address.
    pub local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Serves `/metrics` on `addr`. The context is filled in once the broker is open; until
    /// then only the request-path metrics are shown.
    pub async fn start(
        addr: SocketAddr,
        ctx: Arc<std::sync::OnceLock<Arc<BrokerContext>>>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (ctx, metrics) = (Arc::clone(&ctx), Arc::clone(&metrics));
                async move {
                    let body = tokio::task::spawn_blocking(move || {
                        if let Some(ctx) = ctx.get() {
                            metrics.refresh(ctx);
                        }
                        metrics.render()
                    })
                    .await
                    .unwrap_or_default();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        );
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics endpoint failed");
            }
        });
        tracing::info!(%local_addr, "metrics listening on /metrics");
        Ok(MetricsEndpoint {
            local_addr,
            stop,
            task,
        })
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// (partitions led here whose ISR is smaller than their replica set, partitions of the
/// cluster without a live leader if this broker is the active controller, else 0).
fn leadership_counts(ctx: &BrokerContext, image: &crate::metadata::MetadataImage) -> (i64, i64) {
    let me = ctx.node_id();
    let controller = ctx
        .quorum()
        .is_some_and(|q| q.status().leader == u64::try_from(me).ok());
    let (mut under_replicated, mut offline) = (0, 0);
    for topic in image.topics() {
        for p in 0..topic.partitions {
            let leadership = topic.leadership(p, me);
            if leadership.leader == me && leadership.isr.len() < topic.replicas(p, me).len() {
                under_replicated += 1;
            }
            if controller && ctx.live_leader(image, topic, p).is_none() {
                offline += 1;
            }
        }
    }
    (under_replicated, offline)
}
