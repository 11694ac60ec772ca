//! The bench against a real `runnel-broker` process on 127.0.0.1: every record produced
//! is acknowledged and consumed, latency percentiles are positive and ordered, and the
//! catch-up modes (`--read-back`, `--consume-only`) read exactly the records produced;
//! a `--metadata` run counts requests over the topics it created.
//!
//! The broker is `$RUNNEL_BROKER_BIN` (set by `make test-rust`), else a debug build this
//! test makes with the cargo running it.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use runnel_bench::report::Percentiles;
use runnel_bench::{run, BenchConfig, BenchError, Report};

/// Upper bound for the broker to start listening.
const START_WAIT: Duration = Duration::from_secs(60);

/// A broker child process with its own data dir; killed on drop.
struct BrokerProcess {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .ok_or_else(|| anyhow::anyhow!("bench/ has no parent"))?;
    Ok(root.to_path_buf())
}

/// Builds the broker binary with the cargo running this test and returns its path.
fn build_broker() -> anyhow::Result<PathBuf> {
    let root = workspace_root()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(["build", "-p", "runnel-broker", "--bin", "runnel-broker"])
        .current_dir(&root)
        .status()?;
    anyhow::ensure!(status.success(), "cargo build -p runnel-broker failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    Ok(target.join("debug").join("runnel-broker"))
}

/// `$RUNNEL_BROKER_BIN`, else a fresh debug build.
fn broker_binary() -> anyhow::Result<PathBuf> {
    match std::env::var_os("RUNNEL_BROKER_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            anyhow::ensure!(
                path.is_file(),
                "RUNNEL_BROKER_BIN={} is not a file",
                path.display()
            );
            Ok(path)
        }
        None => build_broker(),
    }
}

fn start_broker() -> anyhow::Result<BrokerProcess> {
    let binary = broker_binary()?;
    // Not a port-0 ask of the kernel: the tests run in parallel, and two of them could be
    // given the same port; one would then talk to the other's broker.
    let port = runnel_client::test_util::free_port()?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = tempfile::tempdir()?;
    let child = Command::new(&binary)
        .arg("--listen")
        .arg(address.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUNNEL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
    let mut broker = BrokerProcess {
        child,
        address,
        _dir: dir,
    };
    let deadline = Instant::now() + START_WAIT;
    loop {
        let listening = TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok();
        // Alive after the port answered: the port is this child's, not another process's.
        if let Some(status) = broker.child.try_wait()? {
            anyhow::bail!("runnel-broker exited early: {status}");
        }
        if listening {
            return Ok(broker);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "runnel-broker did not listen within {START_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(broker: &BrokerProcess, extra: &[&str]) -> anyhow::Result<BenchConfig> {
    let bootstrap = broker.address.to_string();
    let mut args = vec![
        "runnel-bench",
        "--bootstrap",
        &bootstrap,
        "--timeout",
        "120",
        "--drain-timeout",
        "30",
    ];
    args.extend_from_slice(extra);
    Ok(BenchConfig::try_parse_from(args)?)
}

fn assert_ordered(p: &Percentiles, what: &str) {
    assert!(p.p50 > 0.0, "{what}: {p:?}");
    assert!(
        p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max,
        "{what}: {p:?}"
    );
}

fn assert_complete(report: &Report, records: u64) -> anyhow::Result<()> {
    let json = report.to_json()?;
    assert_eq!(report.error_total, 0, "{json}");
    assert!(!report.timed_out, "{json}");
    assert_eq!(report.produce.records_sent, records, "{json}");
    assert_eq!(report.consume.records, records, "{json}");
    assert_eq!(report.consume.foreign_records, 0, "{json}");
    assert!(report.consume.throughput.records_per_sec > 0.0, "{json}");
    let e2e = report
        .consume
        .end_to_end_latency_ms
        .ok_or_else(|| anyhow::anyhow!("no end-to-end latency: {json}"))?;
    assert_eq!(e2e.count, records, "{json}");
    assert_ordered(&e2e, "end-to-end");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_acknowledged_and_consumed() -> anyhow::Result<()> {
    let broker = start_broker()?;
    for (topic, acks) in [("bench-acks-1", "1"), ("bench-acks-all", "-1")] {
        let config = config(
            &broker,
            &[
                "--topic",
                topic,
                "--create-topic",
                "--partitions",
                "2",
                "--records",
                "2000",
                "--acks",
                acks,
                "--compression",
                "lz4",
                "--producers",
                "2",
                "--consumers",
                "2",
            ],
        )?;
        let report = run(&config).await?;
        assert_complete(&report, 2000)?;
        assert_eq!(report.settings.partitions, 2);
        assert_eq!(report.produce.records_acked, 2000);
        assert!(report.produce.throughput.records_per_sec > 0.0);
        let produce = report
            .produce
            .latency_ms
            .ok_or_else(|| anyhow::anyhow!("no produce latency"))?;
        // One sample per acknowledged batch; 2000 records in batches of at most 15.
        assert_eq!(produce.count, report.produce.batches_acked);
        assert!(produce.count >= 2000 / 15, "{produce:?}");
        assert_ordered(&produce, "produce");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_rate_limited_with_zstd_is_consumed_in_full() -> anyhow::Result<()> {
    let broker = start_broker()?;
    let config = config(
        &broker,
        &[
            "--topic",
            "bench-acks-0",
            "--create-topic",
            "--partitions",
            "1",
            "--records",
            "600",
            "--acks",
            "0",
            "--compression",
            "zstd",
            "--rate",
            "2000",
            "--linger-ms",
            "2",
        ],
    )?;
    let report = run(&config).await?;
    assert_complete(&report, 600)?;
    assert_eq!(report.produce.records_acked, 0);
    assert_eq!(report.produce.latency_ms, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_a_setup_error() -> anyhow::Result<()> {
    let broker = start_broker()?;
    let config = config(&broker, &["--topic", "no-such-topic", "--records", "10"])?;
    match run(&config).await {
        Err(BenchError::UnknownTopic { topic }) => assert_eq!(topic, "no-such-topic"),
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
    Ok(())
}

/// A catch-up run read every record this run produced, and only those, with the same
/// bytes, and measured no end-to-end latency.
fn assert_caught_up(report: &Report, records: u64) -> anyhow::Result<()> {
    let json = report.to_json()?;
    assert_eq!(report.error_total, 0, "{json}");
    assert!(!report.timed_out, "{json}");
    assert_eq!(report.consume.records, records, "{json}");
    assert_eq!(report.consume.throughput.records, records, "{json}");
    assert!(report.consume.throughput.bytes > 0, "{json}");
    assert!(report.consume.throughput.seconds > 0.0, "{json}");
    assert!(report.consume.throughput.records_per_sec > 0.0, "{json}");
    assert_eq!(report.consume.end_to_end_latency_ms, None, "{json}");
    let value: serde_json::Value = serde_json::from_str(&json)?;
    assert!(
        value["consume"]["end_to_end_latency_ms"].is_null(),
        "{json}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_back_consumes_exactly_the_records_produced() -> anyhow::Result<()> {
    let broker = start_broker()?;
    let args = [
        "--topic",
        "bench-read-back",
        "--partitions",
        "2",
        "--records",
        "3000",
        "--acks",
        "all",
        "--read-back",
        "--producers",
        "1",
        "--consumers",
        "2",
    ];
    let mut first = vec!["--create-topic"];
    first.extend_from_slice(&args);
    let report = run(&config(&broker, &first)?).await?;
    let json = report.to_json()?;
    assert_caught_up(&report, 3000)?;
    assert_eq!(report.produce.records_acked, 3000, "{json}");
    assert_eq!(report.consume.foreign_records, 0, "{json}");
    assert_eq!(
        report.consume.throughput.bytes, report.produce.throughput.bytes,
        "{json}"
    );
    assert!(report.produce.latency_ms.is_some(), "{json}");

    // A second read-back run on the same topic reads the first run's records too, from
    // earliest, and counts them apart.
    let report = run(&config(&broker, &args)?).await?;
    let json = report.to_json()?;
    assert_caught_up(&report, 3000)?;
    assert_eq!(report.consume.foreign_records, 3000, "{json}");
    assert_eq!(
        report.consume.throughput.bytes, report.produce.throughput.bytes,
        "{json}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_only_reads_what_a_produce_only_run_wrote() -> anyhow::Result<()> {
    let broker = start_broker()?;
    let produce_only = config(
        &broker,
        &[
            "--topic",
            "bench-consume-only",
            "--create-topic",
            "--partitions",
            "3",
            "--records",
            "2000",
            "--consumers",
            "0",
        ],
    )?;
    let produced = run(&produce_only).await?;
    assert_eq!(produced.error_total, 0, "{}", produced.to_json()?);
    assert_eq!(produced.produce.records_acked, 2000);
    assert_eq!(produced.consume.records, 0);

    let consume_only = config(
        &broker,
        &[
            "--topic",
            "bench-consume-only",
            "--consume-only",
            "--records",
            "2000",
            "--consumers",
            "2",
        ],
    )?;
    let report = run(&consume_only).await?;
    let json = report.to_json()?;
    assert_caught_up(&report, 2000)?;
    assert_eq!(report.settings.producers, 0, "{json}");
    assert_eq!(report.produce.records_sent, 0, "{json}");
    assert_eq!(report.consume.foreign_records, 0, "{json}");
    assert_eq!(
        report.consume.throughput.bytes, produced.produce.throughput.bytes,
        "{json}"
    );
    Ok(())
}

/// The settings of a `--metadata` run against `broker` with `extra` flags.
fn metadata_config(broker: &BrokerProcess, extra: &[&str]) -> anyhow::Result<BenchConfig> {
    let bootstrap = broker.address.to_string();
    let mut args = vec!["runnel-bench", "--bootstrap", &bootstrap, "--timeout", "60"];
    args.extend_from_slice(extra);
    Ok(BenchConfig::try_parse_from(args)?)
}

/// A `--metadata` run against `broker` with `extra` flags.
async fn metadata_run(
    broker: &BrokerProcess,
    extra: &[&str],
) -> anyhow::Result<runnel_bench::metadata_report::MetadataReport> {
    Ok(runnel_bench::metadata::run(&metadata_config(broker, extra)?).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_runs_count_requests_over_created_topics() -> anyhow::Result<()> {
    let broker = start_broker()?;
    let named = metadata_run(
        &broker,
        &[
            "--metadata",
            "named",
            "--topic",
            "meta",
            "--topic-count",
            "3",
            "--partitions",
            "4",
            "--create-topic",
            "--connections",
            "2",
            "--duration",
            "1",
        ],
    )
    .await?;
    let json = named.to_json()?;
    assert_eq!(named.error_total, 0, "{json}");
    assert!(!named.timed_out, "{json}");
    assert_eq!(named.settings.topic_names, ["meta-0", "meta-1", "meta-2"]);
    let shape = named
        .response
        .ok_or_else(|| anyhow::anyhow!("no response measured: {json}"))?;
    assert_eq!((shape.brokers, shape.topics, shape.partitions), (1, 3, 12));
    assert_eq!(shape.leaderless_partitions, 0, "{json}");
    assert!(named.requests.requests > 0, "{json}");
    assert!(named.requests.per_sec > 0.0, "{json}");
    let latency = named
        .latency_ms
        .ok_or_else(|| anyhow::anyhow!("no latency: {json}"))?;
    assert_eq!(latency.count, named.requests.requests, "{json}");
    assert_ordered(&latency, "metadata");

    // Every topic, the three above among them, over one connection.
    let all = metadata_run(
        &broker,
        &["--metadata", "all", "--duration", "0.5", "--json"],
    )
    .await?;
    let json = all.to_json()?;
    assert_eq!(all.error_total, 0, "{json}");
    let shape = all
        .response
        .ok_or_else(|| anyhow::anyhow!("no response measured: {json}"))?;
    assert!(shape.topics >= 3 && shape.partitions >= 12, "{json}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_run_of_missing_topics_is_a_setup_error() -> anyhow::Result<()> {
    let broker = start_broker()?;
    let config = metadata_config(&broker, &["--metadata", "named", "--topic", "absent"])?;
    match runnel_bench::metadata::run(&config).await {
        Err(BenchError::UnknownTopic { topic }) => assert_eq!(topic, "absent"),
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
    Ok(())
}
