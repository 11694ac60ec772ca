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

/// The median of `values` (the mean of the two middle ones for an even count); `None`
/// when empty. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    let sorted = sorted(values);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The nearest-rank `quantile` (0 < q ≤ 1) of `values`: the smallest value with at least
/// `q` of the values at or below it; `None` when empty. `nearest_rank(v, 1.0)` is the max.
pub fn nearest_rank(values: &[f64], quantile: f64) -> Option<f64> {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
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

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(nearest_rank(&values, 0.5), Some(10.0));
        assert_eq!(nearest_rank(&values, 0.9), Some(18.0));
        assert_eq!(nearest_rank(&values, 0.99), Some(20.0));
        assert_eq!(nearest_rank(&values, 1.0), Some(20.0));
        // Out-of-range quantiles are clamped: the min and the max.
        assert_eq!(nearest_rank(&values, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&values, 7.0), Some(20.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
