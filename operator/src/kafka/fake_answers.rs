//! Answers of the scripted fake brokers (`fake_cluster.rs`) for the routing tests, each
//! at the version of the request it answers.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_client::ClientConfig;

use super::fake_cluster::{FakeNode, Received};
use super::{KafkaError, TcpAdminClient};

/// Kafka's NOT_COORDINATOR.
pub const NOT_COORDINATOR: i16 = 16;
/// Kafka's COORDINATOR_NOT_AVAILABLE.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// Kafka's NOT_LEADER_OR_FOLLOWER.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Kafka's LEADER_NOT_AVAILABLE.
pub const LEADER_NOT_AVAILABLE: i16 = 5;

/// A wire string.
pub fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A client bootstrapped from `bootstrap`.
pub async fn client(bootstrap: &FakeNode) -> TcpAdminClient {
    TcpAdminClient::connect(&bootstrap.address, &ClientConfig::new("routing-test"))
        .await
        .unwrap()
}

/// FindCoordinator's answer naming node `id` on `127.0.0.1:port` (or `code`), at the
/// request's version.
pub fn coordinator(request: &Received, id: i32, port: i32, code: i16) -> Option<Bytes> {
    let find = request.decode::<FindCoordinatorRequest>();
    assert_eq!(find.key_type, 0, "a group key");
    let (id, port) = if code == 0 { (id, port) } else { (-1, -1) };
    let response = if request.header.request_api_version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            find.coordinator_keys
                .iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(id))
                        .with_host(text("127.0.0.1"))
                        .with_port(port)
                        .with_error_code(code)
                })
                .collect(),
        )
    } else {
        assert!(!find.key.is_empty(), "v0-3 carry the key alone");
        FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(text("127.0.0.1"))
            .with_port(port)
            .with_error_code(code)
    };
    request.answer::<FindCoordinatorRequest>(&response)
}

/// Metadata listing `brokers` (id, port) and topic `t` with partitions led by `leaders`.
pub fn metadata(request: &Received, brokers: &[(i32, i32)], leaders: &[i32]) -> Option<Bytes> {
    let partitions = leaders
        .iter()
        .zip(0..)
        .map(|(leader, index)| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(*leader))
                .with_error_code(if *leader < 0 { LEADER_NOT_AVAILABLE } else { 0 })
        })
        .collect();
    let asked = request
        .decode::<MetadataRequest>()
        .topics
        .unwrap_or_default();
    let topics = if asked.is_empty() {
        Vec::new()
    } else {
        vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(text("t"))))
            .with_partitions(partitions)]
    };
    let response = MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|(id, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(text("127.0.0.1"))
                        .with_port(*port)
                })
                .collect(),
        )
        .with_topics(topics);
    request.answer::<MetadataRequest>(&response)
}

/// OffsetFetch's answer: `t-0` at `offset`, or the top-level `code`.
pub fn fetched(request: &Received, offset: i64, code: i16) -> Option<Bytes> {
    assert_eq!(
        request.decode::<OffsetFetchRequest>().group_id.as_str(),
        "g"
    );
    let response = OffsetFetchResponse::default()
        .with_error_code(code)
        .with_topics(if code == 0 {
            vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![OffsetFetchResponsePartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]
        } else {
            Vec::new()
        });
    request.answer::<OffsetFetchRequest>(&response)
}

/// DescribeGroups' answer: group `g` Empty, or `code`.
pub fn described(request: &Received, code: i16) -> Option<Bytes> {
    let group = DescribedGroup::default()
        .with_group_id(GroupId(text("g")))
        .with_group_state(text("Empty"))
        .with_error_code(code);
    request.answer::<DescribeGroupsRequest>(
        &DescribeGroupsResponse::default().with_groups(vec![group]),
    )
}

/// ListOffsets' answer: each partition asked at `offset(partition)`, or its error code.
pub fn offsets(request: &Received, answer: impl Fn(i32) -> (i16, i64)) -> Option<Bytes> {
    let asked = request.decode::<ListOffsetsRequest>();
    let topics = asked
        .topics
        .iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let (code, offset) = answer(p.partition_index);
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_offset(offset)
                        })
                        .collect(),
                )
        })
        .collect();
    request.answer::<ListOffsetsRequest>(&ListOffsetsResponse::default().with_topics(topics))
}

/// The partitions a ListOffsets asks for, with their timestamps.
pub fn asked_partitions(request: &Received) -> Vec<(i32, i64)> {
    let asked = request.decode::<ListOffsetsRequest>();
    asked
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.timestamp))
        })
        .collect()
}

/// The API and Kafka error code of a broker's answer, if `error` is one.
pub fn broker_code(error: &KafkaError) -> Option<(&'static str, i16)> {
    match error {
        KafkaError::Broker { api, code, .. } => Some((api, *code)),
        _ => None,
    }
}
