//! The reassignment calls of [`TcpAdminClient`] against a scripted fake broker: what is
//! sent, and how per-partition answers are read.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    DescribeLogDirsRequest, DescribeLogDirsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use kafka_protocol::ResponseError;

use super::fake_answers::{client, text};
use super::fake_cluster::FakeNode;
use super::{KafkaAdmin, Reassignment, TopicPartition};

async fn broker() -> FakeNode {
    let mut node = FakeNode::bind().await;
    node.advertise(ApiKey::AlterPartitionReassignments, 0, 1);
    node.advertise(ApiKey::ListPartitionReassignments, 0, 0);
    node.advertise(ApiKey::DescribeLogDirs, 1, 4);
    node.advertise(ApiKey::UnregisterBroker, 0, 0);
    node.advertise(ApiKey::ElectLeaders, 0, 2);
    node
}

#[tokio::test]
async fn reassignments_are_sent_by_topic_and_refusals_come_back_per_partition() {
    let mut b0 = broker().await;
    b0.serve(|r| match r.api() {
        ApiKey::AlterPartitionReassignments => {
            let request: AlterPartitionReassignmentsRequest = r.decode();
            assert_eq!(r.header.request_api_version, 1);
            assert!(request.allow_replication_factor_change);
            let sent: Vec<(String, i32, Option<Vec<i32>>)> = request
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (
                            t.name.as_str().to_string(),
                            p.partition_index,
                            p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                        )
                    })
                })
                .collect();
            assert_eq!(
                sent,
                [
                    ("a".to_string(), 0, Some(vec![3, 1])),
                    ("a".to_string(), 1, None),
                    ("b".to_string(), 0, Some(vec![4])),
                ]
            );
            let partition = |index, code: i16| {
                ReassignablePartitionResponse::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            };
            r.answer::<AlterPartitionReassignmentsRequest>(
                &AlterPartitionReassignmentsResponse::default().with_responses(vec![
                    ReassignableTopicResponse::default()
                        .with_name(text("a").into())
                        .with_partitions(vec![
                            partition(0, 0),
                            partition(1, ResponseError::NoReassignmentInProgress.code()),
                        ]),
                    ReassignableTopicResponse::default()
                        .with_name(text("b").into())
                        .with_partitions(vec![partition(0, 0)]),
                ]),
            )
        }
        other => panic!("{other:?} was not expected"),
    });
    let admin = client(&b0).await;
    let targets = BTreeMap::from([
        (TopicPartition::new("a", 0), Some(vec![3, 1])),
        (TopicPartition::new("a", 1), None),
        (TopicPartition::new("b", 0), Some(vec![4])),
    ]);
    let refusals = admin.alter_partition_reassignments(&targets).await.unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].0, TopicPartition::new("a", 1));
    assert_eq!(
        refusals[0].1.response_error(),
        Some(ResponseError::NoReassignmentInProgress)
    );
}

#[tokio::test]
async fn ongoing_reassignments_sizes_and_unregistering_are_read() {
    let mut b0 = broker().await;
    b0.serve(|r| match r.api() {
        ApiKey::ListPartitionReassignments => r.answer::<ListPartitionReassignmentsRequest>(
            &ListPartitionReassignmentsResponse::default().with_topics(vec![
                OngoingTopicReassignment::default()
                    .with_name(text("a").into())
                    .with_partitions(vec![OngoingPartitionReassignment::default()
                        .with_partition_index(2)
                        .with_replicas(vec![BrokerId(0), BrokerId(1), BrokerId(3)])
                        .with_adding_replicas(vec![BrokerId(3)])
                        .with_removing_replicas(vec![BrokerId(0)])]),
            ]),
        ),
        ApiKey::DescribeLogDirs => {
            let partition = |index, size, future| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(index)
                    .with_partition_size(size)
                    .with_is_future_key(future)
            };
            r.answer::<DescribeLogDirsRequest>(&DescribeLogDirsResponse::default().with_results(
                vec![DescribeLogDirsResult::default()
                    .with_log_dir(text("/data"))
                    .with_topics(vec![DescribeLogDirsTopic::default()
                        .with_name(text("a").into())
                        .with_partitions(vec![
                            partition(0, 100, false),
                            partition(1, 7, false),
                            partition(1, 5, true),
                        ])])],
            ))
        }
        ApiKey::UnregisterBroker => {
            let request: UnregisterBrokerRequest = r.decode();
            let code = if request.broker_id.0 == 4 {
                0
            } else {
                ResponseError::BrokerIdNotRegistered.code()
            };
            r.answer::<UnregisterBrokerRequest>(
                &UnregisterBrokerResponse::default().with_error_code(code),
            )
        }
        other => panic!("{other:?} was not expected"),
    });
    let admin = client(&b0).await;

    let ongoing = admin.list_partition_reassignments().await.unwrap();
    assert_eq!(
        ongoing,
        BTreeMap::from([(
            TopicPartition::new("a", 2),
            Reassignment {
                replicas: vec![0, 1, 3],
                adding: vec![3],
                removing: vec![0]
            }
        )])
    );
    let sizes = admin.describe_log_dirs().await.unwrap();
    assert_eq!(
        sizes,
        BTreeMap::from([
            (TopicPartition::new("a", 0), 100),
            (TopicPartition::new("a", 1), 7)
        ]),
        "a future replica (a move between directories) is not counted"
    );
    admin.unregister_broker(4).await.unwrap();
    let refused = admin.unregister_broker(3).await.unwrap_err();
    assert_eq!(
        refused.response_error(),
        Some(ResponseError::BrokerIdNotRegistered)
    );
}

#[tokio::test]
async fn a_preferred_election_that_is_not_needed_is_no_error() {
    let mut b0 = broker().await;
    b0.serve(|r| {
        let request: ElectLeadersRequest = r.decode();
        assert_eq!(r.header.request_api_version, 2);
        assert_eq!(request.election_type, 0, "preferred");
        let asked: Vec<(String, Vec<i32>)> = request
            .topic_partitions
            .unwrap()
            .iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions.clone()))
            .collect();
        assert_eq!(asked, [("a".to_string(), vec![0, 1])]);
        let result = |id, code: i16| {
            PartitionResult::default()
                .with_partition_id(id)
                .with_error_code(code)
        };
        r.answer::<ElectLeadersRequest>(
            &ElectLeadersResponse::default().with_replica_election_results(vec![
                ReplicaElectionResult::default()
                    .with_topic(text("a").into())
                    .with_partition_result(vec![
                        result(0, 0),
                        result(1, ResponseError::ElectionNotNeeded.code()),
                    ]),
            ]),
        )
    });
    let admin = client(&b0).await;
    admin
        .elect_preferred_leaders(&[TopicPartition::new("a", 0), TopicPartition::new("a", 1)])
        .await
        .unwrap();
    admin.elect_preferred_leaders(&[]).await.unwrap();
    assert_eq!(
        b0.sent(),
        [ApiKey::ElectLeaders],
        "nothing is sent for no partition"
    );
}
