//! Command-line settings of one bench run, their validation, and the values derived
//! from them (records per batch, deadlines).

use std::time::Duration;

use clap::{Parser, ValueEnum};
use kafka_protocol::records::Compression;
use runnel_client::ClientConfig;
use serde::Serialize;

use crate::error::BenchError;

/// Bytes of a v2 record batch header (base offset through record count).
pub const BATCH_OVERHEAD: usize = 61;

/// Bytes a small record adds around its value: length, attributes, timestamp and offset
/// deltas, null key, value length and header count (varints, estimated for 1 KiB values).
pub const RECORD_OVERHEAD: usize = 10;

/// The smallest record value: the bench's own header (see `payload`).
pub const MIN_RECORD_SIZE: usize = crate::payload::HEADER_LEN;

/// The largest record value and the largest batch the bench builds (1 MiB).
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// The largest `--fetch-max-bytes` (64 MiB).
pub const MAX_FETCH_BYTES: i32 = 64 << 20;

/// The largest response frame the bench accepts: the largest Fetch response plus slack.
pub const MAX_RESPONSE_BYTES: u32 = MAX_FETCH_BYTES.unsigned_abs() + (4 << 20);

/// Settings of one bench run.
///
/// Every loop the run starts is bounded by these: in-flight requests per connection,
/// records or seconds produced, the drain time of consumers and the whole run's `--timeout`.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "runnel-bench",
    version,
    about = "Produce/consume load generator for any Kafka-compatible broker"
)]
pub struct BenchConfig {
    /// HOST:PORT of a broker to bootstrap from. Leaders are contacted at their advertised
    /// addresses, only if they resolve to the bootstrap's IP (or both are loopback) unless
    /// --allow-other-hosts.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,

    /// Topic to produce to and consume from.
    #[arg(long, default_value = "runnel-bench")]
    pub topic: String,

    /// Partitions of the topic when --create-topic creates it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,

    /// Create the topic (CreateTopics) before the run; an existing topic is used as is.
    #[arg(long)]
    pub create_topic: bool,

    /// Replication factor when --create-topic creates the topic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..=16))]
    pub replication_factor: i16,

    /// Producer clients, each with its own connection to every leader.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub producers: u32,

    /// Consumer clients; partitions are split between them (round robin).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub consumers: u32,

    /// Bytes of each record value (it starts with a 20-byte send timestamp header).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,

    /// Bytes of a record batch (Kafka's batch.size): records per batch are derived from it.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,

    /// With --rate, how long a partly filled batch waits for more records (linger.ms).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,

    /// Total records per second over all producers; 0 = as fast as acknowledgements allow.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Acknowledgements: 0, 1 or -1 (also "all").
    #[arg(long, default_value = "1", value_parser = parse_acks, allow_hyphen_values = true)]
    pub acks: i16,

    /// Compression codec of produced batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,

    /// Seconds to produce after the warmup (default 10 when --records is not given).
    #[arg(long, conflicts_with = "records")]
    pub duration: Option<f64>,

    /// Records to produce in total over all producers (warmup records included).
    #[arg(long)]
    pub records: Option<u64>,

    /// Produce requests in flight per connection (max.in.flight.requests.per.connection).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_in_flight: u32,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Seconds at the start whose records are left out of throughput and latency figures.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,

    /// Where consumers start: the log end (latest, the default) or the log start
    /// (earliest). --read-back and --consume-only always start at earliest.
    #[arg(long, value_enum)]
    pub consume_from: Option<StartOffset>,

    /// Measure a catch-up read: produce first, with no consumer running, then start the
    /// --consumers consumers at the earliest offset of every partition and read until they
    /// hold every record of this run the broker acknowledged (sent, with acks=0). Consume
    /// figures cover only that read, from the moment consumers start fetching to the last
    /// record received; end-to-end latency is not measured (reported as null). Needs
    /// --producers and --consumers of at least 1; implies --consume-from earliest;
    /// --drain-timeout bounds the read; --warmup applies to the produce figures only.
    #[arg(long)]
    pub read_back: bool,

    /// Produce nothing: the --consumers consumers read the existing topic from the earliest
    /// offset of every partition until they hold --records records, whoever wrote them
    /// (control records aside). The same catch-up read as --read-back, for a topic filled
    /// before (e.g. by a run with --consumers 0), so each phase can be measured on its own.
    /// Needs --records; implies --consume-from earliest; --drain-timeout bounds the read;
    /// producer flags (--producers, --acks, --rate, --create-topic, ...) are refused.
    #[arg(long, conflicts_with_all = [
        "read_back", "producers", "duration", "rate", "create_topic", "warmup", "acks",
        "compression", "linger_ms", "max_in_flight", "batch_size", "record_size",
    ])]
    pub consume_only: bool,

    /// Measure Metadata requests instead of producing and consuming: `all` asks for every
    /// topic, `named` for the --topic-count topics named after --topic. --connections
    /// connections to the bootstrap broker each keep one request in flight for --duration
    /// seconds after --warmup; the report gives requests/s and latency. With
    /// --create-topic the topics are created first (--partitions each) and the run waits
    /// until every partition has a leader. Producer and consumer flags are refused.
    #[arg(long, value_enum, conflicts_with_all = [
        "read_back", "consume_only", "records", "producers", "consumers", "rate", "acks",
        "compression", "linger_ms", "max_in_flight", "batch_size", "record_size",
        "consume_from", "drain_timeout", "fetch_max_bytes", "partition_fetch_max_bytes",
    ])]
    pub metadata: Option<MetadataTopics>,

    /// With --metadata: connections to the bootstrap broker, one request in flight each.
    #[arg(long, default_value_t = 4, requires = "metadata", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,

    /// With --metadata: how many topics --topic names: <topic>-0 .. <topic>-(N-1), or
    /// <topic> itself when 1.
    #[arg(long, default_value_t = 1, requires = "metadata", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub topic_count: u32,

    /// Milliseconds to wait for any one response before counting a timeout.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_timeout_ms: u64,

    /// Seconds consumers keep fetching after producers finish, at most; with --read-back
    /// or --consume-only, seconds the whole catch-up read may take.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,

    /// Seconds the whole run may take; past it everything stops and the run is reported.
    #[arg(long, default_value_t = 900.0)]
    pub timeout: f64,

    /// Bytes a Fetch response may carry (fetch.max.bytes).
    #[arg(long, default_value_t = 8 << 20, value_parser = clap::value_parser!(i32).range(1024..=i64::from(MAX_FETCH_BYTES)))]
    pub fetch_max_bytes: i32,

    /// Bytes a Fetch response may carry per partition (max.partition.fetch.bytes).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(i32).range(1024..=i64::from(MAX_FETCH_BYTES)))]
    pub partition_fetch_max_bytes: i32,

    /// Let leaders be contacted at addresses other than the bootstrap's IP.
    #[arg(long)]
    pub allow_other_hosts: bool,

    /// client.id sent with every request.
    #[arg(long, default_value = "runnel-bench")]
    pub client_id: String,
}

/// Compression codecs a produced batch can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (frame format).
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionArg {
    /// The codec's name as the flag spells it (`none`, `gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        }
    }
}

impl From<CompressionArg> for Compression {
    fn from(value: CompressionArg) -> Self {
        match value {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Which topics a `--metadata` run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataTopics {
    /// Every topic (a null topic list), as admin tools and `kcat -L` ask.
    All,
    /// The `--topic-count` topics named after `--topic`, as a producer or consumer asks.
    Named,
}

/// How producers and consumers of a run are arranged in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Consumers run alongside producers and measure end-to-end latency (the default).
    Concurrent,
    /// Producers run first, then consumers read the run's records back from earliest
    /// (`--read-back`).
    ReadBack,
    /// No producers: consumers read `--records` existing records from earliest
    /// (`--consume-only`).
    ConsumeOnly,
}

impl RunMode {
    /// How the text report names the consume phase.
    pub fn consume_label(self) -> &'static str {
        match self {
            RunMode::Concurrent => "consume",
            RunMode::ReadBack => "consume (read back from earliest after producing)",
            RunMode::ConsumeOnly => "consume (existing records from earliest)",
        }
    }
}

/// The offset consumers start from, resolved with ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartOffset {
    /// The log end offset when the consumer starts: only this run's records.
    Latest,
    /// The log start offset: records of earlier runs are read (and counted apart).
    Earliest,
}

impl StartOffset {
    /// The ListOffsets timestamp that asks for this offset.
    pub fn list_offsets_timestamp(self) -> i64 {
        match self {
            StartOffset::Latest => -1,
            StartOffset::Earliest => -2,
        }
    }
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "-1" | "all" => Ok(-1),
        other => Err(format!("acks must be 0, 1, -1 or all, not {other:?}")),
    }
}

pub(crate) fn seconds(flag: &'static str, value: f64) -> Result<Duration, BenchError> {
    if !(0.0..=86_400.0).contains(&value) {
        return Err(BenchError::InvalidSetting {
            flag,
            reason: format!("{value} is not between 0 and 86400 seconds"),
        });
    }
    Ok(Duration::from_secs_f64(value))
}

/// Settings checked and turned into the values the run uses.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Concurrent, read-back or consume-only.
    pub mode: RunMode,
    /// Where consumers start (earliest in the catch-up modes).
    pub start: StartOffset,
    /// Producer clients (0 with `--consume-only`).
    pub producers: u32,
    /// Records in one batch (at least 1).
    pub records_per_batch: usize,
    /// Produce for this long after the warmup, unless a record count is set.
    pub duration: Option<Duration>,
    /// Records to produce in total, if set.
    pub records: Option<u64>,
    /// Leading time left out of the figures.
    pub warmup: Duration,
    /// How long consumers drain after producers finish; in the catch-up modes, how long
    /// the whole read may take.
    pub drain_timeout: Duration,
    /// The whole run's limit.
    pub timeout: Duration,
    /// Limit on waiting for one response.
    pub request_timeout: Duration,
    /// How long a partial batch waits with --rate.
    pub linger: Duration,
    /// Identity and limits of every connection: `--client-id`, the request timeout (also
    /// for connecting) and [`MAX_RESPONSE_BYTES`].
    pub client: ClientConfig,
}

impl BenchConfig {
    /// Checks the settings that clap cannot, and derives the run's plan.
    pub fn plan(&self) -> Result<RunPlan, BenchError> {
        if self.record_size < MIN_RECORD_SIZE || self.record_size > MAX_BATCH_SIZE {
            return Err(BenchError::InvalidSetting {
                flag: "--record-size",
                reason: format!(
                    "{} is not between {MIN_RECORD_SIZE} and {MAX_BATCH_SIZE} bytes",
                    self.record_size
                ),
            });
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(BenchError::InvalidSetting {
                flag: "--batch-size",
                reason: format!(
                    "{} is not between 1 and {MAX_BATCH_SIZE} bytes",
                    self.batch_size
                ),
            });
        }
        if self.topic.is_empty() || self.topic.len() > 249 {
            return Err(BenchError::InvalidSetting {
                flag: "--topic",
                reason: "a topic name has 1 to 249 characters".to_string(),
            });
        }
        if self.metadata.is_some() {
            return Err(BenchError::InvalidSetting {
                flag: "--metadata",
                reason: "a Metadata run has its own plan (metadata::MetadataPlan)".to_string(),
            });
        }
        let (mode, start) = self.mode_and_start()?;
        if mode != RunMode::ConsumeOnly
            && self.producers == 0
            && self.records.is_some_and(|n| n > 0)
        {
            return Err(BenchError::InvalidSetting {
                flag: "--records",
                reason: "records cannot be produced with --producers 0".to_string(),
            });
        }
        let duration = match (self.duration, self.records) {
            (Some(d), _) => Some(seconds("--duration", d)?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        };
        Ok(RunPlan {
            mode,
            start,
            producers: if mode == RunMode::ConsumeOnly {
                0
            } else {
                self.producers
            },
            records_per_batch: records_per_batch(self.batch_size, self.record_size),
            duration,
            records: self.records,
            warmup: seconds("--warmup", self.warmup)?,
            drain_timeout: seconds("--drain-timeout", self.drain_timeout)?,
            timeout: seconds("--timeout", self.timeout)?,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            linger: Duration::from_millis(self.linger_ms),
            client: self.client_config(),
        })
    }

    /// Identity and limits of every connection of the run.
    pub fn client_config(&self) -> ClientConfig {
        let request_timeout = Duration::from_millis(self.request_timeout_ms);
        ClientConfig {
            client_id: self.client_id.clone(),
            connect_timeout: request_timeout,
            request_timeout,
            max_response_bytes: MAX_RESPONSE_BYTES,
            ..ClientConfig::new("runnel-bench")
        }
    }

    /// The run's mode and the consumers' start offset, with the flags each mode needs.
    fn mode_and_start(&self) -> Result<(RunMode, StartOffset), BenchError> {
        let (mode, flag) = match (self.read_back, self.consume_only) {
            (true, true) => {
                return Err(BenchError::InvalidSetting {
                    flag: "--read-back",
                    reason: "it cannot be combined with --consume-only".to_string(),
                })
            }
            (true, false) => (RunMode::ReadBack, "--read-back"),
            (false, true) => (RunMode::ConsumeOnly, "--consume-only"),
            (false, false) => {
                return Ok((
                    RunMode::Concurrent,
                    self.consume_from.unwrap_or(StartOffset::Latest),
                ))
            }
        };
        let refuse = |reason: String| Err(BenchError::InvalidSetting { flag, reason });
        if self.consumers == 0 {
            return refuse("it needs --consumers 1 or more to read".to_string());
        }
        if self.consume_from == Some(StartOffset::Latest) {
            return refuse(
                "it reads from the earliest offset; drop --consume-from latest".to_string(),
            );
        }
        match mode {
            RunMode::ReadBack if self.producers == 0 => {
                refuse("it reads back what producers wrote; give --producers 1 or more".to_string())
            }
            RunMode::ConsumeOnly if self.records.unwrap_or(0) == 0 => {
                refuse("it reads --records N existing records; give N of at least 1".to_string())
            }
            _ => Ok((mode, StartOffset::Earliest)),
        }
    }
}

/// How many records of `record_size` value bytes fill a batch of `batch_size` bytes, as
/// Kafka's producer counts it (header and per-record overhead included); at least one.
pub fn records_per_batch(batch_size: usize, record_size: usize) -> usize {
    let room = batch_size.saturating_sub(BATCH_OVERHEAD);
    (room / (record_size + RECORD_OVERHEAD)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchConfig, clap::Error> {
        BenchConfig::try_parse_from(std::iter::once("runnel-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_kafka_producer_defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.record_size, 1024);
        assert_eq!(config.batch_size, 16384);
        assert_eq!(config.acks, 1);
        let plan = config.plan().unwrap();
        assert_eq!(plan.duration, Some(Duration::from_secs(10)));
        // 16384-byte batches hold 15 records of 1 KiB, as with the Java producer.
        assert_eq!(plan.records_per_batch, 15);
    }

    #[test]
    fn acks_accepts_all_and_minus_one() {
        assert_eq!(parse(&["--acks", "all"]).unwrap().acks, -1);
        assert_eq!(parse(&["--acks", "-1"]).unwrap().acks, -1);
        assert_eq!(parse(&["--acks", "0"]).unwrap().acks, 0);
        assert!(parse(&["--acks", "2"]).is_err());
    }

    #[test]
    fn duration_and_records_exclude_each_other() {
        assert!(parse(&["--duration", "1", "--records", "5"]).is_err());
        let plan = parse(&["--records", "5"]).unwrap().plan().unwrap();
        assert_eq!(plan.duration, None);
        assert_eq!(plan.records, Some(5));
    }

    #[test]
    fn record_size_bounds() {
        let min = MIN_RECORD_SIZE.to_string();
        let below = (MIN_RECORD_SIZE - 1).to_string();
        let max = MAX_BATCH_SIZE.to_string();
        let above = (MAX_BATCH_SIZE + 1).to_string();
        assert!(parse(&["--record-size", &min]).unwrap().plan().is_ok());
        assert!(parse(&["--record-size", &below]).unwrap().plan().is_err());
        assert!(parse(&["--record-size", &max]).unwrap().plan().is_ok());
        assert!(parse(&["--record-size", &above]).unwrap().plan().is_err());
    }

    #[test]
    fn negative_or_endless_seconds_are_refused() {
        assert!(parse(&["--warmup=-1"]).unwrap().plan().is_err());
        assert!(parse(&["--duration", "NaN"]).unwrap().plan().is_err());
        assert!(parse(&["--timeout", "inf"]).unwrap().plan().is_err());
    }

    /// The flag an `InvalidSetting` error names.
    fn refused_flag(args: &[&str]) -> &'static str {
        match parse(args).unwrap().plan() {
            Err(BenchError::InvalidSetting { flag, .. }) => flag,
            other => panic!("{args:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn default_mode_is_concurrent_from_latest() {
        let plan = parse(&[]).unwrap().plan().unwrap();
        assert_eq!(
            (plan.mode, plan.start),
            (RunMode::Concurrent, StartOffset::Latest)
        );
        assert_eq!(plan.producers, 1);
        let plan = parse(&["--consume-from", "earliest"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(
            (plan.mode, plan.start),
            (RunMode::Concurrent, StartOffset::Earliest)
        );
    }

    #[test]
    fn read_back_reads_from_earliest() {
        let plan = parse(&["--read-back", "--records", "100"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(
            (plan.mode, plan.start),
            (RunMode::ReadBack, StartOffset::Earliest)
        );
        assert_eq!((plan.producers, plan.records), (1, Some(100)));
        let plan = parse(&["--read-back", "--duration", "2", "--warmup", "1"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(plan.mode, RunMode::ReadBack);
        assert_eq!(plan.duration, Some(Duration::from_secs(2)));
        let redundant = parse(&["--read-back", "--consume-from", "earliest"]).unwrap();
        assert_eq!(redundant.plan().unwrap().start, StartOffset::Earliest);
        assert_eq!(
            refused_flag(&["--read-back", "--consume-from", "latest"]),
            "--read-back"
        );
    }

    #[test]
    fn read_back_needs_a_producer_and_a_consumer() {
        assert_eq!(
            refused_flag(&["--read-back", "--consumers", "0"]),
            "--read-back"
        );
        assert_eq!(
            refused_flag(&["--read-back", "--producers", "0"]),
            "--read-back"
        );
        let both = parse(&["--read-back", "--producers", "4", "--consumers", "2"]).unwrap();
        assert!(both.plan().is_ok());
    }

    #[test]
    fn consume_only_reads_a_record_count_without_producers() {
        let plan = parse(&["--consume-only", "--records", "500", "--consumers", "2"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(
            (plan.mode, plan.start),
            (RunMode::ConsumeOnly, StartOffset::Earliest)
        );
        assert_eq!(
            (plan.producers, plan.records, plan.duration),
            (0, Some(500), None)
        );
        assert_eq!(refused_flag(&["--consume-only"]), "--consume-only");
        assert_eq!(
            refused_flag(&["--consume-only", "--records", "0"]),
            "--consume-only"
        );
        assert_eq!(
            refused_flag(&["--consume-only", "--records", "5", "--consumers", "0"]),
            "--consume-only"
        );
        assert_eq!(
            refused_flag(&[
                "--consume-only",
                "--records",
                "5",
                "--consume-from",
                "latest"
            ]),
            "--consume-only"
        );
    }

    #[test]
    fn consume_only_refuses_producer_flags() {
        for extra in [
            &["--read-back"][..],
            &["--producers", "1"],
            &["--duration", "5"],
            &["--rate", "100"],
            &["--create-topic"],
            &["--warmup", "1"],
            &["--acks", "all"],
            &["--compression", "lz4"],
            &["--record-size", "100"],
        ] {
            let mut args = vec!["--consume-only", "--records", "5"];
            args.extend_from_slice(extra);
            assert!(parse(&args).is_err(), "{args:?} should not parse");
        }
        // Consumer-side flags are fine.
        let args = [
            "--consume-only",
            "--records",
            "5",
            "--consumers",
            "3",
            "--drain-timeout",
            "60",
            "--fetch-max-bytes",
            "2048",
        ];
        assert!(parse(&args).unwrap().plan().is_ok());
    }

    #[test]
    fn read_back_and_consume_only_exclude_each_other_in_a_built_config() {
        let mut config = parse(&["--records", "5"]).unwrap();
        config.read_back = true;
        config.consume_only = true;
        assert!(matches!(
            config.plan(),
            Err(BenchError::InvalidSetting {
                flag: "--read-back",
                ..
            })
        ));
    }

    #[test]
    fn tiny_batches_still_hold_one_record() {
        assert_eq!(records_per_batch(1, 1024), 1);
        assert_eq!(records_per_batch(1024 * 1024, 1024), 1014);
    }
}
