//! One consumer connection: finds its start offsets with ListOffsets, waits for the
//! runner's go, then fetches its partitions from their leader, one Fetch in flight, until
//! the run's records are all consumed, the drain time is over or the run is aborted.
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
use runnel_client::{ClientConfig, Connection};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::TopicLayout;
use crate::config::StartOffset;
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

/// Which records consumers count as the run's, and what they measure of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Records of run `run_id`, consumed while producers run: those sent after warmup are
    /// measured, with their end-to-end latency.
    Live {
        /// Tells this run's records apart.
        run_id: u64,
    },
    /// Records of run `run_id`, read back after producing: all measured, no latency (they
    /// waited in the log for consumers to start).
    ReadBack {
        /// Tells this run's records apart.
        run_id: u64,
    },
    /// Every record but control records, whoever wrote it: all measured, no latency.
    Any,
}

/// Settings and shared state of all consumer connections.
#[derive(Debug)]
pub struct ConsumeShared {
    /// The run's clock.
    pub clock: RunClock,
    /// With [`Counting::Live`], records sent before this run-clock time are left out of
    /// the figures; `u64::MAX` until producers start.
    pub warmup_end_micros: AtomicU64,
    /// Which records count.
    pub counting: Counting,
    /// The run's records consumed so far, over all consumers.
    pub consumed: AtomicU64,
    /// How many records to consume; set when producers are done (at the start when
    /// consumers catch up).
    pub target: watch::Receiver<Option<u64>>,
    /// Consumers fetch once this is true: the runner opens it when every consumer has its
    /// start offsets, so the consume window starts with the first Fetch of all of them.
    pub go: watch::Receiver<bool>,
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
    /// Response wait limit (also the ListOffsets request's `timeout_ms`).
    pub request_timeout: Duration,
    /// fetch.max.bytes.
    pub fetch_max_bytes: i32,
    /// max.partition.fetch.bytes.
    pub partition_fetch_max_bytes: i32,
    /// Identity and limits of the connection.
    pub client: ClientConfig,
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
    let mut connection = match Connection::connect(&task.address.to_string(), &shared.client).await
    {
        Ok(c) => c,
        Err(e) => {
            stats.errors.add(BenchError::from(e).label());
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
    let mut go = shared.go.clone();
    tokio::select! {
        opened = go.wait_for(|open| *open) => {
            // A closed gate means the runner gave up before starting consumers.
            if opened.is_err() {
                return stats;
            }
        }
        _ = shared.stop.cancelled() => return stats,
    }
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
                stats.errors.add(BenchError::from(e).label());
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

/// Decodes the complete batches in `records`, counting records at or after `position`
/// as `shared.counting` says; returns the next position. A partial batch at the end (cut by the size limit) waits
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
    // Only a live run measures end-to-end latency and leaves out warmup records.
    let live = matches!(shared.counting, Counting::Live { .. });
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
            let len = value.len() as u64;
            let sent = match shared.counting {
                Counting::Live { run_id } | Counting::ReadBack { run_id } => {
                    sent_micros(value, run_id)
                }
                Counting::Any => (!record.control).then_some(0),
            };
            let Some(sent) = sent else {
                stats.foreign_records += 1;
                continue;
            };
            ours += 1;
            stats.records += 1;
            stats.bytes += len;
            if live && sent < warmup_end_micros {
                continue;
            }
            stats.measured_records += 1;
            stats.measured_bytes += len;
            if live {
                record_latency(&mut stats.end_to_end, received_micros.saturating_sub(sent));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::PayloadTemplate;
    use crate::producer::encode_batch;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::Compression;

    fn shared(counting: Counting, warmup_end_micros: u64) -> ConsumeShared {
        ConsumeShared {
            clock: RunClock::start(),
            warmup_end_micros: AtomicU64::new(warmup_end_micros),
            counting,
            consumed: AtomicU64::new(0),
            target: watch::channel(None).1,
            go: watch::channel(true).1,
            stop: CancellationToken::new(),
            topic: TopicLayout {
                name: TopicName(StrBytes::from_static_str("t")),
                topic_id: uuid::Uuid::nil(),
                partitions: Vec::new(),
            },
            fetch_version: 12,
            list_offsets_version: 6,
            start: StartOffset::Earliest,
            request_timeout: Duration::from_secs(1),
            fetch_max_bytes: 1 << 20,
            partition_fetch_max_bytes: 1 << 20,
            client: runnel_client::ClientConfig::new("test"),
        }
    }

    /// Offsets 0..=4: run 7 sent at 500, 2000 and 3000 µs, then a record of run 8 and a
    /// value another client wrote.
    fn mixed_batch() -> Bytes {
        let ours = PayloadTemplate::new(7, 100, 1);
        let theirs = PayloadTemplate::new(8, 100, 1);
        let values = vec![
            ours.value(500),
            ours.value(2000),
            ours.value(3000),
            theirs.value(2500),
            Bytes::from_static(b"written by someone else"),
        ];
        encode_batch(values, Compression::Lz4).unwrap()
    }

    fn decode(counting: Counting, position: i64) -> (ConsumeStats, u64, i64) {
        let shared = shared(counting, 1000);
        let mut stats = ConsumeStats::default();
        let next = decode_records(mixed_batch(), position, &shared, 5000, &mut stats).unwrap();
        (stats, shared.consumed.load(Ordering::Acquire), next)
    }

    #[test]
    fn live_counts_the_run_and_measures_after_warmup_with_latency() {
        let (stats, consumed, next) = decode(Counting::Live { run_id: 7 }, 0);
        assert_eq!((stats.records, stats.foreign_records, consumed), (3, 2, 3));
        assert_eq!((stats.measured_records, stats.measured_bytes), (2, 200));
        assert_eq!(stats.end_to_end.len(), 2);
        assert_eq!(stats.last_micros, 5000);
        assert_eq!(next, 5);
    }

    #[test]
    fn read_back_measures_every_record_of_the_run_without_latency() {
        let (stats, consumed, _) = decode(Counting::ReadBack { run_id: 7 }, 0);
        assert_eq!((stats.records, stats.foreign_records, consumed), (3, 2, 3));
        assert_eq!((stats.measured_records, stats.measured_bytes), (3, 300));
        assert!(stats.end_to_end.is_empty());
    }

    #[test]
    fn any_counts_every_writer_from_the_position() {
        let (stats, consumed, next) = decode(Counting::Any, 1);
        assert_eq!((stats.records, stats.foreign_records, consumed), (4, 0, 4));
        assert_eq!(stats.bytes, 300 + 23);
        assert_eq!(stats.measured_records, 4);
        assert!(stats.end_to_end.is_empty());
        assert_eq!(next, 5);
    }
}
