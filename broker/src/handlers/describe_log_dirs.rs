//! DescribeLogDirs (key 35): the broker's one log directory (its data directory), with
//! the size on disk of every partition hosted there, so tools and operators can plan by
//! bytes (KIP-113). v4 adds the file system's total and usable bytes (KIP-827).
//!
//! | field            | value                                                        |
//! |------------------|--------------------------------------------------------------|
//! | `log_dir`        | the data directory as configured                             |
//! | `error_code`     | NONE, or KAFKA_STORAGE_ERROR once the directory has failed  |
//! | `partition_size` | bytes of the partition's segment files (indexes excluded)     |
//! | `offset_lag`     | a follower: the leader's last known high watermark minus its log end (at least 0); a leader: 0 |
//! | `is_future_key`  | false: there are no future replicas (AlterReplicaLogDirs)     |
//!
//! `topics: null` describes every hosted partition; named topics and partitions not
//! hosted here are left out, as Kafka does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::partitions::Partition;

/// The first version with `total_bytes` and `usable_bytes`.
const SPACE_VERSION: i16 = 4;

/// Answers DescribeLogDirs.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DescribeLogDirsRequest,
    info: RequestInfo,
) -> DescribeLogDirsResponse {
    let dir = ctx.config.data_dir.clone();
    let mut result = DescribeLogDirsResult::default().with_log_dir(text(dir.display().to_string()));
    if ctx.partitions.dir_health().is_failed() {
        result = result.with_error_code(ResponseError::KafkaStorageError.code());
        return DescribeLogDirsResponse::default().with_results(vec![result]);
    }
    let wanted = selected(&ctx, request.topics.as_deref());
    let with_space = info.version >= SPACE_VERSION;
    let described = blocking(move || {
        let sizes = wanted.iter().map(|p| describe(p)).collect::<Vec<_>>();
        let space = with_space.then(|| space(&dir));
        (wanted, sizes, space)
    })
    .await;
    let Some((wanted, sizes, space)) = described else {
        let result = result.with_error_code(ResponseError::UnknownServerError.code());
        return DescribeLogDirsResponse::default().with_results(vec![result]);
    };
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (p, (size, lag)) in wanted.iter().zip(sizes) {
        topics.entry(p.tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.tp.partition)
                .with_partition_size(size)
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    result = result.with_topics(
        topics
            .into_iter()
            .map(|(name, partitions)| {
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(text(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    if let Some(space) = space {
        let (total, usable) = match space {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(dir = %ctx.config.data_dir.display(), error = %e, "cannot read the data directory's file system size");
                (-1, -1)
            }
        };
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// The hosted partitions the request names (all of them for `None`), by topic and index.
fn selected(
    ctx: &BrokerContext,
    topics: Option<&[kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic]>,
) -> Vec<Arc<Partition>> {
    let mut wanted: Vec<Arc<Partition>> = match topics {
        None => ctx.partitions.all(),
        Some(topics) => topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|&p| ctx.partitions.get(t.topic.as_str(), p))
            })
            .collect(),
    };
    wanted.sort_by(|a, b| (&a.tp.topic, a.tp.partition).cmp(&(&b.tp.topic, b.tp.partition)));
    wanted.dedup_by(|a, b| a.tp == b.tp);
    wanted
}

/// Size in bytes and offset lag of one partition. Blocking: takes the log's lock.
fn describe(partition: &Partition) -> (i64, i64) {
    let log = partition.log();
    let size = i64::try_from(log.size_bytes()).unwrap_or(i64::MAX);
    let end = log.log_end_offset();
    (size, partition.replica.follower_lag(end))
}

/// Total and usable bytes of the file system holding `dir` (`statvfs(2)`; usable is
/// what an unprivileged writer may still use).
fn space(dir: &Path) -> std::io::Result<(i64, i64)> {
    let s = rustix::fs::statvfs(dir)?;
    let bytes = |blocks: u64| i64::try_from(blocks.saturating_mul(s.f_frsize)).unwrap_or(i64::MAX);
    Ok((bytes(s.f_blocks), bytes(s.f_bavail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: i16) -> RequestInfo {
        RequestInfo {
            version,
            client_id: None,
            client_host: "127.0.0.1".into(),
        }
    }

    /// A failed fsync fails the data directory: it is then described with
    /// KAFKA_STORAGE_ERROR and no partitions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_directory_answers_storage_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let ctx = Arc::new(tokio::task::block_in_place(|| {
            crate::context::test_context(&data)
        }));
        tokio::task::block_in_place(|| {
            crate::topics::create_topic(&ctx, "t", 1, 1, BTreeMap::new(), false)
        })?;
        let healthy = handle(
            Arc::clone(&ctx),
            DescribeLogDirsRequest::default().with_topics(None),
            info(4),
        )
        .await;
        assert_eq!(healthy.results[0].error_code, 0);
        assert_eq!(healthy.results[0].topics.len(), 1);

        let trigger = dir.path().join("fail-fsync");
        std::fs::write(&trigger, "fsync")?;
        let _faults = runnel_storage::fs::inject_while_file_exists(
            &data,
            &[data.join("__cluster_metadata")],
            &trigger,
        );
        let partition = ctx
            .partitions
            .get("t", 0)
            .ok_or_else(|| anyhow::anyhow!("t-0 is not hosted"))?;
        let flushed = tokio::task::block_in_place(|| {
            let mut log = partition.log();
            log.append(&crate::records::test_batch(3), 0, 0)?;
            log.flush()
        });
        assert!(flushed.is_err(), "the injected fsync failure");
        assert!(ctx.partitions.dir_health().is_failed());

        let failed = handle(
            Arc::clone(&ctx),
            DescribeLogDirsRequest::default().with_topics(None),
            info(4),
        )
        .await;
        let [result] = failed.results.as_slice() else {
            anyhow::bail!("one log dir expected: {failed:?}");
        };
        assert_eq!(
            (result.error_code, result.topics.len()),
            (ResponseError::KafkaStorageError.code(), 0)
        );
        assert_eq!(result.log_dir.as_str(), data.display().to_string());
        Ok(())
    }

    #[test]
    fn space_of_a_real_directory_is_positive_and_ordered() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (total, usable) = space(dir.path())?;
        assert!(
            total > 0 && usable >= 0 && usable <= total,
            "{total} {usable}"
        );
        assert!(space(&dir.path().join("missing")).is_err());
        Ok(())
    }
}
