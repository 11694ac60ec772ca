//! Background log maintenance, one task: retention (`log.retention.check.interval.ms`),
//! compaction of compacted topics (`log.cleaner.backoff.ms`), and the flush policy
//! (`flush.messages` / `flush.ms`, checked every second). Each pass walks the hosted
//! partitions on a blocking thread; a partition's lock is held only for its own step.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::BrokerContext;
use crate::handlers::produce::now_ms;

/// How often the flush policy is checked.
const FLUSH_CHECK: Duration = Duration::from_secs(1);

/// Which maintenance step a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Retention,
    Compaction,
    Flush,
}

/// Runs until `shutdown` is cancelled.
pub async fn run(ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let interval = |ms: u64| {
        let mut i = tokio::time::interval(Duration::from_millis(ms.max(1)));
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    };
    let mut retention = interval(ctx.config.log_retention_check_interval_ms);
    let mut cleaner = interval(ctx.config.log_cleaner_backoff_ms);
    let mut flush = interval(FLUSH_CHECK.as_millis() as u64);
    loop {
        let step = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = retention.tick() => Step::Retention,
            _ = cleaner.tick() => Step::Compaction,
            _ = flush.tick() => Step::Flush,
        };
        let ctx = Arc::clone(&ctx);
        if let Err(e) = tokio::task::spawn_blocking(move || pass(&ctx, step)).await {
            warn!(error = %e, ?step, "log maintenance pass failed");
        }
    }
}

/// One pass of `step` over every hosted partition. Blocking.
fn pass(ctx: &BrokerContext, step: Step) {
    if step == Step::Flush {
        if let Err(e) = ctx.partitions.delete_retired() {
            warn!(error = %e, "could not delete a replica moved away");
        }
    }
    for partition in ctx.partitions.all() {
        let now = now_ms();
        let mut log = partition.log();
        let policy = log.config().cleanup_policy;
        let tp = &partition.tp;
        match step {
            Step::Retention if policy.deletes() => match log.apply_retention(now) {
                Ok(o) if o.deleted_by_time + o.deleted_by_size > 0 => info!(
                    partition = %tp,
                    by_time = o.deleted_by_time,
                    by_size = o.deleted_by_size,
                    bytes = o.deleted_bytes,
                    log_start_offset = o.log_start_offset,
                    "deleted segments past retention"
                ),
                Ok(_) => {}
                Err(e) => warn!(partition = %tp, error = %e, "retention failed"),
            },
            Step::Compaction if policy.compacts() => match log.compact(now) {
                Ok(o) if o.segments_rewritten > 0 => info!(
                    partition = %tp,
                    segments = o.segments_rewritten,
                    records_removed = o.records_removed,
                    tombstones_removed = o.tombstones_removed,
                    bytes_before = o.bytes_before,
                    bytes_after = o.bytes_after,
                    "compacted"
                ),
                Ok(_) => {}
                Err(e) => warn!(partition = %tp, error = %e, "compaction failed"),
            },
            Step::Flush if log.needs_flush(now) => {
                let started = std::time::Instant::now();
                if let Err(e) = log.flush() {
                    warn!(partition = %tp, error = %e, "scheduled flush failed");
                }
                ctx.metrics
                    .flush_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            _ => {}
        }
    }
}
