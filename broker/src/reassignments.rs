//! Partition reassignments (KIP-455), leader elections on request (KIP-460) and broker
//! unregistration, as the admin APIs ask for them: each request is checked against this
//! broker's image, and what passes is written to the metadata log in one commit (through
//! the quorum: any broker accepts these requests). What the records do is in
//! `metadata/reassignment.rs`.

use kafka_protocol::ResponseError;

use crate::context::{BrokerContext, CommitError};
use crate::metadata::{Election, MetadataImage, MetadataRecord, TopicImage};
use crate::topics;

/// Why one partition's request is refused: a Kafka error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Kafka error code.
    pub code: i16,
    /// What to tell the client.
    pub message: String,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Refusal {
            code: error.code(),
            message: message.into(),
        }
    }
}

impl From<&CommitError> for Refusal {
    fn from(e: &CommitError) -> Self {
        let error = match e {
            CommitError::Quorum(_) => ResponseError::RequestTimedOut,
            CommitError::Log(_) => ResponseError::KafkaStorageError,
        };
        Refusal::new(error, e.to_string())
    }
}

/// One partition's reassignment request: a target, or `None` to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The new replicas, or `None` to cancel the move in flight.
    pub target: Option<Vec<i32>>,
}

/// Checks `m` against `image`: the record to write, or why not.
/// `allow_factor_change` is AlterPartitionReassignments v1's flag (KIP-860); `known` are
/// the brokers a target may name ([`topics::known_brokers`]).
pub fn check_move(
    image: &MetadataImage,
    m: &Move,
    allow_factor_change: bool,
    known: &[i32],
) -> Result<MetadataRecord, Refusal> {
    use ResponseError as E;
    let topic = existing(image, &m.topic, m.partition)?;
    let index = usize::try_from(m.partition).unwrap_or(usize::MAX);
    if topic.replicas.get(index).is_none() {
        return Err(Refusal::new(
            E::InvalidReplicaAssignment,
            "the topic was made by a single broker before clusters and has no replica assignment to change",
        ));
    }
    let in_flight = image.reassignment(&m.topic, m.partition);
    let Some(target) = &m.target else {
        return match in_flight {
            Some(_) => Ok(record(m)),
            None => Err(Refusal::new(
                E::NoReassignmentInProgress,
                "no reassignment of this partition is in progress",
            )),
        };
    };
    if let Some(problem) = topics::replica_list_problem(target, known) {
        return Err(Refusal::new(E::InvalidReplicaAssignment, problem));
    }
    let current = in_flight.map_or_else(
        || topic.replicas(m.partition, -1).len(),
        |r| r.original.len(),
    );
    if !allow_factor_change && target.len() != current {
        return Err(Refusal::new(
            E::InvalidReplicationFactor,
            format!(
                "the move changes the replication factor from {current} to {}, which the request does not allow",
                target.len()
            ),
        ));
    }
    Ok(record(m))
}

/// The topic of `partition` of `topic`, or UNKNOWN_TOPIC_OR_PARTITION.
fn existing<'a>(
    image: &'a MetadataImage,
    topic: &str,
    partition: i32,
) -> Result<&'a TopicImage, Refusal> {
    image
        .topic(topic)
        .filter(|t| (0..t.partitions).contains(&partition))
        .ok_or_else(|| Refusal::new(ResponseError::UnknownTopicOrPartition, "no such partition"))
}

fn record(m: &Move) -> MetadataRecord {
    MetadataRecord::ReassignPartition {
        topic: m.topic.clone(),
        partition: m.partition,
        target: m.target.clone(),
    }
}

/// Starts or cancels `moves`; the outcome of each, in order. Blocking.
pub fn reassign(
    ctx: &BrokerContext,
    moves: &[Move],
    allow_factor_change: bool,
) -> Vec<Result<(), Refusal>> {
    let mut state = ctx.lock_metadata();
    let image = ctx.image();
    let known = topics::known_brokers(ctx);
    let checked: Vec<_> = moves
        .iter()
        .map(|m| check_move(&image, m, allow_factor_change, &known))
        .collect();
    let records: Vec<MetadataRecord> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let committed = if records.is_empty() {
        Ok(())
    } else {
        ctx.commit(&mut state, &records).map(|_| ())
    };
    checked
        .into_iter()
        .map(|c| match (&c, &committed) {
            (Err(refusal), _) => Err(refusal.clone()),
            (Ok(_), Err(e)) => Err(Refusal::from(e)),
            (Ok(_), Ok(())) => Ok(()),
        })
        .collect()
}

/// Checks an election of `partition` of `topic` against `image`.
pub fn check_election(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    election: Election,
) -> Result<MetadataRecord, Refusal> {
    use ResponseError as E;
    let t = existing(image, topic, partition)?;
    let leadership = t.leadership(partition, -1);
    let replicas = t.replicas(partition, -1);
    let live = |b: &i32| image.is_live(*b);
    let not_needed = || {
        Refusal::new(
            E::ElectionNotNeeded,
            "the partition has the leader asked for",
        )
    };
    match election {
        Election::Preferred => {
            let preferred = replicas.first().copied().unwrap_or(-1);
            if t.leadership.is_empty() || leadership.leader == preferred {
                return Err(not_needed());
            }
            if !live(&preferred) || !leadership.isr.contains(&preferred) {
                return Err(Refusal::new(
                    E::PreferredLeaderNotAvailable,
                    format!("the preferred replica, broker {preferred}, is not live and in sync"),
                ));
            }
        }
        Election::Unclean => {
            if t.leadership.is_empty() || (leadership.leader >= 0 && live(&leadership.leader)) {
                return Err(not_needed());
            }
            if !replicas.iter().any(live) {
                return Err(Refusal::new(
                    E::EligibleLeadersNotAvailable,
                    "no replica of the partition is live",
                ));
            }
        }
    }
    Ok(MetadataRecord::ElectLeader {
        topic: topic.to_string(),
        partition,
        election,
    })
}

/// Elects leaders of `partitions` (every partition when `None`); the outcome of each.
/// With `None`, partitions that need no election are left out, as Kafka does. Blocking.
pub fn elect(
    ctx: &BrokerContext,
    partitions: Option<Vec<(String, i32)>>,
    election: Election,
) -> Vec<((String, i32), Result<(), Refusal>)> {
    let mut state = ctx.lock_metadata();
    let image = ctx.image();
    let every = partitions.is_none();
    let partitions = partitions.unwrap_or_else(|| {
        image
            .topics()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
            .collect()
    });
    let checked: Vec<_> = partitions
        .into_iter()
        .map(|(topic, p)| {
            let c = check_election(&image, &topic, p, election);
            ((topic, p), c)
        })
        .filter(|(_, c)| {
            !(every && matches!(c, Err(r) if r.code == ResponseError::ElectionNotNeeded.code()))
        })
        .collect();
    let records: Vec<MetadataRecord> = checked.iter().filter_map(|(_, c)| c.clone().ok()).collect();
    let committed = if records.is_empty() {
        Ok(None)
    } else {
        ctx.commit(&mut state, &records).map(Some)
    };
    checked
        .into_iter()
        .map(|((topic, p), c)| {
            let outcome = match (c, &committed) {
                (Err(refusal), _) => Err(refusal),
                (Ok(_), Err(e)) => Err(Refusal::from(e)),
                (Ok(_), Ok(after)) => elected(after.as_deref(), &topic, p, election),
            };
            ((topic, p), outcome)
        })
        .collect()
}

/// Whether the election took effect in the image after the commit (another change may
/// have come first: the partition then has another leader than the one asked for).
fn elected(
    after: Option<&MetadataImage>,
    topic: &str,
    partition: i32,
    election: Election,
) -> Result<(), Refusal> {
    let Some(t) = after.and_then(|i| i.topic(topic)) else {
        return Err(Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            "the topic was deleted meanwhile",
        ));
    };
    let leader = t.leader(partition, -1);
    let ok = match election {
        Election::Preferred => t.replicas(partition, -1).first() == Some(&leader),
        Election::Unclean => leader >= 0,
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            ResponseError::PreferredLeaderNotAvailable,
            "another change to the partition came first; the election did not take place",
        ))
    }
}

/// Removes broker `node_id`'s registration: refused while it is live or still holds
/// replicas (move them away first). Blocking.
pub fn unregister(ctx: &BrokerContext, node_id: i32) -> Result<(), Refusal> {
    use ResponseError as E;
    let mut state = ctx.lock_metadata();
    let image = ctx.image();
    let Some(broker) = image.brokers.get(&node_id) else {
        return Err(Refusal::new(
            E::BrokerIdNotRegistered,
            format!("broker {node_id} is not registered"),
        ));
    };
    if !broker.fenced {
        return Err(Refusal::new(
            E::InvalidRequest,
            format!("broker {node_id} is live; stop it first"),
        ));
    }
    let held = image
        .topics()
        .map(|t| {
            (0..t.partitions)
                .filter(|&p| !t.replicas.is_empty() && t.has_replica(p, node_id))
                .count()
        })
        .sum::<usize>();
    if held > 0 {
        return Err(Refusal::new(
            E::InvalidRequest,
            format!(
                "broker {node_id} still holds replicas of {held} partitions; move them away first"
            ),
        ));
    }
    ctx.commit(&mut state, &[MetadataRecord::UnregisterBroker { node_id }])
        .map(|_| ())
        .map_err(|e| Refusal::from(&e))
}
