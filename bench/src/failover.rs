//! A failover run (`runnel-failover`): how long a partition stays unwritable with
//! acks=all when its leader is killed. The bench produces to one partition without pause
//! (see `failover_producer`); a script kills and restarts brokers, and tells the bench
//! what it did over a line protocol on standard input, one answer line each on standard
//! output:
//!
//! | the script writes | the bench answers                                             |
//! |-------------------|---------------------------------------------------------------|
//! | (start)           | `ready leader=N` once the topic has leaders and a produce was acknowledged |
//! | `whole SECS`      | `whole ok leader=N controller=C waited_ms=X` once every partition of the topic has its whole replica set in the ISR and the last acknowledgement came from the leader `N` that Metadata names (`C`: Metadata's controller id); `whole timeout leader=N controller=C short=P,Q ...` after SECS |
//! | `killed NODE`     | right after `kill -9` of NODE: `recovered kill=K node=NODE ms=X elected_ms=Y new_leader=M ...` at the first acknowledgement of a produce sent after the line was read, or `timeout kill=K ...` after `--recovery-timeout` |
//! | `quit` (or EOF)   | the report (text, or one JSON line with `--json`), then exits |
//!
//! Any other line is answered `error ...`. The measured time starts when the bench reads
//! `killed`, so the script must write it straight after the kill; the time includes the
//! producer's retry cadence (`--retry-backoff-ms`), as a client's would.

use std::time::Duration;

use clap::Parser;
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{create_topics, LEADER_POLL};
use crate::error::BenchError;
use crate::failover_metadata::{partition_view, partitions_not_whole, MetadataClient};
use crate::failover_producer::{ProducerSetup, Shared};
use crate::failover_report::FailoverReport;
use crate::payload::{PayloadTemplate, XorShift};
use crate::versions::{CREATE_TOPICS, LAST_VERSION_WITH_TOPIC_NAMES, PRODUCE};

/// How long setup may take: the topic's leaders and the first acknowledgement.
const SETUP_WAIT: Duration = Duration::from_secs(60);

/// Settings of a failover run.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "runnel-failover",
    version,
    about = "Times leader failover: kill → first acknowledged acks=all produce (driven by a script over stdin)"
)]
pub struct FailoverConfig {
    /// Comma-separated HOST:PORT list; Metadata and InitProducerId go to the first that
    /// answers, Produce to the partition's leader at its advertised address.
    #[arg(
        long,
        default_value = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    )]
    pub bootstrap: String,

    /// The topic.
    #[arg(long, default_value = "failover")]
    pub topic: String,

    /// Create the topic first (an existing topic is used as is).
    #[arg(long)]
    pub create_topic: bool,

    /// Partitions when --create-topic creates the topic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,

    /// Replication factor when --create-topic creates the topic.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i16).range(1..=16))]
    pub replication_factor: i16,

    /// The partition produced to.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=9_999))]
    pub partition: i32,

    /// Bytes of each record value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(20..=65_536))]
    pub record_size: u64,

    /// Records per Produce request (one request in flight).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub records_per_batch: u64,

    /// Pause after a failed produce attempt before the next (with a Metadata refresh).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub retry_backoff_ms: u64,

    /// Limit on one request (connect included) and the Produce `timeout_ms`.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_timeout_ms: u64,

    /// Seconds after `killed` without an acknowledgement before the kill counts as a
    /// timeout.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub recovery_timeout: u64,

    /// Print the final report as one JSON line.
    #[arg(long)]
    pub json: bool,

    /// client.id sent with every request.
    #[arg(long, default_value = "runnel-failover")]
    pub client_id: String,
}

/// One line of the control protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Wait up to this long for every partition's whole replica set in the ISR.
    Whole(Duration),
    /// The script killed this node.
    Killed(i32),
    /// End the run.
    Quit,
}

/// Parses one control line (surrounding blanks ignored).
pub fn parse_command(line: &str) -> Result<Command, String> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let argument = words.next();
    if words.next().is_some() {
        return Err(format!("too many words in {line:?}"));
    }
    match (command, argument) {
        ("whole", Some(secs)) => secs
            .parse::<f64>()
            .ok()
            .filter(|s| (0.0..=3600.0).contains(s))
            .map(|s| Command::Whole(Duration::from_secs_f64(s)))
            .ok_or_else(|| format!("whole wants seconds from 0 to 3600, not {secs:?}")),
        ("killed", Some(node)) => node
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Command::Killed)
            .ok_or_else(|| format!("killed wants a node id, not {node:?}")),
        ("quit", None) => Ok(Command::Quit),
        _ => Err(format!(
            "unknown command {line:?} (whole SECS, killed NODE, quit)"
        )),
    }
}

/// Runs setup, then answers control lines until `quit` or EOF; returns the report.
pub async fn run(config: &FailoverConfig) -> Result<FailoverReport, BenchError> {
    let bootstrap: Vec<String> = config
        .bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if bootstrap.is_empty() {
        return Err(BenchError::InvalidSetting {
            flag: "--bootstrap",
            reason: "it names no broker".to_string(),
        });
    }
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let client = runnel_client::ClientConfig {
        client_id: config.client_id.clone(),
        connect_timeout: timeout,
        request_timeout: timeout,
        ..runnel_client::ClientConfig::new("runnel-bench")
    };
    let topic = TopicName(StrBytes::from_string(config.topic.clone()));
    let mut metadata = MetadataClient::new(bootstrap.clone(), client.clone());
    let (connection, _) = metadata.connection().await?;
    let mut produce_version = connection.version::<ProduceRequest>(PRODUCE).await?;
    if config.create_topic {
        let version = connection
            .version::<CreateTopicsRequest>(CREATE_TOPICS)
            .await?;
        create_topics(
            connection,
            version,
            std::slice::from_ref(&topic),
            config.partitions,
            config.replication_factor,
        )
        .await?;
    }
    let deadline = Instant::now() + SETUP_WAIT;
    let topic_id = loop {
        let response = metadata.topic(&topic).await;
        let listed = response.as_ref().ok().and_then(|r| {
            let view = partition_view(r, &topic, config.partition)?;
            let t = r.topics.iter().find(|t| t.name.as_ref() == Some(&topic))?;
            (view.leader >= 0).then_some(t.topic_id)
        });
        match listed {
            Some(id) => break id,
            None if Instant::now() < deadline => tokio::time::sleep(LEADER_POLL).await,
            None => {
                return Err(BenchError::NoLeader {
                    topic: config.topic.clone(),
                    partition: config.partition,
                })
            }
        }
    };
    if topic_id.is_nil() {
        produce_version = produce_version.min(LAST_VERSION_WITH_TOPIC_NAMES);
    }
    let setup = ProducerSetup {
        bootstrap: bootstrap.clone(),
        topic: topic.clone(),
        topic_id,
        partition: config.partition,
        produce_version,
        records_per_batch: config.records_per_batch,
        template: PayloadTemplate::new(
            XorShift::from_entropy().next_u64(),
            usize::try_from(config.record_size).unwrap_or(100),
            1,
        ),
        backoff: Duration::from_millis(config.retry_backoff_ms),
        request_timeout: timeout,
        client,
    };
    let shared = Shared::default();
    let stop = CancellationToken::new();
    let producer = crate::failover_producer::run(&shared, setup, stop.clone());
    let control = control(config, &shared, &mut metadata, &topic, stop.clone());
    let (_, results) = tokio::join!(producer, control);
    let results = results?;
    let (records_acked, errors) = shared.totals();
    Ok(FailoverReport::new(
        config.bootstrap.clone(),
        config.topic.clone(),
        config.partition,
        results,
        records_acked,
        &errors,
    ))
}

/// The control loop: `ready`, then one answer per command; stops the producer when done.
async fn control(
    config: &FailoverConfig,
    shared: &Shared,
    metadata: &mut MetadataClient,
    topic: &TopicName,
    stop: CancellationToken,
) -> Result<Vec<crate::failover_report::KillResult>, BenchError> {
    let _stop_producer = stop.drop_guard();
    let deadline = Instant::now() + SETUP_WAIT;
    let ready = loop {
        if let Some(ack) = shared.last_ack() {
            break ack;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NoLeader {
                topic: config.topic.clone(),
                partition: config.partition,
            });
        }
        tokio::time::sleep(LEADER_POLL).await;
    };
    println!("ready leader={}", ready.leader);
    let mut results = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(BenchError::Control)? {
        if line.trim().is_empty() {
            continue;
        }
        match parse_command(&line) {
            Ok(Command::Whole(wait)) => {
                println!(
                    "{}",
                    whole(shared, metadata, topic, config.partition, wait).await
                );
            }
            Ok(Command::Killed(node)) => {
                shared.mark_kill(node);
                let kill = u32::try_from(results.len() + 1).unwrap_or(u32::MAX);
                let deadline = Instant::now() + Duration::from_secs(config.recovery_timeout);
                if let Some(result) = shared.finish_kill(kill, deadline).await {
                    println!("{}", result.to_line());
                    results.push(result);
                }
            }
            Ok(Command::Quit) => break,
            Err(message) => println!("error {message}"),
        }
    }
    Ok(results)
}

/// Waits up to `wait` until every partition of `topic` is whole and the producer's last
/// acknowledgement came from the partition's leader; the answer line.
async fn whole(
    shared: &Shared,
    metadata: &mut MetadataClient,
    topic: &TopicName,
    partition: i32,
    wait: Duration,
) -> String {
    let started = Instant::now();
    let deadline = started + wait;
    loop {
        let (leader, controller, short) = match metadata.topic(topic).await {
            Ok(response) => (
                partition_view(&response, topic, partition).map_or(-1, |v| v.leader),
                response.controller_id.0,
                partitions_not_whole(&response, topic),
            ),
            Err(_) => (-1, -1, vec![-1]),
        };
        let acked_by_leader = shared.last_ack().is_some_and(|a| a.leader == leader);
        let waited = started.elapsed().as_secs_f64() * 1000.0;
        if short.is_empty() && acked_by_leader && leader >= 0 {
            return format!(
                "whole ok leader={leader} controller={controller} waited_ms={waited:.0}"
            );
        }
        if Instant::now() >= deadline {
            let short: Vec<String> = short.iter().map(i32::to_string).collect();
            return format!(
                "whole timeout leader={leader} controller={controller} short={} acked_by_leader={acked_by_leader} waited_ms={waited:.0}",
                short.join(",")
            );
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse() {
        assert_eq!(
            parse_command(" whole 60 "),
            Ok(Command::Whole(Duration::from_secs(60)))
        );
        assert_eq!(
            parse_command("whole 0.5"),
            Ok(Command::Whole(Duration::from_millis(500)))
        );
        assert_eq!(parse_command("killed 2"), Ok(Command::Killed(2)));
        assert_eq!(parse_command("quit"), Ok(Command::Quit));
        for bad in [
            "",
            "whole",
            "whole -1",
            "whole 3601",
            "whole NaN",
            "killed",
            "killed -1",
            "killed x",
            "quit now",
            "killed 1 2",
            "kill 1",
        ] {
            assert!(parse_command(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn defaults_time_a_three_replica_partition() {
        let config = FailoverConfig::try_parse_from(["runnel-failover"]).unwrap();
        assert_eq!((config.replication_factor, config.partition), (3, 0));
        assert_eq!(config.bootstrap.split(',').count(), 3);
        assert!(FailoverConfig::try_parse_from(["x", "--record-size", "19"]).is_err());
        assert!(FailoverConfig::try_parse_from(["x", "--records-per-batch", "0"]).is_err());
    }
}
