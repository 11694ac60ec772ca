//! The operator's Prometheus metrics: reconciles, their errors and durations per
//! controller, and whether this replica leads.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `runnel_operator_reconciles_total` | counter | `controller` |
//! | `runnel_operator_reconcile_errors_total` | counter | `controller`, `error` ([`Error::label`]) |
//! | `runnel_operator_reconcile_duration_seconds` | histogram | `controller` |
//! | `runnel_operator_leader` | gauge | — (1 while this replica runs the controllers) |
//!
//! Every reconcile is counted once by [`crate::controller::observed`], failed or not.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

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
        })
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

        let text = metrics.render();
        for line in [
            "runnel_operator_reconciles_total{controller=\"topic\"} 2",
            "runnel_operator_reconciles_total{controller=\"kafkacluster\"} 0",
            "runnel_operator_reconcile_errors_total{controller=\"topic\",error=\"invalid_spec\"} 1",
            "runnel_operator_reconcile_duration_seconds_count{controller=\"topic\"} 2",
            "runnel_operator_leader 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
