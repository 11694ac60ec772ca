//! A `--metadata` run: how many Metadata requests one broker answers per second, and how
//! fast, with `--connections` connections each keeping one request in flight.
//!
//! Phases: one setup connection negotiates the Metadata version, creates the topics
//! (`--create-topic`) and waits until every partition of the named topics has a leader;
//! then the load connections are opened, the warmup clock starts, and each connection
//! sends the same request back to back until `--warmup` + `--duration` have passed. Only
//! the bootstrap broker is contacted. `--timeout` bounds the whole run.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_client::{ClientConfig, Connection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{create_topics, metadata_request, LEADER_POLL, UNKNOWN_TOPIC_OR_PARTITION};
use crate::config::{seconds, BenchConfig, MetadataTopics};
use crate::error::BenchError;
use crate::metadata_report::{MetadataReport, MetadataSettings, MetadataStats};
use crate::payload::RunClock;
use crate::versions::{CREATE_TOPICS, METADATA};

/// How long new topics may take to show a leader for every partition.
const TOPICS_WAIT: Duration = Duration::from_secs(60);

/// A `--metadata` run's settings, checked.
#[derive(Debug, Clone)]
pub struct MetadataPlan {
    /// All topics or the named ones.
    pub topics: MetadataTopics,
    /// The topics `--topic` and `--topic-count` name (created with `--create-topic`).
    pub names: Vec<TopicName>,
    /// Load connections.
    pub connections: u32,
    /// Measured time after the warmup.
    pub duration: Duration,
    /// Leading time left out of the figures.
    pub warmup: Duration,
    /// The whole run's limit.
    pub timeout: Duration,
    /// Identity and limits of every connection.
    pub client: ClientConfig,
}

impl MetadataPlan {
    /// The plan of a `--metadata` run; an error when `config` is not one or a value is
    /// out of range.
    pub fn new(config: &BenchConfig) -> Result<Self, BenchError> {
        let Some(topics) = config.metadata else {
            return Err(BenchError::InvalidSetting {
                flag: "--metadata",
                reason: "this is not a Metadata run".to_string(),
            });
        };
        let names = topic_names(&config.topic, config.topic_count);
        if let Some(long) = names.iter().find(|n| n.is_empty() || n.len() > 249) {
            return Err(BenchError::InvalidSetting {
                flag: "--topic",
                reason: format!("topic name {long:?} does not have 1 to 249 characters"),
            });
        }
        Ok(MetadataPlan {
            topics,
            names: names
                .into_iter()
                .map(|n| TopicName(StrBytes::from_string(n)))
                .collect(),
            connections: config.connections,
            duration: seconds("--duration", config.duration.unwrap_or(10.0))?,
            warmup: seconds("--warmup", config.warmup)?,
            timeout: seconds("--timeout", config.timeout)?,
            client: config.client_config(),
        })
    }

    /// The request every load connection sends.
    pub fn request(&self, version: i16) -> MetadataRequest {
        match self.topics {
            MetadataTopics::All => metadata_request(None, version),
            MetadataTopics::Named => metadata_request(Some(&self.names), version),
        }
    }
}

/// The topics `--topic` names: `<topic>` alone when `count` is 1, else `<topic>-0` ..
/// `<topic>-(count-1)`.
pub fn topic_names(topic: &str, count: u32) -> Vec<String> {
    match count {
        1 => vec![topic.to_string()],
        n => (0..n).map(|i| format!("{topic}-{i}")).collect(),
    }
}

/// Runs the `--metadata` bench described by `config` and returns its report.
///
/// Setup errors (flags, unreachable bootstrap, no common Metadata version, topics that do
/// not exist or get no leaders) are returned; errors during the load are counted.
pub async fn run(config: &BenchConfig) -> Result<MetadataReport, BenchError> {
    let plan = MetadataPlan::new(config)?;
    let started = Instant::now();
    let abort = CancellationToken::new();
    let timed_out = || BenchError::RunTimeout {
        seconds: plan.timeout.as_secs_f64(),
    };
    let setup = async {
        let version = prepare(config, &plan).await?;
        let mut connections = Vec::new();
        for _ in 0..plan.connections {
            connections.push(Connection::connect(&config.bootstrap, &plan.client).await?);
        }
        Ok::<_, BenchError>((version, connections))
    };
    let (version, connections) = tokio::time::timeout(plan.timeout, setup)
        .await
        .map_err(|_| timed_out())??;

    let clock = RunClock::start();
    let warmup_end_micros = u64::try_from(plan.warmup.as_micros()).unwrap_or(u64::MAX);
    let stop = CancellationToken::new();
    let shared = Arc::new(LoadShared {
        request: plan.request(version),
        version,
        clock,
        warmup_end_micros,
        stop: stop.clone(),
        abort: abort.clone(),
    });
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| tokio::spawn(load(Arc::clone(&shared), connection)))
        .collect();
    let left = plan.timeout.saturating_sub(started.elapsed());
    let stop_at = plan.warmup + plan.duration;
    tokio::time::sleep(stop_at.min(left)).await;
    stop.cancel();
    // Requests in flight get the rest of --timeout to be answered.
    let abort_timer = tokio::spawn({
        let abort = abort.clone();
        let left = plan.timeout.saturating_sub(started.elapsed());
        async move {
            tokio::time::sleep(left).await;
            abort.cancel();
        }
    });
    let mut stats = MetadataStats::default();
    for task in tasks {
        match task.await {
            Ok(done) => stats.merge(&done),
            Err(e) => stats.errors.add(format!("connection task failed: {e}")),
        }
    }
    abort_timer.abort();

    let settings = MetadataSettings {
        bootstrap: config.bootstrap.clone(),
        topics: plan.topics,
        topic_names: match plan.topics {
            MetadataTopics::All => Vec::new(),
            MetadataTopics::Named => plan.names.iter().map(|n| n.0.to_string()).collect(),
        },
        connections: plan.connections,
        duration_secs: plan.duration.as_secs_f64(),
        warmup_secs: plan.warmup.as_secs_f64(),
    };
    let mut report = MetadataReport::new(settings, version, &stats, warmup_end_micros);
    report.timed_out = abort.is_cancelled() || stop_at > left;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Negotiates the Metadata version, creates the topics if asked, and waits until every
/// partition of the named topics has a leader (a `named` run, or topics just created).
async fn prepare(config: &BenchConfig, plan: &MetadataPlan) -> Result<i16, BenchError> {
    let mut connection = Connection::connect(&config.bootstrap, &plan.client).await?;
    let version = connection.version::<MetadataRequest>(METADATA).await?;
    if config.create_topic {
        let create = connection
            .version::<CreateTopicsRequest>(CREATE_TOPICS)
            .await?;
        create_topics(
            &mut connection,
            create,
            &plan.names,
            config.partitions,
            config.replication_factor,
        )
        .await?;
    } else if plan.topics == MetadataTopics::All {
        return Ok(version);
    }
    let request = metadata_request(Some(&plan.names), version);
    let deadline = Instant::now() + TOPICS_WAIT;
    loop {
        let response = connection.call(&request, version).await?;
        match readiness(&response, &plan.names) {
            Readiness::Ready => return Ok(version),
            Readiness::Unknown(topic) if !config.create_topic => {
                return Err(BenchError::UnknownTopic { topic })
            }
            Readiness::Unknown(_) | Readiness::Waiting(_) if Instant::now() < deadline => {
                tokio::time::sleep(LEADER_POLL).await;
            }
            Readiness::Unknown(topic) => return Err(BenchError::UnknownTopic { topic }),
            Readiness::Waiting((topic, partition)) => {
                return Err(BenchError::NoLeader { topic, partition })
            }
        }
    }
}

/// Whether the named topics can be measured yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every named topic is listed and each of its partitions has a leader.
    Ready,
    /// A topic the broker does not know (or that the response leaves out).
    Unknown(String),
    /// A topic and partition without a leader yet (partition -1: no partitions listed, or
    /// the topic carries another error).
    Waiting((String, i32)),
}

/// Whether every topic of `names` is in `response` with every partition led.
pub fn readiness(response: &MetadataResponse, names: &[TopicName]) -> Readiness {
    for name in names {
        let text = || name.0.to_string();
        let Some(topic) = response
            .topics
            .iter()
            .find(|t| t.name.as_ref() == Some(name))
        else {
            return Readiness::Unknown(text());
        };
        match topic.error_code {
            0 => {}
            UNKNOWN_TOPIC_OR_PARTITION => return Readiness::Unknown(text()),
            _ => return Readiness::Waiting((text(), -1)),
        }
        if topic.partitions.is_empty() {
            return Readiness::Waiting((text(), -1));
        }
        if let Some(p) = topic.partitions.iter().find(|p| p.leader_id.0 < 0) {
            return Readiness::Waiting((text(), p.partition_index));
        }
    }
    Readiness::Ready
}

/// What every load connection shares.
struct LoadShared {
    request: MetadataRequest,
    version: i16,
    clock: RunClock,
    /// Requests sent before this run-clock time are left out of the figures.
    warmup_end_micros: u64,
    /// Cancelled when no new request should be sent.
    stop: CancellationToken,
    /// Cancelled when a request in flight should be abandoned (`--timeout`).
    abort: CancellationToken,
}

/// One connection sending the request back to back until `stop`; ends at its first error.
async fn load(shared: Arc<LoadShared>, mut connection: Connection) -> MetadataStats {
    let mut stats = MetadataStats::default();
    while !shared.stop.is_cancelled() {
        let sent_at = Instant::now();
        let response: Result<MetadataResponse, _> = tokio::select! {
            r = connection.call(&shared.request, shared.version) => r,
            _ = shared.abort.cancelled() => {
                stats.errors.add("Metadata: abandoned at --timeout");
                break;
            }
        };
        let answered_at = Instant::now();
        match response {
            Ok(response) => {
                let latency = answered_at.saturating_duration_since(sent_at);
                let sent_micros = shared.clock.micros_at(sent_at.into_std());
                stats.account(
                    &response,
                    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                    shared.clock.micros_at(answered_at.into_std()),
                    sent_micros >= shared.warmup_end_micros,
                );
            }
            Err(e) => {
                stats.errors.add(BenchError::from(e).label());
                break;
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    fn parse(args: &[&str]) -> Result<BenchConfig, clap::Error> {
        BenchConfig::try_parse_from(std::iter::once("runnel-bench").chain(args.iter().copied()))
    }

    fn names(plan: &MetadataPlan) -> Vec<String> {
        plan.names.iter().map(|n| n.0.to_string()).collect()
    }

    #[test]
    fn one_topic_keeps_its_name_and_more_are_numbered() {
        assert_eq!(topic_names("meta", 1), ["meta"]);
        assert_eq!(topic_names("meta", 3), ["meta-0", "meta-1", "meta-2"]);
    }

    #[test]
    fn a_metadata_run_defaults_to_ten_seconds_over_four_connections() {
        let plan = MetadataPlan::new(&parse(&["--metadata", "all"]).unwrap()).unwrap();
        assert_eq!(plan.topics, MetadataTopics::All);
        assert_eq!(plan.connections, 4);
        assert_eq!(plan.duration, Duration::from_secs(10));
        assert_eq!(plan.warmup, Duration::ZERO);
        assert_eq!(names(&plan), ["runnel-bench"]);
        let plan = MetadataPlan::new(
            &parse(&[
                "--metadata",
                "named",
                "--topic",
                "m",
                "--topic-count",
                "10",
                "--connections",
                "16",
                "--duration",
                "5",
                "--warmup",
                "1",
                "--create-topic",
                "--partitions",
                "100",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(plan.topics, MetadataTopics::Named);
        assert_eq!(plan.names.len(), 10);
        assert_eq!(names(&plan)[9], "m-9");
        assert_eq!(plan.connections, 16);
        assert_eq!(
            (plan.duration, plan.warmup),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
    }

    #[test]
    fn the_request_names_the_topics_or_asks_for_all() {
        let config = parse(&["--metadata", "named", "--topic-count", "2"]).unwrap();
        let plan = MetadataPlan::new(&config).unwrap();
        let asked: Vec<_> = plan
            .request(12)
            .topics
            .unwrap()
            .into_iter()
            .map(|t| t.name.unwrap().0.to_string())
            .collect();
        assert_eq!(asked, ["runnel-bench-0", "runnel-bench-1"]);
        let all = MetadataPlan::new(&parse(&["--metadata", "all"]).unwrap()).unwrap();
        assert_eq!(all.request(12).topics, None);
    }

    #[test]
    fn producer_and_consumer_flags_are_refused() {
        for extra in [
            &["--read-back"][..],
            &["--consume-only"],
            &["--records", "5"],
            &["--producers", "2"],
            &["--consumers", "0"],
            &["--acks", "all"],
            &["--rate", "10"],
            &["--max-in-flight", "2"],
            &["--drain-timeout", "5"],
        ] {
            let mut args = vec!["--metadata", "all"];
            args.extend_from_slice(extra);
            assert!(parse(&args).is_err(), "{args:?} should not parse");
        }
        // The Metadata flags need --metadata.
        assert!(parse(&["--connections", "2"]).is_err());
        assert!(parse(&["--topic-count", "2"]).is_err());
        assert!(parse(&["--metadata", "everything"]).is_err());
        assert!(parse(&["--metadata", "all", "--connections", "0"]).is_err());
        assert!(parse(&["--metadata", "all", "--connections", "1024"]).is_ok());
        assert!(parse(&["--metadata", "all", "--connections", "1025"]).is_err());
    }

    #[test]
    fn plans_of_the_other_mode_are_refused() {
        let metadata = parse(&["--metadata", "all"]).unwrap();
        assert!(matches!(
            metadata.plan(),
            Err(BenchError::InvalidSetting {
                flag: "--metadata",
                ..
            })
        ));
        assert!(MetadataPlan::new(&parse(&[]).unwrap()).is_err());
        let long = "t".repeat(248);
        let config = parse(&["--metadata", "all", "--topic", &long, "--topic-count", "2"]);
        assert!(MetadataPlan::new(&config.unwrap()).is_err());
        let negative = parse(&["--metadata", "all", "--duration=-1"]).unwrap();
        assert!(MetadataPlan::new(&negative).is_err());
    }

    fn topic(name: &str, error_code: i16, leaders: &[i32]) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_error_code(error_code)
            .with_partitions(
                leaders
                    .iter()
                    .enumerate()
                    .map(|(i, &leader)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i32::try_from(i).unwrap())
                            .with_leader_id(BrokerId(leader))
                    })
                    .collect(),
            )
    }

    #[test]
    fn topics_are_ready_once_every_partition_has_a_leader() {
        let wanted: Vec<TopicName> = ["a", "b"]
            .iter()
            .map(|n| TopicName(StrBytes::from_static_str(n)))
            .collect();
        let response = |topics| MetadataResponse::default().with_topics(topics);
        assert_eq!(
            readiness(
                &response(vec![topic("a", 0, &[0, 1]), topic("b", 0, &[2])]),
                &wanted
            ),
            Readiness::Ready
        );
        assert_eq!(
            readiness(
                &response(vec![topic("a", 0, &[0, -1]), topic("b", 0, &[2])]),
                &wanted
            ),
            Readiness::Waiting(("a".to_string(), 1))
        );
        assert_eq!(
            readiness(
                &response(vec![topic("a", 0, &[0]), topic("b", 3, &[])]),
                &wanted
            ),
            Readiness::Unknown("b".to_string())
        );
        assert_eq!(
            readiness(&response(vec![topic("a", 0, &[0])]), &wanted),
            Readiness::Unknown("b".to_string())
        );
        assert_eq!(
            readiness(
                &response(vec![topic("a", 5, &[]), topic("b", 0, &[0])]),
                &wanted
            ),
            Readiness::Waiting(("a".to_string(), -1))
        );
    }
}
