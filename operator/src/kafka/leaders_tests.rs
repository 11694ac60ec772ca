//! ListOffsets in [`TcpAdminClient`] against scripted fake brokers: split by leader, one
//! metadata refresh when a leader moved, and an error, not a partial answer, for a
//! partition without a leader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

use super::fake_answers::{
    asked_partitions, broker_code, client, metadata, offsets, LEADER_NOT_AVAILABLE,
    NOT_LEADER_OR_FOLLOWER,
};
use super::fake_cluster::FakeNode;
use super::{KafkaAdmin, OffsetSpec, TopicPartition};

use ApiKey::{ListOffsets, Metadata};

#[tokio::test]
async fn list_offsets_is_split_across_two_leaders() {
    let (mut b0, mut b1, mut b2) = (
        FakeNode::bind().await,
        FakeNode::bind().await,
        FakeNode::bind().await,
    );
    let brokers = [(0, b0.port), (1, b1.port), (2, b2.port)];
    b0.serve(move |r| match r.api() {
        Metadata => metadata(r, &brokers, &[1, 2, 1]),
        other => panic!("{other:?} sent to the bootstrap broker"),
    });
    let asked = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    for (node, id) in [(&mut b1, 1), (&mut b2, 2)] {
        let asked = Arc::clone(&asked);
        node.serve(move |r| {
            asked.lock().unwrap().insert(id, asked_partitions(r));
            offsets(r, |p| (0, 100 * i64::from(p) + i64::from(id)))
        });
    }
    let admin = client(&b0).await;

    let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
    let found = admin
        .list_offsets(&partitions, OffsetSpec::Earliest)
        .await
        .unwrap();

    let expected = [(0, 1), (1, 102), (2, 201)];
    let expected = expected.map(|(p, o)| (TopicPartition::new("t", p), o));
    assert_eq!(found, BTreeMap::from(expected));
    // One ListOffsets per leader, with its own partitions; -2 asks for the earliest.
    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        BTreeMap::from([(1, vec![(0, -2), (2, -2)]), (2, vec![(1, -2)])])
    );
    assert_eq!(b0.sent(), [Metadata]);
}

#[tokio::test]
async fn not_leader_or_follower_causes_one_metadata_refresh() {
    let (mut b0, mut b1, mut b2) = (
        FakeNode::bind().await,
        FakeNode::bind().await,
        FakeNode::bind().await,
    );
    let brokers = [(0, b0.port), (1, b1.port), (2, b2.port)];
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    // Partition 0 moves from node 1 to node 2; partition 1 stays on node 2.
    b0.serve(move |r| {
        let leader = if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            1
        } else {
            2
        };
        metadata(r, &brokers, &[leader, 2])
    });
    b1.serve(|r| offsets(r, |_| (NOT_LEADER_OR_FOLLOWER, -1)));
    b2.serve(|r| offsets(r, |p| (0, 50 + i64::from(p))));
    let admin = client(&b0).await;

    let partitions = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    let found = admin
        .list_offsets(&partitions, OffsetSpec::Latest)
        .await
        .unwrap();

    assert_eq!(
        found,
        BTreeMap::from([(partitions[0].clone(), 50), (partitions[1].clone(), 51)])
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
    assert_eq!(b1.sent(), [ListOffsets]);
    assert_eq!(b2.sent(), [ListOffsets, ListOffsets]);
}

#[tokio::test]
async fn a_leader_still_wrong_after_the_refresh_is_an_error_with_its_code() {
    let (mut b0, mut b1) = (FakeNode::bind().await, FakeNode::bind().await);
    let brokers = [(0, b0.port), (1, b1.port)];
    b0.serve(move |r| metadata(r, &brokers, &[1]));
    b1.serve(|r| offsets(r, |_| (NOT_LEADER_OR_FOLLOWER, -1)));
    let admin = client(&b0).await;

    let error = admin
        .list_offsets(&[TopicPartition::new("t", 0)], OffsetSpec::Latest)
        .await
        .unwrap_err();

    assert_eq!(
        broker_code(&error),
        Some(("ListOffsets", NOT_LEADER_OR_FOLLOWER))
    );
    assert_eq!(b0.sent(), [Metadata, Metadata], "one refresh, no more");
    assert_eq!(b1.sent(), [ListOffsets, ListOffsets]);
}

#[tokio::test]
async fn an_offline_partition_fails_the_call_rather_than_being_left_out() {
    let (mut b0, mut b1) = (FakeNode::bind().await, FakeNode::bind().await);
    let brokers = [(0, b0.port), (1, b1.port)];
    b0.serve(move |r| metadata(r, &brokers, &[1, -1]));
    b1.serve(|r| offsets(r, |_| (0, 9)));
    let admin = client(&b0).await;

    let partitions = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    let error = admin
        .list_offsets(&partitions, OffsetSpec::Latest)
        .await
        .unwrap_err();

    assert_eq!(
        broker_code(&error),
        Some(("ListOffsets", LEADER_NOT_AVAILABLE))
    );
    assert!(error.to_string().contains("t-1"), "{error}");
    assert_eq!(b0.sent(), [Metadata, Metadata]);
    // Partition 0 was answered in the first round and not asked again.
    assert_eq!(b1.sent(), [ListOffsets]);
}

#[tokio::test]
async fn a_partition_that_does_not_exist_is_unknown() {
    let mut b0 = FakeNode::bind().await;
    let port = b0.port;
    b0.serve(move |r| metadata(r, &[(0, port)], &[0]));
    let admin = client(&b0).await;

    let error = admin
        .list_offsets(&[TopicPartition::new("t", 5)], OffsetSpec::Latest)
        .await
        .unwrap_err();

    assert_eq!(
        error.response_error(),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(b0.sent(), [Metadata]);
}
