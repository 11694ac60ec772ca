//! Moving a partition's replicas (KIP-455) and choosing its leader on request (KIP-460),
//! as the image applies them.
//!
//! A reassignment to `target` makes the partition's replicas the union of the target and
//! the replicas it had (target first, so the preferred leader is the target's first),
//! with the brokers being added and removed kept in [`Reassignment`]. The added replicas
//! follow the leader like any other and enter the ISR through the leader's
//! `AlterPartition` proposals. The reassignment completes in the record that makes every
//! target replica a member of the ISR: the replicas become the target, the ISR keeps
//! only target replicas, and a leader that is not in the target hands over to the first
//! target replica of the ISR (a new leader epoch). A cancelled reassignment goes back to
//! the replicas it started from.
//!
//! Every broker applies the same records to the same image, so completion needs no
//! record of its own: it happens, identically everywhere, where the ISR change is.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::image::Leadership;
use super::MetadataImage;

/// A reassignment in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// The replicas the partition had when the reassignment began (a cancel restores them).
    pub original: Vec<i32>,
    /// The replicas it is moving to, preferred leader first.
    pub target: Vec<i32>,
}

impl Reassignment {
    /// Target replicas the partition did not have (Kafka's `adding_replicas`).
    pub fn adding(&self) -> Vec<i32> {
        self.target
            .iter()
            .copied()
            .filter(|r| !self.original.contains(r))
            .collect()
    }

    /// Replicas it had that the target drops (Kafka's `removing_replicas`).
    pub fn removing(&self) -> Vec<i32> {
        self.original
            .iter()
            .copied()
            .filter(|r| !self.target.contains(r))
            .collect()
    }

    /// The replicas while it is in flight: the target, then the ones being removed.
    fn union(&self) -> Vec<i32> {
        let mut replicas = self.target.clone();
        replicas.extend(self.removing());
        replicas
    }
}

/// Which leader an election asks for (ElectLeaders' `election_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    /// The preferred replica (the first), if it is live and in the ISR.
    Preferred,
    /// For a partition without a live leader: a live ISR member, else any live replica
    /// (which may lose records the ISR had: `unclean.leader.election.enable` on request).
    Unclean,
}

impl MetadataImage {
    /// Starts (or, with `None`, cancels) the reassignment of `partition` of `topic`. A
    /// new target replaces one in flight, counted from the replicas it started from.
    /// Ignored for an unknown partition, a target naming a broker twice or none, and a
    /// cancel with nothing in flight (the handler refuses these before writing).
    pub(super) fn reassign(&mut self, topic: &str, partition: i32, target: Option<&[i32]>) {
        let live = self.live_brokers();
        let Some(index) = usize::try_from(partition).ok() else {
            return;
        };
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        let (Some(replicas), Some(l)) = (t.replicas.get_mut(index), t.leadership.get_mut(index))
        else {
            return;
        };
        let in_flight = t.reassignments.get(&partition);
        let original = in_flight.map_or_else(|| replicas.clone(), |r| r.original.clone());
        match target {
            Some(target) => {
                let distinct: BTreeSet<i32> = target.iter().copied().collect();
                if target.is_empty() || distinct.len() != target.len() {
                    return;
                }
                let moving = Reassignment {
                    original,
                    target: target.to_vec(),
                };
                *replicas = moving.union();
                t.reassignments.insert(partition, moving);
                self.complete_reassignment(topic, partition, &live);
            }
            None => {
                if t.reassignments.remove(&partition).is_none() {
                    return;
                }
                let before = l.clone();
                l.isr.retain(|r| original.contains(r));
                if l.isr.is_empty() {
                    // No replica it started from is in sync: offline until one is (or an
                    // unclean election).
                    l.isr = original.first().map(|&r| vec![r]).unwrap_or_default();
                    l.leader = -1;
                    l.leader_epoch += 1;
                } else if !l.isr.contains(&l.leader) {
                    l.leader = l
                        .isr
                        .iter()
                        .copied()
                        .find(|r| live.contains(r))
                        .unwrap_or(-1);
                    l.leader_epoch += 1;
                }
                *replicas = original;
                bump_partition_epoch(l, &before);
            }
        }
    }

    /// Completes the reassignment of `partition` of `topic` if every target replica is in
    /// its ISR (see the module documentation).
    pub(super) fn complete_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        live: &BTreeSet<i32>,
    ) {
        let Some(index) = usize::try_from(partition).ok() else {
            return;
        };
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        let Some(moving) = t.reassignments.get(&partition) else {
            return;
        };
        let (Some(replicas), Some(l)) = (t.replicas.get_mut(index), t.leadership.get_mut(index))
        else {
            return;
        };
        if !moving.target.iter().all(|r| l.isr.contains(r)) {
            return;
        }
        let before = l.clone();
        *replicas = moving.target.clone();
        l.isr = moving
            .target
            .iter()
            .copied()
            .filter(|r| l.isr.contains(r))
            .collect();
        if !replicas.contains(&l.leader) {
            l.leader = l
                .isr
                .iter()
                .copied()
                .find(|r| live.contains(r))
                .unwrap_or(-1);
            l.leader_epoch += 1;
        }
        bump_partition_epoch(l, &before);
        t.reassignments.remove(&partition);
    }

    /// Applies an election of `partition` of `topic` (see [`Election`]); nothing changes
    /// when no replica qualifies or the one that does leads already.
    pub(super) fn elect(&mut self, topic: &str, partition: i32, election: Election) {
        let live = self.live_brokers();
        let Some(index) = usize::try_from(partition).ok() else {
            return;
        };
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        let (Some(replicas), Some(l)) = (t.replicas.get(index), t.leadership.get_mut(index)) else {
            return;
        };
        let before = l.clone();
        match election {
            Election::Preferred => {
                let Some(&preferred) = replicas.first() else {
                    return;
                };
                if l.leader == preferred
                    || !live.contains(&preferred)
                    || !l.isr.contains(&preferred)
                {
                    return;
                }
                l.leader = preferred;
            }
            Election::Unclean => {
                if l.leader != -1 && live.contains(&l.leader) {
                    return;
                }
                if let Some(&clean) = l.isr.iter().find(|r| live.contains(r)) {
                    l.leader = clean;
                } else if let Some(&any) = replicas.iter().find(|r| live.contains(r)) {
                    l.leader = any;
                    l.isr = vec![any];
                } else {
                    return;
                }
            }
        }
        l.leader_epoch += 1;
        bump_partition_epoch(l, &before);
    }

    /// The registered, unfenced brokers.
    pub(super) fn live_brokers(&self) -> BTreeSet<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.node_id)
            .collect()
    }

    /// The reassignment of `partition` of `topic` in flight, if any.
    pub fn reassignment(&self, topic: &str, partition: i32) -> Option<&Reassignment> {
        self.topic(topic)?.reassignments.get(&partition)
    }
}

/// Raises the partition epoch if the leader, leader epoch or ISR differ from `before`.
fn bump_partition_epoch(l: &mut Leadership, before: &Leadership) {
    if (l.leader, l.leader_epoch, &l.isr) != (before.leader, before.leader_epoch, &before.isr) {
        l.partition_epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::image::tests::{propose_isr, register};
    use crate::metadata::MetadataRecord;

    /// Brokers 0..=3; topic `t`, one partition on [0, 1] led by 0 with ISR [0, 1].
    fn cluster() -> (MetadataImage, Vec<Uuid>) {
        let mut image = MetadataImage::default();
        let runs = (0..4).map(|n| register(&mut image, n)).collect();
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![0, 1]],
        });
        grow_isr(&mut image, &[0, 1]);
        (image, runs)
    }

    fn grow_isr(image: &mut MetadataImage, isr: &[i32]) {
        propose_isr(image, "t", 0, isr);
    }

    fn state(image: &MetadataImage) -> (Vec<i32>, Leadership) {
        let t = image.topic("t").cloned();
        let t = t.as_ref();
        (
            t.map(|t| t.replicas(0, -1)).unwrap_or_default(),
            t.map(|t| t.leadership(0, -1))
                .unwrap_or_else(|| Leadership {
                    leader: -2,
                    leader_epoch: -2,
                    isr: Vec::new(),
                    partition_epoch: -2,
                }),
        )
    }

    fn reassign(image: &mut MetadataImage, target: Option<Vec<i32>>) {
        image.apply(&MetadataRecord::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            target,
        });
    }

    #[test]
    fn a_move_adds_the_new_replicas_first_and_completes_when_they_are_in_sync() {
        let (mut image, _) = cluster();
        reassign(&mut image, Some(vec![2, 1]));
        let (replicas, l) = state(&image);
        assert_eq!(replicas, vec![2, 1, 0], "target first, then the removed");
        assert_eq!((l.leader, l.isr.clone()), (0, vec![0, 1]));
        let moving = image.reassignment("t", 0).cloned();
        assert_eq!(moving.as_ref().map(Reassignment::adding), Some(vec![2]));
        assert_eq!(moving.as_ref().map(Reassignment::removing), Some(vec![0]));

        // Broker 2 catches up and joins the ISR: the move completes in that record, and
        // leadership leaves broker 0, which is no replica any more.
        let epoch = l.leader_epoch;
        grow_isr(&mut image, &[0, 1, 2]);
        let (replicas, l) = state(&image);
        assert_eq!(replicas, vec![2, 1]);
        assert_eq!(l.isr, vec![2, 1]);
        assert_eq!(l.leader, 2, "the first target replica in the ISR");
        assert_eq!(l.leader_epoch, epoch + 1);
        assert!(image.reassignment("t", 0).is_none());
    }

    #[test]
    fn a_cancel_restores_the_replicas_it_started_from() {
        let (mut image, _) = cluster();
        let before = state(&image);
        reassign(&mut image, Some(vec![2, 3]));
        assert_eq!(state(&image).0, vec![2, 3, 0, 1]);
        reassign(&mut image, None);
        assert_eq!(state(&image).0, before.0);
        assert_eq!(state(&image).1.leader, 0);
        assert!(image.reassignment("t", 0).is_none());
        // A second cancel changes nothing.
        let after = image.clone();
        reassign(&mut image, None);
        assert_eq!(image, after);
    }

    #[test]
    fn a_new_target_replaces_one_in_flight_from_the_original_replicas() {
        let (mut image, _) = cluster();
        reassign(&mut image, Some(vec![2, 3]));
        reassign(&mut image, Some(vec![0, 3]));
        assert_eq!(state(&image).0, vec![0, 3, 1]);
        let moving = image.reassignment("t", 0).cloned();
        assert_eq!(moving.map(|m| m.original), Some(vec![0, 1]));
    }

    #[test]
    fn shrinking_to_in_sync_replicas_completes_at_once() {
        let (mut image, _) = cluster();
        reassign(&mut image, Some(vec![1]));
        let (replicas, l) = state(&image);
        assert_eq!(replicas, vec![1]);
        assert_eq!((l.leader, l.isr), (1, vec![1]));
        assert!(image.reassignment("t", 0).is_none());
        // A reorder of the same replicas completes at once too, leader unchanged.
        reassign(&mut image, Some(vec![1]));
        assert_eq!(state(&image).1.leader, 1);
    }

    #[test]
    fn bad_targets_change_nothing() {
        let (mut image, _) = cluster();
        let before = image.clone();
        reassign(&mut image, Some(vec![]));
        reassign(&mut image, Some(vec![2, 2]));
        assert_eq!(image, before);
    }

    #[test]
    fn a_preferred_election_needs_the_preferred_replica_live_and_in_sync() {
        let (mut image, runs) = cluster();
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        assert_eq!(state(&image).1.leader, 1);
        let elect = |image: &mut MetadataImage, election| {
            image.apply(&MetadataRecord::ElectLeader {
                topic: "t".into(),
                partition: 0,
                election,
            })
        };
        // Broker 0 left the ISR when fenced: not electable yet.
        elect(&mut image, Election::Preferred);
        assert_eq!(state(&image).1.leader, 1);
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        grow_isr(&mut image, &[0, 1]);
        let epoch = state(&image).1.leader_epoch;
        elect(&mut image, Election::Preferred);
        let l = state(&image).1;
        assert_eq!((l.leader, l.leader_epoch), (0, epoch + 1));
    }

    #[test]
    fn an_unclean_election_takes_any_live_replica_only_without_a_live_isr_member() {
        let (mut image, runs) = cluster();
        // Broker 1 leaves the ISR, then the leader dies: offline with ISR [0].
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 0,
            incarnation: runs[0],
        });
        let l = state(&image).1;
        assert_eq!((l.leader, l.isr.clone()), (-1, vec![0]));
        image.apply(&MetadataRecord::ElectLeader {
            topic: "t".into(),
            partition: 0,
            election: Election::Preferred,
        });
        assert_eq!(state(&image).1.leader, -1);
        image.apply(&MetadataRecord::ElectLeader {
            topic: "t".into(),
            partition: 0,
            election: Election::Unclean,
        });
        let after = state(&image).1;
        assert_eq!((after.leader, after.isr), (1, vec![1]));
        assert_eq!(after.leader_epoch, l.leader_epoch + 1);
    }
}
