//! The rules an `AlterPartition` proposal must pass to change a partition's ISR (Kafka's
//! KIP-497 controller checks, with KIP-841/903's eligibility of members).
//!
//! The same check runs twice: by the proposing leader before it writes (a cheap fast
//! path against its possibly stale image) and by [`MetadataImage::apply`] on every broker
//! (the authority: the image at the record's place in the metadata log).

use std::collections::BTreeSet;

use super::{IsrMember, MetadataImage};

/// Why an `AlterPartition` proposal leaves the image unchanged, in the order the rules
/// are checked (the first that fails is reported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlterPartitionRejection {
    /// The topic or partition does not exist, or has no leadership stored (a topic from
    /// before clusters, which is never replicated).
    #[error("the partition does not exist")]
    UnknownPartition,
    /// The proposal was made in another leader epoch than the partition's current one.
    #[error("the proposal is in leader epoch {proposed}, the partition in {current}")]
    StaleLeaderEpoch {
        /// The proposal's leader epoch.
        proposed: i32,
        /// The partition's.
        current: i32,
    },
    /// The proposer does not lead the partition.
    #[error("broker {proposed} proposed, but the partition's leader is {current}")]
    NotLeader {
        /// The proposing broker.
        proposed: i32,
        /// The current leader (-1 while offline).
        current: i32,
    },
    /// The proposal is based on another partition epoch than the current one (another
    /// change came first).
    #[error("the proposal is based on partition epoch {proposed}, the partition is in {current}")]
    StalePartitionEpoch {
        /// The proposal's partition epoch.
        proposed: i32,
        /// The partition's.
        current: i32,
    },
    /// The proposed ISR is empty.
    #[error("the proposed ISR is empty")]
    EmptyIsr,
    /// A broker is named twice in the proposed ISR.
    #[error("broker {node_id} is named twice in the proposed ISR")]
    DuplicateMember {
        /// The broker.
        node_id: i32,
    },
    /// A proposed member is not a replica of the partition.
    #[error("broker {node_id} is not a replica of the partition")]
    NotAReplica {
        /// The broker.
        node_id: i32,
    },
    /// The proposed ISR leaves out the leader.
    #[error("the proposed ISR leaves out the leader, broker {leader}")]
    LeaderNotInIsr {
        /// The leader.
        leader: i32,
    },
    /// A proposed member is not a registered broker.
    #[error("broker {node_id} is not registered")]
    NotRegistered {
        /// The broker.
        node_id: i32,
    },
    /// A proposed member is fenced.
    #[error("broker {node_id} is fenced")]
    Fenced {
        /// The broker.
        node_id: i32,
    },
    /// A proposed member's broker epoch is not its current registration's: it was seen
    /// in sync in an earlier run and has restarted since.
    #[error(
        "broker {node_id} is proposed in broker epoch {proposed}, but registered in {current}"
    )]
    StaleBrokerEpoch {
        /// The broker.
        node_id: i32,
        /// The broker epoch the proposal names.
        proposed: i64,
        /// Its current registration's.
        current: i64,
    },
}

impl MetadataImage {
    /// Checks an `AlterPartition` proposal by broker `leader` for `partition` of `topic`
    /// against this image, and returns the ISR it would set: the members' ids in the
    /// partition's replica order. Pure; [`MetadataImage::apply`] applies the record
    /// exactly when this accepts it.
    ///
    /// A member's `broker_epoch` must equal its registration's exactly (unlike Kafka, -1
    /// is not a wildcard: every leader here knows its followers' epochs).
    pub fn check_alter_partition(
        &self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[IsrMember],
    ) -> Result<Vec<i32>, AlterPartitionRejection> {
        use AlterPartitionRejection as R;
        let index = usize::try_from(partition).map_err(|_| R::UnknownPartition)?;
        let t = self.topic(topic).ok_or(R::UnknownPartition)?;
        let (Some(current), Some(replicas)) = (t.leadership.get(index), t.replicas.get(index))
        else {
            return Err(R::UnknownPartition);
        };
        if leader_epoch != current.leader_epoch {
            return Err(R::StaleLeaderEpoch {
                proposed: leader_epoch,
                current: current.leader_epoch,
            });
        }
        if leader != current.leader {
            return Err(R::NotLeader {
                proposed: leader,
                current: current.leader,
            });
        }
        if partition_epoch != current.partition_epoch {
            return Err(R::StalePartitionEpoch {
                proposed: partition_epoch,
                current: current.partition_epoch,
            });
        }
        if isr.is_empty() {
            return Err(R::EmptyIsr);
        }
        let mut seen = BTreeSet::new();
        for member in isr {
            let node_id = member.node_id;
            if !seen.insert(node_id) {
                return Err(R::DuplicateMember { node_id });
            }
            if !replicas.contains(&node_id) {
                return Err(R::NotAReplica { node_id });
            }
        }
        if !seen.contains(&leader) {
            return Err(R::LeaderNotInIsr { leader });
        }
        for member in isr {
            let node_id = member.node_id;
            let broker = self
                .brokers
                .get(&node_id)
                .ok_or(R::NotRegistered { node_id })?;
            if broker.fenced {
                return Err(R::Fenced { node_id });
            }
            if broker.epoch != member.broker_epoch {
                return Err(R::StaleBrokerEpoch {
                    node_id,
                    proposed: member.broker_epoch,
                    current: broker.epoch,
                });
            }
        }
        Ok(replicas
            .iter()
            .copied()
            .filter(|r| seen.contains(r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::metadata::image::tests::{four_brokers_and_topic_t, register};
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::AlterPartitionRejection as R;
    use super::*;
    use crate::metadata::{Leadership, MetadataRecord};

    /// Brokers 0..=3 registered (broker epochs 1..=4); topic `t` with one partition on
    /// replicas [2, 0, 1], led by 2 in epoch 0.
    fn cluster() -> (MetadataImage, Vec<Uuid>) {
        four_brokers_and_topic_t(&[2, 0, 1])
    }

    fn state(image: &MetadataImage) -> Leadership {
        image
            .topic("t")
            .map(|t| t.leadership(0, 9))
            .expect("topic t exists")
    }

    /// Members with their current broker epochs.
    fn members(image: &MetadataImage, ids: &[i32]) -> Vec<IsrMember> {
        ids.iter()
            .map(|&node_id| IsrMember {
                node_id,
                broker_epoch: image.broker_epoch(node_id).unwrap_or(-1),
            })
            .collect()
    }

    fn propose(
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<IsrMember>,
    ) -> MetadataRecord {
        MetadataRecord::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        }
    }

    /// Applies the proposal; asserts that the image changed exactly when `check` accepts
    /// it, and returns the check's verdict.
    fn apply(image: &mut MetadataImage, record: &MetadataRecord) -> Result<Vec<i32>, R> {
        let MetadataRecord::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        } = record
        else {
            unreachable!("only AlterPartition records are proposed here")
        };
        let verdict = image.check_alter_partition(
            topic,
            *partition,
            *leader,
            *leader_epoch,
            *partition_epoch,
            isr,
        );
        let before = image.clone();
        image.apply(record);
        match &verdict {
            Ok(isr) => {
                let after = state(image);
                let old = state(&before);
                assert_eq!(&after.isr, isr);
                assert_eq!(after.partition_epoch, old.partition_epoch + 1);
                assert_eq!(
                    (after.leader, after.leader_epoch),
                    (old.leader, old.leader_epoch)
                );
            }
            Err(_) => assert_eq!(*image, before, "a rejected proposal changes nothing"),
        }
        verdict
    }

    #[test]
    fn the_leader_grows_and_shrinks_the_isr_in_replica_order() {
        let (mut image, _) = cluster();
        let grown = propose(2, 0, 0, members(&image, &[1, 2, 0]));
        assert_eq!(apply(&mut image, &grown), Ok(vec![2, 0, 1]));
        // The same proposal again is based on a partition epoch that is gone.
        assert_eq!(
            apply(&mut image, &grown),
            Err(R::StalePartitionEpoch {
                proposed: 0,
                current: 1
            })
        );
        let shrunk = propose(2, 0, 1, members(&image, &[2, 1]));
        assert_eq!(apply(&mut image, &shrunk), Ok(vec![2, 1]));
        assert_eq!(
            state(&image),
            Leadership {
                leader: 2,
                leader_epoch: 0,
                isr: vec![2, 1],
                partition_epoch: 2
            }
        );
    }

    #[test]
    fn a_proposal_from_another_leader_epoch_or_broker_is_refused() {
        let (mut image, _) = cluster();
        let isr = members(&image, &[2, 0]);
        assert_eq!(
            apply(&mut image, &propose(2, 1, 0, isr.clone())),
            Err(R::StaleLeaderEpoch {
                proposed: 1,
                current: 0
            })
        );
        assert_eq!(
            apply(&mut image, &propose(0, 0, 0, isr.clone())),
            Err(R::NotLeader {
                proposed: 0,
                current: 2
            })
        );
        // After a leader restart (a new leader epoch) the old epoch's proposal is stale.
        register(&mut image, 2);
        let isr = members(&image, &[2, 0]);
        assert_eq!(
            apply(&mut image, &propose(2, 0, 1, isr)),
            Err(R::StaleLeaderEpoch {
                proposed: 0,
                current: 1
            })
        );
    }

    #[test]
    fn a_malformed_isr_is_refused() {
        let (mut image, _) = cluster();
        let cases = [
            (vec![], R::EmptyIsr),
            (vec![2, 0, 2], R::DuplicateMember { node_id: 2 }),
            (vec![2, 3], R::NotAReplica { node_id: 3 }),
            (vec![0, 1], R::LeaderNotInIsr { leader: 2 }),
        ];
        for (ids, why) in cases {
            let isr = members(&image, &ids);
            assert_eq!(
                apply(&mut image, &propose(2, 0, 0, isr)),
                Err(why),
                "{ids:?}"
            );
        }
    }

    #[test]
    fn fenced_unregistered_and_restarted_brokers_are_not_eligible() {
        let (mut image, runs) = cluster();
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            incarnation: runs[1],
        });
        let isr = members(&image, &[2, 1]);
        assert_eq!(
            apply(&mut image, &propose(2, 0, 0, isr)),
            Err(R::Fenced { node_id: 1 })
        );
        // Broker 0 restarts: the epoch the leader saw it in sync with is an old run's.
        let seen = members(&image, &[2, 0]);
        register(&mut image, 0);
        assert_eq!(
            apply(&mut image, &propose(2, 0, 0, seen)),
            Err(R::StaleBrokerEpoch {
                node_id: 0,
                proposed: 1,
                current: 5
            })
        );
        let current = members(&image, &[2, 0]);
        assert_eq!(
            apply(&mut image, &propose(2, 0, 0, current)),
            Ok(vec![2, 0])
        );
        // A replica no broker has registered as.
        let mut unregistered = image.clone();
        unregistered.brokers.remove(&0);
        let isr = members(&image, &[2, 0]);
        assert_eq!(
            apply(&mut unregistered, &propose(2, 0, 1, isr)),
            Err(R::NotRegistered { node_id: 0 })
        );
    }

    #[test]
    fn unknown_partitions_and_topics_from_before_clusters_are_refused() {
        let (mut image, _) = cluster();
        let isr = members(&image, &[2]);
        for (topic, partition) in [("t", 1), ("t", -1), ("u", 0)] {
            let record = MetadataRecord::AlterPartition {
                topic: topic.into(),
                partition,
                leader: 2,
                leader_epoch: 0,
                partition_epoch: 0,
                isr: isr.clone(),
            };
            let before = image.clone();
            image.apply(&record);
            assert_eq!(image, before);
            assert_eq!(
                image.check_alter_partition(topic, partition, 2, 0, 0, &isr),
                Err(R::UnknownPartition)
            );
        }
        image.apply(&MetadataRecord::CreateTopic {
            name: "legacy".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            replicas: Vec::new(),
        });
        assert_eq!(
            image.check_alter_partition("legacy", 0, 2, 0, 0, &isr),
            Err(R::UnknownPartition)
        );
    }

    #[test]
    fn alter_partition_records_round_trip_through_json() {
        let record = propose(
            2,
            3,
            4,
            vec![IsrMember {
                node_id: 2,
                broker_epoch: 7,
            }],
        );
        let json = serde_json::to_string(&record).expect("a record encodes");
        let back: MetadataRecord = serde_json::from_str(&json).expect("and decodes");
        assert_eq!(back, record);
    }
}
