//! Produce (key 0): appends each partition's record batches to its log. acks=0 gets no
//! response; acks=1 is answered once the batches are in the log (page cache); acks=-1
//! (all) once they are fsynced. Idempotent batches are deduplicated by the log's
//! producer state: a retried batch is answered with its original offsets.
//!
//! A partition whose records break a rule of its topic (a record without a key in a
//! compacted topic) is answered as Kafka answers it: INVALID_RECORD, one
//! `record_errors` entry per offending record (its index in the batch and a message)
//! and an `error_message` (both from v8); nothing of that partition is written, and
//! the request's other partitions are answered as usual.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use runnel_storage::{LogError, RecordError, RecordErrorReason};

use super::{blocking, text};
use crate::config::Durability;
use crate::context::BrokerContext;
use crate::dispatch::{Answer, RequestInfo};
use crate::error_codes::{for_log_error, log_storage_error};
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::partitions::Partition;

/// True when the client expects no response (acks=0).
pub fn is_silent(request: &ProduceRequest) -> bool {
    request.acks == 0
}

/// Requests carrying at most this many record bytes are appended on the runtime
/// thread when their logs are free: a write of this size into the page cache takes
/// microseconds, less than handing the work to a blocking thread and back (two thread
/// wake-ups per request, most of a small produce's cost). Larger requests, logs a
/// flush or compaction holds, and appends that decompress or parse records
/// ([`runnel_storage::Log::append_decodes_records`]: compressed batches, compacted
/// topics, a `compression.type` codec) go to the blocking pool.
const INLINE_APPEND_MAX_BYTES: usize = 256 * 1024;

/// How [`append_all`] takes each partition's log lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Locking {
    /// Wait for it (on a blocking thread).
    Wait,
    /// Only when free at once, and only for appends that decode no records; the other
    /// partitions are handed back.
    TryOnly,
}

/// One partition's batches, with the index of its topic in the response.
struct Work {
    topic: usize,
    name: String,
    partition: i32,
    records: Option<Bytes>,
}

/// Answers Produce.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: ProduceRequest,
    _info: RequestInfo,
) -> Answer<ProduceResponse> {
    let acks = request.acks;
    let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
    let mut work = Vec::new();
    for (t, topic) in request.topic_data.into_iter().enumerate() {
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id),
        );
        for p in topic.partition_data {
            work.push(Work {
                topic: t,
                name: topic.name.0.to_string(),
                partition: p.index,
                records: p.records,
            });
        }
    }
    let invalid = if !matches!(acks, -1..=1) {
        Some(ResponseError::InvalidRequiredAcks)
    } else if request.transactional_id.is_some() {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        None
    };
    if let Some(error) = invalid {
        for w in work {
            responses[w.topic]
                .partition_responses
                .push(failed(w.partition, error.code(), None));
        }
        return ProduceResponse::default().with_responses(responses).into();
    }

    let size: usize = work
        .iter()
        .map(|w| w.records.as_ref().map_or(0, Bytes::len))
        .sum();
    // Small appends run here; what is large, or whose log is busy, goes to the pool.
    let (mut results, mut appended, busy) = if size <= INLINE_APPEND_MAX_BYTES {
        append_all(&ctx, work, Locking::TryOnly, acks)
    } else {
        (Vec::new(), Vec::new(), work)
    };
    if !busy.is_empty() {
        let ctx2 = Arc::clone(&ctx);
        let Some((more, more_appended, _)) =
            blocking(move || append_all(&ctx2, busy, Locking::Wait, acks)).await
        else {
            tracing::error!("produce failed inside storage");
            return ProduceResponse::default().with_responses(responses).into();
        };
        let shift = results.len();
        results.extend(more);
        appended.extend(
            more_appended
                .into_iter()
                .map(|(i, p, upto)| (i + shift, p, upto)),
        );
    }
    ctx.partitions.appended.notify_waiters();
    if acks != -1 {
        return Answer::Now(respond(&ctx, responses, results));
    }
    // acks=all: answer once the appended bytes are on disk here (group commit) and on
    // every other member of the ISR (the high watermark reaches them). The wait does not
    // hold up the connection's next request.
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    let waits: Vec<(usize, Arc<Partition>, i64)> = appended
        .iter()
        .map(|(i, p, upto)| (*i, Arc::clone(p), *upto))
        .collect();
    let (slots, wanted): (Vec<usize>, Vec<_>) = appended
        .into_iter()
        .map(|(i, p, upto)| (i, (p, upto)))
        .unzip();
    // Kafka's durability by replication alone: no fsync is waited for.
    let durable = match ctx.config.acks_all_durability {
        Durability::Fsync => Some(ctx.flusher.enqueue(wanted).await),
        Durability::Replication => None,
    };
    Answer::Later(Box::pin(async move {
        let mut failed_here = vec![false; results.len()];
        let flushed_all = match durable {
            Some(durable) => durable.await,
            None => Vec::new(),
        };
        for (i, flushed) in slots.into_iter().zip(flushed_all) {
            if let Err(e) = flushed {
                let index = results[i].1.index;
                let message = e.to_string();
                results[i].1 = failed(
                    index,
                    ResponseError::KafkaStorageError.code(),
                    Some(&message),
                );
                failed_here[i] = true;
            }
        }
        for (i, partition, upto) in waits {
            if failed_here[i] {
                continue;
            }
            if let Err(code) = partition.replica.wait_replicated(upto, deadline).await {
                let index = results[i].1.index;
                results[i].1 = failed(index, code, None);
            }
        }
        respond(&ctx, responses, results)
    }))
}

/// Puts the partition results into the response and counts a request with errors.
fn respond(
    ctx: &BrokerContext,
    mut responses: Vec<TopicProduceResponse>,
    results: Vec<(usize, PartitionProduceResponse)>,
) -> ProduceResponse {
    for (t, r) in results {
        responses[t].partition_responses.push(r);
    }
    let failed = responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .any(|p| p.error_code != 0);
    if failed {
        ctx.metrics
            .request_errors
            .with_label_values(&["Produce"])
            .inc();
    }
    ProduceResponse::default().with_responses(responses)
}

/// Partition responses by topic index, the appended partitions with the offset each
/// must be durable up to (for acks=all, indexing the responses), and the work left
/// undone because its log was busy or its append decodes records (only with
/// [`Locking::TryOnly`]).
type Appended = (
    Vec<(usize, PartitionProduceResponse)>,
    Vec<(usize, Arc<Partition>, i64)>,
    Vec<Work>,
);

fn append_all(ctx: &BrokerContext, work: Vec<Work>, locking: Locking, acks: i16) -> Appended {
    let mut busy = Vec::new();
    let now_ms = now_ms();
    let mut out = Vec::with_capacity(work.len());
    let mut appended = Vec::new();
    let metrics = &ctx.metrics;
    for w in work {
        // As Kafka does: clients do not write internal topics. The coordinator appends
        // to __consumer_offsets itself, and reads it back at start-up.
        if w.name == OFFSETS_TOPIC {
            out.push((
                w.topic,
                failed(
                    w.partition,
                    ResponseError::InvalidTopicException.code(),
                    Some("cannot append to an internal topic"),
                ),
            ));
            continue;
        }
        // Batches are stamped with the leader epoch they were written in (KIP-101).
        let (partition, epoch) = match ctx.led_partition_in_epoch(&w.name, w.partition, -1) {
            Ok(led) => led,
            Err(code) => {
                out.push((w.topic, failed(w.partition, code, None)));
                continue;
            }
        };
        if acks == -1 {
            if let Err(code) = partition.replica.check_enough_replicas() {
                out.push((w.topic, failed(w.partition, code, None)));
                continue;
            }
        }
        let Some(records) = w.records.as_ref().filter(|r| !r.is_empty()) else {
            out.push((
                w.topic,
                failed(
                    w.partition,
                    ResponseError::CorruptMessage.code(),
                    Some("no record batches"),
                ),
            ));
            continue;
        };
        let result = match locking {
            Locking::Wait => partition.log().append(records, epoch, now_ms),
            Locking::TryOnly => {
                let Some(mut log) = partition.try_log() else {
                    busy.push(w);
                    continue;
                };
                // Decompression is CPU work for the blocking pool, not this thread.
                if log.append_decodes_records(records) {
                    drop(log);
                    busy.push(w);
                    continue;
                }
                log.append(records, epoch, now_ms)
            }
        };
        match result {
            Ok(info) => {
                if !info.duplicate {
                    let topic = [w.name.as_str()];
                    metrics
                        .bytes_in
                        .with_label_values(&topic)
                        .inc_by(records.len() as u64);
                    let count = u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
                    metrics.records_in.with_label_values(&topic).inc_by(count);
                }
                // A retried duplicate is flushed too: its original may not be on disk yet.
                appended.push((out.len(), Arc::clone(&partition), info.last_offset + 1));
                out.push((
                    w.topic,
                    PartitionProduceResponse::default()
                        .with_index(w.partition)
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset),
                ));
            }
            Err(e) => {
                log_storage_error(&partition.tp, &e);
                let response = match &e {
                    LogError::RejectedRecords { errors } => {
                        rejected(w.partition, &partition.tp.to_string(), errors)
                    }
                    _ => failed(w.partition, for_log_error(&e), Some(&e.to_string())),
                };
                out.push((w.topic, response));
            }
        }
    }
    (out, appended, busy)
}

fn failed(partition: i32, code: i16, message: Option<&str>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(partition)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(text))
}

/// The answer for a partition whose records were refused, worded as Kafka's
/// `LogValidator` and `ReplicaManager` word it (`tp` is `topic-partition`).
fn rejected(partition: i32, tp: &str, errors: &[RecordError]) -> PartitionProduceResponse {
    let message = |e: &RecordError| match e.reason {
        RecordErrorReason::MissingKey => {
            format!("Compacted topic cannot accept message without key in topic partition {tp}")
        }
    };
    let first_three: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                e.batch_index,
                message(e)
            )
        })
        .collect();
    let summary = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        first_three.join(", ")
    );
    let record_errors = errors
        .iter()
        .map(|e| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(e.batch_index)
                .with_batch_index_error_message(Some(text(message(e))))
        })
        .collect();
    failed(
        partition,
        ResponseError::InvalidRecord.code(),
        Some(&summary),
    )
    .with_record_errors(record_errors)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_storage::LogConfig;

    use crate::records::test_batch as batch;

    fn work(partition: i32, records: Bytes) -> Work {
        Work {
            topic: 0,
            name: "t".into(),
            partition,
            records: Some(records),
        }
    }

    fn context(dir: &std::path::Path) -> BrokerContext {
        crate::context::test_context(dir)
    }

    #[tokio::test]
    async fn a_busy_log_is_handed_back_and_appended_by_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        ctx.partitions
            .open("t", uuid::Uuid::nil(), 0..2, &LogConfig::default())
            .unwrap();

        // Partition 1's log is held (as by a long flush or compaction): trying only
        // appends to partition 0 and hands partition 1 back untouched.
        let held = ctx.partitions.get("t", 1).unwrap();
        let guard = held.log();
        let (done, appended, busy) = append_all(
            &ctx,
            vec![work(0, batch(3)), work(1, batch(2))],
            Locking::TryOnly,
            1,
        );
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].1.index, done[0].1.error_code), (0, 0));
        assert_eq!(appended.len(), 1);
        assert_eq!(appended[0].2, 3, "durable up to offset 3");
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].partition, 1);
        assert_eq!(guard.log_end_offset(), 0);
        drop(guard);

        let (done, appended, busy) = append_all(&ctx, busy, Locking::Wait, 1);
        assert!(busy.is_empty());
        assert_eq!((done[0].1.index, done[0].1.error_code), (1, 0));
        assert_eq!(appended[0].2, 2);
        assert_eq!(held.log().log_end_offset(), 2);
    }

    #[tokio::test]
    async fn appends_that_decode_records_are_left_to_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let compact = LogConfig {
            cleanup_policy: runnel_storage::CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        ctx.partitions
            .open("t", uuid::Uuid::nil(), 0..1, &compact)
            .unwrap();
        let (done, _, busy) = append_all(&ctx, vec![work(0, batch(2))], Locking::TryOnly, 1);
        assert!(done.is_empty());
        assert_eq!(busy.len(), 1);
        // Waiting appends it, and the keyless records are refused one by one.
        let (done, appended, busy) = append_all(&ctx, busy, Locking::Wait, 1);
        assert!(busy.is_empty() && appended.is_empty());
        let r = &done[0].1;
        assert_eq!(r.error_code, ResponseError::InvalidRecord.code());
        let at: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(at, [0, 1]);
        assert_eq!(
            ctx.partitions.get("t", 0).unwrap().log().log_end_offset(),
            0
        );
    }

    #[test]
    fn rejected_records_are_worded_as_kafka_words_them() {
        let errors = [0, 2, 5, 7].map(|batch_index| RecordError {
            batch_index,
            reason: RecordErrorReason::MissingKey,
        });
        let r = rejected(3, "t-3", &errors);
        assert_eq!((r.index, r.error_code, r.base_offset), (3, 87, -1));
        assert_eq!(r.record_errors.len(), 4);
        assert_eq!(r.record_errors[1].batch_index, 2);
        assert_eq!(
            r.record_errors[1].batch_index_error_message.as_deref(),
            Some("Compacted topic cannot accept message without key in topic partition t-3")
        );
        let summary = r.error_message.as_deref().unwrap_or_default();
        assert!(summary.starts_with(
            "One or more records have been rejected due to 4 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=0, message='Compacted topic"
        ));
        assert_eq!(summary.matches("RecordError(").count(), 3);
    }
}
