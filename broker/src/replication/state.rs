//! One partition's replication state on this broker: its role (leader or follower, in
//! which leader epoch), the high watermark, and — on the leader — how far each follower
//! has fetched.
//!
//! The high watermark is the offset below which every member of the ISR holds the
//! records durably (followers only fetch past what they have fsynced, so a follower's
//! fetch offset is its durable log end). While the leader's ISR is itself alone and
//! `min.insync.replicas` is 1 — a single broker, or a partition whose followers have not
//! caught up — the high watermark is simply the log end offset ("solo"), which keeps the
//! single-broker path as it was: one atomic load per read. While the ISR is smaller than
//! `min.insync.replicas` the high watermark does not advance (KIP-966).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use kafka_protocol::ResponseError;
use tokio::sync::Notify;

/// What this broker is for the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Hosted, but neither leading nor following (offline, or outside a cluster before
    /// the first metadata).
    None,
    /// Leading in `epoch` with this ISR.
    Leader {
        /// Leader epoch.
        epoch: i32,
        /// In-sync replicas (this broker among them).
        isr: Vec<i32>,
        /// `min.insync.replicas` of the topic.
        min_isr: usize,
    },
    /// Following `leader` in `epoch`.
    Follower {
        /// The leader's broker id.
        leader: i32,
        /// Leader epoch.
        epoch: i32,
    },
}

/// How far one follower has fetched, as the leader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's durable log end offset: the offset it fetched from last.
    pub fetch_offset: i64,
    /// The follower's broker epoch (KIP-903), as its fetch said.
    pub broker_epoch: i64,
    /// The leader's log end offset when the follower last fetched.
    pub leader_end_at_fetch: i64,
    /// When it last fetched.
    pub last_fetch: Instant,
    /// The last time it had everything the leader had (Kafka's lastCaughtUpTime).
    pub last_caught_up: Instant,
    /// Whether its last fetch was at or past the high watermark: a follower outside the
    /// ISR may join it then (Kafka's rule for expanding the ISR).
    pub at_high_watermark: bool,
}

/// What a follower's fetch changed on the leader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The high watermark advanced.
    pub advanced: bool,
    /// The follower is outside the ISR and has caught up: the ISR may grow.
    pub may_join: bool,
}

struct Inner {
    /// This broker's id.
    me: i32,
    role: Role,
    /// When this broker took its current role.
    since: Instant,
    followers: HashMap<i32, FollowerProgress>,
}

/// The replication state of one hosted partition.
pub struct ReplicaState {
    solo: AtomicBool,
    high_watermark: AtomicI64,
    /// On a follower: the leader's high watermark as its last fetch answer said.
    leader_high_watermark: AtomicI64,
    inner: Mutex<Inner>,
    /// Notified whenever the high watermark advances (acks=all waits on it).
    pub advanced: Notify,
}

impl Default for ReplicaState {
    fn default() -> Self {
        ReplicaState {
            solo: AtomicBool::new(true),
            high_watermark: AtomicI64::new(0),
            leader_high_watermark: AtomicI64::new(0),
            inner: Mutex::new(Inner {
                me: -1,
                role: Role::None,
                since: Instant::now(),
                followers: HashMap::new(),
            }),
            advanced: Notify::new(),
        }
    }
}

impl ReplicaState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The high watermark, given the log end offset.
    pub fn high_watermark(&self, log_end: i64) -> i64 {
        if self.solo.load(Ordering::Acquire) {
            log_end
        } else {
            self.high_watermark.load(Ordering::Acquire).min(log_end)
        }
    }

    /// Whether the high watermark is the log end offset (ISR of the leader alone).
    pub fn is_solo(&self) -> bool {
        self.solo.load(Ordering::Acquire)
    }

    /// Whether this broker follows the partition (no clone of the role).
    pub fn is_follower(&self) -> bool {
        matches!(self.lock().role, Role::Follower { .. })
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.lock().role.clone()
    }

    /// When this broker took its current role (a new leader epoch counts as new).
    pub fn since(&self) -> Instant {
        self.lock().since
    }

    /// What the leader knows of each follower.
    pub fn followers(&self) -> HashMap<i32, FollowerProgress> {
        self.lock().followers.clone()
    }

    /// Takes the role the metadata gives this broker. `me` is this broker's id and
    /// `log_end` the log end offset now. A new leader epoch forgets what followers
    /// fetched before; a leader whose high watermark was the log end keeps it when it
    /// stops being solo.
    pub fn set_role(&self, me: i32, role: Role, log_end: i64) {
        let mut inner = self.lock();
        if inner.role == role {
            return;
        }
        let was_solo = self.solo.load(Ordering::Acquire);
        let same_epoch = matches!((&inner.role, &role),
            (Role::Leader { epoch: a, .. }, Role::Leader { epoch: b, .. }) if a == b);
        if !same_epoch {
            inner.followers.clear();
            inner.since = Instant::now();
        }
        inner.me = me;
        let solo = match &role {
            Role::Leader { isr, min_isr, .. } => isr.as_slice() == [me] && *min_isr <= 1,
            Role::None | Role::Follower { .. } => false,
        };
        if was_solo && !solo {
            self.high_watermark.store(log_end, Ordering::Release);
        }
        inner.role = role;
        self.solo.store(solo, Ordering::Release);
        drop(inner);
        // The ISR or min.insync.replicas may now allow an advance; producers waiting for
        // acks=all look at the new role either way.
        self.advance(log_end);
        self.advanced.notify_waiters();
    }

    /// On the leader, for acks=all before appending: NOT_ENOUGH_REPLICAS when the ISR is
    /// smaller than `min.insync.replicas`.
    pub fn check_enough_replicas(&self) -> Result<(), i16> {
        match &self.lock().role {
            Role::Leader { isr, min_isr, .. } if isr.len() < *min_isr => {
                Err(ResponseError::NotEnoughReplicas.code())
            }
            _ => Ok(()),
        }
    }

    /// For acks=all after the leader's own append and fsync: waits until every ISR member
    /// holds the records below `upto` (the high watermark reaches it). Fails with
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND once the ISR is below `min.insync.replicas`,
    /// NOT_LEADER_OR_FOLLOWER when this broker stops leading, and REQUEST_TIMED_OUT at
    /// `deadline`.
    pub async fn wait_replicated(
        &self,
        upto: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), i16> {
        loop {
            let notified = self.advanced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_solo() || self.high_watermark.load(Ordering::Acquire) >= upto {
                return Ok(());
            }
            match &self.lock().role {
                Role::Leader { isr, min_isr, .. } if isr.len() < *min_isr => {
                    return Err(ResponseError::NotEnoughReplicasAfterAppend.code())
                }
                Role::Leader { .. } => {}
                _ => return Err(ResponseError::NotLeaderOrFollower.code()),
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ResponseError::RequestTimedOut.code());
            }
        }
    }

    /// On the leader: follower `node` fetched from `fetch_offset` (everything below is
    /// on its disk).
    pub fn follower_fetched(
        &self,
        node: i32,
        fetch_offset: i64,
        broker_epoch: i64,
        log_end: i64,
        now: Instant,
    ) -> Fetched {
        let high_watermark = self.high_watermark(log_end);
        let may_join = {
            let mut inner = self.lock();
            let Role::Leader { isr, .. } = &inner.role else {
                return Fetched::default();
            };
            let outside = !isr.contains(&node);
            // A follower first heard of in this epoch has been caught up since the epoch
            // began, as far as the lag rule goes (Kafka starts ISR members so).
            let since = inner.since;
            let progress = inner.followers.entry(node).or_insert(FollowerProgress {
                fetch_offset,
                broker_epoch,
                leader_end_at_fetch: log_end,
                last_fetch: now,
                last_caught_up: since,
                at_high_watermark: false,
            });
            // Kafka's rule: caught up now if it has the leader's end, or as of its last
            // fetch if it has what the leader had then.
            if fetch_offset >= log_end {
                progress.last_caught_up = now;
            } else if fetch_offset >= progress.leader_end_at_fetch {
                progress.last_caught_up = progress.last_fetch;
            }
            progress.fetch_offset = fetch_offset;
            progress.broker_epoch = broker_epoch;
            progress.leader_end_at_fetch = log_end;
            progress.last_fetch = now;
            progress.at_high_watermark = fetch_offset >= high_watermark;
            outside && progress.at_high_watermark
        };
        Fetched {
            advanced: self.advance(log_end),
            may_join,
        }
    }

    /// On a follower: the leader's high watermark, bounded by what this broker holds.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64, log_end: i64) {
        self.leader_high_watermark
            .store(leader_high_watermark, Ordering::Release);
        self.high_watermark
            .store(leader_high_watermark.min(log_end), Ordering::Release);
    }

    /// How far this broker's log end is behind what it knows of the leader's high
    /// watermark (DescribeLogDirs' `offset_lag`): 0 unless it follows.
    pub fn follower_lag(&self, log_end: i64) -> i64 {
        if !matches!(self.role(), Role::Follower { .. }) {
            return 0;
        }
        self.leader_high_watermark
            .load(Ordering::Acquire)
            .saturating_sub(log_end)
            .max(0)
    }

    /// Recomputes the leader's high watermark: the smallest durable end among the ISR,
    /// never moving back, and not at all while the ISR is below `min.insync.replicas`.
    fn advance(&self, log_end: i64) -> bool {
        if self.solo.load(Ordering::Acquire) {
            // The high watermark is the log end: whoever waits may look again.
            self.advanced.notify_waiters();
            return false;
        }
        let inner = self.lock();
        let Role::Leader { isr, min_isr, .. } = &inner.role else {
            return false;
        };
        if isr.len() < *min_isr {
            return false;
        }
        let mut candidate = log_end;
        for member in isr.iter().filter(|&&m| m != inner.me) {
            match inner.followers.get(member) {
                Some(p) => candidate = candidate.min(p.fetch_offset),
                // A member that has not fetched in this epoch holds nothing we know of.
                None => return false,
            }
        }
        let current = self.high_watermark.load(Ordering::Acquire);
        if candidate > current {
            self.high_watermark.store(candidate, Ordering::Release);
            drop(inner);
            self.advanced.notify_waiters();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn leader(isr: &[i32], min_isr: usize) -> Role {
        Role::Leader {
            epoch: 3,
            isr: isr.to_vec(),
            min_isr,
        }
    }

    #[test]
    fn a_followers_lag_is_the_leaders_high_watermark_past_its_log_end() {
        let state = ReplicaState::default();
        state.set_role(
            1,
            Role::Follower {
                leader: 0,
                epoch: 3,
            },
            40,
        );
        state.follow_high_watermark(100, 40);
        assert_eq!(state.follower_lag(40), 60);
        assert_eq!(state.high_watermark(40), 40, "never past what it holds");
        assert_eq!(state.follower_lag(120), 0);
        state.set_role(1, leader(&[1], 1), 120);
        assert_eq!(state.follower_lag(40), 0, "a leader lags nobody");
    }

    #[test]
    fn a_solo_leader_reads_to_its_log_end() {
        let state = ReplicaState::default();
        assert!(state.is_solo());
        assert_eq!(state.high_watermark(42), 42);
        state.set_role(0, leader(&[0], 1), 42);
        assert_eq!(state.high_watermark(50), 50);
        // min.insync.replicas of 2 with the leader alone: no longer solo, and stuck.
        state.set_role(0, leader(&[0], 2), 50);
        assert!(!state.is_solo());
        assert_eq!(state.high_watermark(60), 50);
    }

    #[test]
    fn the_high_watermark_is_the_smallest_durable_end_of_the_isr() {
        let state = ReplicaState::default();
        let t0 = Instant::now();
        state.set_role(0, leader(&[0, 1, 2], 1), 100);
        // Solo until now: the high watermark stays at the log end of that moment.
        assert_eq!(state.high_watermark(120), 100);
        // Until every ISR member has fetched in this epoch nothing advances.
        let fetched = state.follower_fetched(1, 110, 7, 120, t0);
        assert_eq!(
            fetched,
            Fetched {
                advanced: false,
                may_join: false
            }
        );
        assert!(state.follower_fetched(2, 105, 8, 120, t0).advanced);
        assert_eq!(state.high_watermark(120), 105);
        assert!(state.follower_fetched(2, 120, 8, 120, t0).advanced);
        assert_eq!(state.high_watermark(120), 110);
        // It never moves back.
        assert!(!state.follower_fetched(1, 100, 7, 120, t0).advanced);
        assert_eq!(state.high_watermark(120), 110);
        let progress = state.followers()[&2];
        assert_eq!((progress.fetch_offset, progress.broker_epoch), (120, 8));
        assert_eq!(progress.last_caught_up, t0);
    }

    #[test]
    fn a_follower_outside_the_isr_may_join_once_at_the_high_watermark() {
        let state = ReplicaState::default();
        let t0 = Instant::now();
        state.set_role(0, leader(&[0], 1), 10);
        assert!(!state.follower_fetched(1, 4, 1, 10, t0).may_join);
        let fetched = state.follower_fetched(1, 10, 1, 10, t0);
        assert!(fetched.may_join);
        // Solo: the followers outside the ISR do not hold the high watermark back.
        assert_eq!(state.high_watermark(12), 12);
        // Once in the ISR it is no longer "joining". What the leader alone committed
        // stays committed (the mark never moves back); past it, the follower holds it.
        state.set_role(0, leader(&[0, 1], 1), 12);
        assert!(!state.follower_fetched(1, 11, 1, 12, t0).may_join);
        assert_eq!(state.high_watermark(15), 12);
        assert!(state.follower_fetched(1, 14, 1, 15, t0).advanced);
        assert_eq!(state.high_watermark(15), 14);
    }

    #[test]
    fn below_min_insync_the_high_watermark_waits_and_a_follower_is_never_a_leader() {
        let state = ReplicaState::default();
        let t0 = Instant::now();
        state.set_role(0, leader(&[0, 1], 3), 5);
        assert!(!state.follower_fetched(1, 9, 1, 9, t0).advanced);
        assert_eq!(state.high_watermark(9), 5);
        assert_eq!(
            state.check_enough_replicas(),
            Err(ResponseError::NotEnoughReplicas.code())
        );
        state.set_role(
            1,
            Role::Follower {
                leader: 0,
                epoch: 3,
            },
            9,
        );
        assert_eq!(state.check_enough_replicas(), Ok(()));
        assert_eq!(state.follower_fetched(2, 9, 1, 9, t0), Fetched::default());
        state.follow_high_watermark(20, 9);
        assert_eq!(state.high_watermark(9), 9);
    }

    #[tokio::test]
    async fn acks_all_waits_for_the_isr_and_fails_as_kafka_says() {
        let state = std::sync::Arc::new(ReplicaState::default());
        let t0 = Instant::now();
        state.set_role(0, leader(&[0, 1], 2), 0);
        let soon = || tokio::time::Instant::now() + Duration::from_secs(5);
        let waiting = {
            let state = std::sync::Arc::clone(&state);
            tokio::spawn(async move { state.wait_replicated(3, soon()).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        state.follower_fetched(1, 3, 1, 3, t0);
        assert_eq!(waiting.await.ok(), Some(Ok(())));
        // The follower is gone from the ISR: below min.insync.replicas after the append.
        state.set_role(0, leader(&[0], 2), 3);
        assert_eq!(
            state.wait_replicated(4, soon()).await,
            Err(ResponseError::NotEnoughReplicasAfterAppend.code())
        );
        // Leadership moved away while waiting.
        state.set_role(0, leader(&[0, 1], 2), 4);
        let waiting = {
            let state = std::sync::Arc::clone(&state);
            tokio::spawn(async move { state.wait_replicated(5, soon()).await })
        };
        tokio::task::yield_now().await;
        state.set_role(
            0,
            Role::Follower {
                leader: 1,
                epoch: 4,
            },
            4,
        );
        assert_eq!(
            waiting.await.ok(),
            Some(Err(ResponseError::NotLeaderOrFollower.code()))
        );
        state.set_role(0, leader(&[0, 1], 1), 4);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(
            state.wait_replicated(9, deadline).await,
            Err(ResponseError::RequestTimedOut.code())
        );
    }
}
