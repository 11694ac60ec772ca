//! Memory of the real binary while a consumer reads a 1 GiB partition: Fetch sends
//! records from the segment files (`sendfile`), so the broker's resident memory stays
//! far below the partition size and does not depend on it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{call, plain_batch, BrokerProcess};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

const MIB: u64 = 1 << 20;
/// The partition is filled to at least this many bytes of record batches.
const LOG_BYTES: u64 = 1 << 30;
/// One record per batch, this long: a batch stays under the default
/// `message.max.bytes` (1 MiB + 12).
const VALUE_LEN: usize = (MIB as usize) - 256;
/// Distinct batch contents, produced in turn.
const PATTERNS: usize = 8;
/// Batches per Produce request: 16 MiB requests, well below `socket.request.max.bytes`.
const BATCHES_PER_PRODUCE: usize = 16;
/// What a Java consumer asks for by default: `fetch.max.bytes` 50 MiB; here 10 MiB per
/// partition (the default is 1 MiB) so each response carries ten batches.
const FETCH_MAX_BYTES: i32 = 50 << 20;
const PARTITION_MAX_BYTES: i32 = 10 << 20;
/// Segments of 256 MiB, so the consumer crosses segment boundaries.
const SEGMENT_BYTES: &str = "268435456";
/// Bound on the peak resident memory (VmHWM) of each broker process: the one that takes
/// the 1 GiB of produce, and a fresh one on the same data that serves the consumer.
///
/// Measured in a debug build: about 16 MiB at start, 80-115 MiB after producing (16 MiB
/// requests read, decoded and appended, and the heap the allocator keeps afterwards),
/// 17 MiB after consuming. None of it grows with the partition: a broker that loaded a
/// segment (256 MiB) or the partition (1 GiB) would exceed the bound.
const RSS_BOUND_MIB: u64 = 256;
/// Bound on what consuming the whole partition adds to the fresh broker's VmRSS: less
/// than one partition's `max_bytes`, so no response's records were held in memory.
/// Sendfile measured +1 MiB; the same broker copying each response's records into a
/// buffer before writing it measured +21 MiB.
const CONSUME_GROWTH_BOUND_MIB: u64 = 8;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A consumer's fetch of partition 0 of `big` from `offset`.
fn fetch_request(offset: i64, partition_max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("big"))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes)])])
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// Samples the process's VmRSS every few milliseconds until dropped; keeps the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let (stop2, peak2) = (Arc::clone(&stop), Arc::clone(&peak_kib));
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(kib) = status_kib(pid, "VmRSS") {
                    peak2.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler {
            stop,
            peak_kib,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the largest VmRSS seen, in MiB.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak_kib.load(Ordering::Relaxed) / 1024
    }
}

/// Pseudo-random (incompressible) bytes from `seed`.
fn noise(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = BytesMut::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.freeze()
}

#[tokio::test]
async fn consuming_a_1_gib_partition_keeps_broker_memory_bounded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::spawn(dir.path(), &["--log-segment-bytes", SEGMENT_BYTES])?;
    let pid = broker.child.id();
    let mut s = broker.connect().await?;
    let created = call(
        &mut s,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name("big"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    anyhow::ensure!(created.topics[0].error_code == 0, "create failed");

    // Stamped now: older batches would be deleted by time retention at the restart.
    let now_ms = i64::try_from(std::time::UNIX_EPOCH.elapsed()?.as_millis())?;
    let patterns: Vec<Bytes> = (0..PATTERNS as u64)
        .map(|i| plain_batch(&[(None, noise(i, VALUE_LEN))], now_ms))
        .collect::<anyhow::Result<_>>()?;
    let batch_len = patterns[0].len() as u64;
    let batches = LOG_BYTES.div_ceil(batch_len);
    let log_bytes = batches * batch_len;

    let started = Instant::now();
    let mut produced = 0u64;
    while produced < batches {
        let n = (batches - produced).min(BATCHES_PER_PRODUCE as u64);
        let mut records = BytesMut::with_capacity((n * batch_len) as usize);
        for i in produced..produced + n {
            records.extend_from_slice(&patterns[(i % PATTERNS as u64) as usize]);
        }
        let r = call(
            &mut s,
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name("big"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.freeze()))])]),
            9,
        )
        .await?;
        let p = &r.responses[0].partition_responses[0];
        anyhow::ensure!(
            (p.error_code, p.base_offset) == (0, produced as i64),
            "produce at {produced}: error {} base offset {}",
            p.error_code,
            p.base_offset
        );
        produced += n;
    }
    let produce_time = started.elapsed();
    let produce_hwm = status_kib(pid, "VmHWM")? / 1024;
    drop(s);
    broker.signal("-TERM")?;
    anyhow::ensure!(broker.wait_exit()?.success(), "unclean exit");

    // A fresh process serves the consumer, so its memory shows what consuming costs
    // (the producing one keeps the heap its requests used). One small fetch first, so
    // the baseline includes whatever the first fetch sets up.
    let broker = BrokerProcess::spawn(dir.path(), &["--log-segment-bytes", SEGMENT_BYTES])?;
    let pid = broker.child.id();
    let mut s = broker.connect().await?;
    let first = call(&mut s, &fetch_request(0, 1), 12).await?;
    anyhow::ensure!(
        first.responses[0].partitions[0].error_code == 0,
        "warm-up fetch"
    );
    let rss_before_consume = status_kib(pid, "VmRSS")? / 1024;

    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let (mut next, mut received, mut fetches) = (0i64, 0u64, 0u32);
    while next < batches as i64 {
        let r = call(&mut s, &fetch_request(next, PARTITION_MAX_BYTES), 12).await?;
        fetches += 1;
        let p = &r.responses[0].partitions[0];
        anyhow::ensure!(
            p.error_code == 0,
            "fetch at {next}: error {} (log start {}, high watermark {})",
            p.error_code,
            p.log_start_offset,
            p.high_watermark
        );
        let records = p.records.clone().unwrap_or_default();
        anyhow::ensure!(!records.is_empty(), "fetch at {next}: no records");
        anyhow::ensure!(
            records.len() as u64 <= PARTITION_MAX_BYTES as u64,
            "fetch at {next}: {} bytes",
            records.len()
        );
        let mut at = 0usize;
        while at < records.len() {
            let rest = &records[at..];
            let base = i64::from_be_bytes(rest[..8].try_into()?);
            let len = 12 + usize::try_from(i32::from_be_bytes(rest[8..12].try_into()?))?;
            let last_delta = i32::from_be_bytes(rest[23..27].try_into()?);
            anyhow::ensure!(base == next, "batch at offset {base}, expected {next}");
            let expect = &patterns[(base % PATTERNS as i64) as usize];
            // Past the base offset, length and leader epoch, which the broker sets.
            anyhow::ensure!(
                rest.get(16..len) == expect.get(16..),
                "batch {base} differs from what was produced"
            );
            next = base + i64::from(last_delta) + 1;
            received += len as u64;
            at += len;
        }
    }
    let consume_time = started.elapsed();
    let peak_rss = sampler.finish();
    let hwm = status_kib(pid, "VmHWM")? / 1024;
    eprintln!(
        "{log_bytes} bytes in {batches} batches: produce {produce_time:?} (broker VmHWM \
         {produce_hwm} MiB); consume {consume_time:?} in {fetches} fetches (fresh broker \
         VmRSS {rss_before_consume} MiB before, peak {peak_rss} MiB while consuming, \
         VmHWM {hwm} MiB)"
    );
    assert_eq!((next, received), (batches as i64, log_bytes));
    assert!(peak_rss > 0, "VmRSS was never sampled");
    assert!(
        produce_hwm < RSS_BOUND_MIB && hwm < RSS_BOUND_MIB,
        "broker VmHWM reached {produce_hwm} MiB producing, {hwm} MiB consuming \
         (bound {RSS_BOUND_MIB} MiB)"
    );
    assert!(
        peak_rss.saturating_sub(rss_before_consume) < CONSUME_GROWTH_BOUND_MIB,
        "consuming grew the broker's VmRSS from {rss_before_consume} to {peak_rss} MiB"
    );
    drop(broker);
    dir.close()?;
    Ok(())
}
