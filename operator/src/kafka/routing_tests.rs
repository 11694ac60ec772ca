//! Routing of group calls in [`TcpAdminClient`] against scripted fake brokers: they
//! follow FindCoordinator, a moved coordinator or a lost connection is looked up again,
//! retries are bounded, and a single broker needs one connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, OffsetCommitRequest,
    OffsetCommitResponse,
};

use super::fake_answers::{
    broker_code, client, coordinator, described, fetched, metadata, offsets, text,
    COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
};
use super::fake_cluster::FakeNode;
use super::{KafkaAdmin, OffsetSpec, TopicPartition};

use ApiKey::{DescribeGroups, FindCoordinator, ListOffsets, Metadata, OffsetCommit, OffsetFetch};

async fn follows_find_coordinator_at(find_coordinator_max: i16) {
    let (mut b0, mut b1) = (FakeNode::bind().await, FakeNode::bind().await);
    b0.advertise(FindCoordinator, 0, find_coordinator_max);
    let brokers = [(0, b0.port), (1, b1.port)];
    let port1 = b1.port;
    b0.serve(move |r| match r.api() {
        FindCoordinator => {
            // The highest version both sides know; a panic here fails the call.
            assert_eq!(r.header.request_api_version, find_coordinator_max);
            coordinator(r, 1, port1, 0)
        }
        Metadata => metadata(r, &brokers, &[]),
        other => panic!("{other:?} sent to the bootstrap broker"),
    });
    b1.serve(|r| match r.api() {
        OffsetFetch => fetched(r, 42, 0),
        DescribeGroups => described(r, 0),
        other => panic!("{other:?} sent to the coordinator"),
    });
    let admin = client(&b0).await;

    let committed = admin.fetch_offsets("g").await.unwrap();
    assert_eq!(
        committed,
        BTreeMap::from([(TopicPartition::new("t", 0), 42)])
    );
    let group = admin.describe_group("g").await.unwrap();
    assert_eq!(group.state, "Empty");

    // One lookup (and one listing of the brokers); both calls on one connection to node 1.
    assert_eq!(b0.sent(), [FindCoordinator, Metadata]);
    assert_eq!(b1.sent(), [OffsetFetch, DescribeGroups]);
    assert_eq!((b0.connections(), b1.connections()), (1, 1));
}

#[tokio::test]
async fn a_group_call_follows_find_coordinator_to_the_second_broker() {
    follows_find_coordinator_at(4).await;
}

#[tokio::test]
async fn find_coordinator_below_v4_asks_for_one_key() {
    follows_find_coordinator_at(3).await;
}

#[tokio::test]
async fn not_coordinator_on_a_cached_coordinator_looks_it_up_again() {
    let (mut b0, mut b1, mut b2) = (
        FakeNode::bind().await,
        FakeNode::bind().await,
        FakeNode::bind().await,
    );
    let brokers = [(0, b0.port), (1, b1.port), (2, b2.port)];
    let (port1, port2) = (b1.port, b2.port);
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    // The coordinator moves from node 1 to node 2 after the first lookup.
    b0.serve(move |r| match r.api() {
        FindCoordinator if counted.fetch_add(1, Ordering::SeqCst) == 0 => {
            coordinator(r, 1, port1, 0)
        }
        FindCoordinator => coordinator(r, 2, port2, 0),
        Metadata => metadata(r, &brokers, &[]),
        other => panic!("{other:?} sent to the bootstrap broker"),
    });
    b1.serve(|r| match r.api() {
        DescribeGroups => described(r, 0),
        OffsetFetch => fetched(r, 0, NOT_COORDINATOR),
        other => panic!("{other:?} sent to node 1"),
    });
    b2.serve(|r| match r.api() {
        OffsetFetch => fetched(r, 7, 0),
        other => panic!("{other:?} sent to node 2"),
    });
    let admin = client(&b0).await;

    admin.describe_group("g").await.unwrap();
    let committed = admin.fetch_offsets("g").await.unwrap();

    assert_eq!(
        committed,
        BTreeMap::from([(TopicPartition::new("t", 0), 7)])
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
    assert_eq!(b1.sent(), [DescribeGroups, OffsetFetch]);
    assert_eq!(b2.sent(), [OffsetFetch]);
}

#[tokio::test]
async fn a_lost_connection_to_the_coordinator_is_made_again_after_a_new_lookup() {
    let (mut b0, mut b1) = (FakeNode::bind().await, FakeNode::bind().await);
    let brokers = [(0, b0.port), (1, b1.port)];
    let port1 = b1.port;
    b0.serve(move |r| match r.api() {
        FindCoordinator => coordinator(r, 1, port1, 0),
        Metadata => metadata(r, &brokers, &[]),
        other => panic!("{other:?} sent to the bootstrap broker"),
    });
    let commits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&commits);
    // The first commit finds the connection closed under it.
    b1.serve(move |r| {
        let asked = r.decode::<OffsetCommitRequest>();
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            return None;
        }
        let topics = asked
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                            })
                            .collect(),
                    )
            })
            .collect();
        r.answer::<OffsetCommitRequest>(&OffsetCommitResponse::default().with_topics(topics))
    });
    let admin = client(&b0).await;

    let targets = BTreeMap::from([(TopicPartition::new("t", 0), 5)]);
    admin.commit_offsets("g", &targets).await.unwrap();

    assert_eq!(commits.load(Ordering::SeqCst), 2);
    assert_eq!(b0.sent(), [FindCoordinator, Metadata, FindCoordinator]);
    assert_eq!(b1.sent(), [OffsetCommit, OffsetCommit]);
    assert_eq!(b1.connections(), 2);
}

#[tokio::test]
async fn bounded_retries_end_in_an_error_with_the_code_kept() {
    let (mut b0, mut b1) = (FakeNode::bind().await, FakeNode::bind().await);
    let brokers = [(0, b0.port), (1, b1.port)];
    let port1 = b1.port;
    b0.serve(move |r| match r.api() {
        FindCoordinator => coordinator(r, 1, port1, 0),
        Metadata => metadata(r, &brokers, &[]),
        other => panic!("{other:?} sent to the bootstrap broker"),
    });
    b1.serve(|r| described(r, NOT_COORDINATOR));
    let admin = client(&b0).await;

    let error = admin.describe_group("g").await.unwrap_err();

    assert_eq!(
        broker_code(&error),
        Some(("DescribeGroups", NOT_COORDINATOR))
    );
    let lookups = b0.sent().iter().filter(|a| **a == FindCoordinator).count();
    assert_eq!(lookups, 3, "one lookup per attempt: {:?}", b0.sent());
    assert_eq!(b1.sent(), [DescribeGroups; 3]);
}

#[tokio::test]
async fn a_coordinator_never_available_ends_in_find_coordinators_code() {
    let mut b0 = FakeNode::bind().await;
    b0.serve(|r| coordinator(r, 0, 0, COORDINATOR_NOT_AVAILABLE));
    let admin = client(&b0).await;

    let error = admin.fetch_offsets("g").await.unwrap_err();

    assert_eq!(
        broker_code(&error),
        Some(("FindCoordinator", COORDINATOR_NOT_AVAILABLE))
    );
    assert_eq!(b0.sent(), [FindCoordinator; 3]);
}

#[tokio::test]
async fn a_single_broker_serves_everything_on_the_bootstrap_connection() {
    let mut b0 = FakeNode::bind().await;
    let port = b0.port;
    // The broker advertises itself under another name than the bootstrap address, as a
    // pod's name differs from its Service's.
    b0.serve(move |r| match r.api() {
        FindCoordinator => {
            let find = r.decode::<FindCoordinatorRequest>();
            let coordinators = vec![Coordinator::default()
                .with_key(find.coordinator_keys[0].clone())
                .with_node_id(BrokerId(0))
                .with_host(text("localhost"))
                .with_port(port)];
            r.answer::<FindCoordinatorRequest>(
                &FindCoordinatorResponse::default().with_coordinators(coordinators),
            )
        }
        Metadata => metadata(r, &[(0, port)], &[0, 0]),
        OffsetFetch => fetched(r, 3, 0),
        ListOffsets => offsets(r, |p| (0, 10 + i64::from(p))),
        other => panic!("{other:?} not expected"),
    });
    let admin = client(&b0).await;

    let committed = admin.fetch_offsets("g").await.unwrap();
    let partitions = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    let ends = admin
        .list_offsets(&partitions, OffsetSpec::Latest)
        .await
        .unwrap();

    assert_eq!(committed[&partitions[0]], 3);
    assert_eq!(
        ends,
        BTreeMap::from([(partitions[0].clone(), 10), (partitions[1].clone(), 11)])
    );
    assert_eq!(
        b0.sent(),
        [
            FindCoordinator,
            Metadata,
            OffsetFetch,
            Metadata,
            ListOffsets
        ]
    );
    assert_eq!(
        b0.connections(),
        1,
        "no second connection to the same broker"
    );
}
