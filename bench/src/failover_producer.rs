//! The failover run's producer: one idempotent producer that sends acks=all batches to
//! one partition's leader back to back, one request at a time, and retries a failed
//! batch (same sequence numbers) after `--retry-backoff-ms` and a Metadata refresh until
//! a leader acknowledges it. It records every acknowledgement and, while a kill is
//! marked, the first Metadata answer naming another leader and the first acknowledgement
//! of a request sent after the kill.
//!
//! Concurrency: the producer task and the control loop share [`Shared`]: a std `Mutex`
//! held for a few assignments (never across an `.await`) and a `Notify` the producer
//! signals when a marked kill recovers.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::records::Compression;
use runnel_client::{ClientConfig, Connection};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::BenchError;
use crate::failover_metadata::{broker_addresses, partition_view, MetadataClient};
use crate::failover_report::KillResult;
use crate::payload::PayloadTemplate;
use crate::producer::{encode_batch_as, Idempotence};
use crate::stats::ErrorCounts;

/// InitProducerId versions the bench speaks (v3+ bumps the epoch of a known producer).
pub const INIT_PRODUCER_ID: std::ops::RangeInclusive<i16> = 0..=5;

/// Kafka error codes after which the producer starts a new epoch at sequence 0.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// The last acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// When its request was sent.
    pub sent_at: Instant,
    /// When it was acknowledged.
    pub acked_at: Instant,
    /// The leader that acknowledged it.
    pub leader: i32,
}

/// A kill being timed.
#[derive(Debug, Clone)]
struct Mark {
    at: Instant,
    node: i32,
    leader_before: i32,
    elected: Option<Instant>,
    recovered: Option<(Instant, i32)>,
    failed_attempts: u64,
}

#[derive(Debug, Default)]
struct State {
    leader: i32,
    last_ack: Option<Ack>,
    records_acked: u64,
    errors: ErrorCounts,
    mark: Option<Mark>,
}

/// What the producer and the control loop share.
#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<State>,
    recovered: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last acknowledgement, if any.
    pub fn last_ack(&self) -> Option<Ack> {
        self.lock().last_ack
    }

    /// Records acknowledged so far and the errors counted.
    pub fn totals(&self) -> (u64, ErrorCounts) {
        let state = self.lock();
        (state.records_acked, state.errors.clone())
    }

    /// Starts timing a kill of `node`, now.
    pub fn mark_kill(&self, node: i32) {
        let mut state = self.lock();
        let leader_before = state.leader;
        state.mark = Some(Mark {
            at: Instant::now(),
            node,
            leader_before,
            elected: None,
            recovered: None,
            failed_attempts: 0,
        });
    }

    /// Waits until the marked kill recovers or `deadline` passes, then ends the mark and
    /// returns its result numbered `kill`; `None` if no kill was marked.
    pub async fn finish_kill(&self, kill: u32, deadline: Instant) -> Option<KillResult> {
        loop {
            let notified = self.recovered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done = self.lock().mark.as_ref()?.recovered.is_some();
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        let mark = self.lock().mark.take()?;
        let ms = |at: Instant| at.saturating_duration_since(mark.at).as_secs_f64() * 1000.0;
        Some(KillResult {
            kill,
            node: mark.node,
            leader_before: mark.leader_before,
            elected_ms: mark.elected.map(ms),
            recovered_ms: mark.recovered.map(|(at, _)| ms(at)),
            new_leader: mark.recovered.map(|(_, leader)| leader),
            failed_attempts: mark.failed_attempts,
        })
    }

    fn acked(&self, ack: Ack, records: u64) {
        let mut state = self.lock();
        state.records_acked += records;
        state.last_ack = Some(ack);
        let Some(mark) = &mut state.mark else { return };
        if mark.recovered.is_none() && ack.sent_at >= mark.at {
            mark.recovered = Some((ack.acked_at, ack.leader));
            drop(state);
            self.recovered.notify_waiters();
        }
    }

    fn failed(&self, label: String) {
        let mut state = self.lock();
        state.errors.add(label);
        if let Some(mark) = &mut state.mark {
            mark.failed_attempts += 1;
        }
    }

    fn saw_leader(&self, leader: i32) {
        let mut state = self.lock();
        state.leader = leader;
        if let Some(mark) = &mut state.mark {
            if mark.elected.is_none() && leader >= 0 && leader != mark.node {
                mark.elected = Some(Instant::now());
            }
        }
    }
}

/// What the producer sends and how it retries.
#[derive(Debug, Clone)]
pub struct ProducerSetup {
    /// Brokers to ask Metadata and InitProducerId.
    pub bootstrap: Vec<String>,
    /// The topic.
    pub topic: TopicName,
    /// Its id (nil when Metadata gave none; Produce then stays at a version with names).
    pub topic_id: uuid::Uuid,
    /// The partition.
    pub partition: i32,
    /// Produce version.
    pub produce_version: i16,
    /// Records per batch.
    pub records_per_batch: u64,
    /// Record values.
    pub template: PayloadTemplate,
    /// Pause after a failed attempt.
    pub backoff: Duration,
    /// Produce `timeout_ms`.
    pub request_timeout: Duration,
    /// Identity and limits of connections.
    pub client: ClientConfig,
}

/// Produces until `stop`; errors are counted in `shared`, never end the loop.
pub async fn run(shared: &Shared, setup: ProducerSetup, stop: CancellationToken) {
    let mut metadata = MetadataClient::new(setup.bootstrap.clone(), setup.client.clone());
    let mut identity: Option<Idempotence> = None;
    let mut batch: Option<(bytes::Bytes, u64)> = None;
    let mut connection: Option<(i32, Connection)> = None;
    let mut addresses = BTreeMap::new();
    let mut leader = -1;
    let mut refresh = true;
    let pause = || async {
        tokio::select! {
            _ = tokio::time::sleep(setup.backoff) => {}
            _ = stop.cancelled() => {}
        }
    };
    while !stop.is_cancelled() {
        if refresh {
            match metadata.topic(&setup.topic).await {
                Ok(response) => {
                    leader = partition_view(&response, &setup.topic, setup.partition)
                        .map_or(-1, |v| v.leader);
                    shared.saw_leader(leader);
                    addresses = broker_addresses(&response);
                    refresh = false;
                    if connection.as_ref().is_some_and(|(node, _)| *node != leader) {
                        connection = None;
                    }
                }
                Err(e) => {
                    shared.failed(e.label());
                    pause().await;
                    continue;
                }
            }
        }
        let Some(id) = identity else {
            match init_producer_id(&mut metadata).await {
                Ok(id) => identity = Some(id),
                Err(e) => {
                    shared.failed(e.label());
                    pause().await;
                }
            }
            continue;
        };
        if connection.is_none() {
            let Some(address) = addresses.get(&leader).filter(|_| leader >= 0) else {
                refresh = true;
                pause().await;
                continue;
            };
            match Connection::connect(address, &setup.client).await {
                Ok(c) => connection = Some((leader, c)),
                Err(e) => {
                    shared.failed(BenchError::from(e).label());
                    refresh = true;
                    pause().await;
                    continue;
                }
            }
        }
        if batch.is_none() {
            let values = (0..setup.records_per_batch)
                .map(|_| setup.template.value(0))
                .collect();
            match encode_batch_as(values, Compression::None, Some(id)) {
                Ok(bytes) => batch = Some((bytes, setup.records_per_batch)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a record batch");
                    return;
                }
            }
        }
        let (Some((node, conn)), Some((bytes, records))) = (connection.as_mut(), batch.as_ref())
        else {
            continue;
        };
        let request = produce_request(&setup, bytes.clone());
        let sent_at = Instant::now();
        let result = tokio::select! {
            r = conn.call(&request, setup.produce_version) => r,
            _ = stop.cancelled() => break,
        };
        let code = match result {
            Ok(response) => partition_error(&response, &setup),
            Err(e) => {
                shared.failed(BenchError::from(e).label());
                connection = None;
                refresh = true;
                pause().await;
                continue;
            }
        };
        match code {
            0 => {
                let ack = Ack {
                    sent_at,
                    acked_at: Instant::now(),
                    leader: *node,
                };
                shared.acked(ack, *records);
                let next = id
                    .base_sequence
                    .wrapping_add(i32::try_from(*records).unwrap_or(0));
                identity = Some(Idempotence {
                    base_sequence: next,
                    ..id
                });
                batch = None;
            }
            OUT_OF_ORDER_SEQUENCE_NUMBER | INVALID_PRODUCER_EPOCH | UNKNOWN_PRODUCER_ID => {
                shared.failed(produce_label(code));
                // A new producer id from sequence 0; the unacknowledged batch is dropped.
                identity = None;
                batch = None;
            }
            _ => {
                shared.failed(produce_label(code));
                refresh = true;
                pause().await;
            }
        }
    }
}

fn produce_label(code: i16) -> String {
    BenchError::from_code(ApiKey::Produce, code)
        .map_or_else(|| "Produce".to_string(), |e| e.label())
}

fn produce_request(setup: &ProducerSetup, records: bytes::Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(i32::try_from(setup.request_timeout.as_millis()).unwrap_or(i32::MAX))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(setup.topic.clone())
            .with_topic_id(setup.topic_id)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(setup.partition)
                .with_records(Some(records))])])
}

/// The partition's error code in `response`; UNKNOWN_SERVER_ERROR (-1) if it is missing.
fn partition_error(response: &ProduceResponse, setup: &ProducerSetup) -> i16 {
    response
        .responses
        .iter()
        .filter(|t| t.name == setup.topic || (!t.topic_id.is_nil() && t.topic_id == setup.topic_id))
        .flat_map(|t| &t.partition_responses)
        .find(|p| p.index == setup.partition)
        .map_or(-1, |p| p.error_code)
}

/// A fresh producer id and epoch from any bootstrap broker.
async fn init_producer_id(metadata: &mut MetadataClient) -> Result<Idempotence, BenchError> {
    let (connection, _) = metadata.connection().await?;
    let result = async {
        let version = connection
            .version::<InitProducerIdRequest>(INIT_PRODUCER_ID)
            .await?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        connection.call(&request, version).await
    }
    .await;
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            metadata.reset();
            return Err(e.into());
        }
    };
    if let Some(error) = BenchError::from_code(ApiKey::InitProducerId, response.error_code) {
        return Err(error);
    }
    Ok(Idempotence {
        producer_id: response.producer_id.0,
        producer_epoch: response.producer_epoch,
        base_sequence: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(shared: &Shared, sent_at: Instant, leader: i32) {
        let acked_at = Instant::now();
        shared.acked(
            Ack {
                sent_at,
                acked_at,
                leader,
            },
            10,
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kill_recovers_at_the_first_ack_of_a_request_sent_after_it() {
        let shared = Shared::default();
        shared.saw_leader(1);
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        shared.mark_kill(1);
        tokio::time::advance(Duration::from_millis(100)).await;
        // Sent before the kill: the old leader's answer does not count.
        ack(&shared, before, 1);
        shared.failed("connection lost".to_string());
        shared.saw_leader(1); // still the dead node
        tokio::time::advance(Duration::from_millis(900)).await;
        shared.saw_leader(2);
        tokio::time::advance(Duration::from_millis(500)).await;
        ack(&shared, Instant::now(), 2);
        let result = shared
            .finish_kill(1, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!((result.node, result.leader_before), (1, 1));
        assert_eq!(result.elected_ms, Some(1000.0));
        assert_eq!(result.recovered_ms, Some(1500.0));
        assert_eq!((result.new_leader, result.failed_attempts), (Some(2), 1));
        assert_eq!(shared.totals().0, 20);
        // The mark is over.
        assert!(shared.finish_kill(2, Instant::now()).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_kill_without_recovery_times_out_at_the_deadline() {
        let shared = Shared::default();
        shared.saw_leader(0);
        shared.mark_kill(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = shared.finish_kill(7, deadline).await.unwrap();
        assert_eq!(Instant::now(), deadline);
        assert_eq!(result.recovered_ms, None);
        assert_eq!(result.to_line().split(' ').next(), Some("timeout"));
    }
}
