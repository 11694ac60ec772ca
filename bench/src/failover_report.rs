//! What a failover run measured: for each leader kill, the time from the kill to the first
//! acknowledged acks=all produce sent after it, and the summary over all kills.
//!
//! Times are in milliseconds from the moment the bench read `killed` on its control
//! channel (the script writes it right after `kill -9` returns). A kill that did not
//! recover within `--recovery-timeout` counts in `timeouts` and not in the percentiles;
//! `max_ms` is then a lower bound, and the text says so.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{median, nearest_rank, ErrorCounts};

/// One kill and what followed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KillResult {
    /// 1, 2, ... in the order of the kills.
    pub kill: u32,
    /// The node the script killed.
    pub node: i32,
    /// The partition's leader in the bench's last Metadata before the kill.
    pub leader_before: i32,
    /// Kill → first Metadata answer naming another leader (as the producer saw it while
    /// retrying; `None` if it saw none).
    pub elected_ms: Option<f64>,
    /// Kill → first acknowledged produce sent after the kill; `None` on timeout.
    pub recovered_ms: Option<f64>,
    /// The node that acknowledged it.
    pub new_leader: Option<i32>,
    /// Produce attempts that failed between the kill and the recovery.
    pub failed_attempts: u64,
}

impl KillResult {
    /// The result as one control-channel line: `recovered kill=3 node=1 ms=9876.5 ...`,
    /// or `timeout kill=3 node=1 ...`.
    pub fn to_line(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let head = if self.recovered_ms.is_some() {
            "recovered"
        } else {
            "timeout"
        };
        format!(
            "{head} kill={} node={} leader_before={} ms={} elected_ms={} new_leader={} failed_attempts={}",
            self.kill,
            self.node,
            self.leader_before,
            opt(self.recovered_ms),
            opt(self.elected_ms),
            self.new_leader.map_or("-".to_string(), |n| n.to_string()),
            self.failed_attempts,
        )
    }
}

/// Percentiles of recovery times (ms) over the kills that recovered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RecoverySummary {
    /// Kills that recovered.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// Nearest-rank 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
    /// Smallest.
    pub min: f64,
}

impl RecoverySummary {
    /// The summary of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        Some(RecoverySummary {
            count: values.len(),
            p50: median(values)?,
            p90: nearest_rank(values, 0.9)?,
            max: nearest_rank(values, 1.0)?,
            min: nearest_rank(values, 0.0)?,
        })
    }
}

/// The whole failover run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// The bootstrap list as given.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// The produced partition.
    pub partition: i32,
    /// Kills reported by the script.
    pub kills: usize,
    /// Kills without recovery within the timeout.
    pub timeouts: usize,
    /// Kill → first acknowledged produce.
    pub recovered_ms: Option<RecoverySummary>,
    /// Kill → new leader in Metadata.
    pub elected_ms: Option<RecoverySummary>,
    /// Records acknowledged over the run.
    pub records_acked: u64,
    /// Errors seen over the run, by label.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Every kill.
    pub results: Vec<KillResult>,
}

impl FailoverReport {
    /// The summary of `results`.
    pub fn new(
        bootstrap: String,
        topic: String,
        partition: i32,
        results: Vec<KillResult>,
        records_acked: u64,
        errors: &ErrorCounts,
    ) -> Self {
        let recovered: Vec<f64> = results.iter().filter_map(|r| r.recovered_ms).collect();
        let elected: Vec<f64> = results.iter().filter_map(|r| r.elected_ms).collect();
        FailoverReport {
            bootstrap,
            topic,
            partition,
            kills: results.len(),
            timeouts: results.len() - recovered.len(),
            recovered_ms: RecoverySummary::of(&recovered),
            elected_ms: RecoverySummary::of(&elected),
            records_acked,
            errors: errors.0.clone(),
            results,
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// A few lines for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "failover of {} partition {} ({}): {} kills, {} without recovery",
            self.topic, self.partition, self.bootstrap, self.kills, self.timeouts
        );
        let line =
            |label: &str, s: &Option<RecoverySummary>, timeouts: usize| match s {
                Some(s) => format!(
                "  {label}: p50 {:.0} ms  p90 {:.0} ms  max {:.0} ms{}  min {:.0} ms  ({} kills)\n",
                s.p50,
                s.p90,
                s.max,
                if timeouts > 0 { " (timeouts excluded)" } else { "" },
                s.min,
                s.count
            ),
                None => format!("  {label}: none\n"),
            };
        out += &line(
            "kill → first acks=all ack",
            &self.recovered_ms,
            self.timeouts,
        );
        out += &line("kill → new leader in Metadata", &self.elected_ms, 0);
        let _ = writeln!(out, "  records acknowledged: {}", self.records_acked);
        for (label, count) in &self.errors {
            let _ = writeln!(out, "  error {label}: {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(kill: u32, recovered_ms: Option<f64>) -> KillResult {
        KillResult {
            kill,
            node: 1,
            leader_before: 1,
            elected_ms: recovered_ms.map(|ms| ms - 10.0),
            recovered_ms,
            new_leader: recovered_ms.map(|_| 2),
            failed_attempts: 7,
        }
    }

    #[test]
    fn summary_leaves_timeouts_out_of_the_percentiles() {
        let mut results: Vec<KillResult> = (1..=4)
            .map(|k| kill(k, Some(f64::from(k) * 1000.0)))
            .collect();
        results.push(kill(5, None));
        let mut errors = ErrorCounts::default();
        errors.add("connection lost");
        let report = FailoverReport::new("b".into(), "t".into(), 0, results, 99, &errors);
        assert_eq!((report.kills, report.timeouts), (5, 1));
        let recovered = report.recovered_ms.unwrap();
        assert_eq!(recovered.count, 4);
        assert_eq!(
            (recovered.p50, recovered.max, recovered.min),
            (2500.0, 4000.0, 1000.0)
        );
        assert_eq!(report.elected_ms.unwrap().p50, 2490.0);
        let text = report.to_text();
        assert!(text.contains("5 kills, 1 without recovery"), "{text}");
        assert!(text.contains("(timeouts excluded)"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(json["results"].as_array().unwrap().len(), 5);
        assert_eq!(json["errors"]["connection lost"], 1);
    }

    #[test]
    fn lines_say_recovered_or_timeout() {
        assert_eq!(
            kill(3, Some(1234.56)).to_line(),
            "recovered kill=3 node=1 leader_before=1 ms=1234.6 elected_ms=1224.6 new_leader=2 failed_attempts=7"
        );
        assert_eq!(
            kill(4, None).to_line(),
            "timeout kill=4 node=1 leader_before=1 ms=- elected_ms=- new_leader=- failed_attempts=7"
        );
        let empty = FailoverReport::new(
            "b".into(),
            "t".into(),
            0,
            vec![],
            0,
            &ErrorCounts::default(),
        );
        assert!(empty.recovered_ms.is_none());
        assert!(empty.to_text().contains("none"));
    }
}
