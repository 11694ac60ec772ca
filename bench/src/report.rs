//! The run's summary: throughput, latency percentiles and errors, as text or JSON.
//!
//! Units: latencies in milliseconds; `MB` is 1,048,576 bytes of record values, as in
//! Kafka's `kafka-producer-perf-test` ("MB/sec"), so the figures compare directly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::RunMode;
use crate::stats::{ConsumeStats, ProduceStats};
use crate::versions::Versions;

/// Bytes in one MB as reported.
pub const MB: f64 = 1_048_576.0;

/// Latency percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples recorded (batches for produce latency, records for end-to-end).
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds; `None` when it is empty.
    /// Always `p50 ≤ p99 ≤ p99.9 ≤ max`.
    pub fn from_micros(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Percentiles {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        })
    }
}

/// Records and bytes over a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    /// Records in the window.
    pub records: u64,
    /// Value bytes in the window.
    pub bytes: u64,
    /// The window's length.
    pub seconds: f64,
    /// `records / seconds` (0 for an empty window).
    pub records_per_sec: f64,
    /// `bytes / MB / seconds` (0 for an empty window).
    pub mb_per_sec: f64,
}

impl Throughput {
    /// Throughput of `records` and `bytes` over `seconds`.
    pub fn new(records: u64, bytes: u64, seconds: f64) -> Self {
        let per_sec = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
        Throughput {
            records,
            bytes,
            seconds,
            records_per_sec: per_sec(records as f64),
            mb_per_sec: per_sec(bytes as f64 / MB),
        }
    }
}

/// The settings a run used, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Bootstrap address as given.
    pub bootstrap: String,
    /// Topic.
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: usize,
    /// Producer clients.
    pub producers: u32,
    /// Consumer clients.
    pub consumers: u32,
    /// Record value bytes.
    pub record_size: usize,
    /// Batch bytes.
    pub batch_size: usize,
    /// Records per full batch.
    pub records_per_batch: usize,
    /// Linger (ms).
    pub linger_ms: u64,
    /// Rate limit (records/s, 0 = none).
    pub rate: u64,
    /// Acks.
    pub acks: i16,
    /// Compression codec name.
    pub compression: String,
    /// Produce seconds after warmup, if time-bound.
    pub duration_secs: Option<f64>,
    /// Records to produce, if count-bound.
    pub records: Option<u64>,
    /// Warmup seconds.
    pub warmup_secs: f64,
    /// Produce requests in flight per connection.
    pub max_in_flight: u32,
    /// Concurrent, read-back or consume-only. Shown in the text only: the JSON keeps the
    /// keys of every earlier report (a catch-up run shows as null end-to-end latency).
    #[serde(skip)]
    pub mode: RunMode,
}

/// What producers achieved.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceReport {
    /// Records written to the wire.
    pub records_sent: u64,
    /// Records acknowledged without error (0 with acks=0).
    pub records_acked: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// After-warmup throughput: acknowledged records (sent records with acks=0).
    pub throughput: Throughput,
    /// Request sent → acknowledged, per batch (none with acks=0).
    pub latency_ms: Option<Percentiles>,
}

/// What consumers achieved.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    /// This run's records consumed.
    pub records: u64,
    /// Records of other runs or writers consumed.
    pub foreign_records: u64,
    /// After-warmup throughput of this run's records; in a catch-up run, of every record
    /// read, from the moment consumers started fetching.
    pub throughput: Throughput,
    /// Send → consumed, per record; `None` in a catch-up run.
    pub end_to_end_latency_ms: Option<Percentiles>,
}

/// The whole summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Settings used.
    pub settings: Settings,
    /// API versions negotiated with the broker.
    pub versions: Versions,
    /// Producer side.
    pub produce: ProduceReport,
    /// Consumer side.
    pub consume: ConsumeReport,
    /// Errors seen, by label.
    pub errors: BTreeMap<String, u64>,
    /// Sum of `errors`.
    pub error_total: u64,
    /// True when `--timeout` cut the run short.
    pub timed_out: bool,
    /// Wall time of the whole run, setup included.
    pub elapsed_secs: f64,
}

/// Produce and consume windows: seconds from each side's start to its last measured event.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Produce window.
    pub produce_secs: f64,
    /// Consume window.
    pub consume_secs: f64,
}

/// Where the windows start, in run-clock microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStarts {
    /// The end of warmup.
    pub produce_micros: u64,
    /// The end of warmup when consumers run alongside producers; the moment consumers
    /// started fetching in a catch-up run (after producing, in `--read-back`).
    pub consume_micros: u64,
}

impl Windows {
    /// Windows from each start to that side's last event (empty when it came before).
    pub fn new(starts: WindowStarts, produce: &ProduceStats, consume: &ConsumeStats) -> Self {
        let secs = |start: u64, last: u64| last.saturating_sub(start) as f64 / 1e6;
        Windows {
            produce_secs: secs(starts.produce_micros, produce.last_micros),
            consume_secs: secs(starts.consume_micros, consume.last_micros),
        }
    }
}

/// Builds the produce section.
pub fn produce_report(stats: &ProduceStats, window_secs: f64) -> ProduceReport {
    ProduceReport {
        records_sent: stats.records_sent,
        records_acked: stats.records_acked,
        batches_acked: stats.batches_acked,
        throughput: Throughput::new(stats.measured_records, stats.measured_bytes, window_secs),
        latency_ms: Percentiles::from_micros(&stats.latency),
    }
}

/// Builds the consume section.
pub fn consume_report(stats: &ConsumeStats, window_secs: f64) -> ConsumeReport {
    ConsumeReport {
        records: stats.records,
        foreign_records: stats.foreign_records,
        throughput: Throughput::new(stats.measured_records, stats.measured_bytes, window_secs),
        end_to_end_latency_ms: Percentiles::from_micros(&stats.end_to_end),
    }
}

/// Writes one latency line (`p50 … mean (n unit)`, or `n/a`) to `out`.
/// The closing lines of a text report: the errors by label, and whether --timeout cut
/// the run short.
pub(crate) fn errors_and_cutoff(
    out: &mut String,
    errors: &BTreeMap<String, u64>,
    total: u64,
    timed_out: bool,
) {
    if errors.is_empty() {
        let _ = writeln!(out, "errors: none");
    } else {
        let _ = writeln!(out, "errors: {total}");
        for (label, count) in errors {
            let _ = writeln!(out, "  {count:>8}  {label}");
        }
    }
    if timed_out {
        let _ = writeln!(out, "the run was cut short by --timeout");
    }
}

pub(crate) fn latency_line(out: &mut String, label: &str, p: Option<&Percentiles>, unit: &str) {
    let _ = match p {
        Some(p) => writeln!(
            out,
            "  {label:<9} p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms  ({} {unit})",
            p.p50, p.p99, p.p999, p.max, p.mean, p.count
        ),
        None => writeln!(out, "  {label:<9} n/a"),
    };
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The report as text for a person.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let v = &self.versions;
        let p = &self.produce;
        let c = &self.consume;
        let mut out = String::new();
        let bound = match (s.duration_secs, s.records) {
            (Some(d), _) => format!("{d} s"),
            (None, Some(n)) => format!("{n} records"),
            (None, None) => "unbounded".to_string(),
        };
        let _ = writeln!(
            out,
            "runnel-bench {} topic {} ({} partitions): {} producer(s), {} consumer(s), {} B records, {} B batches ({} records), linger {} ms, acks={}, compression={}, {bound}, warmup {} s",
            s.bootstrap, s.topic, s.partitions, s.producers, s.consumers, s.record_size, s.batch_size,
            s.records_per_batch, s.linger_ms, s.acks, s.compression, s.warmup_secs
        );
        let _ = writeln!(
            out,
            "versions: Produce v{} Fetch v{} ListOffsets v{} Metadata v{}",
            v.produce, v.fetch, v.list_offsets, v.metadata
        );
        let _ = writeln!(
            out,
            "produce: {} sent, {} acknowledged; {:.0} records/s, {:.2} MB/s over {:.2} s",
            p.records_sent,
            p.records_acked,
            p.throughput.records_per_sec,
            p.throughput.mb_per_sec,
            p.throughput.seconds
        );
        latency_line(&mut out, "latency", p.latency_ms.as_ref(), "batches");
        let _ = writeln!(
            out,
            "{}: {} consumed ({} foreign); {:.0} records/s, {:.2} MB/s over {:.2} s",
            s.mode.consume_label(),
            c.records,
            c.foreign_records,
            c.throughput.records_per_sec,
            c.throughput.mb_per_sec,
            c.throughput.seconds
        );
        latency_line(&mut out, "e2e", c.end_to_end_latency_ms.as_ref(), "records");
        errors_and_cutoff(&mut out, &self.errors, self.error_total, self.timed_out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{latency_histogram, record_latency};

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = latency_histogram();
        for micros in 1..=1000u64 {
            record_latency(&mut h, micros * 1000); // 1 ms .. 1000 ms
        }
        let p = Percentiles::from_micros(&h).unwrap();
        assert_eq!(p.count, 1000);
        // 3 significant digits: within 0.1 %.
        assert!((p.p50 - 500.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99 - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.p999 - 999.0).abs() <= 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() <= 1.0, "{p:?}");
        assert!((p.mean - 500.5).abs() <= 0.5, "{p:?}");
        assert!(p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        assert_eq!(Percentiles::from_micros(&latency_histogram()), None);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let mut h = latency_histogram();
        record_latency(&mut h, 2500);
        let p = Percentiles::from_micros(&h).unwrap();
        // hdrhistogram reports the highest value equivalent to 2500 µs at 3 digits.
        assert!((2.5..=2.502).contains(&p.p50), "{p:?}");
        assert_eq!((p.p50, p.p99, p.p999), (p.max, p.max, p.max));
    }

    #[test]
    fn throughput_in_records_and_mb_per_second() {
        let t = Throughput::new(2048, 2 * 1_048_576, 2.0);
        assert_eq!(t.records_per_sec, 1024.0);
        assert_eq!(t.mb_per_sec, 1.0);
        let empty = Throughput::new(5, 5, 0.0);
        assert_eq!((empty.records_per_sec, empty.mb_per_sec), (0.0, 0.0));
    }

    #[test]
    fn windows_start_at_warmup_end() {
        let mut produce = ProduceStats::default();
        let mut consume = ConsumeStats::default();
        produce.last_micros = 3_000_000;
        consume.last_micros = 500_000; // before warmup end: an empty window
        let starts = WindowStarts {
            produce_micros: 1_000_000,
            consume_micros: 1_000_000,
        };
        let w = Windows::new(starts, &produce, &consume);
        assert_eq!(w.produce_secs, 2.0);
        assert_eq!(w.consume_secs, 0.0);
    }

    #[test]
    fn read_back_window_starts_when_consumers_start() {
        // Warmup ends at 1 s, the last acknowledgement is at 3 s, read-back consumers
        // start at 3.5 s and receive the last record at 4.25 s.
        let produce = ProduceStats {
            last_micros: 3_000_000,
            ..Default::default()
        };
        let consume = ConsumeStats {
            last_micros: 4_250_000,
            ..Default::default()
        };
        let starts = WindowStarts {
            produce_micros: 1_000_000,
            consume_micros: 3_500_000,
        };
        let w = Windows::new(starts, &produce, &consume);
        assert_eq!(w.produce_secs, 2.0);
        assert_eq!(w.consume_secs, 0.75);
    }

    #[test]
    fn consume_only_has_an_empty_produce_window() {
        let consume = ConsumeStats {
            last_micros: 2_000_000,
            ..Default::default()
        };
        let starts = WindowStarts {
            produce_micros: 0,
            consume_micros: 1_500_000,
        };
        let w = Windows::new(starts, &ProduceStats::default(), &consume);
        assert_eq!(w.produce_secs, 0.0);
        assert_eq!(w.consume_secs, 0.5);
    }

    fn sample_report() -> Report {
        let mut produce = ProduceStats {
            records_sent: 10,
            records_acked: 10,
            batches_acked: 2,
            measured_records: 10,
            measured_bytes: 10 * 1024,
            ..Default::default()
        };
        record_latency(&mut produce.latency, 1500);
        record_latency(&mut produce.latency, 2500);
        let mut consume = ConsumeStats {
            records: 10,
            measured_records: 10,
            measured_bytes: 10 * 1024,
            ..Default::default()
        };
        record_latency(&mut consume.end_to_end, 4000);
        consume.errors.add("Fetch: request timed out");
        Report {
            settings: Settings {
                bootstrap: "127.0.0.1:9092".into(),
                topic: "t".into(),
                partitions: 2,
                producers: 1,
                consumers: 1,
                record_size: 1024,
                batch_size: 16384,
                records_per_batch: 15,
                linger_ms: 5,
                rate: 0,
                acks: 1,
                compression: "none".into(),
                duration_secs: None,
                records: Some(10),
                warmup_secs: 0.0,
                max_in_flight: 5,
                mode: RunMode::Concurrent,
            },
            versions: Versions {
                produce: 11,
                fetch: 12,
                list_offsets: 6,
                metadata: 12,
                create_topics: Some(7),
            },
            produce: produce_report(&produce, 0.5),
            consume: consume_report(&consume, 1.0),
            errors: consume.errors.0.clone(),
            error_total: 1,
            timed_out: false,
            elapsed_secs: 1.5,
        }
    }

    #[test]
    fn json_has_the_figures_a_script_reads() {
        let json: serde_json::Value =
            serde_json::from_str(&sample_report().to_json().unwrap()).unwrap();
        assert_eq!(json["produce"]["records_acked"], 10);
        assert_eq!(json["produce"]["throughput"]["records_per_sec"], 20.0);
        assert_eq!(json["consume"]["records"], 10);
        let e2e_p50 = json["consume"]["end_to_end_latency_ms"]["p50"]
            .as_f64()
            .unwrap();
        assert!((4.0..=4.004).contains(&e2e_p50), "{e2e_p50}");
        assert_eq!(json["errors"]["Fetch: request timed out"], 1);
        assert_eq!(json["settings"]["acks"], 1);
        assert!(json["produce"]["latency_ms"]["p99"].as_f64().unwrap() >= 2.5);
    }

    /// Every key path of a JSON value, objects only (arrays have none here).
    fn key_paths(value: &serde_json::Value, prefix: &str, into: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, child) in map {
                let path = format!("{prefix}/{key}");
                key_paths(child, &path, into);
                into.push(path);
            }
        }
    }

    #[test]
    fn catch_up_json_keeps_the_keys_with_null_end_to_end_latency() {
        let live = sample_report();
        let mut read_back = sample_report();
        read_back.settings.mode = RunMode::ReadBack;
        let consume = ConsumeStats {
            records: 10,
            measured_records: 10,
            measured_bytes: 10 * 1024,
            ..Default::default()
        };
        read_back.consume = consume_report(&consume, 0.25);
        let live: serde_json::Value = serde_json::from_str(&live.to_json().unwrap()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&read_back.to_json().unwrap()).unwrap();
        assert!(json["consume"]["end_to_end_latency_ms"].is_null(), "{json}");
        assert_eq!(json["consume"]["throughput"]["bytes"], 10 * 1024);
        assert_eq!(json["consume"]["throughput"]["records_per_sec"], 40.0);
        // Same key paths, down to the latency object that is now null.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key_paths(&live, "", &mut a);
        key_paths(&json, "", &mut b);
        a.retain(|p| !p.starts_with("/consume/end_to_end_latency_ms/"));
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let text = read_back.to_text();
        assert!(
            text.contains("consume (read back from earliest after producing): 10 consumed"),
            "{text}"
        );
        assert!(text.contains("e2e       n/a"), "{text}");
    }

    #[test]
    fn text_names_throughput_latency_and_errors() {
        let text = sample_report().to_text();
        assert!(
            text.contains("produce: 10 sent, 10 acknowledged; 20 records/s"),
            "{text}"
        );
        assert!(text.contains("e2e       p50 4.00"), "{text}");
        assert!(text.contains("errors: 1"), "{text}");
        assert!(text.contains("Fetch: request timed out"), "{text}");
    }
}
