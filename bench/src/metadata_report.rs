//! What a `--metadata` run measured: the answers' shape, requests per second, latency
//! per request and errors, as text or JSON.
//!
//! An error is counted once per response that carries it, under the Kafka error's name
//! (`Metadata: LeaderNotAvailable`), however many topics or partitions it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use kafka_protocol::messages::{ApiKey, MetadataResponse};
use serde::Serialize;

use crate::config::MetadataTopics;
use crate::error::BenchError;
use crate::report::{errors_and_cutoff, latency_line, Percentiles};
use crate::stats::{latency_histogram, record_latency, ErrorCounts};

/// What one Metadata response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResponseShape {
    /// Brokers listed.
    pub brokers: usize,
    /// The controller id the response names (-1 when none, or before version 1).
    pub controller_id: i32,
    /// Topics listed.
    pub topics: usize,
    /// Partitions over all topics listed.
    pub partitions: usize,
    /// Partitions listed without a leader (leader id below 0).
    pub leaderless_partitions: usize,
}

/// The shape of `response`, counting each Kafka error it carries once into `errors`.
pub fn shape(response: &MetadataResponse, errors: &mut ErrorCounts) -> ResponseShape {
    let mut codes = BTreeSet::new();
    let mut partitions = 0;
    let mut leaderless_partitions = 0;
    for topic in &response.topics {
        codes.insert(topic.error_code);
        for partition in &topic.partitions {
            partitions += 1;
            if partition.leader_id.0 < 0 {
                leaderless_partitions += 1;
            }
            codes.insert(partition.error_code);
        }
    }
    for code in codes {
        if let Some(error) = BenchError::from_code(ApiKey::Metadata, code) {
            errors.add(error.label());
        }
    }
    ResponseShape {
        brokers: response.brokers.len(),
        controller_id: response.controller_id.0,
        topics: response.topics.len(),
        partitions,
        leaderless_partitions,
    }
}

/// What one connection (or, merged, all of them) did.
#[derive(Debug, Clone)]
pub struct MetadataStats {
    /// Responses received.
    pub answered: u64,
    /// Responses to requests sent after the warmup: the figures count these.
    pub measured: u64,
    /// Request sent → response decoded, µs, per measured request.
    pub latency: Histogram<u64>,
    /// Run-clock time of the last response, µs.
    pub last_micros: u64,
    /// The shape of the last measured response.
    pub shape: Option<ResponseShape>,
    /// Errors seen.
    pub errors: ErrorCounts,
}

impl Default for MetadataStats {
    fn default() -> Self {
        MetadataStats {
            answered: 0,
            measured: 0,
            latency: latency_histogram(),
            last_micros: 0,
            shape: None,
            errors: ErrorCounts::default(),
        }
    }
}

impl MetadataStats {
    /// Counts one response received at `answered_micros` (run clock), `latency_micros`
    /// after its request was sent; `measured` when the request was sent after the warmup.
    pub fn account(
        &mut self,
        response: &MetadataResponse,
        latency_micros: u64,
        answered_micros: u64,
        measured: bool,
    ) {
        self.answered += 1;
        self.last_micros = self.last_micros.max(answered_micros);
        let shape = shape(response, &mut self.errors);
        if measured {
            self.measured += 1;
            record_latency(&mut self.latency, latency_micros);
            self.shape = Some(shape);
        }
    }

    /// Adds another connection's stats.
    pub fn merge(&mut self, other: &MetadataStats) {
        self.answered += other.answered;
        self.measured += other.measured;
        self.last_micros = self.last_micros.max(other.last_micros);
        self.shape = self.shape.or(other.shape);
        self.errors.merge(&other.errors);
        if self.latency.add(&other.latency).is_err() {
            self.errors.add("latency histograms could not be merged");
        }
    }
}

/// Requests answered over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RequestRate {
    /// Measured requests answered.
    pub requests: u64,
    /// From the end of the warmup to the last response.
    pub seconds: f64,
    /// `requests / seconds` (0 for an empty window).
    pub per_sec: f64,
}

impl RequestRate {
    /// The rate of `requests` over `seconds`.
    pub fn new(requests: u64, seconds: f64) -> Self {
        RequestRate {
            requests,
            seconds,
            per_sec: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// The settings a `--metadata` run used, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataSettings {
    /// The broker measured, as given.
    pub bootstrap: String,
    /// All topics or named ones.
    pub topics: MetadataTopics,
    /// The topics named in each request (empty when asking for all).
    pub topic_names: Vec<String>,
    /// Connections, one request in flight each.
    pub connections: u32,
    /// Seconds measured after the warmup.
    pub duration_secs: f64,
    /// Warmup seconds.
    pub warmup_secs: f64,
}

/// The whole summary of a `--metadata` run.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataReport {
    /// Settings used.
    pub settings: MetadataSettings,
    /// The Metadata version sent.
    pub metadata_version: i16,
    /// Responses received, warmup included.
    pub answered: u64,
    /// What the last measured response held.
    pub response: Option<ResponseShape>,
    /// Measured requests per second.
    pub requests: RequestRate,
    /// Request sent → response decoded, per measured request.
    pub latency_ms: Option<Percentiles>,
    /// Errors seen, by label.
    pub errors: BTreeMap<String, u64>,
    /// Sum of `errors`.
    pub error_total: u64,
    /// True when `--timeout` cut the run short.
    pub timed_out: bool,
    /// Wall time of the whole run, setup included.
    pub elapsed_secs: f64,
}

impl MetadataReport {
    /// The report of merged `stats`, measured from `window_start_micros` (the end of the
    /// warmup, run clock) to the last response.
    pub fn new(
        settings: MetadataSettings,
        metadata_version: i16,
        stats: &MetadataStats,
        window_start_micros: u64,
    ) -> Self {
        let seconds = stats.last_micros.saturating_sub(window_start_micros) as f64 / 1e6;
        MetadataReport {
            settings,
            metadata_version,
            answered: stats.answered,
            response: stats.shape,
            requests: RequestRate::new(stats.measured, seconds),
            latency_ms: Percentiles::from_micros(&stats.latency),
            errors: stats.errors.0.clone(),
            error_total: stats.errors.total(),
            timed_out: false,
            elapsed_secs: 0.0,
        }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The report as text for a person.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let asked = match s.topics {
            MetadataTopics::All => "all topics".to_string(),
            MetadataTopics::Named => format!("{} named topic(s)", s.topic_names.len()),
        };
        let _ = writeln!(
            out,
            "runnel-bench {} Metadata v{} of {asked}: {} connection(s), one request in flight each, {} s, warmup {} s",
            s.bootstrap, self.metadata_version, s.connections, s.duration_secs, s.warmup_secs
        );
        let _ = match &self.response {
            Some(r) => writeln!(
                out,
                "answers: {} brokers (controller {}), {} topics, {} partitions ({} without a leader)",
                r.brokers, r.controller_id, r.topics, r.partitions, r.leaderless_partitions
            ),
            None => writeln!(out, "answers: none measured"),
        };
        let _ = writeln!(
            out,
            "requests: {} answered; {:.0} requests/s over {:.2} s",
            self.answered, self.requests.per_sec, self.requests.seconds
        );
        latency_line(&mut out, "latency", self.latency_ms.as_ref(), "requests");
        errors_and_cutoff(&mut out, &self.errors, self.error_total, self.timed_out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// Kafka's LEADER_NOT_AVAILABLE error code.
    const LEADER_NOT_AVAILABLE: i16 = 5;

    /// A response of `brokers` brokers and one topic per entry of `leaders` (each
    /// partition's leader id).
    fn response(brokers: i32, leaders: &[&[i32]]) -> MetadataResponse {
        MetadataResponse::default()
            .with_controller_id(BrokerId(1))
            .with_brokers(
                (0..brokers)
                    .map(|id| MetadataResponseBroker::default().with_node_id(BrokerId(id)))
                    .collect(),
            )
            .with_topics(
                leaders
                    .iter()
                    .enumerate()
                    .map(|(t, partitions)| {
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(format!("t-{t}")))))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .enumerate()
                                    .map(|(p, &leader)| {
                                        MetadataResponsePartition::default()
                                            .with_partition_index(i32::try_from(p).unwrap())
                                            .with_leader_id(BrokerId(leader))
                                            .with_error_code(if leader < 0 {
                                                LEADER_NOT_AVAILABLE
                                            } else {
                                                0
                                            })
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    #[test]
    fn shape_counts_brokers_topics_partitions_and_leaderless_ones() {
        let mut errors = ErrorCounts::default();
        let answer = response(3, &[&[0, 1, 2], &[2, 0]]);
        assert_eq!(
            shape(&answer, &mut errors),
            ResponseShape {
                brokers: 3,
                controller_id: 1,
                topics: 2,
                partitions: 5,
                leaderless_partitions: 0,
            }
        );
        assert_eq!(errors.total(), 0);
    }

    #[test]
    fn an_error_counts_once_per_response() {
        let mut errors = ErrorCounts::default();
        let answer = response(2, &[&[-1, 0, -1], &[-1]]);
        let shape = shape(&answer, &mut errors);
        assert_eq!(shape.leaderless_partitions, 3);
        assert_eq!(
            errors.0,
            BTreeMap::from([("Metadata: LeaderNotAvailable".to_string(), 1)])
        );
    }

    #[test]
    fn only_requests_after_the_warmup_are_measured() {
        let answer = response(3, &[&[0, 1]]);
        let mut a = MetadataStats::default();
        a.account(&answer, 5_000, 1_000_000, false);
        a.account(&answer, 1_000, 2_000_000, true);
        let mut b = MetadataStats::default();
        b.account(&answer, 3_000, 2_500_000, true);
        a.merge(&b);
        assert_eq!((a.answered, a.measured), (3, 2));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.last_micros, 2_500_000);
        assert_eq!(a.shape.map(|s| s.partitions), Some(2));
    }

    fn settings() -> MetadataSettings {
        MetadataSettings {
            bootstrap: "127.0.0.1:19092".to_string(),
            topics: MetadataTopics::All,
            topic_names: Vec::new(),
            connections: 4,
            duration_secs: 2.0,
            warmup_secs: 1.0,
        }
    }

    #[test]
    fn rate_is_measured_requests_over_the_window_after_warmup() {
        let answer = response(3, &[&[0, 1, 2]]);
        let mut stats = MetadataStats::default();
        for i in 0..100u64 {
            // Warmup ends at 1 s; the last answer comes at 3 s.
            let at = 1_000_000 + (i + 1) * 20_000;
            stats.account(&answer, 2_000, at, true);
        }
        stats.account(&answer, 9_000, 500_000, false);
        let report = MetadataReport::new(settings(), 12, &stats, 1_000_000);
        assert_eq!(report.answered, 101);
        assert_eq!(report.requests.requests, 100);
        assert!((report.requests.seconds - 2.0).abs() < 1e-9);
        assert!((report.requests.per_sec - 50.0).abs() < 1e-9);
        let latency = report.latency_ms.unwrap();
        assert_eq!(latency.count, 100);
        assert!((latency.p50 - 2.0).abs() < 0.01, "{latency:?}");
        assert_eq!(RequestRate::new(5, 0.0).per_sec, 0.0);
    }

    #[test]
    fn text_and_json_name_the_rate_the_shape_and_the_errors() {
        let mut stats = MetadataStats::default();
        stats.account(&response(3, &[&[0, -1]]), 2_000, 2_000_000, true);
        let report = MetadataReport::new(settings(), 12, &stats, 1_000_000);
        let text = report.to_text();
        assert!(
            text.contains("Metadata v12 of all topics: 4 connection(s)"),
            "{text}"
        );
        assert!(
            text.contains("3 brokers (controller 1), 1 topics, 2 partitions (1 without a leader)"),
            "{text}"
        );
        assert!(
            text.contains("requests: 1 answered; 1 requests/s"),
            "{text}"
        );
        assert!(text.contains("Metadata: LeaderNotAvailable"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(json["settings"]["topics"], "all");
        assert_eq!(json["response"]["brokers"], 3);
        assert_eq!(json["response"]["partitions"], 2);
        assert_eq!(json["requests"]["per_sec"], 1.0);
        assert_eq!(json["latency_ms"]["count"], 1);
        assert_eq!(json["errors"]["Metadata: LeaderNotAvailable"], 1);
        assert_eq!(json["error_total"], 1);
    }
}
