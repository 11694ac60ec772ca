//! A failing disk under the broker binary (the hidden `--debug-fail-fsync-after-file`
//! test hook): an acks=all produce whose fsync fails is answered KAFKA_STORAGE_ERROR,
//! never success; the broker stops with a non-zero status; restarted on a healthy disk
//! it holds every record it acknowledged before the fault.

mod common;

use bytes::Bytes;
use common::{call, BrokerProcess};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use tokio::net::TcpStream;

const TOPIC: &str = "disk";

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// (error code, base offset) of an acks=all produce of one record `value`.
async fn produce_acks_all(st: &mut TcpStream, value: &str) -> anyhow::Result<(i16, i64)> {
    let batch = common::plain_batch(&[(None, Bytes::from(value.to_string()))], 1_700_000_000_000)?;
    let r = call(
        st,
        &ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name())
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch))
                ])]),
        9,
    )
    .await?;
    let p = &r.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

/// Every (offset, value) of the partition.
async fn fetch_all(st: &mut TcpStream) -> anyhow::Result<Vec<(i64, String)>> {
    let r = call(
        st,
        &FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name())
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
        12,
    )
    .await?;
    let p = &r.responses[0].partitions[0];
    anyhow::ensure!(p.error_code == 0, "fetch error {}", p.error_code);
    let mut out = Vec::new();
    if let Some(mut records) = p.records.clone() {
        for set in RecordBatchDecoder::decode_all(&mut records)? {
            for rec in set.records {
                let value = rec.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                out.push((rec.offset, value.unwrap_or_default()));
            }
        }
    }
    Ok(out)
}

#[tokio::test]
async fn a_failed_fsync_answers_storage_error_stops_the_broker_and_loses_nothing_acknowledged(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let trigger = dir.path().join("fail-fsync");
    let flag = trigger.to_string_lossy().into_owned();
    let mut broker = BrokerProcess::spawn(&data, &["--debug-fail-fsync-after-file", &flag])?;
    let mut st = broker.connect().await?;
    let created = call(
        &mut st,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name())
            .with_num_partitions(1)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    anyhow::ensure!(created.topics[0].error_code == 0, "create failed");
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let value = format!("before-{i}");
        let (code, offset) = produce_acks_all(&mut st, &value).await?;
        anyhow::ensure!(code == 0, "produce {i}: error {code}");
        acknowledged.push((offset, value));
    }

    std::fs::write(&trigger, "")?;
    let (code, _) = produce_acks_all(&mut st, "during").await?;
    assert_eq!(code, ResponseError::KafkaStorageError.code());
    let status = broker.wait_exit()?;
    assert!(!status.success(), "the broker exits non-zero: {status}");

    std::fs::remove_file(&trigger)?;
    let broker = BrokerProcess::spawn(&data, &["--debug-fail-fsync-after-file", &flag])?;
    let mut st = broker.connect().await?;
    let stored = fetch_all(&mut st).await?;
    assert!(stored.len() >= acknowledged.len(), "{stored:?}");
    assert_eq!(stored[..acknowledged.len()], acknowledged[..]);
    // Healthy again: acks=all works.
    let (code, _) = produce_acks_all(&mut st, "after").await?;
    assert_eq!(code, 0);
    Ok(())
}
