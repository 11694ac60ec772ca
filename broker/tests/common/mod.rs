//! A broker started in-process on 127.0.0.1:0 with a temporary data dir, the broker
//! binary as a child process, and calls on raw sockets (framed by `runnel_client::frame`)
//! for tests that need exact bytes on the wire.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::{Request, StrBytes};
use runnel_broker::{Broker, BrokerConfig};
use runnel_client::{frame, FrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running in-process broker.
pub struct TestBroker {
    pub addr: SocketAddr,
    /// The `/metrics` endpoint, when the config asked for one.
    pub metrics_addr: Option<SocketAddr>,
    /// The gRPC health and admin endpoint, when the config asked for one.
    pub health_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start(adjust: impl FnOnce(&mut BrokerConfig)) -> anyhow::Result<Self> {
        Self::start_in(tempfile::tempdir()?, adjust).await
    }

    /// Starts a broker on an existing data dir (a restart).
    pub async fn start_in(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> anyhow::Result<Self> {
        let mut config = BrokerConfig::for_tests(dir.path().to_path_buf());
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let broker = Broker::bind(config, shutdown.clone()).await?;
        let addr = broker.local_addr;
        let metrics_addr = broker.metrics_addr;
        let health_addr = broker.health_addr;
        let task = tokio::spawn(async move {
            let _ = broker.run().await;
        });
        Ok(TestBroker {
            addr,
            metrics_addr,
            health_addr,
            shutdown,
            task,
            dir,
        })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_keeping_data().await.map(drop)
    }

    /// Stops cleanly and hands back the data dir for a restart.
    pub async fn stop_keeping_data(self) -> anyhow::Result<tempfile::TempDir> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await??;
        Ok(self.dir)
    }

    pub async fn connect(&self) -> anyhow::Result<TcpStream> {
        Ok(TcpStream::connect(self.addr).await?)
    }
}

/// Longest a broker process may take to start listening or to exit.
pub const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// A loopback port free at the time of asking that no other test of this binary is given.
pub use runnel_client::test_util::free_port;

/// The settings of broker `id` of a three-voter cluster whose controllers listen on
/// `ports` (loopback), with short heartbeats and sessions.
pub fn cluster_member(id: usize, ports: [u16; 3]) -> impl FnOnce(&mut BrokerConfig) {
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{i}@127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    move |c| {
        c.node_id = i32::try_from(id).unwrap_or(i32::MAX);
        c.controller_listen = Some(([127, 0, 0, 1], ports[id]).into());
        c.controller_quorum_voters = Some(voters);
        c.broker_heartbeat_interval_ms = 200;
        c.broker_session_timeout_ms = 2000;
    }
}

/// Brokers 0, 1 and 2 of a three-voter cluster, `config(id)` each: started together
/// (each waits for a majority before it serves), then waited on until every one lists all
/// three in Metadata. A broker learns of the others' registrations a moment after its
/// own, and places a new topic's replicas over the brokers it knows then.
pub async fn start_three<C>(config: impl Fn(usize) -> C) -> anyhow::Result<Vec<TestBroker>>
where
    C: FnOnce(&mut BrokerConfig),
{
    let (a, b, c) = tokio::try_join!(
        TestBroker::start(config(0)),
        TestBroker::start(config(1)),
        TestBroker::start(config(2))
    )?;
    let brokers = vec![a, b, c];
    let deadline = Instant::now() + WAIT;
    for broker in &brokers {
        loop {
            let metadata = call(
                &mut broker.connect().await?,
                &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![])),
                9,
            )
            .await?;
            if metadata.brokers.len() == 3 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "broker at {} lists {} of 3 brokers after {WAIT:?}",
                broker.addr,
                metadata.brokers.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(brokers)
}

/// The broker binary as a child process, killed when dropped.
pub struct BrokerProcess {
    pub child: Child,
    pub kafka: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
}

impl BrokerProcess {
    /// Starts the binary on free local ports with `dir` as its data dir.
    pub fn spawn(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<BrokerProcess> {
        let (kafka, health, metrics) = (free_port()?, free_port()?, free_port()?);
        let child = Command::new(env!("CARGO_BIN_EXE_runnel-broker"))
            .args(["--listen", &format!("127.0.0.1:{kafka}")])
            .args(["--health-listen", &format!("127.0.0.1:{health}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(["--data-dir", &dir.to_string_lossy()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Ok(BrokerProcess {
            child,
            kafka: at(kafka),
            health: at(health),
            metrics: at(metrics),
        })
    }

    /// Connects to the Kafka listener, retrying until it accepts.
    pub async fn connect(&self) -> anyhow::Result<TcpStream> {
        let start = Instant::now();
        loop {
            match TcpStream::connect(self.kafka).await {
                Ok(s) => return Ok(s),
                Err(e) if start.elapsed() > PROCESS_WAIT => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    pub fn wait_exit(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(start.elapsed() < PROCESS_WAIT, "broker did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Largest response frame the tests read.
pub const MAX_RESPONSE_BYTES: u32 = 64 << 20;

/// Encodes a request frame (size prefix included) with the tests' client id.
pub fn request_frame<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<Bytes> {
    let client_id = StrBytes::from_static_str("runnel-test");
    Ok(frame::encode_request(
        request,
        version,
        correlation_id,
        &client_id,
    )?)
}

/// Reads one response frame body (without the size prefix), or `None` when the broker
/// closed or reset the connection.
pub async fn read_response(stream: &mut TcpStream) -> anyhow::Result<Option<Bytes>> {
    match tokio::time::timeout(WAIT, frame::read_frame(stream, MAX_RESPONSE_BYTES)).await? {
        Ok(body) => Ok(Some(body)),
        Err(FrameError::Closed) => Ok(None),
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Fails unless a new connection to `broker` gets a good ApiVersions answer: the broker
/// still serves after whatever a test did to another connection.
pub async fn still_serving(broker: &TestBroker) -> anyhow::Result<()> {
    let mut s = broker.connect().await?;
    let request = kafka_protocol::messages::ApiVersionsRequest::default();
    let r = call(&mut s, &request, 3).await?;
    anyhow::ensure!(
        r.error_code == 0 && !r.api_keys.is_empty(),
        "ApiVersions failed"
    );
    Ok(())
}

/// Sends a request and decodes its response, checking the correlation id.
pub async fn call<R: Request>(
    stream: &mut TcpStream,
    request: &R,
    version: i16,
) -> anyhow::Result<R::Response> {
    let correlation_id = 4242;
    stream
        .write_all(&request_frame(request, version, correlation_id)?)
        .await?;
    let body = read_response(stream)
        .await?
        .ok_or_else(|| anyhow::anyhow!("connection closed"))?;
    Ok(frame::decode_response::<R>(body, version, correlation_id)?)
}

/// The text of `GET /metrics` from the endpoint at `addr`.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut body)).await??;
    anyhow::ensure!(body.starts_with("HTTP/1.1 200"), "scrape failed: {body}");
    Ok(body)
}

/// The value of the sample `series` (name with labels, exactly as exported).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// True when the peer closed the connection (read returns EOF or reset) within the wait.
pub async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The first i32 and i16 of a response body: correlation id and (for error frames) code.
pub fn correlation_and_code(mut body: Bytes) -> (i32, i16) {
    let correlation = body.get_i32();
    let code = if body.remaining() >= 2 {
        body.get_i16()
    } else {
        0
    };
    (correlation, code)
}

/// One uncompressed record batch of plain (non-idempotent) records — `(key, value)` pairs —
/// all stamped `timestamp`.
pub fn plain_batch(records: &[(Option<Bytes>, Bytes)], timestamp: i64) -> anyhow::Result<Bytes> {
    encoded_batch(
        records,
        timestamp,
        0,
        kafka_protocol::records::Compression::None,
    )
}

/// One batch of plain records encoded by kafka-protocol (as a Java client would) with
/// `compression`; record `i` is stamped `timestamp + i * timestamp_step`.
pub fn encoded_batch(
    records: &[(Option<Bytes>, Bytes)],
    timestamp: i64,
    timestamp_step: i64,
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<Bytes> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: timestamp + i as i64 * timestamp_step,
            key: key.clone(),
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)?;
    Ok(buf.freeze())
}
