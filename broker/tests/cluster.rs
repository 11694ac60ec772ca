//! Three in-process brokers forming one cluster: requests for a partition or a group that
//! another broker owns get Kafka's redirect codes, exactly; OffsetForLeaderEpoch answers
//! across a leader restart (a new leader epoch); the admin service's CanRestart and
//! CaughtUp follow the ISR.

mod common;

use std::time::{Duration, Instant};

use common::{call, free_port, start_three, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest,
    OffsetForLeaderEpochRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_broker::ops::proto::broker_admin_client::BrokerAdminClient;
use runnel_broker::ops::proto::{CanRestartRequest, CanRestartResponse, CaughtUpRequest};
use runnel_broker::BrokerConfig;

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

/// The settings of broker `id` of the cluster whose controllers listen on `ports`.
fn member(id: usize, ports: [u16; 3]) -> impl FnOnce(&mut BrokerConfig) {
    common::cluster_member(id, ports)
}

/// Three brokers forming a cluster, and their controller ports.
async fn three_brokers() -> anyhow::Result<(Vec<TestBroker>, [u16; 3])> {
    let ports = [free_port()?, free_port()?, free_port()?];
    Ok((start_three(|id| member(id, ports)).await?, ports))
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
    let (brokers, _) = three_brokers().await?;
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

/// OffsetForLeaderEpoch for `leader_epoch` of `TOPIC`-0 from a client that believes
/// `current_leader_epoch` current: (error code, leader epoch, end offset).
async fn end_offset(
    broker: &TestBroker,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> anyhow::Result<(i16, i32, i64)> {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch)])]);
    let r = call(&mut broker.connect().await?, &request, 4).await?;
    let p = &r.topics[0].partitions[0];
    Ok((p.error_code, p.leader_epoch, p.end_offset))
}

/// The leader epoch of `TOPIC`-0 once `broker` sees `leader` lead it in an epoch above
/// `above`.
async fn leader_epoch_above(broker: &TestBroker, leader: i32, above: i32) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = broker.connect().await?;
        let metadata = call(&mut s, &MetadataRequest::default().with_topics(None), 9).await?;
        let partition = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0));
        if let Some(p) = partition.filter(|p| p.leader_id.0 == leader && p.leader_epoch > above) {
            return Ok(p.leader_epoch);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{leader} never led in a new epoch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_answers_offset_for_leader_epoch_across_a_restart() -> anyhow::Result<()> {
    const FENCED: i16 = ResponseError::FencedLeaderEpoch.code();
    const UNDEFINED: (i16, i32, i64) = (0, -1, -1);
    let (mut brokers, ports) = three_brokers().await?;
    let created = call(
        &mut brokers[0].connect().await?,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000),
        5,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    let leader = leaders(&brokers[0]).await?[0];
    let id = leader as usize;
    let other = (id + 1) % 3;
    leaders(&brokers[id]).await?;
    leaders(&brokers[other]).await?;
    let batch = common::plain_batch(&[(None, bytes::Bytes::from_static(b"x"))], 0)?;
    let produced = call(
        &mut brokers[id].connect().await?,
        &produce(0, batch.clone()),
        9,
    )
    .await?;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    // Epoch 0: it ends at the log end; a later one is unknown to the leader.
    assert_eq!(end_offset(&brokers[id], 0, 0).await?, (0, 0, 1));
    assert_eq!(end_offset(&brokers[id], -1, 1).await?, UNDEFINED);
    assert_eq!(end_offset(&brokers[id], 1, 0).await?.0, UNKNOWN_EPOCH);
    assert_eq!(end_offset(&brokers[other], 0, 0).await?.0, NOT_LEADER);

    // The leader restarts: it leads again, in a new leader epoch.
    let dir = brokers.remove(id).stop_keeping_data().await?;
    brokers.insert(id, TestBroker::start_in(dir, member(id, ports)).await?);
    let epoch = leader_epoch_above(&brokers[id], leader, 0).await?;
    // Nothing written in the new epoch yet: it starts (and ends) at the log end, as on
    // Kafka, whose leader records its epoch when it takes over.
    assert_eq!(end_offset(&brokers[id], epoch, epoch).await?, (0, epoch, 1));
    assert_eq!(end_offset(&brokers[id], epoch, 0).await?, (0, 0, 1));
    let produced = call(&mut brokers[id].connect().await?, &produce(0, batch), 9).await?;
    let answer = &produced.responses[0].partition_responses[0];
    assert_eq!((answer.error_code, answer.base_offset), (0, 1));
    // Epoch 0 ends where the new epoch's first batch starts; so do the epochs between,
    // in which nothing was written.
    assert_eq!(end_offset(&brokers[id], epoch, 0).await?, (0, 0, 1));
    assert_eq!(end_offset(&brokers[id], epoch, epoch - 1).await?, (0, 0, 1));
    assert_eq!(end_offset(&brokers[id], epoch, epoch).await?, (0, epoch, 2));
    assert_eq!(end_offset(&brokers[id], -1, epoch + 1).await?, UNDEFINED);
    // KIP-320: a client of the old epoch is fenced, one ahead of the leader is told so.
    assert_eq!(end_offset(&brokers[id], 0, 0).await?.0, FENCED);
    assert_eq!(
        end_offset(&brokers[id], epoch + 1, 0).await?.0,
        UNKNOWN_EPOCH
    );
    leader_epoch_above(&brokers[other], leader, 0).await?;
    assert_eq!(end_offset(&brokers[other], epoch, 0).await?.0, NOT_LEADER);

    for b in brokers {
        b.stop().await?;
    }
    Ok(())
}

/// Broker `id` of the cluster, with its admin service on a port of its own.
fn member_with_admin(id: usize, ports: [u16; 3]) -> impl FnOnce(&mut BrokerConfig) {
    let member = member(id, ports);
    move |c| {
        member(c);
        c.health_listen = Some(([127, 0, 0, 1], 0).into());
    }
}

async fn admin(
    broker: &TestBroker,
) -> anyhow::Result<BrokerAdminClient<tonic::transport::Channel>> {
    let addr = broker
        .health_addr
        .ok_or_else(|| anyhow::anyhow!("no admin endpoint"))?;
    Ok(BrokerAdminClient::connect(format!("http://{addr}")).await?)
}

async fn can_restart(broker: &TestBroker) -> anyhow::Result<CanRestartResponse> {
    Ok(admin(broker)
        .await?
        .can_restart(CanRestartRequest {})
        .await?
        .into_inner())
}

async fn caught_up(broker: &TestBroker) -> anyhow::Result<(bool, Vec<String>)> {
    let answer = admin(broker)
        .await?
        .caught_up(CaughtUpRequest {})
        .await?
        .into_inner();
    Ok((answer.caught_up, answer.lagging_partitions))
}

/// The ISR of `TOPIC`-0 as `broker` answers Metadata, sorted.
async fn isr(broker: &TestBroker) -> anyhow::Result<Vec<i32>> {
    let mut s = broker.connect().await?;
    let metadata = call(&mut s, &MetadataRequest::default().with_topics(None), 9).await?;
    let mut isr: Vec<i32> = metadata
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))
        .flat_map(|t| &t.partitions)
        .filter(|p| p.partition_index == 0)
        .flat_map(|p| p.isr_nodes.iter().map(|n| n.0))
        .collect();
    isr.sort_unstable();
    Ok(isr)
}

/// Polls `check` every 50 ms until it holds, for at most 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn can_restart_and_caught_up_follow_the_isr() -> anyhow::Result<()> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let mut brokers = start_three(|id| member_with_admin(id, ports)).await?;
    let created = call(
        &mut brokers[0].connect().await?,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(3)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_value(Some(StrBytes::from_static_str("2")))])])
            .with_timeout_ms(10_000),
        5,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    for b in &brokers {
        eventually("a full ISR", || async { Ok(isr(b).await? == [0, 1, 2]) }).await?;
    }
    // Three in sync, two needed: any one broker may restart, and every one is caught up.
    for b in &brokers {
        let answer = can_restart(b).await?;
        assert!(answer.safe, "{:?}", answer.reasons);
        assert_eq!(caught_up(b).await?, (true, vec![]));
    }

    // Broker 2 stops: the ISR is down to two, so neither of the others may stop now.
    let dir = brokers.remove(2).stop_keeping_data().await?;
    for b in &brokers {
        eventually("the ISR without broker 2", || async {
            Ok(isr(b).await? == [0, 1])
        })
        .await?;
    }
    for b in &brokers {
        let answer = can_restart(b).await?;
        assert!(!answer.safe, "{answer:?}");
        assert_eq!(answer.reasons.len(), 1, "{answer:?}");
        assert!(
            answer.reasons[0].starts_with(&format!("{TOPIC}-0: stopping this broker leaves 1")),
            "{answer:?}"
        );
        assert_eq!(caught_up(b).await?, (true, vec![]));
    }

    // It comes back and follows: CaughtUp turns true only with it back in the ISR, and
    // then the others may restart again.
    brokers.push(TestBroker::start_in(dir, member_with_admin(2, ports)).await?);
    eventually("broker 2 caught up", || async {
        let (up, lagging) = caught_up(&brokers[2]).await?;
        // Behind, it names the partition it has not caught up on.
        assert!(
            up || lagging.is_empty() || lagging == [format!("{TOPIC}-0")],
            "{lagging:?}"
        );
        Ok(up)
    })
    .await?;
    assert_eq!(isr(&brokers[2]).await?, [0, 1, 2]);
    for b in &brokers {
        eventually("CanRestart safe again", || async {
            Ok(can_restart(b).await?.safe)
        })
        .await?;
    }

    for b in brokers {
        b.stop().await?;
    }
    Ok(())
}
