//! Fetch (key 1): reads whole record batches from each requested partition, bounded by the
//! request's `max_bytes` and each partition's `partition_max_bytes` (the first batch is
//! returned whole even when larger, as KIP-74 requires), and long-polls: when fewer than
//! `min_bytes` are available it waits for appends until `max_wait_ms` has passed.
//! v13+ names topics by id. Fetch sessions (KIP-227) are not kept: every response is full
//! and has session id 0, which clients handle by sending full requests.
//!
//! Records are not read here: storage returns the batches as regions of the segment
//! files, the response is encoded around them (`fetch_encode`) and the connection sends
//! them with `sendfile(2)`. A fetch of any `max_bytes` costs memory only for the fields.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::FetchRequest;
use runnel_storage::LogError;

use super::blocking;
use super::fetch_encode::{FetchReply, PartitionReply, TopicReply};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::error_codes::{
    for_log_error, log_storage_error, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::replication::throttle::FetchThrottle;
use crate::sendfile;
use kafka_protocol::ResponseError;

/// Longest a fetch waits for data, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One partition to read.
#[derive(Clone)]
struct Want {
    topic: usize,
    name: Option<String>,
    partition: i32,
    /// The leader epoch the client believes current (v9+), -1 when not given.
    epoch: i32,
    offset: i64,
    max_bytes: usize,
}

/// Answers Fetch.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: FetchRequest,
    info: RequestInfo,
) -> FetchReply {
    let by_id = info.version >= 13;
    // A follower fetching as a replica (v15+ says so in replica_state, older versions in
    // replica_id), with its broker epoch (KIP-903; -1 before v15).
    let replica = if info.version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    let replica = (replica.0 >= 0).then_some(replica);
    let image = ctx.image();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut names = Vec::with_capacity(request.topics.len());
    let mut wants = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let name = if by_id {
            image.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.0.to_string())
        };
        topics.push((topic.topic.clone(), topic.topic_id));
        names.push(name.clone());
        for p in &topic.partitions {
            wants.push(Want {
                topic: t,
                name: name.clone(),
                partition: p.partition,
                epoch: p.current_leader_epoch,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
            });
        }
    }
    let wants = Arc::new(wants);
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;

    let (partitions, throttled) = loop {
        let notified = ctx.partitions.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // A replica's fetch that reads only what is not yet acknowledged (recent, so in
        // the page cache) from logs nobody holds is read right here: the fetch that
        // moves the high watermark, and so answers acks=all producers, does not wait
        // for a blocking-pool thread. Anything else is read on the pool.
        let inline = match replica {
            Some(_) => read_all(&ctx, &wants, max_bytes, by_id, replica, Locking::Inline),
            None => None,
        };
        let (ctx2, wants2) = (Arc::clone(&ctx), Arc::clone(&wants));
        let read = match inline {
            Some(read) => Some(read),
            None => {
                blocking(move || read_all(&ctx2, &wants2, max_bytes, by_id, replica, Locking::Wait))
                    .await
                    .flatten()
            }
        };
        let Some((read, total, any_error, throttled)) = read else {
            return FetchReply {
                error_code: ResponseError::UnknownServerError.code(),
                ..FetchReply::default()
            };
        };
        if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            break (read, throttled);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            // Deadline passed: one last read picks up anything that just arrived.
            let (ctx2, wants2) = (Arc::clone(&ctx), Arc::clone(&wants));
            let last = blocking(move || {
                read_all(&ctx2, &wants2, max_bytes, by_id, replica, Locking::Wait)
            })
            .await
            .flatten();
            match last {
                Some((read, _, _, throttled)) => break (read, throttled),
                None => break (read, throttled),
            }
        }
    };

    // The bytes of throttled partitions sent to a follower count to the leader's
    // replication throttle (KIP-73), once, for the read that is answered.
    if let Some((throttle, bytes)) = throttled {
        throttle.record(&ctx, bytes);
    }
    let mut responses: Vec<TopicReply> = topics
        .into_iter()
        .map(|(name, topic_id)| TopicReply {
            name,
            topic_id,
            partitions: Vec::new(),
        })
        .collect();
    for (t, data) in partitions {
        let sent = data.records_len();
        if let (Some(Some(name)), true) = (names.get(t), sent > 0) {
            ctx.metrics
                .bytes_out
                .with_label_values(&[name.as_str()])
                .inc_by(sent);
        }
        if let Some(r) = responses.get_mut(t) {
            r.partitions.push(data);
        }
    }
    FetchReply {
        session_id: 0,
        topics: responses,
        ..FetchReply::default()
    }
}

/// Finds the batches of every wanted partition; returns the per-topic partition data, the
/// bytes found and whether any partition failed (which ends the long poll, as in Kafka).
/// With [`Locking::Wait`] the regions found are read ahead into the page cache, for the
/// connection to send; [`Locking::Inline`] may give up (`None`), see there.
///
/// Consumers read below the high watermark; a follower (`replica`: its id and broker
/// epoch) reads to the log end, and its fetch offset tells the leader what it holds.
fn read_all(
    ctx: &BrokerContext,
    wants: &[Want],
    max_bytes: usize,
    by_id: bool,
    replica: Option<(i32, i64)>,
    locking: Locking,
) -> Option<Read> {
    let now = std::time::Instant::now();
    // A follower's fetch: the leader's replication throttle (see `replication::throttle`),
    // and the metadata it was judged by.
    let throttle = replica.map(|_| FetchThrottle::leader(ctx));
    let mut throttled_bytes = 0u64;
    let mut advanced = false;
    let mut out = Vec::with_capacity(wants.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in wants {
        let unknown = if by_id {
            UNKNOWN_TOPIC_ID
        } else {
            UNKNOWN_TOPIC_OR_PARTITION
        };
        let partition = match w.name.as_deref() {
            Some(n) => ctx
                .led_partition_in_epoch(n, w.partition, w.epoch)
                .map(|(p, _)| p),
            None => Err(unknown),
        };
        let partition = match partition {
            Ok(partition) => partition,
            Err(code) => {
                any_error = true;
                let code = if code == UNKNOWN_TOPIC_OR_PARTITION {
                    unknown
                } else {
                    code
                };
                out.push((
                    w.topic,
                    PartitionReply {
                        error_code: code,
                        ..PartitionReply::empty(w.partition)
                    },
                ));
                continue;
            }
        };
        let name = w.name.as_deref().unwrap_or_default();
        // Only a replica of the partition (in this leader's metadata) replicates it, as in
        // Kafka: a broker whose metadata is ahead (a move this leader has not applied yet)
        // asks again shortly.
        if let (Some((node, _)), Some(throttle)) = (replica, &throttle) {
            let assigned = throttle
                .image()
                .topic(name)
                .is_some_and(|t| t.has_replica(w.partition, node));
            if !assigned {
                any_error = true;
                out.push((
                    w.topic,
                    PartitionReply {
                        error_code: ResponseError::NotLeaderOrFollower.code(),
                        ..PartitionReply::empty(w.partition)
                    },
                ));
                continue;
            }
        }
        let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
        let throttled = throttle
            .as_ref()
            .is_some_and(|t| t.is_limited() && t.throttles(name, w.partition));
        let log = match locking {
            Locking::Wait => partition.log(),
            Locking::Inline => {
                // Only free logs, and only a replica reading at or past the high
                // watermark; nothing has changed yet (a follower's progress recorded
                // again by the pool's read is the same).
                let log = partition
                    .try_log()
                    .filter(|log| replica.is_some() && w.offset >= partition.high_watermark(log));
                match log {
                    Some(log) => log,
                    None => {
                        if advanced {
                            ctx.partitions.appended.notify_waiters();
                        }
                        return None;
                    }
                }
            }
        };
        let log_end = log.log_end_offset();
        let result = match replica {
            Some((node, broker_epoch)) => {
                if (0..=log_end).contains(&w.offset) {
                    let fetched = partition.replica.follower_fetched(
                        node,
                        w.offset,
                        broker_epoch,
                        log_end,
                        now,
                    );
                    advanced |= fetched.advanced;
                    if fetched.may_join {
                        ctx.partitions.isr_wanted.notify_one();
                    }
                }
                let held_back = throttled
                    && throttle
                        .as_ref()
                        .is_some_and(|t| t.holds_back(ctx, name, w.partition, node));
                if held_back {
                    // No records while the throttle is over its rate; the answer still
                    // carries the high watermark and log start.
                    log.read_regions_below(w.offset, 0, false, w.offset.min(log_end))
                } else {
                    log.read_regions(w.offset, budget, total == 0)
                }
            }
            None => {
                let hw = partition.high_watermark(&log);
                log.read_regions_below(w.offset, budget, total == 0, hw)
            }
        };
        let (hw, lso) = (partition.high_watermark(&log), log.log_start_offset());
        drop(log);
        let data = PartitionReply {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: lso,
            ..PartitionReply::empty(w.partition)
        };
        match result {
            Ok(slice) => {
                let found = usize::try_from(slice.len()).unwrap_or(usize::MAX);
                total = total.saturating_add(found);
                if throttled {
                    throttled_bytes = throttled_bytes.saturating_add(slice.len());
                }
                if locking == Locking::Wait {
                    slice.regions.iter().for_each(sendfile::prefetch);
                }
                out.push((
                    w.topic,
                    PartitionReply {
                        records: Some(slice.regions),
                        ..data
                    },
                ));
            }
            Err(e) => {
                if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                    log_storage_error(&partition.tp, &e);
                }
                any_error = true;
                out.push((
                    w.topic,
                    PartitionReply {
                        error_code: for_log_error(&e),
                        ..data
                    },
                ));
            }
        }
    }
    if advanced {
        // Records became visible to consumers waiting for them.
        ctx.partitions.appended.notify_waiters();
    }
    let throttled = throttle.map(|t| (t, throttled_bytes));
    Some((out, total, any_error, throttled))
}

/// What [`read_all`] found: per-topic partition data, bytes found, whether any failed,
/// and for a follower the leader's throttle with the bytes of throttled partitions.
type Read = (
    Vec<(usize, PartitionReply)>,
    usize,
    bool,
    Option<(FetchThrottle, u64)>,
);

/// How [`read_all`] takes each partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locking {
    /// Waits for it (on a blocking-pool thread), and reads ahead what it found.
    Wait,
    /// On the runtime: gives up (`None`) at the first log that is held, or that a
    /// replica reads below the high watermark (older data, maybe not in the page cache).
    Inline,
}
