//! Counters and latency histograms. Each connection task owns its stats (no locks on the
//! hot path); the runner merges them when the tasks end.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs up to one hour, 3 significant digits.
pub const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram.
pub fn latency_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram documents as valid (low ≥ 1, high ≥ 2·low,
    // sigfig ≤ 5): creation cannot fail, and a test creates one.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

/// Records `micros` (at least 1, so a percentile is never zero; capped at the maximum).
pub fn record_latency(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
}

/// Errors seen during the load, counted by label (e.g. `Produce: NotLeaderOrFollower`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    /// Counts one error under `label`.
    pub fn add(&mut self, label: impl Into<String>) {
        *self.0.entry(label.into()).or_default() += 1;
    }

    /// Adds all of `other`'s counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (label, count) in &other.0 {
            *self.0.entry(label.clone()).or_default() += count;
        }
    }

    /// All errors counted.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>, errors: &mut ErrorCounts) {
    if into.add(from).is_err() {
        errors.add("latency histograms could not be merged");
    }
}

/// What producers did.
#[derive(Debug, Clone)]
pub struct ProduceStats {
    /// Records written to the wire (acknowledged or not).
    pub records_sent: u64,
    /// Records in batches the broker acknowledged without error (acks ≠ 0).
    pub records_acked: u64,
    /// Value bytes of acknowledged records.
    pub bytes_acked: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Records counted for throughput: acknowledged, or sent with acks=0, after warmup.
    pub measured_records: u64,
    /// Value bytes of `measured_records`.
    pub measured_bytes: u64,
    /// Request sent → acknowledged, per batch, µs; batches sent after warmup only.
    pub latency: Histogram<u64>,
    /// Run-clock time of the last acknowledgement (or send, with acks=0), µs.
    pub last_micros: u64,
    /// Errors seen.
    pub errors: ErrorCounts,
}

impl Default for ProduceStats {
    fn default() -> Self {
        ProduceStats {
            records_sent: 0,
            records_acked: 0,
            bytes_acked: 0,
            batches_acked: 0,
            measured_records: 0,
            measured_bytes: 0,
            latency: latency_histogram(),
            last_micros: 0,
            errors: ErrorCounts::default(),
        }
    }
}

impl ProduceStats {
    /// Adds another task's stats.
    pub fn merge(&mut self, other: &ProduceStats) {
        self.records_sent += other.records_sent;
        self.records_acked += other.records_acked;
        self.bytes_acked += other.bytes_acked;
        self.batches_acked += other.batches_acked;
        self.measured_records += other.measured_records;
        self.measured_bytes += other.measured_bytes;
        self.last_micros = self.last_micros.max(other.last_micros);
        self.errors.merge(&other.errors);
        merge_histogram(&mut self.latency, &other.latency, &mut self.errors);
    }
}

/// What consumers did.
#[derive(Debug, Clone)]
pub struct ConsumeStats {
    /// Records of this run consumed.
    pub records: u64,
    /// Value bytes of this run's records consumed.
    pub bytes: u64,
    /// Records of other writers or runs (from `--consume-from earliest`), not measured.
    pub foreign_records: u64,
    /// This run's records sent after warmup.
    pub measured_records: u64,
    /// Value bytes of `measured_records`.
    pub measured_bytes: u64,
    /// Send → consumed, per record sent after warmup, µs.
    pub end_to_end: Histogram<u64>,
    /// Run-clock time of the last response that carried this run's records, µs.
    pub last_micros: u64,
    /// Errors seen.
    pub errors: ErrorCounts,
}

impl Default for ConsumeStats {
    fn default() -> Self {
        ConsumeStats {
            records: 0,
            bytes: 0,
            foreign_records: 0,
            measured_records: 0,
            measured_bytes: 0,
            end_to_end: latency_histogram(),
            last_micros: 0,
            errors: ErrorCounts::default(),
        }
    }
}

impl ConsumeStats {
    /// Adds another task's stats.
    pub fn merge(&mut self, other: &ConsumeStats) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.foreign_records += other.foreign_records;
        self.measured_records += other.measured_records;
        self.measured_bytes += other.measured_bytes;
        self.last_micros = self.last_micros.max(other.last_micros);
        self.errors.merge(&other.errors);
        merge_histogram(&mut self.end_to_end, &other.end_to_end, &mut self.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_clamped_to_the_histogram_range() {
        let mut h = latency_histogram();
        record_latency(&mut h, 0);
        record_latency(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_LATENCY_MICROS);
    }

    #[test]
    fn merging_adds_counts_histograms_and_errors() {
        let mut a = ProduceStats::default();
        let mut b = ProduceStats::default();
        a.records_acked = 3;
        b.records_acked = 4;
        b.last_micros = 9;
        record_latency(&mut a.latency, 100);
        record_latency(&mut b.latency, 200);
        b.errors.add("Produce: NotLeaderOrFollower");
        b.errors.add("Produce: NotLeaderOrFollower");
        a.merge(&b);
        assert_eq!(a.records_acked, 7);
        assert_eq!(a.last_micros, 9);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.errors.total(), 2);
        assert_eq!(a.errors.0.get("Produce: NotLeaderOrFollower"), Some(&2));
    }
}
