//! OffsetForLeaderEpoch over TCP on a single broker: where epoch 0 ends as records are
//! produced, UNDEFINED for epochs the leader cannot place, unknown partitions. (The
//! KIP-320 checks of `current_leader_epoch` need a cluster: see `cluster.rs`.)

mod common;

use bytes::Bytes;
use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, OffsetForLeaderEpochRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::net::TcpStream;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// (error code, leader epoch, end offset) for `leader_epoch` of `topic`-`partition`.
async fn end_offset(
    s: &mut TcpStream,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
    version: i16,
) -> anyhow::Result<(i16, i32, i64)> {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(leader_epoch)])]);
    let r = call(s, &request, version).await?;
    anyhow::ensure!(
        r.topics.len() == 1 && r.topics[0].partitions.len() == 1,
        "{r:?}"
    );
    let p = &r.topics[0].partitions[0];
    anyhow::ensure!(p.partition == partition, "{r:?}");
    Ok((p.error_code, p.leader_epoch, p.end_offset))
}

#[tokio::test]
async fn epoch_zero_ends_at_the_log_end_and_later_epochs_are_undefined() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    let created = call(
        &mut s,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name("e"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0);
    const UNDEFINED: (i16, i32, i64) = (0, -1, -1);
    for version in 2..=4 {
        // An empty log: the leader's epoch 0 starts (and ends) at 0, as on Kafka.
        assert_eq!(end_offset(&mut s, "e", 0, 0, version).await?, (0, 0, 0));
    }
    let batch = common::plain_batch(
        &[
            (None, Bytes::from_static(b"a")),
            (None, Bytes::from_static(b"b")),
            (None, Bytes::from_static(b"c")),
        ],
        1_700_000_000_000,
    )?;
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("e"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    for expected_base in [0, 3] {
        let produced = call(&mut s, &produce, 9).await?;
        let answer = &produced.responses[0].partition_responses[0];
        assert_eq!((answer.error_code, answer.base_offset), (0, expected_base));
    }
    for version in 2..=4 {
        // The current epoch ends at the log end offset.
        assert_eq!(end_offset(&mut s, "e", 0, 0, version).await?, (0, 0, 6));
        // An epoch above the leader's, or none at all: UNDEFINED, with no error.
        assert_eq!(end_offset(&mut s, "e", 0, 1, version).await?, UNDEFINED);
        assert_eq!(end_offset(&mut s, "e", 0, -1, version).await?, UNDEFINED);
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            end_offset(&mut s, "e", 1, 0, version).await?,
            (unknown, -1, -1)
        );
        assert_eq!(
            end_offset(&mut s, "nope", 0, 0, version).await?,
            (unknown, -1, -1)
        );
    }
    broker.stop().await
}
