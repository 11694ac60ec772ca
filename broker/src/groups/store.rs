//! Where the coordinator meets storage: creating `__consumer_offsets`, appending offset
//! records to a group's partition, and loading every committed offset at start-up.
//! Blocking: call from `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::offsets::{self, OffsetRecord, OFFSETS_TOPIC};
use crate::context::BrokerContext;
use crate::metadata::MetadataImage;
use crate::partitions::Partition;
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
    // As many replicas as asked, or as there are live brokers (a single broker: one).
    let live = i16::try_from(ctx.placement_brokers().len()).unwrap_or(i16::MAX);
    let factor = ctx.config.offsets_topic_replication_factor.min(live).max(1);
    match topics::create_topic(ctx, OFFSETS_TOPIC, partitions, factor, configs, false) {
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

/// Appends offset records of one group to its `__consumer_offsets` partition; returns
/// the partition and the offset the records end before (for waiting until the ISR has
/// them), or `None` when there was nothing to write.
pub fn write(
    ctx: &BrokerContext,
    group: &str,
    records: &[OffsetRecord],
    now_ms: i64,
) -> Result<Option<(Arc<Partition>, i64)>, StoreError> {
    if records.is_empty() {
        return Ok(None);
    }
    ensure_offsets_topic(ctx)?;
    let partitions = ctx
        .image()
        .topic(OFFSETS_TOPIC)
        .map_or(ctx.groups.config.offsets_partitions, |t| t.partitions);
    let partition = offsets::partition_for(group, partitions);
    // Only the partition's leader writes it: leadership may have moved since the
    // request was checked.
    let (log, epoch) = ctx
        .led_partition_in_epoch(OFFSETS_TOPIC, partition, -1)
        .map_err(|_| StoreError::Unavailable(partition))?;
    let batch = offsets::encode_batch(records, now_ms)?;
    let appended = log.log().append(&batch, epoch, now_ms)?;
    Ok(Some((log, appended.last_offset + 1)))
}

/// The `__consumer_offsets` partitions this broker leads in `image`: the groups it
/// coordinates.
pub fn led_partitions(ctx: &BrokerContext, image: &MetadataImage) -> BTreeSet<i32> {
    let me = ctx.node_id();
    image.topic(OFFSETS_TOPIC).map_or_else(BTreeSet::new, |t| {
        (0..t.partitions)
            .filter(|&p| t.leader(p, me) == me)
            .collect()
    })
}

/// Loads the committed offsets kept in the `__consumer_offsets` partitions `led` (those
/// this broker hosts) into the coordinator.
pub fn load(ctx: &BrokerContext, led: &BTreeSet<i32>) -> Result<usize, runnel_storage::LogError> {
    let mut loaded = 0;
    for partition in ctx.partitions.partitions_of(OFFSETS_TOPIC) {
        if !led.contains(&partition.tp.partition) {
            continue;
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::groups::offsets::CommittedOffset;
    use crate::metadata::MetadataRecord;

    fn committed(ctx: &BrokerContext) -> Option<i64> {
        let groups = ctx.groups.lock();
        let entry = groups.get("g")?;
        entry.offsets.get(&("t".to_string(), 0)).map(|c| c.offset)
    }

    #[tokio::test]
    async fn groups_follow_the_leadership_of_their_offsets_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = crate::context::test_context(dir.path());
        let commit = OffsetRecord {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(CommittedOffset {
                offset: 42,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 1,
            }),
        };
        write(&ctx, "g", std::slice::from_ref(&commit), 1).expect("offsets written");
        ctx.groups.apply_offsets(vec![commit], Instant::now());
        assert_eq!(committed(&ctx), Some(42));

        // The broker is fenced: its offsets partitions go offline and it forgets the
        // groups it coordinated, and refuses to write their offsets.
        let mut image = (*ctx.image()).clone();
        let run = uuid::Uuid::new_v4();
        for record in [
            MetadataRecord::RegisterBroker {
                node_id: ctx.node_id(),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                incarnation: run,
            },
            MetadataRecord::FenceBroker {
                node_id: ctx.node_id(),
                incarnation: run,
            },
        ] {
            image.apply(&record);
        }
        ctx.apply_image(&Arc::new(image.clone())).expect("applied");
        assert_eq!(committed(&ctx), None);
        assert!(led_partitions(&ctx, &ctx.image()).is_empty());

        // Leading again, it loads the offsets from the log before answering for them.
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: ctx.node_id(),
            incarnation: run,
        });
        ctx.apply_image(&Arc::new(image)).expect("applied");
        assert_eq!(committed(&ctx), Some(42));
        assert_eq!(led_partitions(&ctx, &ctx.image()).len(), 50);
    }
}
