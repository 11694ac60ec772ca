//! A follower's durable end, reported apart from its fetch offset, so that its fsync
//! runs while its next Fetch is on the wire instead of between two fetches.
//!
//! Kafka's followers fetch from their log end and never fsync; a fetch offset says
//! what a follower holds, and the leader takes it as durable. Runnel's acks=all waits
//! for records to be on the disk of `min.insync.replicas` brokers, so a follower that
//! reports only a fetch offset must fsync before fetching again. With this field the
//! follower fetches from its log end right after appending and says, in the same
//! request, how much of its log is fsynced (`runnel_storage::Log::data_synced`, which
//! storage keeps below every truncation and never moves past a failed fsync). The
//! leader keeps its high watermark and ISR joins at the smallest durable end
//! (`state.rs`).
//!
//! On the wire, both Runnel-only tagged fields (flexible Fetch versions, v12+), with a
//! tag far above Kafka's own (0–3 so far), so another broker skips them:
//!
//! | where                                      | tag      | value                         |
//! |--------------------------------------------|----------|-------------------------------|
//! | FetchRequest · topics · partitions          | [`TAG`]  | i64 big-endian: durable end   |
//! | FetchResponse (top level), to a replica     | [`TAG`]  | empty: "durable ends are read"|
//!
//! A value of another length, or negative, is ignored; a durable end past the fetch
//! offset is cut to it. A follower without the field (another version, or
//! `--acks-all-durability replication`, where nothing is fsynced) fetches only from what
//! it holds durably enough, so its fetch offset stands for its durable end. A follower
//! pipelines only with a leader whose last answer on the connection carried the
//! response tag: a leader that ignores the request field would take an unsynced fetch
//! offset as durable.
//!
//! A follower that crashes between its append and its fsync has told the leader no
//! durable end past what was synced: the fetch offset ran ahead, the durable end did
//! not.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::flusher::FlushError;
use crate::partitions::Partition;

/// The tag of both fields (`RN` in ASCII, 0x524E).
pub const TAG: i32 = 0x524E;

/// The request field for one partition: `durable_end`.
pub fn encode(durable_end: i64) -> Bytes {
    Bytes::copy_from_slice(&durable_end.to_be_bytes())
}

/// The durable end a replica's fetch of one partition carries, if it carries one that
/// reads (8 bytes, not negative).
pub fn decode(tags: &BTreeMap<i32, Bytes>) -> Option<i64> {
    let value = tags.get(&TAG)?;
    let bytes: [u8; 8] = value.as_ref().try_into().ok()?;
    Some(i64::from_be_bytes(bytes)).filter(|end| *end >= 0)
}

/// Whether a Fetch response's top-level tagged fields say the leader reads durable ends.
pub fn leader_reads(tags: &BTreeMap<i32, Bytes>) -> bool {
    tags.get(&TAG).is_some_and(Bytes::is_empty)
}

/// The flusher's answer for the partitions one fetch response brought.
type Results = Pin<Box<dyn Future<Output = Vec<Result<(), FlushError>>> + Send>>;

/// The fsync a follower has in flight while its next fetch is out: at most one, so a
/// disk that stalls stops the fetcher after one more fetch, as it did before.
pub struct PendingFsync {
    partitions: Vec<Arc<Partition>>,
    results: Results,
}

impl PendingFsync {
    /// The fsync of `partitions`, whose results (one each, in order) `results` gives.
    pub fn new(
        partitions: Vec<Arc<Partition>>,
        results: impl Future<Output = Vec<Result<(), FlushError>>> + Send + 'static,
    ) -> PendingFsync {
        PendingFsync {
            partitions,
            results: Box::pin(results),
        }
    }

    /// Waits for the fsync; returns the partitions whose fsync failed.
    pub async fn finish(self) -> Vec<Arc<Partition>> {
        let results = self.results.await;
        failed(self.partitions, results)
    }

    /// The partitions whose fsync failed if it is done (without waiting), else the
    /// fsync still pending.
    pub async fn try_finish(mut self) -> Result<Vec<Arc<Partition>>, PendingFsync> {
        tokio::select! {
            biased;
            results = &mut self.results => Ok(failed(self.partitions, results)),
            () = std::future::ready(()) => Err(self),
        }
    }
}

fn failed(
    partitions: Vec<Arc<Partition>>,
    results: Vec<Result<(), FlushError>>,
) -> Vec<Arc<Partition>> {
    partitions
        .into_iter()
        .zip(results)
        .filter_map(|(partition, result)| match result {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(partition = %partition.tp, error = %e, "cannot fsync the leader's records; truncating again");
                Some(partition)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_end_round_trips_and_only_eight_bytes_not_negative_read() {
        let mut tags = BTreeMap::new();
        assert_eq!(decode(&tags), None);
        tags.insert(TAG, encode(1 << 40));
        assert_eq!(decode(&tags), Some(1 << 40));
        tags.insert(TAG, encode(-1));
        assert_eq!(decode(&tags), None);
        for len in [0usize, 7, 9] {
            tags.insert(TAG, Bytes::from(vec![0u8; len]));
            assert_eq!(decode(&tags), None, "{len} bytes");
        }
        tags.clear();
        tags.insert(TAG + 1, encode(5));
        assert_eq!(decode(&tags), None, "another tag");
    }

    #[test]
    fn only_an_empty_response_field_says_the_leader_reads_durable_ends() {
        let mut tags = BTreeMap::new();
        assert!(!leader_reads(&tags));
        tags.insert(TAG, Bytes::new());
        assert!(leader_reads(&tags));
        tags.insert(TAG, Bytes::from_static(b"x"));
        assert!(!leader_reads(&tags));
    }
}
