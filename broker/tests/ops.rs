//! Operability of the real binary: /metrics after a known produce and fetch, gRPC health
//! from SERVING to NOT_SERVING on SIGTERM, recovery progress on the admin service, clean
//! versus unclean restarts, and configuration errors.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{call, sample, scrape, BrokerProcess};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, GroupId, OffsetCommitRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_broker::ops::proto::broker_admin_client::BrokerAdminClient;
use runnel_broker::ops::proto::{GetStateRequest, State};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const DEADLINE: Duration = Duration::from_secs(20);

impl BrokerProcess {
    async fn admin(&self) -> anyhow::Result<BrokerAdminClient<tonic::transport::Channel>> {
        let start = Instant::now();
        loop {
            match BrokerAdminClient::connect(format!("http://{}", self.health)).await {
                Ok(c) => return Ok(c),
                Err(e) if start.elapsed() > DEADLINE => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn wait_running(&self) -> anyhow::Result<runnel_broker::ops::proto::BrokerState> {
        let mut admin = self.admin().await?;
        let start = Instant::now();
        loop {
            let state = admin.get_state(GetStateRequest {}).await?.into_inner();
            if state.state == State::Running as i32 {
                return Ok(state);
            }
            anyhow::ensure!(start.elapsed() < DEADLINE, "broker never reached RUNNING");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

async fn create_topic(kafka: SocketAddr, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(kafka).await?;
    let r = call(
        &mut s,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    anyhow::ensure!(r.topics[0].error_code == 0, "create failed");
    Ok(())
}

#[tokio::test]
async fn metrics_count_a_known_produce_and_fetch() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::spawn(dir.path(), &[])?;
    broker.wait_running().await?;
    create_topic(broker.kafka, "m", 1).await?;
    let values: Vec<(Option<bytes::Bytes>, bytes::Bytes)> = (0..10)
        .map(|_| (None, bytes::Bytes::from(vec![b'x'; 100])))
        .collect();
    let batch = common::plain_batch(&values, 1_700_000_000_000)?;
    let mut s = TcpStream::connect(broker.kafka).await?;
    let produced = call(
        &mut s,
        &ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("m"))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch.clone()))
                ])]),
        9,
    )
    .await?;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let fetched = call(
        &mut s,
        &FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("m"))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]),
        11,
    )
    .await?;
    assert_eq!(
        fetched.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(batch.len())
    );

    let text = scrape(broker.metrics).await?;
    let bytes = batch.len() as f64;
    assert_eq!(
        sample(&text, "runnel_topic_records_in_total{topic=\"m\"}"),
        Some(10.0)
    );
    assert_eq!(
        sample(&text, "runnel_topic_bytes_in_total{topic=\"m\"}"),
        Some(bytes)
    );
    assert_eq!(
        sample(&text, "runnel_topic_bytes_out_total{topic=\"m\"}"),
        Some(bytes)
    );
    assert_eq!(
        sample(&text, "runnel_requests_total{api=\"Produce\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "runnel_requests_total{api=\"Fetch\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "runnel_request_duration_seconds_count{api=\"Produce\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "runnel_partition_high_watermark{partition=\"0\",topic=\"m\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            "runnel_partition_log_start_offset{partition=\"0\",topic=\"m\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "runnel_partition_size_bytes{partition=\"0\",topic=\"m\"}"
        ),
        Some(bytes)
    );
    assert_eq!(sample(&text, "runnel_partitions"), Some(1.0));
    assert_eq!(
        sample(&text, "runnel_under_replicated_partitions"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "runnel_log_flush_duration_seconds_count"),
        Some(1.0),
        "acks=all fsynced once"
    );
    assert!(sample(&text, "runnel_connections_active").is_some_and(|c| c >= 1.0));

    // A request error and a committed offset make the remaining families appear; then
    // every metric the shipped Grafana dashboard queries must be exported.
    s.write_all(&[0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .await?;
    let _ = common::read_response(&mut s).await?;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("m"))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(4)
            ])]);
    assert_eq!(
        call(&mut s, &commit, 8).await?.topics[0].partitions[0].error_code,
        0
    );
    let text = scrape(broker.metrics).await?;
    assert_eq!(
        sample(
            &text,
            "runnel_consumer_group_lag{group=\"g\",partition=\"0\",topic=\"m\"}"
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(&text, "runnel_consumer_group_lag_sum{group=\"g\"}"),
        Some(6.0)
    );
    assert_eq!(
        sample(&text, "runnel_request_errors_total{api=\"Unknown\"}"),
        Some(1.0)
    );
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/dashboards/runnel-broker.json"
    ))?;
    let mut queried: Vec<&str> = dashboard
        .match_indices("runnel_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| *n != "runnel_broker")
        .collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 10, "dashboard queries {queried:?}");
    for metric in queried {
        let family = metric.trim_end_matches("_bucket");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {metric}, which is not exported"
        );
    }
    Ok(())
}

#[tokio::test]
async fn health_goes_from_serving_to_not_serving_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::spawn(dir.path(), &["--shutdown-grace-ms", "2000"])?;
    broker.wait_running().await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", broker.health))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(DEADLINE, watch.message())
        .await??
        .map(|m| m.status);
    assert_eq!(first, Some(ServingStatus::Serving as i32));
    broker.signal("-TERM")?;
    let next = tokio::time::timeout(DEADLINE, watch.message())
        .await??
        .map(|m| m.status);
    assert_eq!(next, Some(ServingStatus::NotServing as i32));
    assert!(broker.wait_exit()?.success(), "SIGTERM is a clean exit");
    Ok(())
}

#[tokio::test]
async fn admin_reports_recovery_progress_and_clean_or_unclean_starts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::spawn(dir.path(), &[])?;
    let state = broker.wait_running().await?;
    assert!(
        !state.clean_start,
        "a fresh data dir is not a clean restart"
    );
    create_topic(broker.kafka, "r", 12).await?;
    broker.signal("-TERM")?;
    broker.wait_exit()?;

    // A slow start (the test knob pauses after each partition): progress is visible.
    let mut broker = BrokerProcess::spawn(dir.path(), &["--debug-recovery-delay-ms", "100"])?;
    let mut admin = broker.admin().await?;
    let start = Instant::now();
    let mut seen_partial = false;
    loop {
        let s = admin.get_state(GetStateRequest {}).await?.into_inner();
        if s.state == State::Recovering as i32
            && s.partitions_total == 12
            && (1..12).contains(&s.partitions_recovered)
        {
            seen_partial = true;
        }
        if s.state == State::Running as i32 {
            assert_eq!((s.partitions_recovered, s.partitions_total), (12, 12));
            assert!(s.clean_start, "the previous stop was SIGTERM");
            assert_eq!(s.segments_scanned, 0, "a clean restart scans no segment");
            break;
        }
        anyhow::ensure!(start.elapsed() < DEADLINE, "never RUNNING");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen_partial, "recovery progress was never reported");

    // kill -9: the next start is not clean.
    broker.signal("-KILL")?;
    broker.wait_exit()?;
    let broker = BrokerProcess::spawn(dir.path(), &[])?;
    let state = broker.wait_running().await?;
    assert!(!state.clean_start, "after kill -9 the start must recover");
    assert!(
        state.segments_scanned >= 12,
        "after kill -9 every partition's active segment is scanned, got {}",
        state.segments_scanned
    );
    Ok(())
}

#[test]
fn bad_configuration_refuses_to_start_with_key_value_and_rule() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str]| -> anyhow::Result<(bool, String)> {
        let out = Command::new(env!("CARGO_BIN_EXE_runnel-broker"))
            .args([
                "--data-dir",
                &dir.path().to_string_lossy(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (ok, err) = run(&["--num-partitions", "0"])?;
    assert!(
        !ok && err.contains("--num-partitions")
            && err.contains("'0'")
            && err.contains("1..=100000"),
        "{err}"
    );
    let (ok, err) = run(&["--log-retention-ms", "-7"])?;
    assert!(
        !ok && err.contains("log.retention.ms") && err.contains("-7") && err.contains("from -1"),
        "{err}"
    );
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, "\"socket.request.max.bytes\" = 10\n")?;
    let (ok, err) = run(&["--config", &file.to_string_lossy()])?;
    assert!(
        !ok && err.contains("socket.request.max.bytes")
            && err.contains("\"10\"")
            && err.contains("1024"),
        "{err}"
    );
    let (ok, err) = run(&["--advertised-listener", "no-port"])?;
    assert!(
        !ok && err.contains("no-port") && err.contains("HOST:PORT"),
        "{err}"
    );
    Ok(())
}
