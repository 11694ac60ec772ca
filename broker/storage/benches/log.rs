//! Storage micro-benchmarks: append (as received, validated, re-compressed), index
//! lookup, read and recovery.
//!
//! Run with `cargo bench -p runnel-storage` (one group: `cargo bench -p runnel-storage
//! --bench log -- append_codec`). Batches are 16 KiB of 1 KiB records, like a producer
//! with `batch.size=16384`. Nothing here fsyncs except recovery, which fsyncs what it
//! scanned.

// Bench code: a panic is how a broken setup is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Bencher, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_storage::{CompressionType, Log, LogConfig};

const RECORD: usize = 1024;
const RECORDS_PER_BATCH: i32 = 16;
const BATCH_PAYLOAD: usize = RECORD * RECORDS_PER_BATCH as usize;
const HEADER: usize = 61;

/// A valid v2 batch of 16 records in 16 KiB (the records region is filler: storage
/// reads only the header and the CRC).
fn batch(timestamp: i64) -> Vec<u8> {
    let total = HEADER + BATCH_PAYLOAD;
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(RECORDS_PER_BATCH - 1).to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&RECORDS_PER_BATCH.to_be_bytes());
    b.extend((0..BATCH_PAYLOAD).map(|i| (i % 251) as u8));
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024 * 1024,
        ..LogConfig::default()
    }
}

/// A log of `bytes` of 16 KiB batches in 16 MiB segments.
fn filled(dir: &Path, bytes: usize) -> Log {
    let mut log = Log::open(dir, config()).unwrap();
    let b = batch(1_000);
    for _ in 0..bytes / b.len() {
        log.append(&b, 0, 0).unwrap();
    }
    log
}

/// Times appends of `batch` to a fresh log with `config`.
fn bench_append(bench: &mut Bencher<'_>, batch: &[u8], config: &LogConfig) {
    bench.iter_custom(|iters| {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config.clone()).unwrap();
        let mut spent = Duration::ZERO;
        for i in 0..iters {
            // Keep the disk footprint bounded; the reset is not timed.
            if i % 4096 == 4095 {
                log.truncate_to(0).unwrap();
            }
            let start = Instant::now();
            black_box(log.append(black_box(batch), 0, 0).unwrap());
            spent += start.elapsed();
        }
        spent
    });
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    let b = batch(1_000);
    group.throughput(Throughput::Bytes(b.len() as u64));
    group.bench_function("16KiB_batch_1KiB_records", |bench| {
        bench_append(bench, &b, &config());
    });
    group.finish();
}

/// A real batch of 16 records of 1 KiB, uncompressed (encoded by kafka-protocol) or
/// lz4-compressed as the Java client and librdkafka frame it: independent 64 KiB
/// blocks, no block or content checksum. (kafka-protocol's own lz4 encoder, used by
/// runnel-bench, adds XXH32 checksums that cost more to verify.) Values are
/// pseudo-random `A`-`Z`, as runnel-bench and Kafka's perf tool send.
fn encoded_batch(lz4: bool) -> Vec<u8> {
    let plain = plain_batch();
    if !lz4 {
        return plain;
    }
    let mut encoder = lz4::EncoderBuilder::new()
        .block_size(lz4::BlockSize::Max64KB)
        .block_mode(lz4::BlockMode::Independent)
        .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
        .checksum(lz4::ContentChecksum::NoChecksum)
        .build(Vec::new())
        .unwrap();
    std::io::Write::write_all(&mut encoder, &plain[HEADER..]).unwrap();
    let (region, result) = encoder.finish();
    result.unwrap();
    let mut b = plain[..HEADER].to_vec();
    b.extend_from_slice(&region);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[22] |= 3; // lz4
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The uncompressed batch of [`encoded_batch`].
fn plain_batch() -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let records: Vec<Record> = (0..i64::from(RECORDS_PER_BATCH))
        .map(|i| {
            let value: Vec<u8> = (0..RECORD)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b'A' + (x % 26) as u8
                })
                .collect();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32 - 1,
                timestamp: 1_000 + i,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.to_vec()
}

/// What a topic's `compression.type` costs at append: a batch stored as received
/// (uncompressed, or compressed and validated: decompressed and parsed), or
/// re-compressed with another codec. Throughput counts the 16 KiB of record values.
fn append_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_codec");
    group.throughput(Throughput::Bytes(BATCH_PAYLOAD as u64));
    let cases = [
        ("none_to_producer", false, CompressionType::Producer),
        ("lz4_to_producer", true, CompressionType::Producer),
        ("lz4_to_zstd", true, CompressionType::Zstd),
        ("lz4_to_gzip", true, CompressionType::Gzip),
        ("none_to_zstd", false, CompressionType::Zstd),
    ];
    for (name, lz4, compression_type) in cases {
        let b = encoded_batch(lz4);
        let config = LogConfig {
            compression_type,
            ..config()
        };
        group.bench_function(name, |bench| bench_append(bench, &b, &config));
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 64 * 1024 * 1024);
    let end = log.log_end_offset();
    // A fixed pseudo-random walk over the offsets, the same in every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_offset = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % end as u64) as i64
    };
    let mut group = c.benchmark_group("lookup");
    group.bench_function("index_lookup_64MiB_log", |bench| {
        // max_bytes 0: finds the batch (sparse index + header scan), copies nothing.
        bench.iter(|| black_box(log.read(next_offset(), 0, false).unwrap()));
    });
    group.throughput(Throughput::Bytes(1024 * 1024));
    group.bench_function("read_1MiB_random_offset", |bench| {
        bench.iter(|| black_box(log.read(next_offset(), 1024 * 1024, true).unwrap()));
    });
    group.finish();
}

fn recovery(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 64 * 1024 * 1024);
    let size = log.size_bytes();
    log.close().unwrap();
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("unclean_open_64MiB", |bench| {
        bench.iter_batched(
            || {
                // As after a crash before any flush: scan everything from offset 0.
                std::fs::remove_file(dir.path().join("clean-shutdown")).ok();
                std::fs::write(dir.path().join("recovery-point"), "0\n0\n").unwrap();
            },
            |()| black_box(Log::open(dir.path(), config()).unwrap()),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("clean_open_64MiB", |bench| {
        bench.iter_batched(
            || (),
            |()| {
                let log = Log::open(dir.path(), config()).unwrap();
                log.close().unwrap();
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = append, append_codec, lookups, recovery
}
criterion_main!(benches);
