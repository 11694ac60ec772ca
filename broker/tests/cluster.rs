//! Three in-process brokers forming one cluster: requests for a partition or a group that
//! another broker owns get Kafka's redirect codes, exactly.

mod common;

use std::time::{Duration, Instant};

use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const TOPIC: &str = "owned";
const NOT_LEADER: i16 = ResponseError::NotLeaderOrFollower.code();
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
const UNKNOWN_EPOCH: i16 = ResponseError::UnknownLeaderEpoch.code();

fn fetch_in_epoch(partition: i32, current_leader_epoch: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current_leader_epoch)
                .with_partition_max_bytes(1 << 20)])])
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn produce(partition: i32, batch: bytes::Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

async fn three_brokers() -> anyhow::Result<Vec<TestBroker>> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{i}@127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let start = |id: usize| {
        let voters = voters.clone();
        TestBroker::start(move |c| {
            c.node_id = id as i32;
            c.controller_listen = Some(([127, 0, 0, 1], ports[id]).into());
            c.controller_quorum_voters = Some(voters);
            c.broker_heartbeat_interval_ms = 200;
            c.broker_session_timeout_ms = 2000;
        })
    };
    // Each waits for a majority before it serves: start them together.
    let (a, b, c) = tokio::try_join!(start(0), start(1), start(2))?;
    Ok(vec![a, b, c])
}

/// Leaders of `TOPIC`'s partitions as `broker` answers Metadata, once it knows the topic.
async fn leaders(broker: &TestBroker) -> anyhow::Result<Vec<i32>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = broker.connect().await?;
        let metadata = call(&mut s, &MetadataRequest::default().with_topics(None), 9).await?;
        if let Some(t) = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))
        {
            let mut partitions: Vec<_> = t.partitions.iter().collect();
            partitions.sort_by_key(|p| p.partition_index);
            return Ok(partitions.iter().map(|p| p.leader_id.0).collect());
        }
        anyhow::ensure!(Instant::now() < deadline, "{TOPIC} never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_and_groups_owned_elsewhere_get_redirect_codes() -> anyhow::Result<()> {
    let brokers = three_brokers().await?;
    let mut s = brokers[0].connect().await?;
    let created = call(
        &mut s,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(3)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000),
        5,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    let mut by_broker = Vec::new();
    for b in &brokers {
        by_broker.push(leaders(b).await?);
    }
    assert!(
        by_broker.iter().all(|l| *l == by_broker[0]),
        "{by_broker:?}"
    );
    let leaders = &by_broker[0];
    let mut sorted = leaders.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2], "one partition led by each broker");

    for (partition, &leader) in leaders.iter().enumerate() {
        let partition = partition as i32;
        let other = &brokers[((leader + 1) % 3) as usize];
        let mut s = other.connect().await?;
        let batch = common::plain_batch(&[(None, bytes::Bytes::from_static(b"x"))], 0)?;
        let produced = call(&mut s, &produce(partition, batch.clone()), 9).await?;
        assert_eq!(
            produced.responses[0].partition_responses[0].error_code,
            NOT_LEADER
        );
        let fetched = call(
            &mut s,
            &FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_partition_max_bytes(1 << 20)])]),
            12,
        )
        .await?;
        assert_eq!(fetched.responses[0].partitions[0].error_code, NOT_LEADER);
        let listed = call(
            &mut s,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(-1)])]),
            6,
        )
        .await?;
        assert_eq!(listed.topics[0].partitions[0].error_code, NOT_LEADER);
        // The leader itself takes the write.
        let mut s = brokers[leader as usize].connect().await?;
        let produced = call(&mut s, &produce(partition, batch), 9).await?;
        let answer = &produced.responses[0].partition_responses[0];
        assert_eq!((answer.error_code, answer.base_offset), (0, 0));
        // KIP-320: the leader is in epoch 0; a client that believes in a later epoch is
        // told this broker does not know it yet, and one in the current epoch reads.
        for (epoch, code, records) in [(1, UNKNOWN_EPOCH, false), (0, 0, true), (-1, 0, true)] {
            let fetched = call(&mut s, &fetch_in_epoch(partition, epoch), 12).await?;
            let p = &fetched.responses[0].partitions[0];
            assert_eq!(p.error_code, code, "current leader epoch {epoch}");
            assert_eq!(p.records.as_ref().is_some_and(|r| !r.is_empty()), records);
        }
    }

    // Group requests go to the group's coordinator; the others say NOT_COORDINATOR.
    let group = StrBytes::from_static_str("owned-group");
    let found = call(
        &mut brokers[0].connect().await?,
        &FindCoordinatorRequest::default().with_key(group.clone()),
        3,
    )
    .await?;
    assert_eq!(found.error_code, 0, "{found:?}");
    let coordinator = found.node_id.0;
    let other = &brokers[((coordinator + 1) % 3) as usize];
    let mut s = other.connect().await?;
    let joined = call(
        &mut s,
        &JoinGroupRequest::default()
            .with_group_id(group.clone().into())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer")),
        7,
    )
    .await?;
    assert_eq!(joined.error_code, NOT_COORDINATOR);
    let beat = call(
        &mut s,
        &HeartbeatRequest::default()
            .with_group_id(group.clone().into())
            .with_member_id(StrBytes::from_static_str("m"))
            .with_generation_id(1),
        4,
    )
    .await?;
    assert_eq!(beat.error_code, NOT_COORDINATOR);
    let offsets = call(
        &mut s,
        &OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default().with_group_id(group.clone().into())
        ]),
        8,
    )
    .await?;
    assert_eq!(offsets.groups[0].error_code, NOT_COORDINATOR);
    // And the coordinator answers the same group, once it has applied the offsets topic
    // that FindCoordinator created through another broker.
    let mut s = brokers[coordinator as usize].connect().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let offsets = call(
            &mut s,
            &OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default().with_group_id(group.clone().into())
            ]),
            8,
        )
        .await?;
        let code = offsets.groups[0].error_code;
        if code == 0 {
            break;
        }
        assert_eq!(code, NOT_COORDINATOR);
        assert!(
            Instant::now() < deadline,
            "the coordinator never took the group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for b in brokers {
        b.stop().await?;
    }
    Ok(())
}
