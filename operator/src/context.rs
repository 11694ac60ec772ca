//! [`Context`]: everything a reconcile may touch outside its arguments.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "runnel-operator";

/// Shared state of the controllers: the API client, the clock and retry bookkeeping.
///
/// Cloned behind an `Arc` into every reconcile; the failure map is behind a std `Mutex`
/// held only for a lookup, never across an `.await`.
pub struct Context {
    /// Client of the Kubernetes API.
    pub client: Client,
    /// Source of `lastTransitionTime`s; tests pin it.
    pub clock: fn() -> Time,
    /// Consecutive failures per object key (`namespace/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context using the wall clock.
    pub fn new(client: Client) -> Self {
        Self::with_clock(client, wall_clock)
    }

    /// A context with a given clock (tests pin time with it).
    pub fn with_clock(client: Client, clock: fn() -> Time) -> Self {
        Self {
            client,
            clock,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before the retry:
    /// 5 s doubling per consecutive failure, capped at 5 minutes.
    pub fn record_failure(&self, key: &str) -> Duration {
        let attempt = match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(key.to_string()).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            // A poisoned map only loses backoff history; retry at the cap.
            Err(_) => u32::MAX,
        };
        backoff(attempt)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn record_success(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

/// Delay before retry number `attempt` (1-based): 5 s, 10 s, 20 s, ... at most 300 s.
pub fn backoff(attempt: u32) -> Duration {
    const BASE_SECS: u64 = 5;
    const MAX_SECS: u64 = 300;
    let exponent = attempt.saturating_sub(1).min(16);
    Duration::from_secs(BASE_SECS.saturating_mul(1 << exponent).min(MAX_SECS))
}

fn wall_clock() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let secs: Vec<u64> = [1, 2, 3, 4, 6, 7, 100, u32::MAX]
            .iter()
            .map(|a| backoff(*a).as_secs())
            .collect();
        assert_eq!(secs, [5, 10, 20, 40, 160, 300, 300, 300]);
    }
}
