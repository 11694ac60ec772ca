//! The follower side of replication: one fetcher task per leader broker, multiplexing
//! every partition this broker follows there (Kafka's ReplicaFetcherThread).
//!
//! A round: partitions newly followed (or followed in a new leader epoch) first find
//! where their log may have diverged from the leader's — OffsetsForLeaderEpoch for the
//! latest epoch they hold, then truncation to the offset the leader answers (KIP-101/279)
//! — and only then fetch. The Fetch is a replica's (v15 `replica_state` with this
//! broker's id and epoch): the leader returns batches up to its log end, which are
//! appended byte for byte and fsynced before the next fetch asks from the new end, so
//! a fetch offset always tells the leader what is durable here.
//!
//! The fsync is the broker's group commit (`flusher.rs`), the one acks=all producers
//! use: every partition a fetch response brought is handed to it at once, and it
//! fsyncs their segment data (`fdatasync`, indexes only in its periodic full flush)
//! in one round, in parallel, together with the producers' partitions of this broker.
//! The next fetch goes out as soon as that round is done. With
//! `--acks-all-durability replication` nothing is fsynced and the next fetch goes out
//! right after the append.
//!
//! A round with little data reads the positions and appends on the fetcher's task
//! when the logs are free (as the produce path does); otherwise on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_client::{ClientConfig, ClientError, Connection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::throttle::FetchThrottle;
use super::Role;
use crate::context::BrokerContext;
use crate::metadata::MetadataImage;
use crate::partitions::Partition;
use runnel_storage::Log;

/// `replica.fetch.wait.max.ms`.
const FETCH_WAIT_MS: i32 = 500;
/// `replica.fetch.max.bytes` (per partition).
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// `replica.fetch.response.max.bytes`.
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Most bytes of one fetch response appended on the fetcher's own task (as the produce
/// path's `INLINE_APPEND_MAX_BYTES`); more go to the blocking pool.
const INLINE_APPEND_MAX_BYTES: usize = 256 * 1024;
/// Shortest and longest wait of a fetcher whose partitions are all held back by its
/// replication throttle.
const THROTTLE_WAIT: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// First and longest pause after a failed round (`replica.fetch.backoff.ms` is 1 s).
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// One partition followed on a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Topic name.
    pub topic: String,
    /// Topic id (Fetch v13+ names topics by id).
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// The leader epoch it is followed in.
    pub leader_epoch: i32,
}

/// What one fetcher task does: the leader's address and the partitions to follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Assignment {
    address: String,
    partitions: Vec<Followed>,
}

struct Fetcher {
    assignment: watch::Sender<Assignment>,
    task: tokio::task::JoinHandle<()>,
}

/// The fetcher tasks of this broker, one per leader it follows partitions of.
pub struct Fetchers {
    ctx: Arc<BrokerContext>,
    shutdown: CancellationToken,
    running: HashMap<i32, Fetcher>,
}

impl Fetchers {
    /// No fetchers yet; they stop when `shutdown` is cancelled.
    pub fn new(ctx: Arc<BrokerContext>, shutdown: CancellationToken) -> Self {
        Fetchers {
            ctx,
            shutdown,
            running: HashMap::new(),
        }
    }

    /// Follows what `image` says: starts, re-targets and stops fetchers so that every
    /// hosted partition this broker follows is fetched from its leader.
    pub fn update(&mut self, image: &MetadataImage) {
        let mut wanted: BTreeMap<i32, Assignment> = BTreeMap::new();
        for partition in self.ctx.partitions.all() {
            let Role::Follower { leader, epoch } = partition.replica.role() else {
                continue;
            };
            let (Some(topic), Some(broker)) =
                (image.topic(&partition.tp.topic), image.brokers.get(&leader))
            else {
                continue;
            };
            let assignment = wanted.entry(leader).or_default();
            assignment.address = format!("{}:{}", broker.host, broker.port);
            assignment.partitions.push(Followed {
                topic: topic.name.clone(),
                topic_id: topic.id,
                partition: partition.tp.partition,
                leader_epoch: epoch,
            });
        }
        self.running.retain(|leader, fetcher| {
            let keep = wanted.contains_key(leader) && !fetcher.task.is_finished();
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (leader, mut assignment) in wanted {
            assignment
                .partitions
                .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            match self.running.get(&leader) {
                Some(fetcher) => {
                    fetcher.assignment.send_if_modified(|current| {
                        let changed = *current != assignment;
                        *current = assignment;
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(assignment);
                    let task = tokio::spawn(run(
                        Arc::clone(&self.ctx),
                        leader,
                        rx,
                        self.shutdown.clone(),
                    ));
                    self.running.insert(
                        leader,
                        Fetcher {
                            assignment: tx,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// Stops every fetcher.
    pub fn stop(&mut self) {
        for (_, fetcher) in self.running.drain() {
            fetcher.task.abort();
        }
    }
}

/// Why a round ended early.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the blocking pool is gone")]
    Blocking,
}

/// Per partition: the leader epoch its log was last brought in line with the leader in.
type Synced = HashMap<(String, i32), i32>;

/// Per partition the leader refused: until when it is left alone.
type Refused = HashMap<(String, i32), tokio::time::Instant>;

fn refuse(refused: &mut Refused, key: (String, i32)) {
    refused.insert(key, tokio::time::Instant::now() + BACKOFF.1);
}

async fn run(
    ctx: Arc<BrokerContext>,
    leader: i32,
    mut assignments: watch::Receiver<Assignment>,
    shutdown: CancellationToken,
) {
    let config = ClientConfig::new(format!("runnel-replica-{}", ctx.node_id()));
    let mut connection: Option<Connection> = None;
    let mut synced = Synced::new();
    // Partitions the leader refused (not the leader, another epoch, a topic it has not
    // applied yet): left alone for a backoff, or until the metadata changes.
    let mut refused = Refused::new();
    let mut backoff = BACKOFF.0;
    loop {
        if assignments.has_changed().unwrap_or(false) {
            refused.clear();
        }
        let assignment = assignments.borrow_and_update().clone();
        let now = tokio::time::Instant::now();
        refused.retain(|_, until| *until > now);
        let active: Vec<Followed> = assignment
            .partitions
            .iter()
            .filter(|f| !refused.contains_key(&(f.topic.clone(), f.partition)))
            .cloned()
            .collect();
        if active.is_empty() {
            tokio::select! {
                changed = assignments.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(BACKOFF.1) => {}
            }
            continue;
        }
        if connection
            .as_ref()
            .is_none_or(|c| c.address() != assignment.address)
        {
            connection = match Connection::connect(&assignment.address, &config).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach the leader to fetch from");
                    None
                }
            };
        }
        let result = match connection.as_mut() {
            Some(c) => {
                tokio::select! {
                    r = round(&ctx, c, &active, &mut synced, &mut refused) => r,
                    () = shutdown.cancelled() => return,
                }
            }
            None => Err(RoundError::Blocking),
        };
        match result {
            Ok(()) => backoff = BACKOFF.0,
            Err(e) => {
                if connection.is_some() {
                    tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
                }
                connection = None;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

/// One fetch round against the leader: truncation where needed, then one Fetch.
async fn round(
    ctx: &Arc<BrokerContext>,
    connection: &mut Connection,
    followed: &[Followed],
    synced: &mut Synced,
    refused: &mut Refused,
) -> Result<(), RoundError> {
    let unsynced: Vec<&Followed> = followed
        .iter()
        .filter(|f| synced.get(&(f.topic.clone(), f.partition)) != Some(&f.leader_epoch))
        .collect();
    if !unsynced.is_empty() {
        truncate_to_leader(ctx, connection, &unsynced, synced, refused).await?;
    }
    let ready: Vec<(&Followed, Arc<Partition>)> = followed
        .iter()
        .filter(|f| synced.get(&(f.topic.clone(), f.partition)) == Some(&f.leader_epoch))
        .filter_map(|f| ctx.partitions.get(&f.topic, f.partition).map(|p| (f, p)))
        .collect();
    // The follower's replication throttle (KIP-73): over its rate, the throttled
    // partitions this broker is not in the ISR of are left out of the fetch.
    let throttle = FetchThrottle::follower(ctx);
    let before = ready.len();
    let ready: Vec<(&Followed, Arc<Partition>)> = ready
        .into_iter()
        .filter(|(f, _)| !throttle.holds_back(ctx, &f.topic, f.partition, ctx.node_id()))
        .collect();
    if ready.is_empty() {
        if before > 0 {
            // Everything is held back: wait for the rate to allow more, not a busy loop.
            let wait = throttle
                .time_to_recover(ctx)
                .clamp(THROTTLE_WAIT.0, THROTTLE_WAIT.1);
            tokio::time::sleep(wait).await;
        }
        return Ok(());
    }
    // Read here when no log is busy (the common case: a fetch round apart, nothing else
    // writes a followed log), else on the blocking pool.
    let inline: Option<Vec<(i64, i64)>> = ready
        .iter()
        .map(|(_, p)| {
            p.try_log()
                .map(|log| (log.log_end_offset(), log.log_start_offset()))
        })
        .collect();
    let positions = match inline {
        Some(positions) => positions,
        None => {
            let parts: Vec<Arc<Partition>> = ready.iter().map(|(_, p)| Arc::clone(p)).collect();
            blocking(move || {
                parts
                    .iter()
                    .map(|p| {
                        let log = p.log();
                        (log.log_end_offset(), log.log_start_offset())
                    })
                    .collect::<Vec<_>>()
            })
            .await?
        }
    };
    let version = connection.version::<FetchRequest>(13..=15).await?;
    let me = ctx.node_id();
    // KIP-903: the epoch of this run's registration, which the leader passes on when it
    // proposes this broker for the ISR.
    let broker_epoch = ctx.image().broker_epoch(me).unwrap_or(-1);
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((f, _), (end, start)) in ready.iter().zip(&positions) {
        let partition = FetchPartition::default()
            .with_partition(f.partition)
            .with_current_leader_epoch(f.leader_epoch)
            .with_fetch_offset(*end)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(*start)
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        match topics.iter_mut().find(|t| t.topic_id == f.topic_id) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic_id(f.topic_id)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let mut request = FetchRequest::default()
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics);
    if version >= 15 {
        request = request.with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(me))
                .with_replica_epoch(broker_epoch),
        );
    } else {
        request = request.with_replica_id(BrokerId(me));
    }
    let response = connection.call(&request, version).await?;
    let mut work: Vec<(Arc<Partition>, Answer)> = Vec::new();
    let mut throttled_bytes = 0u64;
    for topic in response.responses {
        for p in topic.partitions {
            let Some((f, partition)) = ready
                .iter()
                .find(|(f, _)| f.topic_id == topic.topic_id && f.partition == p.partition_index)
            else {
                continue;
            };
            let key = (f.topic.clone(), f.partition);
            let answer = match ResponseError::try_from_code(p.error_code) {
                None if throttle.is_limited() && throttle.throttles(&f.topic, f.partition) => {
                    let size = p.records.as_ref().map_or(0, |r| r.len() as u64);
                    throttled_bytes = throttled_bytes.saturating_add(size);
                    Answer::Records {
                        records: p.records.unwrap_or_default(),
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                    }
                }
                None => Answer::Records {
                    records: p.records.unwrap_or_default(),
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                },
                Some(ResponseError::OffsetOutOfRange) => {
                    // Behind the leader's start, or ahead of its end: find out which.
                    synced.remove(&key);
                    Answer::OutOfRange {
                        log_start_offset: p.log_start_offset,
                    }
                }
                Some(error) => {
                    tracing::debug!(topic = %f.topic, partition = f.partition, ?error, "the leader refused a replica fetch");
                    refuse(refused, key);
                    continue;
                }
            };
            work.push((Arc::clone(partition), answer));
        }
    }
    throttle.record(ctx, throttled_bytes);
    let mut out_of_range = Vec::new();
    // Small appends run here, as the produce path's do (page-cache writes); large ones,
    // and any whose log is busy, on the blocking pool.
    let size: usize = work
        .iter()
        .map(|(_, answer)| match answer {
            Answer::Records { records, .. } => records.len(),
            Answer::OutOfRange { .. } => 0,
        })
        .sum();
    let mut results = Vec::with_capacity(work.len());
    let mut busy = Vec::new();
    for (p, answer) in work {
        if size > INLINE_APPEND_MAX_BYTES {
            busy.push((p, answer));
            continue;
        }
        let Some(mut log) = p.try_log() else {
            busy.push((p, answer));
            continue;
        };
        // Moving the log start (deleting segments) or truncating is left to the pool.
        let appends_only = matches!(&answer,
            Answer::Records { log_start_offset, .. } if *log_start_offset <= log.log_start_offset());
        if !appends_only {
            drop(log);
            busy.push((p, answer));
            continue;
        }
        let result = apply(&p, &mut log, answer);
        drop(log);
        results.push((p, result));
    }
    if !busy.is_empty() {
        results.extend(
            blocking(move || {
                busy.into_iter()
                    .map(|(p, answer)| {
                        let result = apply(&p, &mut p.log(), answer);
                        (p, result)
                    })
                    .collect::<Vec<_>>()
            })
            .await?,
        );
    }
    let mut appended = Vec::new();
    for (partition, result) in results {
        match result {
            Ok(Applied::Done { end: None }) => {}
            Ok(Applied::Done { end: Some(end) }) => appended.push((partition, end)),
            Ok(Applied::AheadOfLeader) => out_of_range.push(partition),
            Err(e) => {
                tracing::warn!(partition = %partition.tp, error = %e, "cannot append the leader's records; truncating again");
                synced.remove(&(partition.tp.topic.clone(), partition.tp.partition));
            }
        }
    }
    // Durable before the next fetch says it is here (unless acks=all asks only for
    // replication): every partition appended in this round goes to the broker's flusher
    // at once, which fsyncs their data in one grouped round, in parallel.
    if ctx.config.acks_all_durability == crate::config::Durability::Fsync && !appended.is_empty() {
        let parts: Vec<Arc<Partition>> = appended.iter().map(|(p, _)| Arc::clone(p)).collect();
        let flushed = ctx.flusher.enqueue(appended).await.await;
        for (partition, result) in parts.into_iter().zip(flushed) {
            if let Err(e) = result {
                tracing::warn!(partition = %partition.tp, error = %e, "cannot fsync the leader's records; truncating again");
                synced.remove(&(partition.tp.topic.clone(), partition.tp.partition));
            }
        }
    }
    if !out_of_range.is_empty() {
        truncate_to_leader_end(ctx, connection, &out_of_range).await?;
    }
    Ok(())
}

/// What the leader answered for one partition.
enum Answer {
    Records {
        records: Bytes,
        high_watermark: i64,
        log_start_offset: i64,
    },
    OutOfRange {
        log_start_offset: i64,
    },
}

enum Applied {
    /// Records were appended up to `end` (exclusive), or nothing was (`None`).
    Done {
        end: Option<i64>,
    },
    AheadOfLeader,
}

/// Appends the leader's batches and follows its high watermark and log start offset.
/// Does not fsync (the caller does, for every partition of the round together).
/// `log` is the partition's, locked.
fn apply(
    partition: &Partition,
    log: &mut Log,
    answer: Answer,
) -> Result<Applied, runnel_storage::LogError> {
    match answer {
        Answer::Records {
            records,
            high_watermark,
            log_start_offset,
        } => {
            let end = if records.is_empty() {
                None
            } else {
                log.append_as_follower(&records)?;
                Some(log.log_end_offset())
            };
            if log_start_offset > log.log_start_offset() {
                if log_start_offset > log.log_end_offset() {
                    log.truncate_fully_and_start_at(log_start_offset)?;
                } else {
                    log.delete_records_before(log_start_offset)?;
                }
            }
            partition
                .replica
                .follow_high_watermark(high_watermark, log.log_end_offset());
            Ok(Applied::Done { end })
        }
        Answer::OutOfRange { log_start_offset } => {
            if log.log_end_offset() < log_start_offset {
                log.truncate_fully_and_start_at(log_start_offset)?;
                Ok(Applied::Done { end: None })
            } else {
                Ok(Applied::AheadOfLeader)
            }
        }
    }
}

/// Brings each partition's log in line with the leader's before fetching in a new leader
/// epoch: asks the leader where the latest epoch held here ends on its side and truncates
/// to that (Kafka's OffsetsForLeaderEpoch truncation). A log with no epoch yet has
/// nothing to reconcile.
async fn truncate_to_leader(
    ctx: &Arc<BrokerContext>,
    connection: &mut Connection,
    partitions: &[&Followed],
    synced: &mut Synced,
    refused: &mut Refused,
) -> Result<(), RoundError> {
    let mut asks = Vec::new();
    for f in partitions {
        let Some(p) = ctx.partitions.get(&f.topic, f.partition) else {
            continue;
        };
        let latest = blocking(move || p.log().latest_epoch()).await?;
        match latest {
            None => {
                synced.insert((f.topic.clone(), f.partition), f.leader_epoch);
            }
            Some(epoch) => asks.push((*f, epoch)),
        }
    }
    if asks.is_empty() {
        return Ok(());
    }
    let version = match connection
        .version::<OffsetForLeaderEpochRequest>(2..=4)
        .await
    {
        Ok(v) => v,
        Err(ClientError::UnsupportedVersion { .. }) => {
            // A leader that cannot say where epochs end: fetch from our end; a follower
            // ahead of it is cut back by the fetch's out-of-range answer.
            for (f, _) in &asks {
                synced.insert((f.topic.clone(), f.partition), f.leader_epoch);
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for (f, epoch) in &asks {
        let partition = OffsetForLeaderPartition::default()
            .with_partition(f.partition)
            .with_current_leader_epoch(f.leader_epoch)
            .with_leader_epoch(*epoch);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == f.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(f.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(ctx.node_id()))
        .with_topics(topics);
    let response = connection.call(&request, version).await?;
    let mut cuts = Vec::new();
    for topic in response.topics {
        for p in topic.partitions {
            let Some((f, _)) = asks
                .iter()
                .find(|(f, _)| f.topic == topic.topic.0.as_str() && f.partition == p.partition)
            else {
                continue;
            };
            let key = (f.topic.clone(), f.partition);
            if p.error_code != 0 {
                refuse(refused, key);
                continue;
            }
            cuts.push((key, f.leader_epoch, p.end_offset));
        }
    }
    let ctx2 = Arc::clone(ctx);
    let done = blocking(move || {
        cuts.into_iter()
            .filter_map(|(key, epoch, end_offset): ((String, i32), i32, i64)| {
                let (topic, partition) = key;
                let p = ctx2.partitions.get(&topic, partition)?;
                let mut log = p.log();
                // UNDEFINED (-1): the leader holds no epoch at or below ours: start over.
                let cut = if end_offset < 0 { 0 } else { end_offset };
                if cut < log.log_end_offset() {
                    tracing::info!(partition = %p.tp, from = log.log_end_offset(), to = cut, "truncating to the leader's log");
                    if let Err(e) = log.truncate_to(cut) {
                        tracing::warn!(partition = %p.tp, error = %e, "truncation failed");
                        return None;
                    }
                }
                Some(((topic, partition), epoch))
            })
            .collect::<Vec<_>>()
    })
    .await?;
    synced.extend(done);
    Ok(())
}

/// A follower ahead of the leader's log end (the leader lost an unflushed tail, or a
/// truncation was missed) cuts its log to the leader's end offset, which a replica's
/// ListOffsets returns for "latest".
async fn truncate_to_leader_end(
    _ctx: &Arc<BrokerContext>,
    connection: &mut Connection,
    partitions: &[Arc<Partition>],
) -> Result<(), RoundError> {
    let version = connection.version::<ListOffsetsRequest>(1..=6).await?;
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for p in partitions {
        let partition = ListOffsetsPartition::default()
            .with_partition_index(p.tp.partition)
            .with_timestamp(-1);
        match topics.iter_mut().find(|t| t.name.0.as_str() == p.tp.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(p.tp.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(_ctx.node_id()))
        .with_topics(topics);
    let response = connection.call(&request, version).await?;
    let mut cuts = Vec::new();
    for topic in response.topics {
        for answer in topic.partitions {
            if answer.error_code != 0 || answer.offset < 0 {
                continue;
            }
            if let Some(p) = partitions.iter().find(|p| {
                p.tp.topic == topic.name.0.as_str() && p.tp.partition == answer.partition_index
            }) {
                cuts.push((Arc::clone(p), answer.offset));
            }
        }
    }
    blocking(move || {
        for (p, end) in cuts {
            if let Err(e) = p.log().truncate_to(end) {
                tracing::warn!(partition = %p.tp, error = %e, "truncation failed");
            }
        }
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RoundError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| RoundError::Blocking)
}
