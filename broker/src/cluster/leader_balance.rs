//! Automatic preferred-leader balancing (Kafka's `auto.leader.rebalance.enable`): after a
//! broker comes back, the partitions it prefers to lead are led by others; the active
//! controller moves their leadership back once a broker's share of such partitions
//! exceeds `leader.imbalance.per.broker.percentage`, checked every
//! `leader.imbalance.check.interval.seconds`. Only replicas that are live and in the ISR
//! are elected (the same check as ElectLeaders'), in one metadata commit per round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::quorum::{write_as_leader, QuorumConfig};
use super::Raft;
use crate::metadata::{Election, MetadataImage, MetadataRecord};
use crate::reassignments::check_election;

/// When and how far leadership may drift from the preferred replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderBalance {
    /// `leader.imbalance.check.interval.seconds`.
    pub interval: Duration,
    /// `leader.imbalance.per.broker.percentage`.
    pub percentage: u32,
}

/// The preferred elections `image` calls for: for every broker whose share of partitions
/// it prefers but does not lead is above `percentage`, those of them it can lead now.
pub fn elections(image: &MetadataImage, percentage: u32) -> Vec<MetadataRecord> {
    // Per preferred broker: (partitions it prefers, of which led by others).
    let mut preferred: BTreeMap<i32, (Vec<(String, i32)>, usize)> = BTreeMap::new();
    for topic in image.topics().filter(|t| !t.leadership.is_empty()) {
        for p in 0..topic.partitions {
            let Some(&first) = topic.replicas(p, -1).first() else {
                continue;
            };
            let entry = preferred.entry(first).or_default();
            if topic.leader(p, -1) != first {
                entry.0.push((topic.name.clone(), p));
            }
            entry.1 += 1;
        }
    }
    let mut records = Vec::new();
    for (misled, total) in preferred.into_values() {
        let over = misled.len() * 100 > total * percentage as usize;
        if !over {
            continue;
        }
        records.extend(
            misled
                .iter()
                .filter_map(|(t, p)| check_election(image, t, *p, Election::Preferred).ok()),
        );
    }
    records
}

/// On the leader of the quorum: a balancing round every `balance.interval`.
pub async fn run(
    raft: Raft,
    config: QuorumConfig,
    image: watch::Receiver<Arc<MetadataImage>>,
    balance: LeaderBalance,
) {
    let node_id = config.node_id;
    loop {
        tokio::time::sleep(balance.interval).await;
        if raft.metrics().borrow().current_leader != Some(node_id) {
            continue;
        }
        let records = elections(&image.borrow(), balance.percentage);
        if records.is_empty() {
            continue;
        }
        tracing::info!(
            partitions = records.len(),
            "moving leadership back to preferred replicas"
        );
        if let Err(e) = write_as_leader(&raft, &config, records).await {
            tracing::warn!(error = %e, "could not balance leaders");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::test_support::{propose_isr, register};
    use crate::metadata::{MetadataImage, MetadataRecord};

    /// Brokers 0 and 1; topic `t` with 4 partitions, preferred leaders 0, 1, 0, 1, all in
    /// sync; then broker 0 is fenced (its partitions move to 1) and comes back, out of
    /// every ISR.
    fn image_with_a_returned_broker() -> MetadataImage {
        let mut image = MetadataImage::default();
        let runs: Vec<Uuid> = (0..2).map(|n| register(&mut image, n)).collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 4,
            configs: BTreeMap::new(),
            replicas: vec![vec![0, 1], vec![1, 0], vec![0, 1], vec![1, 0]],
        });
        for p in 0..4 {
            propose_isr(&mut image, "t", p, &[0, 1]);
        }
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        image
    }

    fn leaders(image: &MetadataImage) -> Vec<i32> {
        (0..4)
            .map(|p| image.topic("t").map_or(-2, |t| t.leader(p, -1)))
            .collect()
    }

    #[test]
    fn leadership_returns_to_preferred_replicas_once_they_are_in_sync() {
        let mut image = image_with_a_returned_broker();
        assert_eq!(leaders(&image), vec![1, 1, 1, 1]);
        // Out of the ISR since it was fenced: nothing to elect yet.
        assert!(elections(&image, 10).is_empty());
        for p in [0, 2] {
            propose_isr(&mut image, "t", p, &[0, 1]);
        }
        let records = elections(&image, 10);
        assert_eq!(records.len(), 2);
        for r in &records {
            image.apply(r);
        }
        assert_eq!(leaders(&image), vec![0, 1, 0, 1]);
        assert!(elections(&image, 10).is_empty());
    }

    #[test]
    fn an_imbalance_within_the_percentage_is_left_alone() {
        let mut image = image_with_a_returned_broker();
        propose_isr(&mut image, "t", 0, &[0, 1]);
        propose_isr(&mut image, "t", 2, &[0, 1]);
        // Both of broker 0's preferred partitions are led by broker 1: 100 %.
        assert_eq!(elections(&image, 99).len(), 2);
        assert!(elections(&image, 100).is_empty());
    }
}
