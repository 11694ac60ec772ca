//! Every advertised API version answers: for each route and each version in its range a
//! representative request gets a response that decodes at that version, and the
//! data-carrying APIs succeed. This catches response fields that a version cannot carry.

mod common;

use bytes::Bytes;
use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use runnel_broker::dispatch::ROUTES;
use tokio::net::TcpStream;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn one_record() -> anyhow::Result<Bytes> {
    common::plain_batch(&[(None, Bytes::from_static(b"v"))], 1_700_000_000_000)
}

/// Sends `request` at `version`; the response must arrive and decode.
async fn answer<R: Request>(
    stream: &mut TcpStream,
    request: R,
    version: i16,
) -> anyhow::Result<R::Response> {
    call(stream, &request, version)
        .await
        .map_err(|e| anyhow::anyhow!("{} v{version}: {e}", std::any::type_name::<R>()))
}

#[tokio::test]
async fn every_advertised_version_answers() -> anyhow::Result<()> {
    let broker = TestBroker::start(|c| c.group_initial_rebalance_delay_ms = 0).await?;
    let mut st = broker.connect().await?;
    let created = answer(
        &mut st,
        CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic("v"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    let mut partitions = 1;
    let mut checked = 0;
    for route in ROUTES {
        for v in route.min..=route.max {
            checked += 1;
            let st = &mut st;
            match route.key {
                ApiKey::Produce => {
                    let r = answer(
                        st,
                        ProduceRequest::default()
                            .with_transactional_id(None)
                            .with_acks(1)
                            .with_timeout_ms(1000)
                            .with_topic_data(vec![TopicProduceData::default()
                                .with_name(topic("v"))
                                .with_partition_data(vec![PartitionProduceData::default()
                                    .with_records(Some(one_record()?))])]),
                        v,
                    )
                    .await?;
                    assert_eq!(
                        r.responses[0].partition_responses[0].error_code, 0,
                        "Produce v{v}"
                    );
                }
                ApiKey::Fetch => {
                    let t = FetchTopic::default()
                        .with_topic(topic("v"))
                        .with_topic_id(topic_id)
                        .with_partitions(vec![FetchPartition::default()
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)]);
                    let r = answer(
                        st,
                        FetchRequest::default()
                            .with_max_bytes(1 << 20)
                            .with_topics(vec![t]),
                        v,
                    )
                    .await?;
                    let p = &r.responses[0].partitions[0];
                    assert_eq!(p.error_code, 0, "Fetch v{v}");
                    assert!(
                        p.records.as_ref().is_some_and(|r| !r.is_empty()),
                        "Fetch v{v} returned no records"
                    );
                }
                ApiKey::ListOffsets => {
                    for ts in [-2, -1, 1_600_000_000_000] {
                        let r = answer(
                            st,
                            ListOffsetsRequest::default().with_topics(vec![
                                ListOffsetsTopic::default()
                                    .with_name(topic("v"))
                                    .with_partitions(vec![
                                        ListOffsetsPartition::default().with_timestamp(ts)
                                    ]),
                            ]),
                            v,
                        )
                        .await?;
                        assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
                    }
                }
                ApiKey::Metadata => {
                    let all = if v == 0 { Some(vec![]) } else { None };
                    let r = answer(st, MetadataRequest::default().with_topics(all), v).await?;
                    assert!(
                        r.topics
                            .iter()
                            .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "v")),
                        "Metadata v{v}"
                    );
                    let named = MetadataRequestTopic::default()
                        .with_name(Some(topic(&format!("auto-{v}"))));
                    let r = answer(
                        st,
                        MetadataRequest::default().with_topics(Some(vec![named])),
                        v,
                    )
                    .await?;
                    assert_eq!(r.topics[0].error_code, 0, "Metadata v{v} auto-create");
                }
                ApiKey::OffsetCommit => {
                    let t = OffsetCommitRequestTopic::default()
                        .with_name(topic("v"))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default().with_committed_offset(1)
                        ]);
                    let r = answer(
                        st,
                        OffsetCommitRequest::default()
                            .with_group_id(GroupId(s("vg")))
                            .with_generation_id_or_member_epoch(-1)
                            .with_topics(vec![t]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
                }
                ApiKey::OffsetFetch => {
                    let request = if v >= 8 {
                        OffsetFetchRequest::default().with_groups(vec![
                            OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(s("vg")))
                                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                                    .with_name(topic("v"))
                                    .with_partition_indexes(vec![0])])),
                        ])
                    } else {
                        OffsetFetchRequest::default()
                            .with_group_id(GroupId(s("vg")))
                            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                                .with_name(topic("v"))
                                .with_partition_indexes(vec![0])]))
                    };
                    let r = answer(st, request, v).await?;
                    let offset = if v >= 8 {
                        r.groups[0].topics[0].partitions[0].committed_offset
                    } else {
                        r.topics[0].partitions[0].committed_offset
                    };
                    assert_eq!(offset, 1, "OffsetFetch v{v}");
                }
                ApiKey::FindCoordinator => {
                    let request = if v >= 4 {
                        FindCoordinatorRequest::default().with_coordinator_keys(vec![s("vg")])
                    } else {
                        FindCoordinatorRequest::default().with_key(s("vg"))
                    };
                    let r = answer(st, request, v).await?;
                    let code = if v >= 4 {
                        r.coordinators[0].error_code
                    } else {
                        r.error_code
                    };
                    assert_eq!(code, 0, "FindCoordinator v{v}");
                }
                ApiKey::JoinGroup => {
                    let protocol = JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(&[0, 0]));
                    let request = JoinGroupRequest::default()
                        .with_group_id(GroupId(s(&format!("join-{v}"))))
                        .with_session_timeout_ms(10_000)
                        .with_rebalance_timeout_ms(if v >= 1 { 10_000 } else { -1 })
                        .with_group_instance_id(None)
                        .with_protocol_type(s("consumer"))
                        .with_protocols(vec![protocol]);
                    let r = answer(st, request, v).await?;
                    let expected = if v >= 4 { 79 } else { 0 };
                    assert_eq!(r.error_code, expected, "JoinGroup v{v}");
                }
                ApiKey::Heartbeat => {
                    let r = answer(
                        st,
                        HeartbeatRequest::default()
                            .with_group_id(GroupId(s("vg")))
                            .with_member_id(s("nobody"))
                            .with_group_instance_id(None),
                        v,
                    )
                    .await?;
                    assert_eq!(r.error_code, 25, "Heartbeat v{v}");
                }
                ApiKey::LeaveGroup => {
                    let request = if v >= 3 {
                        LeaveGroupRequest::default()
                            .with_group_id(GroupId(s("vg")))
                            .with_members(vec![leave_group_request::MemberIdentity::default()
                                .with_member_id(s("nobody"))])
                    } else {
                        LeaveGroupRequest::default()
                            .with_group_id(GroupId(s("vg")))
                            .with_member_id(s("nobody"))
                    };
                    answer(st, request, v).await?;
                }
                ApiKey::SyncGroup => {
                    let r = answer(
                        st,
                        SyncGroupRequest::default()
                            .with_group_id(GroupId(s("vg")))
                            .with_member_id(s("nobody"))
                            .with_group_instance_id(None)
                            .with_protocol_type(None)
                            .with_protocol_name(None),
                        v,
                    )
                    .await?;
                    assert_eq!(r.error_code, 25, "SyncGroup v{v}");
                }
                ApiKey::DescribeGroups => {
                    let r = answer(
                        st,
                        DescribeGroupsRequest::default()
                            .with_groups(vec![GroupId(s("vg")), GroupId(s("join-0"))]),
                        v,
                    )
                    .await?;
                    assert_eq!(
                        r.groups[1].group_state.as_str(),
                        "CompletingRebalance",
                        "DescribeGroups v{v}"
                    );
                }
                ApiKey::ListGroups => {
                    let r = answer(st, ListGroupsRequest::default(), v).await?;
                    assert!(
                        r.groups.iter().any(|g| g.group_id.0.as_str() == "vg"),
                        "ListGroups v{v}"
                    );
                }
                ApiKey::ApiVersions => {
                    let r = answer(st, ApiVersionsRequest::default(), v).await?;
                    assert_eq!(r.api_keys.len(), ROUTES.len(), "ApiVersions v{v}");
                }
                ApiKey::CreateTopics => {
                    let r = answer(
                        st,
                        CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                            .with_name(topic(&format!("ct-{v}")))
                            .with_num_partitions(1)
                            .with_replication_factor(1)]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
                }
                ApiKey::DeleteTopics => {
                    let name = format!("ct-{}", v + 1);
                    let request = if v >= 6 {
                        DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default(
                        )
                        .with_name(Some(topic(&name)))])
                    } else {
                        DeleteTopicsRequest::default().with_topic_names(vec![topic(&name)])
                    };
                    let r = answer(st, request, v).await?;
                    assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
                }
                ApiKey::DeleteRecords => {
                    let t = delete_records_request::DeleteRecordsTopic::default()
                        .with_name(topic("v"))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_offset(0),
                        ]);
                    let r =
                        answer(st, DeleteRecordsRequest::default().with_topics(vec![t]), v).await?;
                    assert_eq!(
                        r.topics[0].partitions[0].error_code, 0,
                        "DeleteRecords v{v}"
                    );
                }
                ApiKey::InitProducerId => {
                    let r = answer(
                        st,
                        InitProducerIdRequest::default()
                            .with_transactional_id(None)
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1),
                        v,
                    )
                    .await?;
                    assert_eq!(r.error_code, 0, "InitProducerId v{v}");
                }
                ApiKey::DescribeConfigs => {
                    let r = answer(
                        st,
                        DescribeConfigsRequest::default().with_resources(vec![
                            DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(s("v"))
                                .with_configuration_keys(None),
                        ]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
                    assert!(r.results[0]
                        .configs
                        .iter()
                        .any(|c| c.name.as_str() == "retention.ms"));
                }
                ApiKey::AlterConfigs => {
                    let c = alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000")));
                    let r = answer(
                        st,
                        AlterConfigsRequest::default().with_resources(vec![
                            alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(s("v"))
                                .with_configs(vec![c]),
                        ]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
                }
                ApiKey::CreatePartitions => {
                    partitions += 1;
                    let r = answer(
                        st,
                        CreatePartitionsRequest::default().with_topics(vec![
                            create_partitions_request::CreatePartitionsTopic::default()
                                .with_name(topic("v"))
                                .with_count(partitions)
                                .with_assignments(None),
                        ]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
                }
                ApiKey::IncrementalAlterConfigs => {
                    let c = incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("2000")));
                    let r = answer(
                        st,
                        IncrementalAlterConfigsRequest::default().with_resources(vec![
                            incremental_alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(s("v"))
                                .with_configs(vec![c]),
                        ]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
                }
                ApiKey::DeleteGroups => {
                    let r = answer(
                        st,
                        DeleteGroupsRequest::default()
                            .with_groups_names(vec![GroupId(s("no-such-group"))]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.results[0].error_code, 69, "DeleteGroups v{v}");
                }
                ApiKey::OffsetDelete => {
                    let t = offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic("v"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default(),
                        ]);
                    let r = answer(
                        st,
                        OffsetDeleteRequest::default()
                            .with_group_id(GroupId(s("del")))
                            .with_topics(vec![t]),
                        v,
                    )
                    .await?;
                    assert_eq!(r.error_code, 69, "OffsetDelete v{v}");
                }
                ApiKey::DescribeCluster => {
                    let r = answer(st, DescribeClusterRequest::default(), v).await?;
                    assert_eq!(
                        (r.error_code, r.brokers.len()),
                        (0, 1),
                        "DescribeCluster v{v}"
                    );
                }
                ApiKey::OffsetForLeaderEpoch => {
                    use kafka_protocol::messages::offset_for_leader_epoch_request::{
                        OffsetForLeaderPartition, OffsetForLeaderTopic,
                    };
                    let r = answer(
                        st,
                        OffsetForLeaderEpochRequest::default()
                            .with_replica_id(BrokerId(-1))
                            .with_topics(vec![OffsetForLeaderTopic::default()
                                .with_topic(topic("v"))
                                .with_partitions(vec![OffsetForLeaderPartition::default()
                                    .with_partition(0)
                                    .with_current_leader_epoch(0)
                                    .with_leader_epoch(0)])]),
                        v,
                    )
                    .await?;
                    let p = &r.topics[0].partitions[0];
                    assert_eq!(p.error_code, 0, "OffsetForLeaderEpoch v{v}");
                    // Epoch 0 ends at the log end offset: records were produced above.
                    assert_eq!(p.leader_epoch, 0, "OffsetForLeaderEpoch v{v}");
                    assert!(p.end_offset > 0, "OffsetForLeaderEpoch v{v}: {p:?}");
                }
                ApiKey::ElectLeaders => {
                    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
                    let r = answer(
                        st,
                        ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                            TopicPartitions::default()
                                .with_topic(topic("v"))
                                .with_partitions(vec![0]),
                        ])),
                        v,
                    )
                    .await?;
                    let p = &r.replica_election_results[0].partition_result[0];
                    // The one broker leads already.
                    assert_eq!(p.error_code, 84, "ElectLeaders v{v}: {p:?}");
                }
                ApiKey::AlterPartitionReassignments => {
                    use kafka_protocol::messages::alter_partition_reassignments_request::{
                        ReassignablePartition, ReassignableTopic,
                    };
                    let r = answer(
                        st,
                        AlterPartitionReassignmentsRequest::default()
                            .with_allow_replication_factor_change(true)
                            .with_topics(vec![ReassignableTopic::default()
                                .with_name(topic("v"))
                                .with_partitions(vec![
                                    ReassignablePartition::default()
                                        .with_partition_index(0)
                                        .with_replicas(Some(vec![BrokerId(0)])),
                                    ReassignablePartition::default().with_partition_index(0),
                                ])]),
                        v,
                    )
                    .await?;
                    let codes: Vec<i16> = r.responses[0]
                        .partitions
                        .iter()
                        .map(|p| p.error_code)
                        .collect();
                    // A move to where it is completes at once; nothing is left to cancel.
                    assert_eq!(
                        codes,
                        vec![0, 85],
                        "AlterPartitionReassignments v{v}: {r:?}"
                    );
                }
                ApiKey::ListPartitionReassignments => {
                    let r = answer(st, ListPartitionReassignmentsRequest::default(), v).await?;
                    assert_eq!((r.error_code, r.topics.len()), (0, 0), "{r:?}");
                }
                ApiKey::UnregisterBroker => {
                    let r = answer(
                        st,
                        UnregisterBrokerRequest::default().with_broker_id(BrokerId(7)),
                        v,
                    )
                    .await?;
                    assert_eq!(r.error_code, 102, "UnregisterBroker v{v}: {r:?}");
                }
                ApiKey::DescribeLogDirs => {
                    let r =
                        answer(st, DescribeLogDirsRequest::default().with_topics(None), v).await?;
                    let [dir] = r.results.as_slice() else {
                        anyhow::bail!("DescribeLogDirs v{v}: {r:?}");
                    };
                    assert_eq!(dir.error_code, 0, "DescribeLogDirs v{v}");
                    let size: i64 = dir
                        .topics
                        .iter()
                        .filter(|t| t.name.as_str() == "v")
                        .flat_map(|t| &t.partitions)
                        .map(|p| p.partition_size)
                        .sum();
                    // Records were produced above.
                    assert!(size > 0, "DescribeLogDirs v{v}: {r:?}");
                    assert_eq!(dir.total_bytes > 0, v >= 4, "DescribeLogDirs v{v}");
                }
                other => anyhow::bail!("route {other:?} has no case in this test"),
            }
        }
    }
    assert!(checked > 100, "only {checked} versions checked");
    broker.stop().await
}
