//! Open-loop pacing for `--rate`: record `k` of a task is due at `start + k / rate`.
//! A request takes the records that are due; it waits for a full request's worth, or for
//! the oldest due record to have lingered `--linger-ms`. Records keep their due time as
//! send timestamp, so end-to-end latency includes any queueing when the broker falls
//! behind (no coordinated omission).

use std::time::Duration;

use tokio::time::Instant;

/// Schedules records at a fixed rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval_nanos: f64,
    taken: u64,
}

/// What a request should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Take this many due records now.
    Take(u64),
    /// Nothing to send yet: wait until this instant and ask again.
    WaitUntil(Instant),
}

impl Pacer {
    /// A pacer of `rate` records per second (> 0) starting at `start`.
    pub fn new(rate: f64, start: Instant) -> Self {
        Pacer {
            start,
            interval_nanos: 1e9 / rate.max(1e-9),
            taken: 0,
        }
    }

    /// When record `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        let nanos = (k as f64 * self.interval_nanos).min(1e18);
        self.start + Duration::from_nanos(nanos as u64)
    }

    /// Records due by `now` (counting from the first, taken or not).
    fn arrived(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as f64;
        (elapsed / self.interval_nanos) as u64 + 1
    }

    /// Decides for a request of at most `full` records with `linger`.
    pub fn next(&self, now: Instant, full: u64, linger: Duration) -> Pace {
        let full = full.max(1);
        let available = self.arrived(now).saturating_sub(self.taken);
        let oldest_due = self.due(self.taken);
        if available >= full {
            Pace::Take(full)
        } else if available >= 1 && now >= oldest_due + linger {
            Pace::Take(available)
        } else {
            let full_at = self.due(self.taken + full - 1);
            Pace::WaitUntil(full_at.min(oldest_due + linger))
        }
    }

    /// Marks `n` records as taken; returns the due time of the first of them.
    pub fn take(&mut self, n: u64) -> u64 {
        let first = self.taken;
        self.taken += n;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_requests_go_as_soon_as_due() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1000.0, start); // one record per ms
        let linger = Duration::from_millis(50);
        // Record 0 is due at start; 10 are due 9 ms later.
        assert_eq!(
            pacer.next(start, 10, linger),
            Pace::WaitUntil(start + Duration::from_millis(9))
        );
        assert_eq!(
            pacer.next(start + Duration::from_millis(9), 10, linger),
            Pace::Take(10)
        );
        assert_eq!(pacer.take(10), 0);
        assert_eq!(pacer.due(10), start + Duration::from_millis(10));
    }

    #[test]
    fn partial_requests_go_after_linger() {
        let start = Instant::now();
        let mut pacer = Pacer::new(100.0, start); // one record per 10 ms
        let linger = Duration::from_millis(5);
        assert_eq!(
            pacer.next(start, 100, linger),
            Pace::WaitUntil(start + linger)
        );
        assert_eq!(pacer.next(start + linger, 100, linger), Pace::Take(1));
        pacer.take(1);
        // The next record is due at 10 ms and lingers until 15 ms.
        assert_eq!(
            pacer.next(start + Duration::from_millis(6), 100, linger),
            Pace::WaitUntil(start + Duration::from_millis(15))
        );
    }

    #[test]
    fn a_late_sender_takes_full_requests() {
        let start = Instant::now();
        let pacer = Pacer::new(1000.0, start);
        let later = start + Duration::from_secs(1);
        assert_eq!(pacer.next(later, 15, Duration::ZERO), Pace::Take(15));
    }
}
