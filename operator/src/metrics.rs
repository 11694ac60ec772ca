//! The operator's Prometheus metrics: reconciles, their errors and durations per
//! controller, whether this replica leads, and the work each KafkaCluster has in hand
//! (partition moves and rolling restarts).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `runnel_operator_reconciles_total` | counter | `controller` |
//! | `runnel_operator_reconcile_errors_total` | counter | `controller`, `error` ([`Error::label`]) |
//! | `runnel_operator_reconcile_duration_seconds` | histogram | `controller` |
//! | `runnel_operator_leader` | gauge | — (1 while this replica runs the controllers) |
//! | `runnel_operator_partition_reassignments_in_flight` | gauge | `namespace`, `kafkacluster` |
//! | `runnel_operator_partition_reassignment_bytes_left` | gauge | `namespace`, `kafkacluster` |
//! | `runnel_operator_partition_reassignment_bytes_moved_total` | counter | `namespace`, `kafkacluster` |
//! | `runnel_operator_partition_reassignments_started_total` | counter | — |
//! | `runnel_operator_rolling_restarts_in_progress` | gauge | `namespace`, `kafkacluster` (1 while a roll runs) |
//!
//! Every reconcile is counted once by [`crate::controller::observed`], failed or not.
//! The per-KafkaCluster series go when their cluster does: the KafkaCluster controller
//! drops those of clusters its watch no longer lists ([`Metrics::retain_clusters`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::Error;

/// Reconcile duration buckets, 10 ms to 2 min: a pass makes a few API calls, and Kafka
/// admin calls can wait on a broker.
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every metric the operator exports, in its own registry.
///
/// Shared behind an `Arc` by the controllers and the HTTP endpoint; the prometheus
/// types are lock-free counters, safe to update from any task.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: HistogramVec,
    /// 1 while this replica holds the leader lease (or runs without leader election).
    pub leader: IntGauge,
    reassignments_in_flight: IntGaugeVec,
    reassignment_bytes_left: IntGaugeVec,
    reassignment_bytes_moved: IntCounterVec,
    reassignments_started: IntCounter,
    rolling_restarts: IntGaugeVec,
    /// The KafkaClusters (namespace, name) with series, so those of deleted ones can be
    /// found and dropped, with the moves their last reconcile saw in flight (partition,
    /// bytes each copies), so that the bytes of those gone since count as moved. Locked
    /// only to read or change it, never across an await.
    clusters: Mutex<BTreeMap<(String, String), BTreeMap<String, i64>>>,
}

/// What one KafkaCluster has in hand, as its last reconcile saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterWork {
    /// Partition reassignments in flight.
    pub reassignments_in_flight: usize,
    /// Bytes the moves still have to copy.
    pub bytes_left: i64,
    /// The moves in flight by partition (`topic-index`), with the bytes each copies (the
    /// partition's size times the replicas it adds); `None` when the reconcile could not
    /// look, which leaves the last known moves as they were.
    pub moves: Option<BTreeMap<String, i64>>,
    /// A rolling restart is under way.
    pub rolling: bool,
}

impl Metrics {
    /// Registers every metric in a fresh registry, with a zero series for each of
    /// `controllers` so that rates exist before the first reconcile.
    pub fn new(controllers: &[&str]) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "runnel_operator_reconciles_total",
                "Reconciles run, failed or not, by controller.",
            ),
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "runnel_operator_reconcile_errors_total",
                "Reconciles that ended in an error, by controller and error label.",
            ),
            &["controller", "error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "runnel_operator_reconcile_duration_seconds",
                "Time one reconcile took, by controller.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["controller"],
        )?;
        let leader = IntGauge::new(
            "runnel_operator_leader",
            "1 while this replica holds the leader lease and runs the controllers.",
        )?;
        let cluster_labels = &["namespace", "kafkacluster"];
        let reassignments_in_flight = IntGaugeVec::new(
            Opts::new(
                "runnel_operator_partition_reassignments_in_flight",
                "Partition reassignments in flight, by KafkaCluster.",
            ),
            cluster_labels,
        )?;
        let reassignment_bytes_left = IntGaugeVec::new(
            Opts::new(
                "runnel_operator_partition_reassignment_bytes_left",
                "Bytes the partition moves of a KafkaCluster still have to copy.",
            ),
            cluster_labels,
        )?;
        let reassignment_bytes_moved = IntCounterVec::new(
            Opts::new(
                "runnel_operator_partition_reassignment_bytes_moved_total",
                "Bytes copied by the partition moves of a KafkaCluster that completed: each \
                 move's partition size times the replicas it added, counted when a reconcile \
                 sees it gone from the moves in flight.",
            ),
            cluster_labels,
        )?;
        let reassignments_started = IntCounter::new(
            "runnel_operator_partition_reassignments_started_total",
            "Partition reassignments the operator started.",
        )?;
        let rolling_restarts = IntGaugeVec::new(
            Opts::new(
                "runnel_operator_rolling_restarts_in_progress",
                "1 while a rolling restart of the KafkaCluster's brokers is under way.",
            ),
            cluster_labels,
        )?;
        registry.register(Box::new(reassignments_in_flight.clone()))?;
        registry.register(Box::new(reassignment_bytes_left.clone()))?;
        registry.register(Box::new(reassignment_bytes_moved.clone()))?;
        registry.register(Box::new(reassignments_started.clone()))?;
        registry.register(Box::new(rolling_restarts.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        for controller in controllers {
            reconciles.with_label_values(&[*controller]);
            reconcile_duration.with_label_values(&[*controller]);
        }
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            leader,
            reassignments_in_flight,
            reassignment_bytes_left,
            reassignment_bytes_moved,
            reassignments_started,
            rolling_restarts,
            clusters: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records what the KafkaCluster `namespace/name` has in hand.
    pub fn cluster_work(&self, namespace: &str, name: &str, work: ClusterWork) {
        let labels = [namespace, name];
        let moved = self.reassignment_bytes_moved.with_label_values(&labels);
        if let Ok(mut clusters) = self.clusters.lock() {
            let known = clusters
                .entry((namespace.to_string(), name.to_string()))
                .or_default();
            if let Some(moves) = work.moves {
                let done: i64 = known
                    .iter()
                    .filter(|(partition, _)| !moves.contains_key(*partition))
                    .map(|(_, bytes)| *bytes)
                    .sum();
                moved.inc_by(u64::try_from(done).unwrap_or(0));
                *known = moves;
            }
        }
        self.reassignments_in_flight
            .with_label_values(&labels)
            .set(i64::try_from(work.reassignments_in_flight).unwrap_or(i64::MAX));
        self.reassignment_bytes_left
            .with_label_values(&labels)
            .set(work.bytes_left);
        self.rolling_restarts
            .with_label_values(&labels)
            .set(i64::from(work.rolling));
    }

    /// Drops the series of every KafkaCluster for which `keep(namespace, name)` is false.
    pub fn retain_clusters(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<(String, String)> = match self.clusters.lock() {
            Ok(mut clusters) => {
                let gone = clusters
                    .keys()
                    .filter(|(namespace, name)| !keep(namespace, name))
                    .cloned()
                    .collect();
                clusters.retain(|(namespace, name), _| keep(namespace, name));
                gone
            }
            // A poisoned set only keeps series longer; nothing else depends on it.
            Err(_) => return,
        };
        for (namespace, name) in &gone {
            let labels = [namespace.as_str(), name.as_str()];
            for gauge in [
                &self.reassignments_in_flight,
                &self.reassignment_bytes_left,
                &self.rolling_restarts,
            ] {
                // Every series is set together in `cluster_work`; an error here only
                // means this one was never set.
                let _ = gauge.remove_label_values(&labels);
            }
            let _ = self.reassignment_bytes_moved.remove_label_values(&labels);
        }
    }

    /// Counts `count` partition reassignments started.
    pub fn reassignments_started(&self, count: usize) {
        self.reassignments_started
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts one reconcile of `controller` that took `elapsed` and ended in `error`
    /// (`None`: success).
    pub fn reconciled(&self, controller: &str, elapsed: Duration, error: Option<&Error>) {
        self.reconciles.with_label_values(&[controller]).inc();
        self.reconcile_duration
            .with_label_values(&[controller])
            .observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            self.reconcile_errors
                .with_label_values(&[controller, error.label()])
                .inc();
        }
    }

    /// Reconciles of `controller` counted so far.
    pub fn reconciles(&self, controller: &str) -> u64 {
        self.reconciles.with_label_values(&[controller]).get()
    }

    /// Errors labelled `error` of `controller` counted so far.
    pub fn reconcile_errors(&self, controller: &str, error: &str) -> u64 {
        self.reconcile_errors
            .with_label_values(&[controller, error])
            .get()
    }

    /// Durations of `controller` observed so far.
    pub fn reconcile_durations(&self, controller: &str) -> u64 {
        self.reconcile_duration
            .with_label_values(&[controller])
            .get_sample_count()
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_errors_and_durations_per_controller() {
        let metrics = Metrics::new(&["topic", "kafkacluster"]).unwrap();
        let invalid = Error::InvalidSpec {
            field: "spec.config",
            reason: "no".into(),
        };
        metrics.reconciled("topic", Duration::from_millis(20), None);
        metrics.reconciled("topic", Duration::from_millis(30), Some(&invalid));

        assert_eq!(metrics.reconciles("topic"), 2);
        assert_eq!(metrics.reconcile_errors("topic", "invalid_spec"), 1);
        assert_eq!(metrics.reconcile_durations("topic"), 2);
        assert_eq!(metrics.reconciles("kafkacluster"), 0);

        metrics.reassignments_started(3);
        metrics.cluster_work(
            "streaming",
            "demo",
            ClusterWork {
                reassignments_in_flight: 2,
                bytes_left: 4096,
                moves: None,
                rolling: true,
            },
        );
        let text = metrics.render();
        for line in [
            "runnel_operator_reconciles_total{controller=\"topic\"} 2",
            "runnel_operator_reconciles_total{controller=\"kafkacluster\"} 0",
            "runnel_operator_reconcile_errors_total{controller=\"topic\",error=\"invalid_spec\"} 1",
            "runnel_operator_reconcile_duration_seconds_count{controller=\"topic\"} 2",
            "runnel_operator_leader 0",
            "runnel_operator_partition_reassignments_started_total 3",
            "runnel_operator_partition_reassignments_in_flight{kafkacluster=\"demo\",namespace=\"streaming\"} 2",
            "runnel_operator_partition_reassignment_bytes_left{kafkacluster=\"demo\",namespace=\"streaming\"} 4096",
            "runnel_operator_rolling_restarts_in_progress{kafkacluster=\"demo\",namespace=\"streaming\"} 1",
            "runnel_operator_partition_reassignment_bytes_moved_total{kafkacluster=\"demo\",namespace=\"streaming\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn the_series_of_a_cluster_that_is_gone_are_dropped() {
        let metrics = Metrics::new(&["kafkacluster"]).unwrap();
        let work = ClusterWork {
            reassignments_in_flight: 1,
            bytes_left: 10,
            moves: None,
            rolling: false,
        };
        metrics.cluster_work("streaming", "demo", work.clone());
        metrics.cluster_work("streaming", "gone", work.clone());
        metrics.cluster_work("other", "gone", work.clone());
        metrics.retain_clusters(|namespace, name| (namespace, name) != ("streaming", "gone"));

        let text = metrics.render();
        assert_eq!(series_in(&text, "gone", "streaming"), 0, "{text}");
        assert_eq!(series_in(&text, "demo", "streaming"), 4, "{text}");
        assert_eq!(series_in(&text, "gone", "other"), 4, "{text}");

        // Dropping again, or a cluster never recorded, is no error; a cluster recorded
        // again gets its series back.
        metrics.retain_clusters(|namespace, _| namespace != "streaming");
        metrics.retain_clusters(|namespace, _| namespace != "streaming");
        assert!(!metrics.render().contains("namespace=\"streaming\""));
        metrics.cluster_work("streaming", "gone", work);
        assert_eq!(series_in(&metrics.render(), "gone", "streaming"), 4);
    }

    #[test]
    fn the_bytes_of_moves_gone_from_those_in_flight_count_as_moved() {
        let metrics = Metrics::new(&["kafkacluster"]).unwrap();
        let moved = |m: &Metrics| {
            m.reassignment_bytes_moved
                .with_label_values(&["streaming", "demo"])
                .get()
        };
        let pass = |moves: Option<&[(&str, i64)]>| ClusterWork {
            moves: moves.map(|m| m.iter().map(|(p, b)| ((*p).to_string(), *b)).collect()),
            ..ClusterWork::default()
        };
        metrics.cluster_work(
            "streaming",
            "demo",
            pass(Some(&[("t-0", 100), ("t-1", 50)])),
        );
        assert_eq!(moved(&metrics), 0);
        // t-0 completed; t-2 started.
        metrics.cluster_work("streaming", "demo", pass(Some(&[("t-1", 50), ("t-2", 7)])));
        assert_eq!(moved(&metrics), 100);
        // A pass that could not look changes nothing.
        metrics.cluster_work("streaming", "demo", pass(None));
        assert_eq!(moved(&metrics), 100);
        metrics.cluster_work("streaming", "demo", pass(Some(&[])));
        assert_eq!(moved(&metrics), 157);
        // Another cluster's moves are its own.
        metrics.cluster_work("streaming", "other", pass(Some(&[("t-0", 1)])));
        metrics.cluster_work("streaming", "other", pass(Some(&[])));
        assert_eq!(moved(&metrics), 157);
    }

    /// How many series of `text` carry the labels of KafkaCluster `namespace/cluster`.
    fn series_in(text: &str, cluster: &str, namespace: &str) -> usize {
        let labels = format!("{{kafkacluster=\"{cluster}\",namespace=\"{namespace}\"}}");
        text.lines().filter(|l| l.contains(&labels)).count()
    }
}
