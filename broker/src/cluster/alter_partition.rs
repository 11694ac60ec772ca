//! AlterPartition (KIP-497): a partition's leader changes its ISR by writing an
//! `AlterPartition` record to the metadata log, which every broker applies, or refuses,
//! identically.
//!
//! Semantics of [`alter_partition`]:
//! - The proposer is this broker, as the leader in `leader_epoch`; `partition_epoch` is
//!   the partition epoch of the leadership the proposal is based on.
//! - The proposal is first checked against this broker's image; a proposal that already
//!   fails there is answered without a write (the fast path).
//! - Otherwise it is committed, and the image after the commit decides: accepted when it
//!   holds exactly the proposed leader, leader epoch and ISR at `partition_epoch + 1`.
//!   Else the proposal was refused at apply time (the authority), and the reason is the
//!   proposal checked against that image. When other changes to the partition were
//!   applied right after an accepted proposal, it is reported as refused with a stale
//!   epoch: the leader re-reads the leadership (which holds the accepted ISR) and
//!   proposes again, as after any refusal. The ISR itself is never wrong.

use kafka_protocol::ResponseError;

use crate::context::{BrokerContext, CommitError};
use crate::metadata::{AlterPartitionRejection, IsrMember, Leadership, MetadataRecord};

/// Why an ISR change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AlterPartitionError {
    /// The proposal breaks a rule of the metadata (see [`AlterPartitionRejection`]).
    #[error("the ISR change of {topic}-{partition} was refused: {reason}")]
    Refused {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The first rule the proposal broke.
        reason: AlterPartitionRejection,
    },
    /// The record was not committed (no majority within the write timeout, or the local
    /// metadata log failed).
    #[error("the ISR change of {topic}-{partition} was not committed: {source}")]
    Commit {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The commit error.
        source: CommitError,
    },
}

impl AlterPartitionError {
    /// The Kafka error code AlterPartition answers with for this error.
    pub fn code(&self) -> i16 {
        use AlterPartitionRejection as R;
        let error = match self {
            AlterPartitionError::Refused { reason, .. } => match reason {
                R::UnknownPartition => ResponseError::UnknownTopicOrPartition,
                R::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
                R::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
                R::StalePartitionEpoch { .. } => ResponseError::InvalidUpdateVersion,
                R::EmptyIsr
                | R::DuplicateMember { .. }
                | R::NotAReplica { .. }
                | R::LeaderNotInIsr { .. } => ResponseError::InvalidRequest,
                R::NotRegistered { .. } | R::Fenced { .. } | R::StaleBrokerEpoch { .. } => {
                    ResponseError::IneligibleReplica
                }
            },
            AlterPartitionError::Commit {
                source: CommitError::Quorum(_),
                ..
            } => ResponseError::RequestTimedOut,
            AlterPartitionError::Commit {
                source: CommitError::Log(_),
                ..
            } => ResponseError::KafkaStorageError,
        };
        error.code()
    }
}

/// Proposes `isr` as the ISR of `partition` of `topic`, led by this broker in
/// `leader_epoch`, based on `partition_epoch`; returns the partition's new leadership
/// (the ISR in replica order, the partition epoch raised by one, leader and leader epoch
/// unchanged). Blocking: takes the metadata lock and waits for the commit, so call it
/// from a blocking thread. See the module docs for how the outcome is decided.
pub fn alter_partition(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<IsrMember>,
) -> Result<Leadership, AlterPartitionError> {
    let leader = ctx.node_id();
    let refused = |reason| AlterPartitionError::Refused {
        topic: topic.to_string(),
        partition,
        reason,
    };
    let check = |image: &crate::metadata::MetadataImage| {
        image.check_alter_partition(
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            &isr,
        )
    };
    let mut state = ctx.lock_metadata();
    let expected = check(&ctx.image()).map_err(refused)?;
    let record = MetadataRecord::AlterPartition {
        topic: topic.to_string(),
        partition,
        leader,
        leader_epoch,
        partition_epoch,
        isr: isr.clone(),
    };
    let image = ctx
        .commit(&mut state, std::slice::from_ref(&record))
        .map_err(|source| AlterPartitionError::Commit {
            topic: topic.to_string(),
            partition,
            source,
        })?;
    drop(state);
    let now = image
        .topic(topic)
        .filter(|t| (0..t.partitions).contains(&partition))
        .map(|t| t.leadership(partition, leader));
    let accepted = Leadership {
        leader,
        leader_epoch,
        isr: expected,
        partition_epoch: partition_epoch.saturating_add(1),
    };
    if now.as_ref() == Some(&accepted) {
        tracing::info!(topic, partition, isr = ?accepted.isr, partition_epoch = accepted.partition_epoch, "ISR changed");
        return Ok(accepted);
    }
    let reason = check(&image)
        .err()
        // Refused, then changed back to what the proposal was based on: call it stale.
        .unwrap_or(AlterPartitionRejection::StalePartitionEpoch {
            proposed: partition_epoch,
            current: now.map_or(-1, |l| l.partition_epoch),
        });
    Err(refused(reason))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    use super::*;
    use crate::context::test_context;

    fn refused(reason: AlterPartitionRejection) -> AlterPartitionError {
        AlterPartitionError::Refused {
            topic: "t".into(),
            partition: 0,
            reason,
        }
    }

    #[test]
    fn refusals_map_to_alter_partitions_error_codes() {
        use AlterPartitionRejection as R;
        let cases = [
            (R::UnknownPartition, ResponseError::UnknownTopicOrPartition),
            (
                R::StaleLeaderEpoch {
                    proposed: 0,
                    current: 1,
                },
                ResponseError::FencedLeaderEpoch,
            ),
            (
                R::NotLeader {
                    proposed: 0,
                    current: 1,
                },
                ResponseError::NotLeaderOrFollower,
            ),
            (
                R::StalePartitionEpoch {
                    proposed: 0,
                    current: 1,
                },
                ResponseError::InvalidUpdateVersion,
            ),
            (R::EmptyIsr, ResponseError::InvalidRequest),
            (
                R::DuplicateMember { node_id: 1 },
                ResponseError::InvalidRequest,
            ),
            (R::NotAReplica { node_id: 1 }, ResponseError::InvalidRequest),
            (
                R::LeaderNotInIsr { leader: 1 },
                ResponseError::InvalidRequest,
            ),
            (
                R::NotRegistered { node_id: 1 },
                ResponseError::IneligibleReplica,
            ),
            (R::Fenced { node_id: 1 }, ResponseError::IneligibleReplica),
            (
                R::StaleBrokerEpoch {
                    node_id: 1,
                    proposed: 1,
                    current: 2,
                },
                ResponseError::IneligibleReplica,
            ),
        ];
        for (reason, error) in cases {
            assert_eq!(refused(reason.clone()).code(), error.code(), "{reason:?}");
        }
        let timeout = AlterPartitionError::Commit {
            topic: "t".into(),
            partition: 0,
            source: CommitError::Quorum(crate::cluster::QuorumError::NoLeader),
        };
        assert_eq!(timeout.code(), ResponseError::RequestTimedOut.code());
        assert_eq!(
            refused(R::Fenced { node_id: 3 }).to_string(),
            "the ISR change of t-0 was refused: broker 3 is fenced"
        );
    }

    #[tokio::test]
    async fn the_leader_changes_its_isr_through_the_metadata_log() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ctx = test_context(dir.path());
        let me = ctx.node_id();
        let mut state = ctx.lock_metadata();
        let records = [
            MetadataRecord::RegisterBroker {
                node_id: me,
                host: "localhost".into(),
                port: 9092,
                rack: None,
                incarnation: uuid::Uuid::new_v4(),
            },
            MetadataRecord::CreateTopic {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions: 1,
                configs: Default::default(),
                replicas: vec![vec![me]],
            },
        ];
        ctx.commit(&mut state, &records).expect("the setup commits");
        drop(state);
        let epoch = ctx.image().broker_epoch(me).expect("registered");
        let member = |broker_epoch| {
            vec![IsrMember {
                node_id: me,
                broker_epoch,
            }]
        };
        let changed = alter_partition(&ctx, "t", 0, 0, 0, member(epoch)).expect("accepted");
        assert_eq!((changed.isr, changed.partition_epoch), (vec![me], 1));
        let image = ctx.image();
        let stored = image.topic("t").map(|t| t.leadership(0, me));
        assert_eq!(stored.map(|l| l.partition_epoch), Some(1));
        // Refused before any write: nothing more reaches the metadata log.
        let code = |r: Result<Leadership, AlterPartitionError>| r.map_err(|e| e.code()).err();
        assert_eq!(
            code(alter_partition(&ctx, "t", 0, 0, 0, member(epoch))),
            Some(ResponseError::InvalidUpdateVersion.code())
        );
        assert_eq!(
            code(alter_partition(&ctx, "t", 0, 0, 1, member(epoch - 1))),
            Some(ResponseError::IneligibleReplica.code())
        );
        assert_eq!(
            code(alter_partition(&ctx, "t", 0, 1, 1, member(epoch))),
            Some(ResponseError::FencedLeaderEpoch.code())
        );
        assert_eq!(
            code(alter_partition(&ctx, "u", 0, 0, 0, member(epoch))),
            Some(ResponseError::UnknownTopicOrPartition.code())
        );
        // A stale record that does reach the log (the fast path skipped) changes nothing.
        let stale = MetadataRecord::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: me,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: member(epoch),
        };
        let before = ctx.image();
        let after = ctx
            .commit(&mut ctx.lock_metadata(), &[stale])
            .expect("the record commits");
        assert_eq!(after.topic("t"), before.topic("t"));
        drop(ctx);
        // The accepted change is in the log: a reopened broker sees partition epoch 1.
        let reopened = test_context(dir.path());
        let image = reopened.image();
        let stored = image.topic("t").map(|t| t.leadership(0, me));
        assert_eq!(
            stored.map(|l| (l.isr, l.partition_epoch)),
            Some((vec![me], 1))
        );
    }
}
