//! Where the coordinator meets storage: creating `__consumer_offsets`, appending offset
//! records to a group's partition, and loading every committed offset at start-up.
//! Blocking: call from `spawn_blocking`.

use std::collections::BTreeMap;
use std::time::Instant;

use super::offsets::{self, OffsetRecord, OFFSETS_TOPIC};
use crate::context::BrokerContext;
use crate::topics::{self, TopicError};

/// Segment size of `__consumer_offsets`, as in Kafka (`offsets.topic.segment.bytes`).
const OFFSETS_SEGMENT_BYTES: &str = "104857600";
/// Bytes read per step when loading offsets.
const LOAD_CHUNK: usize = 1 << 20;

/// Creates `__consumer_offsets` if it does not exist yet.
pub fn ensure_offsets_topic(ctx: &BrokerContext) -> Result<(), TopicError> {
    if ctx.image().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            OFFSETS_SEGMENT_BYTES.to_string(),
        ),
    ]);
    let partitions = ctx.groups.config.offsets_partitions;
    match topics::create_topic(ctx, OFFSETS_TOPIC, partitions, -1, configs, false) {
        Ok(_) | Err(TopicError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why offset records could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `__consumer_offsets` could not be created.
    #[error("cannot create {OFFSETS_TOPIC}: {0}")]
    Topic(#[from] TopicError),
    /// The group's offsets partition is not hosted here.
    #[error("{OFFSETS_TOPIC} partition {0} is not available")]
    Unavailable(i32),
    /// The records could not be encoded.
    #[error(transparent)]
    Encode(#[from] offsets::OffsetRecordError),
    /// The log refused the append.
    #[error("cannot append offset records: {0}")]
    Log(#[from] runnel_storage::LogError),
}

/// Appends offset records of one group to its `__consumer_offsets` partition.
pub fn write(
    ctx: &BrokerContext,
    group: &str,
    records: &[OffsetRecord],
    now_ms: i64,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    ensure_offsets_topic(ctx)?;
    let partition = offsets::partition_for(group, ctx.groups.config.offsets_partitions);
    let log = ctx
        .partitions
        .get(OFFSETS_TOPIC, partition)
        .ok_or(StoreError::Unavailable(partition))?;
    let batch = offsets::encode_batch(records, now_ms)?;
    log.log().append(&batch, 0, now_ms)?;
    Ok(())
}

/// Loads every committed offset from `__consumer_offsets` into the coordinator.
pub fn load(ctx: &BrokerContext) -> Result<usize, runnel_storage::LogError> {
    let mut loaded = 0;
    for partition in ctx.partitions.partitions_of(OFFSETS_TOPIC) {
        let mut records = Vec::new();
        let log = partition.log();
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let slice = log.read(offset, LOAD_CHUNK, true)?;
            if slice.bytes.is_empty() {
                break;
            }
            let (next, batch_records) = last_offset_and_records(slice.bytes);
            records.extend(batch_records);
            match next {
                Some(n) if n >= offset => offset = n + 1,
                _ => break,
            }
        }
        drop(log);
        loaded += records.len();
        ctx.groups.apply_offsets(records, Instant::now());
    }
    Ok(loaded)
}

/// The last offset of the whole batches in a run (from their headers) and the offset
/// records in them. A batch whose records cannot be read is skipped with a warning (its
/// offsets are still passed); a batch cut off at the end of the run is left for the
/// next read.
fn last_offset_and_records(bytes: bytes::Bytes) -> (Option<i64>, Vec<OffsetRecord>) {
    let mut last = None;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes
        .get(pos..)
        .and_then(|b| runnel_storage::BatchHeader::parse(b).ok())
    {
        let next = pos.saturating_add(header.total_len());
        let Some(batch) = bytes.get(pos..next).filter(|_| next > pos) else {
            break;
        };
        last = Some(header.last_offset());
        match offsets::decode_batch(batch) {
            Ok(batch_records) => records.extend(batch_records),
            Err(e) => tracing::warn!(
                base_offset = header.base_offset,
                error = %e,
                "skipping an unreadable {OFFSETS_TOPIC} batch"
            ),
        }
        pos = next;
    }
    (last, records)
}
