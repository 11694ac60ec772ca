//! One bench run from start to report: discover the cluster, then run the phases of the
//! run's mode, and summarise.
//!
//! | mode             | phases                                                            |
//! |------------------|-------------------------------------------------------------------|
//! | concurrent       | consumers at their start offsets → produce → consumers drain      |
//! | `--read-back`    | produce → consumers from earliest read every record acknowledged  |
//! | `--consume-only` | consumers from earliest read `--records` existing records         |
//!
//! Every phase is bounded; `--timeout` cancels whatever is still running.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::{BenchConfig, RunMode, RunPlan};
use crate::consumer::{self, ConsumeShared, ConsumerTask, Counting};
use crate::error::BenchError;
use crate::payload::{PayloadTemplate, RunClock, XorShift};
use crate::producer::{self, ProduceShared, ProducerTask, Quota};
use crate::report::{consume_report, produce_report, Report, Settings, WindowStarts, Windows};
use crate::stats::{ConsumeStats, ErrorCounts, ProduceStats};

/// A task that cancels a token after a delay; dropping the guard disarms it.
struct Timer(JoinHandle<()>);

impl Drop for Timer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels `token` after `after`, unless the returned guard is dropped first.
fn cancel_after(token: CancellationToken, after: Duration) -> Timer {
    Timer(tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    }))
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
/// Setup errors (invalid flags, unreachable bootstrap, no common API versions, missing
/// topic) are returned; errors during the load are counted in the report.
pub async fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let plan = config.plan()?;
    let started = Instant::now();
    let abort = CancellationToken::new();
    let run_timer = cancel_after(abort.clone(), plan.timeout);
    let cluster = or_abort(
        &abort,
        plan.timeout,
        Cluster::discover(config, &plan.client),
    )
    .await?;
    let partitions: Vec<i32> = cluster
        .topic
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect();
    let run = Run {
        config,
        plan: &plan,
        cluster: &cluster,
        partitions,
        run_id: XorShift::from_entropy().next_u64(),
        clock: RunClock::start(),
        abort: abort.clone(),
    };
    let phases = match plan.mode {
        RunMode::Concurrent => run.concurrent().await?,
        RunMode::ReadBack => run.read_back().await?,
        RunMode::ConsumeOnly => run.consume_only().await?,
    };
    drop(run_timer);

    let Phases {
        produce,
        consume,
        target,
        starts,
    } = phases;
    let windows = Windows::new(starts, &produce, &consume);
    let mut errors = ErrorCounts::default();
    errors.merge(&produce.errors);
    errors.merge(&consume.errors);
    if config.consumers > 0 && consume.records < target && !abort.is_cancelled() {
        errors.add("records not consumed within --drain-timeout");
    }
    Ok(Report {
        settings: settings(config, &plan, run.partitions.len()),
        versions: cluster.versions,
        produce: produce_report(&produce, windows.produce_secs),
        consume: consume_report(&consume, windows.consume_secs),
        error_total: errors.total(),
        errors: errors.0,
        timed_out: abort.is_cancelled(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// What the phases of a run measured.
struct Phases {
    produce: ProduceStats,
    consume: ConsumeStats,
    /// Records consumers were to read.
    target: u64,
    starts: WindowStarts,
}

/// What the phases of one run share.
struct Run<'a> {
    config: &'a BenchConfig,
    plan: &'a RunPlan,
    cluster: &'a Cluster,
    partitions: Vec<i32>,
    run_id: u64,
    clock: RunClock,
    /// Cancelled by `--timeout`.
    abort: CancellationToken,
}

impl Run<'_> {
    /// Consumers wait at their start offsets, producers run, then consumers drain.
    async fn concurrent(&self) -> Result<Phases, BenchError> {
        let (target_tx, target_rx) = watch::channel(None);
        let (go_tx, go_rx) = watch::channel(false);
        let consume_stop = self.abort.child_token();
        let shared = self.consume_shared(
            Counting::Live {
                run_id: self.run_id,
            },
            target_rx,
            go_rx,
            consume_stop.clone(),
        );
        let consumers = self.start_consumers(&shared, &self.abort).await?;
        let _ = go_tx.send(true);

        let warmup_end_micros = self.warmup_end_micros(Instant::now());
        shared
            .warmup_end_micros
            .store(warmup_end_micros, Ordering::Release);
        let produce = self.produce(warmup_end_micros).await?;

        // Consumers stop once they hold every record the broker took, or after the drain time.
        let target = self.consume_target(&produce);
        let _ = target_tx.send(Some(target));
        let _drain_timer = cancel_after(consume_stop, self.plan.drain_timeout);
        let consume = collect_consumers(consumers).await;
        Ok(Phases {
            produce,
            consume,
            target,
            starts: WindowStarts {
                produce_micros: warmup_end_micros,
                consume_micros: warmup_end_micros,
            },
        })
    }

    /// Producers run alone; then consumers read their records back from earliest.
    async fn read_back(&self) -> Result<Phases, BenchError> {
        let warmup_end_micros = self.warmup_end_micros(Instant::now());
        let produce = self.produce(warmup_end_micros).await?;
        let target = self.consume_target(&produce);
        let counting = Counting::ReadBack {
            run_id: self.run_id,
        };
        let (consume, consume_micros) = self.catch_up(counting, target).await?;
        Ok(Phases {
            produce,
            consume,
            target,
            starts: WindowStarts {
                produce_micros: warmup_end_micros,
                consume_micros,
            },
        })
    }

    /// Consumers read `--records` existing records from earliest; nothing is produced.
    async fn consume_only(&self) -> Result<Phases, BenchError> {
        let target = self.plan.records.unwrap_or(0);
        let (consume, consume_micros) = self.catch_up(Counting::Any, target).await?;
        Ok(Phases {
            produce: ProduceStats::default(),
            consume,
            target,
            starts: WindowStarts {
                produce_micros: 0,
                consume_micros,
            },
        })
    }

    /// Consumers from earliest until they hold `target` records, within the drain time;
    /// returns their stats and the run-clock time they were let fetch.
    async fn catch_up(
        &self,
        counting: Counting,
        target: u64,
    ) -> Result<(ConsumeStats, u64), BenchError> {
        // The sender may go: consumers read the target, which never changes.
        let (_, target_rx) = watch::channel(Some(target));
        let (go_tx, go_rx) = watch::channel(false);
        let stop = self.abort.child_token();
        // --drain-timeout bounds the whole read, consumers' start-up included.
        let _drain_timer = cancel_after(stop.clone(), self.plan.drain_timeout);
        let shared = self.consume_shared(counting, target_rx, go_rx, stop.clone());
        let consumers = self.start_consumers(&shared, &stop).await?;
        let started_micros = self.clock.now_micros();
        let _ = go_tx.send(true);
        Ok((collect_consumers(consumers).await, started_micros))
    }

    /// Records consumers are to read after producing: every record the broker
    /// acknowledged, or every record sent with acks=0.
    fn consume_target(&self, produce: &ProduceStats) -> u64 {
        if self.config.acks == 0 {
            produce.records_sent
        } else {
            produce.records_acked
        }
    }

    /// The end of warmup for producers starting at `producers_start`, in run-clock µs.
    fn warmup_end_micros(&self, producers_start: Instant) -> u64 {
        self.clock
            .micros_at(producers_start.into_std())
            .saturating_add(u64::try_from(self.plan.warmup.as_micros()).unwrap_or(u64::MAX))
    }

    fn consume_shared(
        &self,
        counting: Counting,
        target: watch::Receiver<Option<u64>>,
        go: watch::Receiver<bool>,
        stop: CancellationToken,
    ) -> Arc<ConsumeShared> {
        let config = self.config;
        Arc::new(ConsumeShared {
            clock: self.clock,
            warmup_end_micros: AtomicU64::new(u64::MAX),
            counting,
            consumed: AtomicU64::new(0),
            target,
            go,
            stop,
            topic: self.cluster.topic.clone(),
            fetch_version: self.cluster.versions.fetch,
            list_offsets_version: self.cluster.versions.list_offsets,
            start: self.plan.start,
            request_timeout: self.plan.request_timeout,
            fetch_max_bytes: config.fetch_max_bytes,
            partition_fetch_max_bytes: config.partition_fetch_max_bytes,
            client: self.plan.client.clone(),
        })
    }

    /// Spawns the consumers (partitions split round robin) and waits until each has its
    /// start offsets or failed, or `stop` is cancelled. They fetch once `go` opens.
    async fn start_consumers(
        &self,
        shared: &Arc<ConsumeShared>,
        stop: &CancellationToken,
    ) -> Result<Vec<JoinHandle<ConsumeStats>>, BenchError> {
        let count = self.config.consumers;
        let mut consumers = Vec::new();
        let mut readies = Vec::new();
        for index in 0..count {
            let mine: Vec<i32> = self
                .partitions
                .iter()
                .copied()
                .filter(|p| u32::try_from(*p).unwrap_or(0) % count == index)
                .collect();
            for (leader, parts) in self.cluster.partitions_by_leader(&mine) {
                let task = ConsumerTask {
                    address: self.cluster.leader_address(leader)?,
                    partitions: parts,
                };
                let (ready_tx, ready_rx) = oneshot::channel();
                readies.push(ready_rx);
                consumers.push(tokio::spawn(consumer::run(
                    Arc::clone(shared),
                    task,
                    ready_tx,
                )));
            }
        }
        for ready in readies {
            // A consumer that failed to start drops its sender; its error is in its stats.
            tokio::select! {
                _ = ready => {}
                _ = stop.cancelled() => break,
            }
        }
        Ok(consumers)
    }

    /// Runs the producers until the record count or the duration is spent.
    async fn produce(&self, warmup_end_micros: u64) -> Result<ProduceStats, BenchError> {
        let (config, plan) = (self.config, self.plan);
        let produce_stop = self.abort.child_token();
        let _duration_timer = plan
            .duration
            .map(|d| cancel_after(produce_stop.clone(), plan.warmup + d));
        let shared = Arc::new(ProduceShared {
            clock: self.clock,
            warmup_end_micros,
            quota: Quota::new(plan.records),
            stop: produce_stop,
            abort: self.abort.clone(),
            topic: self.cluster.topic.clone(),
            version: self.cluster.versions.produce,
            acks: config.acks,
            compression: config.compression.into(),
            records_per_batch: plan.records_per_batch,
            max_in_flight: usize::try_from(config.max_in_flight).unwrap_or(1),
            request_timeout: plan.request_timeout,
            linger: plan.linger,
            client: plan.client.clone(),
        });
        let mut seeds = XorShift::new(self.run_id);
        let mut producers = Vec::new();
        for _ in 0..plan.producers {
            let template = PayloadTemplate::new(self.run_id, config.record_size, seeds.next_u64());
            for (leader, parts) in self.cluster.partitions_by_leader(&self.partitions) {
                let rate = (config.rate > 0).then(|| {
                    config.rate as f64 * parts.len() as f64
                        / self.partitions.len() as f64
                        / f64::from(plan.producers)
                });
                let task = ProducerTask {
                    address: self.cluster.leader_address(leader)?,
                    partitions: parts,
                    rate,
                    template: template.clone(),
                };
                producers.push(tokio::spawn(producer::run(Arc::clone(&shared), task)));
            }
        }
        let mut produce = ProduceStats::default();
        for handle in producers {
            match handle.await {
                Ok(stats) => produce.merge(&stats),
                Err(e) => produce.errors.add(format!("producer task failed: {e}")),
            }
        }
        Ok(produce)
    }
}

/// Waits for every consumer task and merges their stats.
async fn collect_consumers(consumers: Vec<JoinHandle<ConsumeStats>>) -> ConsumeStats {
    let mut consume = ConsumeStats::default();
    for handle in consumers {
        match handle.await {
            Ok(stats) => consume.merge(&stats),
            Err(e) => consume.errors.add(format!("consumer task failed: {e}")),
        }
    }
    consume
}

fn settings(config: &BenchConfig, plan: &RunPlan, partitions: usize) -> Settings {
    Settings {
        bootstrap: config.bootstrap.clone(),
        topic: config.topic.clone(),
        partitions,
        producers: plan.producers,
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
        mode: plan.mode,
    }
}
