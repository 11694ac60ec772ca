//! One file per Kafka API. Each exposes
//! `async fn handle(ctx: Arc<BrokerContext>, request, info: RequestInfo) -> response`.
//! `fetch_encode` is Fetch's own response encoder, which leaves records in the files.

pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod elect_leaders;
pub mod fetch;
pub mod fetch_encode;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod unregister_broker;

use kafka_protocol::protocol::StrBytes;

/// Runs blocking work (storage, metadata fsync) off the async runtime. `None` means the
/// work panicked; the handler answers with an error code instead of dropping the request.
pub async fn blocking<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            None
        }
    }
}

/// A protocol string from any string.
pub fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
