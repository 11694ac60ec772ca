//! Topic configs reaching the log engine through the broker: DeleteRecords, retention by
//! size in the background, and compaction of a compacted topic.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteRecordsRequest, FetchRequest, ListOffsetsRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::net::TcpStream;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn create(st: &mut TcpStream, topic: &str, configs: &[(&str, &str)]) -> anyhow::Result<()> {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let r = call(
        st,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]),
        7,
    )
    .await?;
    anyhow::ensure!(
        r.topics[0].error_code == 0,
        "create: {:?}",
        r.topics[0].error_message
    );
    Ok(())
}

async fn produce(st: &mut TcpStream, topic: &str, key: &str, value: &str) -> anyhow::Result<i64> {
    let batch = common::plain_batch(
        &[(
            Some(Bytes::from(key.to_string())),
            Bytes::from(value.to_string()),
        )],
        1_700_000_000_000,
    )?;
    let r = call(
        st,
        &ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch))
                ])]),
        9,
    )
    .await?;
    let p = &r.responses[0].partition_responses[0];
    anyhow::ensure!(p.error_code == 0, "produce error {}", p.error_code);
    Ok(p.base_offset)
}

/// (error code, [(offset, key, value)]) from `offset`.
async fn fetch(
    st: &mut TcpStream,
    topic: &str,
    offset: i64,
) -> anyhow::Result<(i16, Vec<(i64, String, String)>)> {
    let r = call(
        st,
        &FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]),
        12,
    )
    .await?;
    let p = &r.responses[0].partitions[0];
    let mut out = Vec::new();
    if let Some(mut records) = p.records.clone() {
        for set in RecordBatchDecoder::decode_all(&mut records)? {
            for rec in set.records {
                let text = |b: Option<Bytes>| {
                    b.map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                out.push((rec.offset, text(rec.key), text(rec.value)));
            }
        }
    }
    Ok((p.error_code, out))
}

async fn earliest(st: &mut TcpStream, topic: &str) -> anyhow::Result<i64> {
    let r = call(
        st,
        &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-2)])]),
        6,
    )
    .await?;
    Ok(r.topics[0].partitions[0].offset)
}

#[tokio::test]
async fn delete_records_moves_the_log_start_offset() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    create(&mut st, "dr", &[]).await?;
    for i in 0..5 {
        produce(&mut st, "dr", "k", &format!("v{i}")).await?;
    }
    let request = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(s("dr")))
        .with_partitions(vec![DeleteRecordsPartition::default().with_offset(3)])]);
    let r = call(&mut st, &request, 2).await?;
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].low_watermark
        ),
        (0, 3)
    );
    assert_eq!(earliest(&mut st, "dr").await?, 3);
    assert_eq!(
        fetch(&mut st, "dr", 0).await?.0,
        1,
        "OFFSET_OUT_OF_RANGE below the log start"
    );
    let (code, records) = fetch(&mut st, "dr", 3).await?;
    assert_eq!(code, 0);
    assert_eq!(records.first().map(|r| r.0), Some(3));
    // Past the high watermark is refused.
    let beyond = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(s("dr")))
        .with_partitions(vec![DeleteRecordsPartition::default().with_offset(99)])]);
    assert_eq!(
        call(&mut st, &beyond, 2).await?.topics[0].partitions[0].error_code,
        1
    );
    broker.stop().await
}

#[tokio::test]
async fn retention_bytes_deletes_old_segments_in_the_background() -> anyhow::Result<()> {
    let broker = TestBroker::start(|c| c.log_retention_check_interval_ms = 50).await?;
    let mut st = broker.connect().await?;
    create(
        &mut st,
        "rb",
        &[("segment.bytes", "300"), ("retention.bytes", "600")],
    )
    .await?;
    for i in 0..30 {
        produce(&mut st, "rb", "k", &format!("value-{i:04}")).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = loop {
        let start = earliest(&mut st, "rb").await?;
        if start > 0 {
            break start;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "retention never deleted a segment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        fetch(&mut st, "rb", 0).await?.0,
        1,
        "consumers below the start get OFFSET_OUT_OF_RANGE"
    );
    let (code, records) = fetch(&mut st, "rb", start).await?;
    assert_eq!(code, 0);
    assert_eq!(
        records.last().map(|r| r.2.as_str()),
        Some("value-0029"),
        "the newest records stay"
    );
    broker.stop().await
}

#[tokio::test]
async fn a_compacted_topic_keeps_the_latest_value_per_key() -> anyhow::Result<()> {
    let broker = TestBroker::start(|c| c.log_cleaner_backoff_ms = 50).await?;
    let mut st = broker.connect().await?;
    create(
        &mut st,
        "cp",
        &[("cleanup.policy", "compact"), ("segment.bytes", "300")],
    )
    .await?;
    let keys = ["a", "b", "c"];
    let mut produced = 0;
    for round in 0..10 {
        for k in keys {
            produce(&mut st, "cp", k, &format!("{k}{round}")).await?;
            produced += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let (code, records) = fetch(&mut st, "cp", 0).await?;
        assert_eq!(code, 0);
        if records.len() < produced {
            break records;
        }
        anyhow::ensure!(Instant::now() < deadline, "the cleaner never compacted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Offsets only grow, and each key's newest value is still the last one for that key.
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    for k in keys {
        let last = records.iter().rev().find(|r| r.1 == k).map(|r| r.2.clone());
        assert_eq!(last, Some(format!("{k}9")));
    }
    broker.stop().await
}
