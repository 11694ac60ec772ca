//! One bench run from start to report: discover the cluster, start consumers at their
//! start offsets, produce for the duration or record count, let consumers drain, and
//! summarise. Every phase is bounded; `--timeout` cancels whatever is still running.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::BenchConfig;
use crate::consumer::{self, ConsumeShared, ConsumerTask};
use crate::error::BenchError;
use crate::payload::{PayloadTemplate, RunClock, XorShift};
use crate::producer::{self, ProduceShared, ProducerTask, Quota};
use crate::report::{consume_report, produce_report, Report, Settings, Windows};
use crate::stats::{ConsumeStats, ErrorCounts, ProduceStats};

/// Cancels `token` after `after`, unless the returned task is aborted first.
fn cancel_after(token: CancellationToken, after: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    })
}

/// Runs `future` unless `abort` is cancelled first.
async fn or_abort<T>(
    abort: &CancellationToken,
    timeout: Duration,
    future: impl Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::select! {
        result = future => result,
        _ = abort.cancelled() => Err(BenchError::RunTimeout { seconds: timeout.as_secs_f64() }),
    }
}

/// Runs the bench described by `config` and returns its report.
///
/// Setup errors (unreachable bootstrap, no common API versions, missing topic) are
/// returned; errors during the load are counted in the report.
pub async fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let plan = config.plan()?;
    let started = Instant::now();
    let abort = CancellationToken::new();
    let run_timer = cancel_after(abort.clone(), plan.timeout);
    let cluster = or_abort(
        &abort,
        plan.timeout,
        Cluster::discover(config, plan.request_timeout),
    )
    .await?;
    let run_id = XorShift::from_entropy().next_u64();
    let clock = RunClock::start();
    let partitions: Vec<i32> = cluster
        .topic
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect();

    let (target_tx, target_rx) = watch::channel(None);
    let consume_stop = abort.child_token();
    let consume_shared = Arc::new(ConsumeShared {
        clock,
        warmup_end_micros: AtomicU64::new(u64::MAX),
        run_id,
        consumed: AtomicU64::new(0),
        target: target_rx,
        stop: consume_stop.clone(),
        topic: cluster.topic.clone(),
        fetch_version: cluster.versions.fetch,
        list_offsets_version: cluster.versions.list_offsets,
        start: config.consume_from,
        request_timeout: plan.request_timeout,
        fetch_max_bytes: config.fetch_max_bytes,
        partition_fetch_max_bytes: config.partition_fetch_max_bytes,
        client_id: config.client_id.clone(),
    });
    let mut consumers = Vec::new();
    let mut readies = Vec::new();
    for index in 0..config.consumers {
        let mine: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| u32::try_from(*p).unwrap_or(0) % config.consumers == index)
            .collect();
        for (leader, parts) in cluster.partitions_by_leader(&mine) {
            let task = ConsumerTask {
                address: cluster.leader_address(leader)?,
                partitions: parts,
            };
            let (ready_tx, ready_rx) = oneshot::channel();
            readies.push(ready_rx);
            consumers.push(tokio::spawn(consumer::run(
                Arc::clone(&consume_shared),
                task,
                ready_tx,
            )));
        }
    }
    for ready in readies {
        // A consumer that failed to start drops its sender; its error is in its stats.
        tokio::select! {
            _ = ready => {}
            _ = abort.cancelled() => break,
        }
    }

    let producers_start = Instant::now();
    let warmup_end_micros = clock
        .micros_at(producers_start.into_std())
        .saturating_add(u64::try_from(plan.warmup.as_micros()).unwrap_or(u64::MAX));
    consume_shared
        .warmup_end_micros
        .store(warmup_end_micros, Ordering::Release);
    let produce_stop = abort.child_token();
    let duration_timer = plan
        .duration
        .map(|d| cancel_after(produce_stop.clone(), plan.warmup + d));
    let produce_shared = Arc::new(ProduceShared {
        clock,
        warmup_end_micros,
        quota: Quota::new(plan.records),
        stop: produce_stop,
        abort: abort.clone(),
        topic: cluster.topic.clone(),
        version: cluster.versions.produce,
        acks: config.acks,
        compression: config.compression.into(),
        records_per_batch: plan.records_per_batch,
        max_in_flight: usize::try_from(config.max_in_flight).unwrap_or(1),
        request_timeout: plan.request_timeout,
        linger: plan.linger,
        client_id: config.client_id.clone(),
    });
    let mut seeds = XorShift::new(run_id);
    let mut producers = Vec::new();
    for _ in 0..config.producers {
        let template = PayloadTemplate::new(run_id, config.record_size, seeds.next_u64());
        for (leader, parts) in cluster.partitions_by_leader(&partitions) {
            let rate = (config.rate > 0).then(|| {
                config.rate as f64 * parts.len() as f64
                    / partitions.len() as f64
                    / f64::from(config.producers)
            });
            let task = ProducerTask {
                address: cluster.leader_address(leader)?,
                partitions: parts,
                rate,
                template: template.clone(),
            };
            producers.push(tokio::spawn(producer::run(
                Arc::clone(&produce_shared),
                task,
            )));
        }
    }
    let mut produce = ProduceStats::default();
    for handle in producers {
        match handle.await {
            Ok(stats) => produce.merge(&stats),
            Err(e) => produce.errors.add(format!("producer task failed: {e}")),
        }
    }
    if let Some(timer) = duration_timer {
        timer.abort();
    }

    // Consumers stop once they hold every record the broker took, or after the drain time.
    let target = if config.acks == 0 {
        produce.records_sent
    } else {
        produce.records_acked
    };
    let _ = target_tx.send(Some(target));
    let drain_timer = cancel_after(consume_stop, plan.drain_timeout);
    let mut consume = ConsumeStats::default();
    for handle in consumers {
        match handle.await {
            Ok(stats) => consume.merge(&stats),
            Err(e) => consume.errors.add(format!("consumer task failed: {e}")),
        }
    }
    drain_timer.abort();
    run_timer.abort();

    let windows = Windows::new(warmup_end_micros, &produce, &consume);
    let mut errors = ErrorCounts::default();
    errors.merge(&produce.errors);
    errors.merge(&consume.errors);
    if config.consumers > 0 && consume.records < target && !abort.is_cancelled() {
        errors.add("records not consumed within --drain-timeout");
    }
    Ok(Report {
        settings: settings(config, &plan, partitions.len()),
        versions: cluster.versions,
        produce: produce_report(&produce, windows.produce_secs),
        consume: consume_report(&consume, windows.consume_secs),
        error_total: errors.total(),
        errors: errors.0,
        timed_out: abort.is_cancelled(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn settings(config: &BenchConfig, plan: &crate::config::RunPlan, partitions: usize) -> Settings {
    Settings {
        bootstrap: config.bootstrap.clone(),
        topic: config.topic.clone(),
        partitions,
        producers: config.producers,
        consumers: config.consumers,
        record_size: config.record_size,
        batch_size: config.batch_size,
        records_per_batch: plan.records_per_batch,
        linger_ms: config.linger_ms,
        rate: config.rate,
        acks: config.acks,
        compression: config.compression.name().to_string(),
        duration_secs: plan.duration.map(|d| d.as_secs_f64()),
        records: plan.records,
        warmup_secs: plan.warmup.as_secs_f64(),
        max_in_flight: config.max_in_flight,
    }
}
