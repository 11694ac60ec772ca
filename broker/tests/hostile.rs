//! Hostile and malformed input over real TCP: the broker answers with an error or closes
//! that one connection, and keeps serving everyone else with bounded memory.

mod common;

use common::{call, correlation_and_code, is_closed, read_response, TestBroker};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
use tokio::io::AsyncWriteExt;

const UNSUPPORTED_VERSION: i16 = 35;

fn raw_header(key: i16, version: i16, correlation: i32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&key.to_be_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&correlation.to_be_bytes());
    v.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    v
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[tokio::test]
async fn unknown_api_key_gets_unsupported_version() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    s.write_all(&framed(&raw_header(9999, 0, 77))).await?;
    let body = read_response(&mut s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))?;
    assert_eq!(correlation_and_code(body), (77, UNSUPPORTED_VERSION));
    // The same connection keeps working.
    let r = call(&mut s, &ApiVersionsRequest::default(), 0).await?;
    assert_eq!(r.error_code, 0);
    broker.stop().await
}

#[tokio::test]
async fn unsupported_version_gets_unsupported_version() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    // Produce v99.
    s.write_all(&framed(&raw_header(0, 99, 78))).await?;
    let body = read_response(&mut s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))?;
    assert_eq!(correlation_and_code(body), (78, UNSUPPORTED_VERSION));
    // Produce v0 (older than served).
    let frame = common::request_frame(&ProduceRequest::default(), 3, 79)?;
    let mut bytes = frame.to_vec();
    bytes[6..8].copy_from_slice(&0i16.to_be_bytes());
    s.write_all(&bytes).await?;
    let body = read_response(&mut s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))?;
    assert_eq!(correlation_and_code(body), (79, UNSUPPORTED_VERSION));
    broker.stop().await
}

#[tokio::test]
async fn api_versions_too_new_falls_back_to_v0_with_the_list() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    s.write_all(&framed(&raw_header(18, 99, 5))).await?;
    let mut body = read_response(&mut s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))?;
    use kafka_protocol::protocol::Decodable;
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut body, 0)?;
    assert_eq!(header.correlation_id, 5);
    let r = kafka_protocol::messages::ApiVersionsResponse::decode(&mut body, 0)?;
    assert_eq!(r.error_code, UNSUPPORTED_VERSION);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version >= 3));
    broker.stop().await
}

#[tokio::test]
async fn negative_and_oversize_lengths_close_only_that_connection() -> anyhow::Result<()> {
    let broker = TestBroker::start(|c| c.socket_request_max_bytes = 1 << 20).await?;
    for prefix in [-1i32, i32::MIN, (1 << 20) + 1, i32::MAX] {
        let mut s = broker.connect().await?;
        s.write_all(&prefix.to_be_bytes()).await?;
        assert!(
            is_closed(&mut s).await,
            "prefix {prefix} did not close the connection"
        );
        common::still_serving(&broker).await?;
    }
    // Exactly the maximum is accepted as a frame (it is garbage, so it is then closed).
    let mut s = broker.connect().await?;
    let mut big = vec![0u8; 1 << 20];
    big[..8].copy_from_slice(&[0, 18, 0, 0, 0, 0, 0, 9]);
    s.write_all(&framed(&big)).await?;
    let body = read_response(&mut s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))?;
    assert_eq!(correlation_and_code(body).0, 9);
    broker.stop().await
}

#[tokio::test]
async fn garbage_and_truncated_frames_close_only_that_connection() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    // A frame too short for a header.
    let mut s = broker.connect().await?;
    s.write_all(&framed(&[1, 2, 3])).await?;
    assert!(is_closed(&mut s).await);
    // A valid header followed by a body that is not a Metadata request.
    let mut s = broker.connect().await?;
    let mut body = raw_header(3, 12, 11);
    body.extend_from_slice(&[0xff; 7]);
    s.write_all(&framed(&body)).await?;
    assert!(is_closed(&mut s).await);
    // A size prefix promising more than is sent, then the client goes away.
    let mut s = broker.connect().await?;
    s.write_all(&100i32.to_be_bytes()).await?;
    s.write_all(&[0u8; 10]).await?;
    drop(s);
    // Random bytes.
    let mut s = broker.connect().await?;
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.write_all(&noise).await?;
    drop(s);
    common::still_serving(&broker).await?;
    broker.stop().await
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_idle_timeout() -> anyhow::Result<()> {
    let broker = TestBroker::start(|c| c.connections_max_idle_ms = 300).await?;
    let mut silent = broker.connect().await?;
    common::still_serving(&broker).await?;
    assert!(
        is_closed(&mut silent).await,
        "idle connection was not closed"
    );
    broker.stop().await
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    let mut batch = Vec::new();
    for (i, version) in [(1, 3i16), (2, 0), (3, 3), (4, 1)] {
        if i == 2 {
            batch.extend_from_slice(&common::request_frame(
                &MetadataRequest::default().with_topics(None),
                12,
                i,
            )?);
        } else {
            batch.extend_from_slice(&common::request_frame(
                &ApiVersionsRequest::default(),
                version,
                i,
            )?);
        }
    }
    s.write_all(&batch).await?;
    for expected in 1..=4 {
        let body = read_response(&mut s)
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(correlation_and_code(body).0, expected);
    }
    broker.stop().await
}

#[tokio::test]
async fn oversize_prefixes_do_not_grow_memory() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let before = resident_bytes();
    for _ in 0..200 {
        let mut s = broker.connect().await?;
        // 100 MiB announced, 16 bytes sent, then gone: nothing may be allocated for it.
        s.write_all(&(100 * 1024 * 1024i32).to_be_bytes()).await?;
        s.write_all(&[0u8; 16]).await?;
        drop(s);
    }
    common::still_serving(&broker).await?;
    let after = resident_bytes();
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "resident memory grew from {before} to {after} bytes"
    );
    broker.stop().await
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_idle_timeout() -> anyhow::Result<()> {
    use bytes::Bytes;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let broker = TestBroker::start(|c| {
        c.connections_max_idle_ms = 500;
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await?;
    let metrics = broker
        .metrics_addr
        .ok_or_else(|| anyhow::anyhow!("no metrics endpoint"))?;
    let topic = TopicName(StrBytes::from_static_str("big"));
    let mut s = broker.connect().await?;
    let created = call(
        &mut s,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic.clone())
            .with_num_partitions(1)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    anyhow::ensure!(created.topics[0].error_code == 0, "create failed");
    // One batch of a million incompressible bytes (under max.message.bytes).
    let mut value = vec![0u8; 1_000_000];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut value {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let batch = common::plain_batch(&[(None, Bytes::from(value))], 1_700_000_000_000)?;
    let produced = call(
        &mut s,
        &ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch))
                ])]),
        9,
    )
    .await?;
    anyhow::ensure!(produced.responses[0].partition_responses[0].error_code == 0);

    // 64 pipelined fetches of that batch, never read: far more than the socket
    // buffers hold, so the broker's writer stalls on this client.
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(8 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic)
            .with_partitions(vec![FetchPartition::default()
                .with_partition_max_bytes(8 << 20)
                .with_fetch_offset(0)])]);
    let mut frames = Vec::new();
    for correlation in 0..64 {
        frames.extend_from_slice(&common::request_frame(&fetch, 12, correlation)?);
    }
    s.write_all(&frames).await?;

    // The stalled connection is closed within connections.max.idle.ms (plus scheduling),
    // though the client keeps its socket open; only the scrapes' own connections remain.
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let text = common::scrape(metrics).await?;
        if common::sample(&text, "runnel_connections_active") == Some(0.0) {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the stalled connection is still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(is_closed(&mut s).await, "the client was not disconnected");
    common::still_serving(&broker).await?;
    broker.stop().await
}
