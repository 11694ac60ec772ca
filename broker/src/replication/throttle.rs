//! Replication throttles (Kafka's KIP-73): a byte rate for moving data to replicas that
//! are catching up, so a reassignment or a returning broker does not starve clients.
//!
//! Which replicas are throttled, per partition:
//!
//! | side     | throttled when                                                                  |
//! |----------|---------------------------------------------------------------------------------|
//! | leader   | `leader.replication.throttled.replicas` lists `partition:<this broker>` or is `*`, or a reassignment of the partition is adding replicas |
//! | follower | `follower.replication.throttled.replicas` lists `partition:<this broker>` or is `*`, or a reassignment is adding this broker |
//!
//! The reassignment rule is Runnel's default (Kafka's tooling sets the lists instead), so
//! a move is throttled without extra steps once a rate is set.
//!
//! What a throttle does, exactly as Kafka:
//! - leader: serving a replica fetch, a throttled partition for a follower that is not
//!   in the ISR gets no records while the leader's throttled byte rate is over
//!   `leader.replication.throttled.rate`;
//! - follower: while its throttled byte rate is over
//!   `follower.replication.throttled.rate`, its throttled partitions it is not in the ISR
//!   of are left out of its fetch requests.
//!
//! The bytes of every throttled partition count towards the rate (in-sync ones too), but
//! an in-sync replica is never held back. The rate is a [`ByteQuota`]: a token bucket
//! that may go into debt by one response, with a burst of one second of the rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::context::BrokerContext;
use crate::dynamic_config::{FOLLOWER_RATE, LEADER_RATE};
use crate::metadata::{MetadataImage, TopicImage};
use crate::topic_config::InvalidConfig;

/// `leader.replication.throttled.replicas`.
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
/// `follower.replication.throttled.replicas`.
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";
/// How much unused rate a quota saves up: one second's worth.
const BURST: Duration = Duration::from_secs(1);

/// A parsed `*.replication.throttled.replicas` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottledReplicas {
    /// `*`: every replica of every partition.
    All,
    /// `partition:broker` pairs.
    Listed(Vec<(i32, i32)>),
}

impl ThrottledReplicas {
    /// Parses Kafka's format: `*`, or a comma-separated list of `partition:broker` (empty
    /// for none); spaces around entries are ignored.
    pub fn parse(name: &str, value: &str) -> Result<Self, InvalidConfig> {
        let value = value.trim();
        if value == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let invalid = || {
            InvalidConfig(format!(
                "invalid value {value:?} for topic config {name}: must be * or a comma-separated list of partition:broker (non-negative integers)"
            ))
        };
        let mut pairs = Vec::new();
        for entry in value.split(',').map(str::trim) {
            if entry.is_empty() && !value.contains(',') {
                continue;
            }
            let (p, b) = entry.split_once(':').ok_or_else(invalid)?;
            let number = |s: &str| {
                s.trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(invalid)
            };
            pairs.push((number(p)?, number(b)?));
        }
        Ok(ThrottledReplicas::Listed(pairs))
    }

    /// Whether replica `broker` of `partition` is listed.
    pub fn contains(&self, partition: i32, broker: i32) -> bool {
        match self {
            ThrottledReplicas::All => true,
            ThrottledReplicas::Listed(pairs) => pairs.contains(&(partition, broker)),
        }
    }
}

/// Whether `topic`'s config `name` lists replica `broker` of `partition` (an invalid
/// value, which validation keeps out, lists nothing).
fn listed(topic: &TopicImage, name: &str, partition: i32, broker: i32) -> bool {
    topic
        .configs
        .get(name)
        .and_then(|v| ThrottledReplicas::parse(name, v).ok())
        .is_some_and(|r| r.contains(partition, broker))
}

/// Whether leader `me` throttles `partition` of `topic` (see the module table).
pub fn leader_throttled(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
    me: i32,
) -> bool {
    listed(topic, LEADER_REPLICAS, partition, me)
        || image
            .reassignment(&topic.name, partition)
            .is_some_and(|r| !r.adding().is_empty())
}

/// Whether follower `me` throttles `partition` of `topic` (see the module table).
pub fn follower_throttled(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
    me: i32,
) -> bool {
    listed(topic, FOLLOWER_REPLICAS, partition, me)
        || image
            .reassignment(&topic.name, partition)
            .is_some_and(|r| r.adding().contains(&me))
}

/// One direction's byte rate (Kafka's replication quota): a token bucket refilled at the
/// rate in force, holding at most one second of it, that a recorded response may take
/// below zero. It is over quota while below zero. Shared by every fetch of the broker in
/// its direction; the lock is held for a few arithmetic steps.
#[derive(Debug, Default)]
pub struct ByteQuota {
    bucket: Mutex<Option<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes that may still be sent; negative while over quota.
    tokens: f64,
    /// The rate it was last refilled at.
    rate: u64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst(rate),
            rate,
            at: now,
        }
    }

    /// Refills up to `now` at `rate` (a new rate starts from a full bucket).
    fn refill(&mut self, rate: u64, now: Instant) {
        if rate != self.rate {
            *self = Bucket::full(rate, now);
            return;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst(rate));
        self.at = now;
    }
}

fn burst(rate: u64) -> f64 {
    rate as f64 * BURST.as_secs_f64()
}

impl ByteQuota {
    fn with_bucket<T>(&self, f: impl FnOnce(&mut Option<Bucket>) -> T) -> T {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut bucket)
    }

    /// Whether the throttled byte rate is over `rate` (bytes/s; `None`: unlimited, never).
    pub fn is_exceeded(&self, rate: Option<u64>, now: Instant) -> bool {
        let Some(rate) = rate else {
            return false;
        };
        self.with_bucket(|bucket| {
            let b = bucket.get_or_insert_with(|| Bucket::full(rate, now));
            b.refill(rate, now);
            b.tokens < 0.0
        })
    }

    /// Counts `bytes` of throttled partitions sent (or fetched) against `rate`.
    pub fn record(&self, rate: Option<u64>, bytes: u64, now: Instant) {
        let Some(rate) = rate else {
            return;
        };
        self.with_bucket(|bucket| {
            let b = bucket.get_or_insert_with(|| Bucket::full(rate, now));
            b.refill(rate, now);
            b.tokens -= bytes as f64;
        })
    }

    /// How long until the quota is no longer exceeded at `rate` (zero if it is not).
    pub fn time_to_recover(&self, rate: Option<u64>, now: Instant) -> Duration {
        let Some(rate) = rate.filter(|r| *r > 0) else {
            return if rate == Some(0) {
                BURST
            } else {
                Duration::ZERO
            };
        };
        self.with_bucket(|bucket| match bucket {
            Some(b) => {
                b.refill(rate, now);
                if b.tokens >= 0.0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(-b.tokens / rate as f64)
                }
            }
            None => Duration::ZERO,
        })
    }
}

/// The leader's and the follower's quotas of one broker.
#[derive(Debug, Default)]
pub struct ReplicationQuotas {
    /// Bytes sent to throttled followers (`leader.replication.throttled.rate`).
    pub leader: ByteQuota,
    /// Bytes fetched for throttled partitions (`follower.replication.throttled.rate`).
    pub follower: ByteQuota,
}

/// Which way a throttle applies: a label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The leader sending to followers.
    Leader,
    /// The follower fetching from leaders.
    Follower,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Leader => "leader",
            Direction::Follower => "follower",
        }
    }
}

/// One fetch's view of a throttle, taken once as the fetch is served (leader) or built
/// (follower): the image, the rate in force and whether the quota is exceeded.
pub struct FetchThrottle {
    image: Arc<MetadataImage>,
    me: i32,
    direction: Direction,
    rate: Option<u64>,
    exceeded: bool,
}

impl FetchThrottle {
    /// The leader's throttle as it serves a replica fetch.
    pub fn leader(ctx: &BrokerContext) -> Self {
        Self::new(ctx, Direction::Leader)
    }

    /// The follower's throttle as it builds a fetch.
    pub fn follower(ctx: &BrokerContext) -> Self {
        Self::new(ctx, Direction::Follower)
    }

    fn new(ctx: &BrokerContext, direction: Direction) -> Self {
        let image = ctx.image();
        let me = ctx.node_id();
        let (name, quota) = match direction {
            Direction::Leader => (LEADER_RATE, &ctx.replication_quotas.leader),
            Direction::Follower => (FOLLOWER_RATE, &ctx.replication_quotas.follower),
        };
        let rate = crate::dynamic_config::throttle_rate(&image, me, name);
        let exceeded = quota.is_exceeded(rate, Instant::now());
        FetchThrottle {
            image,
            me,
            direction,
            rate,
            exceeded,
        }
    }

    /// The metadata image this throttle was read from.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Whether `partition` of `topic` is throttled here (its bytes count to the rate).
    pub fn throttles(&self, topic: &str, partition: i32) -> bool {
        let Some(t) = self.image.topic(topic) else {
            return false;
        };
        match self.direction {
            Direction::Leader => leader_throttled(&self.image, t, partition, self.me),
            Direction::Follower => follower_throttled(&self.image, t, partition, self.me),
        }
    }

    /// Whether to hold `partition` of `topic` back for `replica` (the follower fetching,
    /// or this broker on the follower side): throttled, `replica` not in the ISR, and
    /// the quota exceeded. Counted in the metrics when it does.
    pub fn holds_back(
        &self,
        ctx: &BrokerContext,
        topic: &str,
        partition: i32,
        replica: i32,
    ) -> bool {
        if !self.exceeded || !self.throttles(topic, partition) {
            return false;
        }
        let in_sync = self
            .image
            .topic(topic)
            .is_some_and(|t| t.leadership(partition, self.me).isr.contains(&replica));
        if !in_sync {
            ctx.metrics
                .replication_throttled_partitions
                .with_label_values(&[self.direction.label()])
                .inc();
        }
        !in_sync
    }

    /// Whether a rate is set at all.
    pub fn is_limited(&self) -> bool {
        self.rate.is_some()
    }

    /// How long until the quota recovers (the follower waits this when every partition
    /// it follows is held back).
    pub fn time_to_recover(&self, ctx: &BrokerContext) -> Duration {
        self.quota(ctx).time_to_recover(self.rate, Instant::now())
    }

    /// Counts `bytes` of throttled partitions replicated (while a rate is set).
    pub fn record(&self, ctx: &BrokerContext, bytes: u64) {
        if bytes == 0 || self.rate.is_none() {
            return;
        }
        ctx.metrics
            .replication_throttled_bytes
            .with_label_values(&[self.direction.label()])
            .inc_by(bytes);
        self.quota(ctx).record(self.rate, bytes, Instant::now());
    }

    fn quota<'a>(&self, ctx: &'a BrokerContext) -> &'a ByteQuota {
        match self.direction {
            Direction::Leader => &ctx.replication_quotas.leader,
            Direction::Follower => &ctx.replication_quotas.follower,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::MetadataRecord;

    const MIB: u64 = 1 << 20;

    #[test]
    fn an_unlimited_quota_is_never_exceeded() {
        let q = ByteQuota::default();
        let now = Instant::now();
        q.record(None, u64::MAX, now);
        assert!(!q.is_exceeded(None, now));
        assert_eq!(q.time_to_recover(None, now), Duration::ZERO);
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let q = ByteQuota::default();
        let rate = Some(MIB);
        let t0 = Instant::now();
        assert!(!q.is_exceeded(rate, t0));
        // One second of the rate fits in the burst; one byte more is over.
        q.record(rate, MIB, t0);
        assert!(!q.is_exceeded(rate, t0));
        q.record(rate, 1, t0);
        assert!(q.is_exceeded(rate, t0));
        // A 1 MiB response in debt: over quota for one second, then not.
        q.record(rate, MIB - 1, t0);
        assert_eq!(q.time_to_recover(rate, t0), Duration::from_secs(1));
        assert!(q.is_exceeded(rate, t0 + Duration::from_millis(999)));
        assert!(!q.is_exceeded(rate, t0 + Duration::from_millis(1001)));
        // Idle time saves at most the burst.
        let later = t0 + Duration::from_secs(60);
        q.record(rate, MIB, later);
        assert!(!q.is_exceeded(rate, later));
        q.record(rate, 1, later);
        assert!(q.is_exceeded(rate, later));
    }

    /// Sends 1 MiB responses whenever the quota allows, for 10 simulated seconds: the
    /// bytes sent are the rate times the time, plus the burst and one response.
    #[test]
    fn the_long_run_rate_is_the_quota() {
        let q = ByteQuota::default();
        let rate = Some(2 * MIB);
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut t = t0;
        while t < t0 + Duration::from_secs(10) {
            if !q.is_exceeded(rate, t) {
                q.record(rate, MIB, t);
                sent += MIB;
            }
            t += Duration::from_millis(10);
        }
        assert!((20 * MIB..=23 * MIB).contains(&sent), "{sent}");
    }

    #[test]
    fn a_changed_rate_starts_afresh_and_zero_stops_everything() {
        let q = ByteQuota::default();
        let t0 = Instant::now();
        q.record(Some(10), 1000, t0);
        assert!(q.is_exceeded(Some(10), t0));
        assert!(!q.is_exceeded(Some(MIB), t0));
        q.record(Some(0), 1, t0);
        assert!(q.is_exceeded(Some(0), t0 + Duration::from_secs(3600)));
        assert_eq!(q.time_to_recover(Some(0), t0), BURST);
    }

    #[test]
    fn throttled_replica_lists_take_kafkas_format() -> Result<(), InvalidConfig> {
        let parse = |v: &str| ThrottledReplicas::parse(LEADER_REPLICAS, v);
        assert_eq!(parse("*")?, ThrottledReplicas::All);
        assert_eq!(parse("")?, ThrottledReplicas::Listed(vec![]));
        assert_eq!(
            parse("0:1, 1:2,2:0")?,
            ThrottledReplicas::Listed(vec![(0, 1), (1, 2), (2, 0)])
        );
        for bad in ["0", "0:", ":1", "a:b", "0:-1", "0:1,", "*,0:1", "0:1:2"] {
            let e = parse(bad);
            assert!(
                e.as_ref().is_err_and(|e| e.0.contains("partition:broker")),
                "{bad:?}: {e:?}"
            );
        }
        assert!(parse("0:1")?.contains(0, 1));
        assert!(!parse("0:1")?.contains(1, 0));
        assert!(parse("*")?.contains(7, 9));
        Ok(())
    }

    /// Topic `t` with partitions 0 and 1 on brokers [0, 1] and `configs`.
    fn image(configs: &[(&str, &str)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for node_id in 0..3 {
            image.apply(&MetadataRecord::RegisterBroker {
                node_id,
                host: "localhost".into(),
                port: 9092 + node_id,
                rack: None,
                incarnation: Uuid::new_v4(),
            });
        }
        let configs: BTreeMap<String, String> = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 2,
            configs,
            replicas: vec![vec![0, 1], vec![0, 1]],
        });
        image
    }

    /// (partition, broker) pairs.
    type Replicas = Vec<(i32, i32)>;

    /// The replicas of `t` throttled on the leader side and on the follower side.
    fn throttled(image: &MetadataImage) -> (Replicas, Replicas) {
        let Some(t) = image.topic("t") else {
            return (vec![], vec![]);
        };
        let pairs = |f: fn(&MetadataImage, &TopicImage, i32, i32) -> bool| {
            (0..2)
                .flat_map(|p| (0..3).map(move |b| (p, b)))
                .filter(|&(p, b)| f(image, t, p, b))
                .collect::<Vec<_>>()
        };
        (pairs(leader_throttled), pairs(follower_throttled))
    }

    #[test]
    fn nothing_is_throttled_by_default() {
        assert_eq!(throttled(&image(&[])), (vec![], vec![]));
    }

    #[test]
    fn the_topic_lists_name_the_throttled_replicas() {
        let listed = image(&[(LEADER_REPLICAS, "0:0"), (FOLLOWER_REPLICAS, "1:1,0:2")]);
        assert_eq!(throttled(&listed), (vec![(0, 0)], vec![(0, 2), (1, 1)]));
        let all = image(&[(LEADER_REPLICAS, "*")]);
        assert_eq!(throttled(&all).0.len(), 6);
        assert!(throttled(&all).1.is_empty());
    }

    #[test]
    fn a_reassignment_throttles_its_leaders_and_the_replicas_it_adds() {
        let mut moving = image(&[]);
        moving.apply(&MetadataRecord::ReassignPartition {
            topic: "t".into(),
            partition: 1,
            target: Some(vec![0, 2]),
        });
        // Partition 1 is moving from [0, 1] to [0, 2]: whoever leads it throttles, and
        // broker 2, being added, throttles as a follower; partition 0 is not moving.
        assert_eq!(
            throttled(&moving),
            (vec![(1, 0), (1, 1), (1, 2)], vec![(1, 2)])
        );
        // A reassignment that adds nothing (a reorder) moves no data: nothing throttled.
        let mut reorder = image(&[]);
        reorder.apply(&MetadataRecord::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            target: Some(vec![1, 0]),
        });
        assert_eq!(throttled(&reorder), (vec![], vec![]));
    }
}
