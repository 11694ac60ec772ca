//! One producer connection: builds record batches for the partitions its leader leads,
//! pipelines Produce requests (at most `--max-in-flight` unanswered), and matches the
//! in-order responses to the batches they acknowledge.
//!
//! Concurrency: the sending loop and the acknowledgement reader are two tasks joined by a
//! bounded channel; a semaphore permit travels with each request and is released when its
//! response is handled, so the in-flight bound holds on both sides. Encoding (and
//! compressing) a batch runs inline: it is bounded by `--batch-size` (≤ 1 MiB).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_client::{ClientConfig, Connection, Pending, ResponseReader};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::TopicLayout;
use crate::error::BenchError;
use crate::pacer::{Pace, Pacer};
use crate::payload::{PayloadTemplate, RunClock};
use crate::stats::{record_latency, ProduceStats};

/// Records left to produce when the run is bounded by a count.
#[derive(Debug)]
pub struct Quota(Option<AtomicU64>);

impl Quota {
    /// A quota of `records`, or none.
    pub fn new(records: Option<u64>) -> Self {
        Quota(records.map(AtomicU64::new))
    }

    /// Claims up to `want` records; 0 when the quota is spent.
    pub fn claim(&self, want: u64) -> u64 {
        let Some(left) = &self.0 else { return want };
        match left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n > 0).then(|| n.saturating_sub(want))
        }) {
            Ok(before) => before.min(want),
            Err(_) => 0,
        }
    }
}

/// Settings and shared state of all producer connections.
#[derive(Debug)]
pub struct ProduceShared {
    /// The run's clock.
    pub clock: RunClock,
    /// Batches sent before this run-clock time are left out of the figures.
    pub warmup_end_micros: u64,
    /// Records left, when count-bound.
    pub quota: Quota,
    /// Cancelled when producing should stop (duration over, or the run aborted).
    pub stop: CancellationToken,
    /// Cancelled when in-flight requests should be abandoned (run timeout).
    pub abort: CancellationToken,
    /// The topic.
    pub topic: TopicLayout,
    /// Produce version.
    pub version: i16,
    /// 0, 1 or -1.
    pub acks: i16,
    /// Batch codec.
    pub compression: Compression,
    /// Records per full batch.
    pub records_per_batch: usize,
    /// Produce requests in flight per connection.
    pub max_in_flight: usize,
    /// Response wait limit (also the Produce request's `timeout_ms`).
    pub request_timeout: Duration,
    /// Partial-batch wait with a rate.
    pub linger: Duration,
    /// Identity and limits of the connection.
    pub client: ClientConfig,
}

/// One connection's work: its leader and partitions, and its share of `--rate`.
#[derive(Debug, Clone)]
pub struct ProducerTask {
    /// The leader's address.
    pub address: SocketAddr,
    /// Partitions led there.
    pub partitions: Vec<i32>,
    /// Records per second for this connection; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Value template (carries the run id).
    pub template: PayloadTemplate,
}

/// One batch inside a request: which partition, how many records and value bytes.
#[derive(Debug, Clone, Copy)]
struct BatchInfo {
    partition: i32,
    records: u64,
    bytes: u64,
}

/// A request awaiting its response.
#[derive(Debug)]
struct InFlight {
    pending: Pending<ProduceRequest>,
    sent: Sent,
}

/// What a request carried and when it left.
#[derive(Debug)]
struct Sent {
    sent_at: Instant,
    batches: Vec<BatchInfo>,
    _permit: OwnedSemaphorePermit,
}

/// Runs one producer connection until the quota or duration is spent; returns its stats.
pub async fn run(shared: Arc<ProduceShared>, task: ProducerTask) -> ProduceStats {
    let mut stats = ProduceStats::default();
    let connection = match Connection::connect(&task.address.to_string(), &shared.client).await {
        Ok(c) => c,
        Err(e) => {
            stats.errors.add(BenchError::from(e).label());
            return stats;
        }
    };
    let (mut writer, reader) = connection.into_split();
    let mut builder = Builder::new(task);
    if shared.acks == 0 {
        while let Some((request, batches)) = builder.next(&shared).await {
            let sent_at = Instant::now();
            if let Err(e) = writer.send_unanswered(&request, shared.version).await {
                stats.errors.add(BenchError::from(e).label());
                break;
            }
            let records: u64 = batches.iter().map(|b| b.records).sum();
            stats.records_sent += records;
            if shared.clock.micros_at(sent_at.into_std()) >= shared.warmup_end_micros {
                stats.measured_records += records;
                stats.measured_bytes += batches.iter().map(|b| b.bytes).sum::<u64>();
            }
            stats.last_micros = shared.clock.now_micros();
        }
        return stats;
    }
    let permits = Arc::new(Semaphore::new(shared.max_in_flight));
    let (tx, rx) = mpsc::channel::<InFlight>(shared.max_in_flight);
    let acks = tokio::spawn(read_acks(reader, rx, Arc::clone(&shared)));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shared.stop.cancelled() => break,
        };
        let Some((request, batches)) = builder.next(&shared).await else {
            break;
        };
        let sent_at = Instant::now();
        let pending = match writer.send(&request, shared.version).await {
            Ok(pending) => pending,
            Err(e) => {
                stats.errors.add(BenchError::from(e).label());
                break;
            }
        };
        stats.records_sent += batches.iter().map(|b| b.records).sum::<u64>();
        let in_flight = InFlight {
            pending,
            sent: Sent {
                sent_at,
                batches,
                _permit: permit,
            },
        };
        if tx.send(in_flight).await.is_err() {
            break; // the reader stopped on an error it has counted
        }
    }
    drop(tx);
    match acks.await {
        Ok(acked) => stats.merge(&acked),
        Err(e) => stats
            .errors
            .add(format!("acknowledgement task failed: {e}")),
    }
    stats
}

async fn read_acks(
    mut reader: ResponseReader,
    mut rx: mpsc::Receiver<InFlight>,
    shared: Arc<ProduceShared>,
) -> ProduceStats {
    let mut stats = ProduceStats::default();
    while let Some(InFlight { pending, sent }) = rx.recv().await {
        let response = tokio::select! {
            r = reader.receive(pending) => r,
            _ = shared.abort.cancelled() => {
                stats.errors.add("Produce: abandoned at --timeout");
                break;
            }
        };
        match response {
            Ok(response) => account(&mut stats, &shared, &sent, &response, Instant::now()),
            Err(e) => {
                stats.errors.add(BenchError::from(e).label());
                break;
            }
        }
    }
    stats
}

/// Counts the batches a response acknowledges and their latency.
fn account(
    stats: &mut ProduceStats,
    shared: &ProduceShared,
    sent: &Sent,
    response: &ProduceResponse,
    acked_at: Instant,
) {
    let topic = response.responses.iter().find(|t| {
        t.name == shared.topic.name || (!t.topic_id.is_nil() && t.topic_id == shared.topic.topic_id)
    });
    let latency = acked_at.saturating_duration_since(sent.sent_at);
    let measured = shared.clock.micros_at(sent.sent_at.into_std()) >= shared.warmup_end_micros;
    for batch in &sent.batches {
        let partition = topic.and_then(|t| {
            t.partition_responses
                .iter()
                .find(|p| p.index == batch.partition)
        });
        let Some(partition) = partition else {
            stats.errors.add("Produce: partition missing from response");
            continue;
        };
        if let Some(error) = BenchError::from_code(ApiKey::Produce, partition.error_code) {
            stats.errors.add(error.label());
            continue;
        }
        stats.records_acked += batch.records;
        stats.bytes_acked += batch.bytes;
        stats.batches_acked += 1;
        if measured {
            stats.measured_records += batch.records;
            stats.measured_bytes += batch.bytes;
            record_latency(
                &mut stats.latency,
                u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            );
        }
    }
    stats.last_micros = shared.clock.micros_at(acked_at.into_std());
}

/// Builds Produce requests: one batch per partition, partitions in rotating order.
struct Builder {
    task: ProducerTask,
    pacer: Option<Pacer>,
    next_start: usize,
}

impl Builder {
    fn new(task: ProducerTask) -> Self {
        let pacer = task.rate.map(|rate| Pacer::new(rate, Instant::now()));
        Builder {
            task,
            pacer,
            next_start: 0,
        }
    }

    /// The next request and its batches; `None` when producing is over.
    async fn next(&mut self, shared: &ProduceShared) -> Option<(ProduceRequest, Vec<BatchInfo>)> {
        let partitions = self.task.partitions.len();
        let full = (partitions * shared.records_per_batch) as u64;
        let count = match &self.pacer {
            None => full,
            Some(pacer) => loop {
                if shared.stop.is_cancelled() {
                    return None;
                }
                match pacer.next(Instant::now(), full, shared.linger) {
                    Pace::Take(n) => break n,
                    Pace::WaitUntil(at) => tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = shared.stop.cancelled() => return None,
                    },
                }
            },
        };
        if shared.stop.is_cancelled() {
            return None;
        }
        let count = shared.quota.claim(count);
        if count == 0 {
            return None;
        }
        let first_index = self.pacer.as_mut().map(|p| p.take(count));
        let now_micros = shared.clock.now_micros();
        let pacer = self.pacer.as_ref();
        // With a rate, a record's send time is when it was due; otherwise it is now.
        let sent_micros = |i: u64| match (pacer, first_index) {
            (Some(pacer), Some(first)) => shared.clock.micros_at(pacer.due(first + i).into_std()),
            _ => now_micros,
        };
        let mut batches = Vec::with_capacity(partitions);
        let mut partition_data = Vec::with_capacity(partitions);
        let mut produced = 0u64;
        for step in 0..partitions {
            if produced == count {
                break;
            }
            let partition = self.task.partitions[(self.next_start + step) % partitions];
            let n = (count - produced).min(shared.records_per_batch as u64);
            let values: Vec<Bytes> = (0..n)
                .map(|i| self.task.template.value(sent_micros(produced + i)))
                .collect();
            produced += n;
            let bytes = values.iter().map(|v| v.len() as u64).sum();
            let encoded = match encode_batch(values, shared.compression) {
                Ok(encoded) => encoded,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a record batch");
                    return None;
                }
            };
            batches.push(BatchInfo {
                partition,
                records: n,
                bytes,
            });
            partition_data.push(
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(encoded)),
            );
        }
        self.next_start = (self.next_start + 1) % partitions.max(1);
        let request = ProduceRequest::default()
            .with_acks(shared.acks)
            .with_timeout_ms(i32::try_from(shared.request_timeout.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(shared.topic.name.clone())
                .with_topic_id(shared.topic.topic_id)
                .with_partition_data(partition_data)]);
        Some((request, batches))
    }
}

/// The producer id, epoch and first sequence number of an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotence {
    /// The id InitProducerId handed out.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// The sequence number of the batch's first record (records follow on; a run never
    /// gets near the wrap at `i32::MAX`).
    pub base_sequence: i32,
}

/// Encodes values as one v2 record batch (no producer id, creation timestamps).
pub fn encode_batch(values: Vec<Bytes>, compression: Compression) -> Result<Bytes, BenchError> {
    encode_batch_as(values, compression, None)
}

/// Encodes values as one v2 record batch, idempotent when `idempotence` is given.
pub fn encode_batch_as(
    values: Vec<Bytes>,
    compression: Compression,
    idempotence: Option<Idempotence>,
) -> Result<Bytes, BenchError> {
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let records: Vec<Record> = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: idempotence.map_or(-1, |p| p.producer_id),
            producer_epoch: idempotence.map_or(-1, |p| p.producer_epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever `offset - sequence` changes; with
            // this, all records share one batch whose base sequence is -1 (none), or the
            // idempotent producer's next sequence number.
            sequence: i32::try_from(i)
                .unwrap_or(i32::MAX)
                .wrapping_add(idempotence.map_or(-1, |p| p.base_sequence)),
            timestamp,
            key: None,
            value: Some(value),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| BenchError::encode(ApiKey::Produce, 2, e))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn quota_hands_out_exactly_its_records() {
        let quota = Quota::new(Some(10));
        assert_eq!(quota.claim(4), 4);
        assert_eq!(quota.claim(4), 4);
        assert_eq!(quota.claim(4), 2);
        assert_eq!(quota.claim(4), 0);
        assert_eq!(Quota::new(None).claim(7), 7);
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        let template = PayloadTemplate::new(9, 100, 1);
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let values = (0..5).map(|i| template.value(i)).collect();
            let mut encoded = encode_batch(values, compression).unwrap();
            let set = RecordBatchDecoder::decode(&mut encoded).unwrap();
            assert!(
                encoded.is_empty(),
                "one batch holds all records ({compression:?})"
            );
            assert_eq!(set.records.len(), 5, "{compression:?}");
            assert_eq!(set.records[4].offset, 4);
            let value = set.records[3].value.as_ref().unwrap();
            assert_eq!(crate::payload::sent_micros(value, 9), Some(3));
        }
    }

    #[test]
    fn idempotent_batches_carry_producer_id_epoch_and_sequences() {
        let template = PayloadTemplate::new(9, 100, 1);
        let values = (0..4).map(|i| template.value(i)).collect();
        let identity = Idempotence {
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 40,
        };
        let mut encoded = encode_batch_as(values, Compression::None, Some(identity)).unwrap();
        let set = RecordBatchDecoder::decode(&mut encoded).unwrap();
        assert!(encoded.is_empty(), "one batch holds all records");
        let sequences: Vec<i32> = set.records.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, vec![40, 41, 42, 43]);
        assert!(set
            .records
            .iter()
            .all(|r| r.producer_id == 77 && r.producer_epoch == 3));
    }
}
