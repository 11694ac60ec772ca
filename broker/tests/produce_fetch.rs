//! Produce, Fetch, ListOffsets and idempotence at the protocol level, over real TCP.

mod common;

use bytes::{Bytes, BytesMut};
use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::net::TcpStream;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn batch(
    values: &[&str],
    producer: (i64, i16, i32),
    timestamp: i64,
    compression: Compression,
) -> anyhow::Result<Bytes> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer.0 >= 0 {
                producer.2 + i as i32
            } else {
                -1
            },
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

async fn create(s: &mut TcpStream, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let r = call(
        s,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    anyhow::ensure!(
        r.topics[0].error_code == 0,
        "create failed: {:?}",
        r.topics[0].error_message
    );
    Ok(())
}

/// Produces one batch; returns (error code, base offset).
async fn produce(
    s: &mut TcpStream,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> anyhow::Result<(i16, i64)> {
    let r = call(
        s,
        &ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]),
        9,
    )
    .await?;
    let p = &r.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

/// Fetches from `offset`; returns (error code, high watermark, decoded (offset, value) pairs).
async fn fetch(
    s: &mut TcpStream,
    topic: &str,
    offset: i64,
    wait_ms: i32,
) -> anyhow::Result<(i16, i64, Vec<(i64, String)>)> {
    let r = call(
        s,
        &FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
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
                let value = rec
                    .value
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                out.push((rec.offset, value));
            }
        }
    }
    Ok((p.error_code, p.high_watermark, out))
}

#[tokio::test]
async fn produce_then_fetch_returns_the_records_with_offsets() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    create(&mut s, "t", 1).await?;
    let no_producer = (-1, -1, -1);
    assert_eq!(
        produce(
            &mut s,
            "t",
            0,
            batch(&["a", "b"], no_producer, 1000, Compression::None)?,
            1
        )
        .await?,
        (0, 0)
    );
    assert_eq!(
        produce(
            &mut s,
            "t",
            0,
            batch(&["c"], no_producer, 2000, Compression::Gzip)?,
            -1
        )
        .await?,
        (0, 2)
    );
    assert_eq!(
        produce(
            &mut s,
            "t",
            0,
            batch(&["d", "e"], no_producer, 3000, Compression::Zstd)?,
            1
        )
        .await?,
        (0, 3)
    );
    let (code, hw, records) = fetch(&mut s, "t", 0, 0).await?;
    assert_eq!((code, hw), (0, 5));
    let expect: Vec<(i64, String)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.to_string()))
        .collect();
    assert_eq!(records, expect);
    // From the middle of a batch: the whole batch comes back, the client skips to 4.
    let (_, _, records) = fetch(&mut s, "t", 4, 0).await?;
    assert_eq!(records.last(), Some(&(4, "e".to_string())));
    // Beyond the end.
    let (code, _, _) = fetch(&mut s, "t", 6, 0).await?;
    assert_eq!(code, 1, "OFFSET_OUT_OF_RANGE");
    // Unknown partition.
    let (code, _) = produce(
        &mut s,
        "t",
        7,
        batch(&["x"], no_producer, 0, Compression::None)?,
        1,
    )
    .await?;
    assert_eq!(code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    // ListOffsets: earliest, latest, by timestamp.
    let list = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_timestamp(ts)
                ])])
    };
    for (ts, offset) in [
        (-2, 0),
        (-1, 5),
        (1001, 1),
        (2000, 2),
        (2500, 3),
        (9999, -1),
    ] {
        let r = call(&mut s, &list(ts), 6).await?;
        assert_eq!(r.topics[0].partitions[0].offset, offset, "timestamp {ts}");
    }
    broker.stop().await
}

#[tokio::test]
async fn acks_zero_gets_no_response_but_is_written() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    create(&mut s, "z", 1).await?;
    use tokio::io::AsyncWriteExt;
    let request =
        ProduceRequest::default()
            .with_acks(0)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("z"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_records(Some(batch(
                        &["q"],
                        (-1, -1, -1),
                        0,
                        Compression::None,
                    )?))])]);
    s.write_all(&common::request_frame(&request, 9, 1)?).await?;
    // The next response on this connection belongs to the next request.
    let (code, hw, records) = fetch(&mut s, "z", 0, 0).await?;
    assert_eq!((code, hw, records), (0, 1, vec![(0, "q".to_string())]));
    broker.stop().await
}

#[tokio::test]
async fn idempotent_retries_are_deduplicated_across_restarts() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    create(&mut s, "idem", 1).await?;
    let init = call(
        &mut s,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_timeout_ms(60000),
        4,
    )
    .await?;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    let first = batch(&["one", "two"], (pid, 0, 0), 0, Compression::None)?;
    assert_eq!(produce(&mut s, "idem", 0, first.clone(), -1).await?, (0, 0));
    // The same batch again (a retry): acknowledged with its original offset, not written.
    assert_eq!(produce(&mut s, "idem", 0, first.clone(), -1).await?, (0, 0));
    assert_eq!(
        produce(
            &mut s,
            "idem",
            0,
            batch(&["three"], (pid, 0, 2), 0, Compression::None)?,
            -1
        )
        .await?,
        (0, 2)
    );
    // A gap in the sequence.
    let (code, _) = produce(
        &mut s,
        "idem",
        0,
        batch(&["gap"], (pid, 0, 9), 0, Compression::None)?,
        -1,
    )
    .await?;
    assert_eq!(code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    drop(s);

    // Producer state and data survive a restart; a new producer id is never reused.
    let dir = broker.stop_keeping_data().await?;
    let broker = TestBroker::start_in(dir, |_| {}).await?;
    let mut s = broker.connect().await?;
    assert_eq!(
        produce(
            &mut s,
            "idem",
            0,
            batch(&["three"], (pid, 0, 2), 0, Compression::None)?,
            -1
        )
        .await?,
        (0, 2)
    );
    let (_, hw, records) = fetch(&mut s, "idem", 0, 0).await?;
    assert_eq!(hw, 3);
    assert_eq!(
        records.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    let again = call(
        &mut s,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    )
    .await?;
    assert!(
        again.producer_id.0 > pid,
        "producer id {} reused after restart",
        again.producer_id.0
    );
    broker.stop().await
}

#[tokio::test]
async fn a_long_poll_fetch_returns_when_data_arrives() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    create(&mut s, "lp", 1).await?;
    let addr = broker.addr;
    let waiter = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await?;
        fetch(&mut s, "lp", 0, 30_000).await
    });
    // Produce only once the fetch is parked (bounded wait: the fetch cannot return earlier
    // with data, since there is none).
    let started = std::time::Instant::now();
    tokio::task::yield_now().await;
    assert_eq!(
        produce(
            &mut s,
            "lp",
            0,
            batch(&["late"], (-1, -1, -1), 0, Compression::None)?,
            1
        )
        .await?,
        (0, 0)
    );
    let (code, _, records) = tokio::time::timeout(common::WAIT, waiter).await???;
    assert_eq!((code, records), (0, vec![(0, "late".to_string())]));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "fetch waited for its full max_wait"
    );
    broker.stop().await
}
