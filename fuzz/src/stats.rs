//! Outcomes per API: how many frames of each were answered, closed, left without a
//! response, or given up. A worker prints its counts as `stats` lines; the supervisor
//! adds up the lines of every worker it ran.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::harness::Outcome;

/// Outcomes of the frames of one API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// A response frame came back.
    pub answered: u64,
    /// The connection would have been closed.
    pub closed: u64,
    /// No response (acks=0).
    pub no_response: u64,
    /// Not answered in time.
    pub timed_out: u64,
}

impl Counts {
    /// Frames counted.
    pub fn total(&self) -> u64 {
        self.answered + self.closed + self.no_response + self.timed_out
    }

    /// How many distinct outcomes occurred.
    pub fn distinct(&self) -> usize {
        [self.answered, self.closed, self.no_response, self.timed_out]
            .iter()
            .filter(|&&n| n > 0)
            .count()
    }
}

/// Outcomes by API label (see [`crate::corpus::frame_label`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Counts per API label, sorted by label.
    pub per_api: BTreeMap<String, Counts>,
}

impl Stats {
    /// Counts one frame.
    pub fn record(&mut self, label: String, outcome: Outcome) {
        let c = self.per_api.entry(label).or_default();
        match outcome {
            Outcome::Answered => c.answered += 1,
            Outcome::Closed => c.closed += 1,
            Outcome::NoResponse => c.no_response += 1,
            Outcome::TimedOut => c.timed_out += 1,
        }
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Stats) {
        for (label, c) in &other.per_api {
            let mine = self.per_api.entry(label.clone()).or_default();
            mine.answered += c.answered;
            mine.closed += c.closed;
            mine.no_response += c.no_response;
            mine.timed_out += c.timed_out;
        }
    }

    /// Frames counted, over all APIs.
    pub fn frames(&self) -> u64 {
        self.per_api.values().map(Counts::total).sum()
    }

    /// One `stats <label> <answered> <closed> <no_response> <timed_out>` line per API.
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        for (label, c) in &self.per_api {
            let _ = writeln!(
                out,
                "stats {label} {} {} {} {}",
                c.answered, c.closed, c.no_response, c.timed_out
            );
        }
        out
    }

    /// Reads back one line of [`Stats::to_lines`]; other lines are `false`.
    pub fn parse_line(&mut self, line: &str) -> bool {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let ["stats", label, a, c, n, t] = parts.as_slice() else {
            return false;
        };
        let (Ok(a), Ok(c), Ok(n), Ok(t)) = (a.parse(), c.parse(), n.parse(), t.parse()) else {
            return false;
        };
        self.merge(&Stats {
            per_api: BTreeMap::from([(
                (*label).to_string(),
                Counts {
                    answered: a,
                    closed: c,
                    no_response: n,
                    timed_out: t,
                },
            )]),
        });
        true
    }

    /// The report: frames, frames/s and the outcome table.
    pub fn report(&self, elapsed: Duration) -> String {
        let frames = self.frames();
        let rate = frames as f64 / elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "{frames} frames in {:.1} s: {rate:.0} frames/s\n",
            elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>11} {:>10} {:>9}",
            "API", "frames", "answered", "closed", "no response", "timed out", "outcomes"
        );
        for (label, c) in &self.per_api {
            let _ = writeln!(
                out,
                "{label:<24} {:>10} {:>10} {:>10} {:>11} {:>10} {:>9}",
                c.total(),
                c.answered,
                c.closed,
                c.no_response,
                c.timed_out,
                c.distinct()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_merge() {
        let mut a = Stats::default();
        a.record("Produce".into(), Outcome::Answered);
        a.record("Produce".into(), Outcome::NoResponse);
        a.record("Fetch".into(), Outcome::Closed);
        let mut b = Stats::default();
        for line in a.to_lines().lines().chain(a.to_lines().lines()) {
            assert!(b.parse_line(line));
        }
        assert!(!b.parse_line("progress 5"));
        assert_eq!(b.frames(), 6);
        assert_eq!(b.per_api["Produce"].no_response, 2);
        assert_eq!(b.per_api["Produce"].distinct(), 2);
        assert!(b.report(Duration::from_secs(1)).contains("6 frames"));
    }
}
