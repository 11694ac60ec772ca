//! One consumer connection: finds its start offsets with ListOffsets, then fetches its
//! partitions from their leader, one Fetch in flight, until the run's records are all
//! consumed, the drain time is over or the run is aborted.
//!
//! Decoding (and decompressing) a Fetch response is heavy CPU and runs on the blocking
//! pool; a response's arrival time is taken before decoding, so decoding is not latency.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::TopicLayout;
use crate::config::StartOffset;
use crate::connection::Connection;
use crate::error::BenchError;
use crate::payload::{sent_micros, RunClock};
use crate::stats::{record_latency, ConsumeStats};

/// How long a Fetch may wait at the broker for data.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Pause after a Fetch whose partitions all failed, before asking again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes before a record batch's length field ends (base offset i64, length i32).
const BATCH_LENGTH_END: usize = 12;
/// The smallest valid value of a v2 batch's length field (a header with no records).
const MIN_BATCH_LENGTH: usize = 49;

/// Settings and shared state of all consumer connections.
#[derive(Debug)]
pub struct ConsumeShared {
    /// The run's clock.
    pub clock: RunClock,
    /// Records sent before this run-clock time are left out of the figures; `u64::MAX`
    /// until producers start.
    pub warmup_end_micros: AtomicU64,
    /// Tells this run's records apart.
    pub run_id: u64,
    /// This run's records consumed so far, over all consumers.
    pub consumed: AtomicU64,
    /// How many records to consume; set when producers are done.
    pub target: watch::Receiver<Option<u64>>,
    /// Cancelled when the drain time is over or the run is aborted.
    pub stop: CancellationToken,
    /// The topic.
    pub topic: TopicLayout,
    /// Fetch version.
    pub fetch_version: i16,
    /// ListOffsets version.
    pub list_offsets_version: i16,
    /// Where to start.
    pub start: StartOffset,
    /// Response wait limit.
    pub request_timeout: Duration,
    /// fetch.max.bytes.
    pub fetch_max_bytes: i32,
    /// max.partition.fetch.bytes.
    pub partition_fetch_max_bytes: i32,
    /// client.id.
    pub client_id: String,
}

impl ConsumeShared {
    fn done(&self) -> bool {
        if self.stop.is_cancelled() {
            return true;
        }
        let consumed = self.consumed.load(Ordering::Acquire);
        matches!(*self.target.borrow(), Some(target) if consumed >= target)
    }
}

/// One consumer connection's work.
#[derive(Debug, Clone)]
pub struct ConsumerTask {
    /// The leader's address.
    pub address: SocketAddr,
    /// Partitions to fetch from it.
    pub partitions: Vec<i32>,
}

/// Runs one consumer connection; `ready` is sent (or dropped) once start offsets are
/// known, so producers start after them.
pub async fn run(
    shared: Arc<ConsumeShared>,
    task: ConsumerTask,
    ready: oneshot::Sender<()>,
) -> ConsumeStats {
    let mut stats = ConsumeStats::default();
    let mut connection =
        match Connection::connect(task.address, &shared.client_id, shared.request_timeout).await {
            Ok(c) => c,
            Err(e) => {
                stats.errors.add(e.label());
                return stats;
            }
        };
    let mut positions = match start_offsets(&mut connection, &shared, &task.partitions).await {
        Ok(positions) => positions,
        Err(e) => {
            stats.errors.add(e.label());
            return stats;
        }
    };
    let _ = ready.send(());
    while !shared.done() {
        let request = fetch_request(&shared, &positions);
        let response = tokio::select! {
            r = connection.call(&request, shared.fetch_version) => r,
            _ = shared.stop.cancelled() => break,
        };
        let received_micros = shared.clock.now_micros();
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                stats.errors.add(e.label());
                break;
            }
        };
        let (data, failed) = partition_records(&shared, &response, &positions, &mut stats);
        let decode_shared = Arc::clone(&shared);
        let decoded = tokio::task::spawn_blocking(move || {
            let mut stats = stats;
            let mut advanced = Vec::with_capacity(data.len());
            for (partition, position, records) in data {
                match decode_records(
                    records,
                    position,
                    &decode_shared,
                    received_micros,
                    &mut stats,
                ) {
                    Ok(next) => advanced.push((partition, next)),
                    Err(label) => stats.errors.add(label),
                }
            }
            (stats, advanced)
        })
        .await;
        stats = match decoded {
            Ok((decoded_stats, advanced)) => {
                positions.extend(advanced);
                decoded_stats
            }
            Err(e) => {
                // The stats moved into the failed task are lost with it.
                let mut lost = ConsumeStats::default();
                lost.errors.add(format!("decode task failed: {e}"));
                return lost;
            }
        };
        if failed && !shared.done() {
            tokio::select! {
                _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                _ = shared.stop.cancelled() => break,
            }
        }
    }
    stats
}

async fn start_offsets(
    connection: &mut Connection,
    shared: &ConsumeShared,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, BenchError> {
    let timestamp = shared.start.list_offsets_timestamp();
    let mut request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(shared.topic.name.clone())
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    if shared.list_offsets_version >= 10 {
        request.timeout_ms = i32::try_from(shared.request_timeout.as_millis()).unwrap_or(i32::MAX);
    }
    let response = connection
        .call(&request, shared.list_offsets_version)
        .await?;
    let mut positions = BTreeMap::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            if let Some(error) = BenchError::from_code(ApiKey::ListOffsets, p.error_code) {
                return Err(error);
            }
            positions.insert(p.partition_index, p.offset);
        }
    }
    for p in partitions {
        if !positions.contains_key(p) {
            return Err(BenchError::NoLeader {
                topic: shared.topic.name.0.to_string(),
                partition: *p,
            });
        }
    }
    Ok(positions)
}

fn fetch_request(shared: &ConsumeShared, positions: &BTreeMap<i32, i64>) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(shared.fetch_max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(shared.topic.name.clone())
            .with_topic_id(shared.topic.topic_id)
            .with_partitions(
                positions
                    .iter()
                    .map(|(partition, offset)| {
                        FetchPartition::default()
                            .with_partition(*partition)
                            .with_fetch_offset(*offset)
                            .with_partition_max_bytes(shared.partition_fetch_max_bytes)
                    })
                    .collect(),
            )])
}

/// The record bytes of each partition in a response, with the position fetched from;
/// errors are counted. Also returns whether the whole Fetch failed.
fn partition_records(
    shared: &ConsumeShared,
    response: &FetchResponse,
    positions: &BTreeMap<i32, i64>,
    stats: &mut ConsumeStats,
) -> (Vec<(i32, i64, Bytes)>, bool) {
    if let Some(error) = BenchError::from_code(ApiKey::Fetch, response.error_code) {
        stats.errors.add(error.label());
        return (Vec::new(), true);
    }
    let mut data = Vec::new();
    let mut failures = 0usize;
    let topics = response.responses.iter().filter(|t| {
        t.topic == shared.topic.name
            || (!t.topic_id.is_nil() && t.topic_id == shared.topic.topic_id)
    });
    for partition in topics.flat_map(|t| t.partitions.iter()) {
        if let Some(error) = BenchError::from_code(ApiKey::Fetch, partition.error_code) {
            stats.errors.add(error.label());
            failures += 1;
            continue;
        }
        let Some(position) = positions.get(&partition.partition_index) else {
            continue;
        };
        if let Some(records) = partition.records.as_ref().filter(|r| !r.is_empty()) {
            data.push((partition.partition_index, *position, records.clone()));
        }
    }
    (data, failures > 0 && failures >= positions.len())
}

/// Decodes the complete batches in `records`, counting records at or after `position`;
/// returns the next position. A partial batch at the end (cut by the size limit) waits
/// for the next Fetch.
pub fn decode_records(
    mut records: Bytes,
    position: i64,
    shared: &ConsumeShared,
    received_micros: u64,
    stats: &mut ConsumeStats,
) -> Result<i64, String> {
    let mut next = position;
    let warmup_end_micros = shared.warmup_end_micros.load(Ordering::Acquire);
    while let Some(mut batch) = next_batch(&mut records)? {
        let base_offset = batch.clone().get_i64();
        let last_offset_delta = i64::from((&batch[23..27]).get_i32());
        if batch[16] != 2 {
            return Err(format!("Fetch: record batch with magic {}", batch[16]));
        }
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("Fetch: undecodable record batch: {e}"))?;
        let mut ours = 0u64;
        for record in set.records.iter().filter(|r| r.offset >= position) {
            let value = record.value.as_deref().unwrap_or_default();
            match sent_micros(value, shared.run_id) {
                Some(sent) => {
                    ours += 1;
                    stats.records += 1;
                    stats.bytes += value.len() as u64;
                    if sent >= warmup_end_micros {
                        stats.measured_records += 1;
                        stats.measured_bytes += value.len() as u64;
                        record_latency(&mut stats.end_to_end, received_micros.saturating_sub(sent));
                    }
                }
                None => stats.foreign_records += 1,
            }
        }
        if ours > 0 {
            stats.last_micros = stats.last_micros.max(received_micros);
            shared.consumed.fetch_add(ours, Ordering::AcqRel);
        }
        next = next.max(base_offset + last_offset_delta + 1);
    }
    Ok(next)
}

/// Splits the next complete batch off `records`; `None` when only a partial one is left.
pub fn next_batch(records: &mut Bytes) -> Result<Option<Bytes>, String> {
    if records.len() < BATCH_LENGTH_END {
        return Ok(None);
    }
    let length = (&records[8..12]).get_i32();
    let length = usize::try_from(length)
        .ok()
        .filter(|l| *l >= MIN_BATCH_LENGTH)
        .ok_or_else(|| format!("Fetch: record batch length {length}"))?;
    let total = BATCH_LENGTH_END + length;
    if records.len() < total {
        return Ok(None);
    }
    Ok(Some(records.split_to(total)))
}
