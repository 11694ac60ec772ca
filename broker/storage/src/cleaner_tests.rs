//! Tests of the cleaner: behaviour, crash points, and a property test against a model.

use super::*;
use crate::config::{CleanupPolicy, LogConfig};
use crate::testutil::keyed_batch;

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

/// One record as read back: (offset, key, tombstone, encoded bytes).
type Rec = (i64, Option<Vec<u8>>, bool, Vec<u8>);

/// Every record readable from the log start, in order (compressed batches decoded).
fn contents(log: &Log) -> Vec<Rec> {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, true)
        .unwrap()
        .bytes;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).unwrap();
        let batch = &bytes[at..at + h.total_len()];
        h.validate_crc(batch).unwrap();
        let mut scratch = Vec::new();
        let limit = MAX_DECOMPRESSED_RECORDS_BYTES;
        for r in records::read_records(batch, &h, limit, &mut scratch).unwrap() {
            let offset = h.base_offset + i64::from(r.offset_delta);
            out.push((
                offset,
                r.key.map(<[u8]>::to_vec),
                r.tombstone,
                r.bytes.to_vec(),
            ));
        }
        at += h.total_len();
    }
    out
}

/// Appends one batch per entry of `batches`; batch `i` has timestamp `10 * i`.
fn fill(log: &mut Log, batches: &[Vec<(Option<&str>, Option<&str>)>]) {
    for (i, b) in batches.iter().enumerate() {
        append_keyless(log, &keyed_batch(b, 10 * i as i64), 0);
    }
}

/// Appends `batch` as the topic's `delete` policy would have before it became
/// compacted, so records without a key get in (append refuses them under `compact`).
fn append_keyless(log: &mut Log, batch: &[u8], leader_epoch: i32) {
    let config = log.config().clone();
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..config.clone()
    });
    log.append(batch, leader_epoch, 0).unwrap();
    log.set_config(config);
}

/// Keys a..c over four ~100-byte segments, with a tombstone for `b`, then an active tail.
fn history() -> Vec<Vec<(Option<&'static str>, Option<&'static str>)>> {
    vec![
        vec![
            (Some("a"), Some("a1")),
            (Some("b"), Some("b1")),
            (Some("c"), Some("c1")),
        ],
        vec![(Some("a"), Some("a2")), (None, Some("keyless"))],
        vec![(Some("b"), Some("b2")), (Some("a"), Some("a3"))],
        vec![(Some("b"), None), (Some("c"), Some("c2"))],
        vec![(Some("a"), Some("a4"))],
        vec![(Some("d"), Some("d1"))],
    ]
}

fn keys_at(recs: &[Rec]) -> Vec<(i64, String, bool)> {
    recs.iter()
        .map(|(o, k, t, _)| {
            let key = k
                .as_deref()
                .map_or("-".into(), |k| String::from_utf8_lossy(k).into_owned());
            (*o, key, *t)
        })
        .collect()
}

#[test]
fn keeps_latest_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    fill(&mut log, &history());
    assert_eq!(log.segments.len(), 6);
    let end = log.log_end_offset();
    // Tombstone's segment (largest timestamp 30) is younger than delete.retention.ms.
    let out = log.compact(500).unwrap();
    assert_eq!((out.segments_rewritten, out.tombstones_removed), (3, 0));
    assert_eq!(out.cleanable_end_offset, 10);
    let expect = vec![
        (7, "b".into(), true),
        (8, "c".into(), false),
        (9, "a".into(), false),
        (10, "d".into(), false),
    ];
    assert_eq!(keys_at(&contents(&log)), expect);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end));
    // Later: the tombstone expires.
    let out = log.compact(1_031).unwrap();
    assert_eq!((out.records_removed, out.tombstones_removed), (1, 1));
    assert_eq!(keys_at(&contents(&log)), expect[1..]);
    // Reads at a removed offset return the next batch; indexes were rebuilt.
    assert_eq!(log.read(1, 1000, true).unwrap().first_offset, 7);
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    assert_eq!(keys_at(&contents(&log)), expect[1..]);
    assert_eq!(
        log.read_batch_by_timestamp(25).unwrap().map(|b| b[7]),
        Some(7)
    );
    assert_eq!(log.compact(2_000).unwrap().segments_rewritten, 0);
    assert_eq!(
        log.append(&keyed_batch(&[(Some("a"), Some("a5"))], 60), 0, 0)
            .unwrap()
            .base_offset,
        end
    );
}

#[test]
fn a_rewritten_segment_gets_a_new_handle_and_old_regions_keep_the_old_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    fill(&mut log, &history());
    let before = log.read_regions(0, usize::MAX, true).unwrap();
    let old_bytes = before.read_all().unwrap();
    assert_eq!(log.compact(500).unwrap().segments_rewritten, 3);
    let after = log.read_regions(0, usize::MAX, true).unwrap();
    // The first segment was swapped for a new file; the untouched active one was not.
    assert!(!after.regions[0].same_file(&before.regions[0]));
    let (old_active, new_active) = (before.regions.last(), after.regions.last());
    assert!(old_active
        .zip(new_active)
        .is_some_and(|(o, n)| o.same_file(n)));
    assert!(after.len() < before.len());
    assert_eq!(before.read_all().unwrap(), old_bytes);
    assert_eq!(
        after.read_all().unwrap(),
        log.read(0, usize::MAX, true).unwrap().bytes
    );
}

#[test]
fn min_compaction_lag_and_policy_limit_the_cleanable_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            min_compaction_lag_ms: 100,
            ..config(100)
        },
    )
    .unwrap();
    fill(&mut log, &history());
    // Segments with timestamps above 125 - 100 = 25 are not cleanable: only 0..=2.
    let out = log.compact(125).unwrap();
    assert_eq!(out.cleanable_end_offset, 7);
    assert_eq!(keys_at(&contents(&log))[0], (2, "c".into(), false));
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..config(100)
    });
    assert_eq!(log.compact(10_000).unwrap(), CompactionOutcome::default());
}

#[test]
fn undecodable_compressed_batches_are_kept_whole_and_keep_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    let mut gz = keyed_batch(&[(Some("b"), Some("hidden"))], 0);
    gz[22] |= 1; // "gzip", but the region is not gzip data
    let crc = crate::batch::compute_crc(&gz);
    gz[17..21].copy_from_slice(&crc.to_be_bytes());
    // Append refuses it now; a log may hold one written before that check.
    assert!(log.append(&gz, 0, 0).is_err());
    let h = BatchHeader::parse(&gz).unwrap();
    log.segments.active_mut().append(&gz, &h, 64).unwrap();
    fill(&mut log, &history());
    let out = log.compact(100_000).unwrap();
    assert_eq!((out.opaque_batches, out.tombstones_removed), (1, 0));
    let after = contents_with_opaque(&log);
    assert_eq!(after.first(), Some(&(0, true)));
    assert!(keys_at(&contents_after_first(&log)).contains(&(8, "b".into(), true)));
}

/// (base offset, compressed) of every batch.
fn contents_with_opaque(log: &Log) -> Vec<(i64, bool)> {
    let bytes = log.read(0, usize::MAX, true).unwrap().bytes;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).unwrap();
        out.push((h.base_offset, h.compression() != 0));
        at += h.total_len();
    }
    out
}

fn contents_after_first(log: &Log) -> Vec<Rec> {
    let mut copy = Vec::new();
    let bytes = log.read(1, usize::MAX, true).unwrap().bytes;
    let mut at = 0;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).unwrap();
        let batch = &bytes[at..at + h.total_len()];
        for r in records::parse_records(batch, &h).unwrap() {
            copy.push((
                h.base_offset + i64::from(r.offset_delta),
                r.key.map(<[u8]>::to_vec),
                r.tombstone,
                Vec::new(),
            ));
        }
        at += h.total_len();
    }
    copy
}

/// Every key's latest record is present exactly once, and nothing is invented.
fn assert_latest_once(recs: &[Rec], original: &[Rec]) {
    let mut seen = std::collections::HashSet::new();
    for r in recs {
        assert!(seen.insert(r.0), "offset {} twice", r.0);
        assert!(
            original.contains(r),
            "record at {} not from the original",
            r.0
        );
    }
    let mut latest: HashMap<&Option<Vec<u8>>, &Rec> = HashMap::new();
    for r in original.iter().filter(|r| r.1.is_some()) {
        latest.insert(&r.1, r);
    }
    for r in latest.values() {
        assert_eq!(
            recs.iter().filter(|x| x == r).count(),
            1,
            "latest of {:?}",
            r.1
        );
    }
}

#[test]
fn crash_after_cleaned_file_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    fill(&mut log, &history());
    let before = contents(&log);
    assert!(
        log.compact_until(500, StopAfter::Cleaned)
            .unwrap()
            .segments_rewritten
            == 1
    );
    assert_eq!(
        leftover_names(dir.path()),
        ["00000000000000000000.log.cleaned"]
    );
    drop(log); // crash
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    assert!(leftover_names(dir.path()).is_empty());
    assert_eq!(contents(&log), before);
    log.compact(500).unwrap();
    assert_latest_once(&contents(&log), &before);
}

#[test]
fn crash_after_swap_rename_completes_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    fill(&mut log, &history());
    let before = contents(&log);
    log.compact_until(1_031, StopAfter::Swap).unwrap();
    assert_eq!(
        leftover_names(dir.path()),
        ["00000000000000000000.log.swap"]
    );
    drop(log); // crash, with no clean-shutdown marker
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    assert!(leftover_names(dir.path()).is_empty());
    let after = contents(&log);
    assert_latest_once(&after, &before);
    // Segment 0 lost a1, b1, c1; the tombstone for b (segment 3) is still there.
    assert_eq!(after.len(), before.len() - 3);
    assert!(after.iter().any(|r| r.2));
    // The same after a clean shutdown with the swap pending.
    log.compact_until(1_031, StopAfter::Swap).unwrap();
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    assert_latest_once(&contents(&log), &before);
    log.compact(1_031).unwrap();
    let last = contents(&log);
    assert_eq!(
        keys_at(&last),
        [
            (8, "c".into(), false),
            (9, "a".into(), false),
            (10, "d".into(), false)
        ]
    );
}

/// Compressed batches, written by kafka-protocol's encoder and read back by its
/// decoder, so neither end depends on our codec code.
mod compressed {
    use super::*;
    use crate::compression::Codec;
    use crate::testutil::compressed;
    use bytes::Bytes;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    const CODECS: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// One batch per segment: `segment.ms` 0 rolls at every later timestamp.
    fn roll_every_batch() -> LogConfig {
        LogConfig {
            segment_ms: 0,
            ..config(1 << 20)
        }
    }

    /// A batch from producer 7 (epoch 2, sequences from `base_sequence`) whose record
    /// `i` has timestamp `ts + i` and one header.
    fn kp_batch(
        compression: Compression,
        ts: i64,
        base_sequence: i32,
        recs: &[(Option<&str>, Option<&str>)],
    ) -> Vec<u8> {
        let records: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let mut headers = kafka_protocol::indexmap::IndexMap::new();
                headers.insert(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"hv")),
                );
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: 7,
                    producer_epoch: 2,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: base_sequence + i as i32,
                    timestamp: ts + i as i64,
                    key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                    value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                    headers,
                }
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    fn headers_by_base(log: &Log) -> Vec<BatchHeader> {
        let bytes = log.read(0, usize::MAX, true).unwrap().bytes;
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            h.validate_crc(&bytes[at..at + h.total_len()]).unwrap();
            out.push(h);
            at += h.total_len();
        }
        out
    }

    /// (offset, key, value, timestamp, sequence) of every record, by kafka-protocol.
    type Decoded = (i64, Option<String>, Option<String>, i64, i32);

    fn decode_independently(log: &Log) -> Vec<Decoded> {
        let mut bytes = log.read(0, usize::MAX, true).unwrap().bytes;
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        RecordBatchDecoder::decode_all(&mut bytes)
            .unwrap()
            .into_iter()
            .flat_map(|set| set.records)
            .map(|r| {
                assert_eq!(
                    r.headers.get(&b"h"[..]),
                    Some(&Some(Bytes::from_static(b"hv")))
                );
                assert_eq!((r.producer_id, r.producer_epoch), (7, 2));
                (
                    r.offset,
                    text(&r.key),
                    text(&r.value),
                    r.timestamp,
                    r.sequence,
                )
            })
            .collect()
    }

    /// Each batch in `after` is the batch with the same base offset in `before`, with
    /// only its length, record count and CRC changed: same codec, timestamps,
    /// producer fields, leader epoch and last offset.
    fn assert_headers_kept(before: &[BatchHeader], after: &[BatchHeader], counts: &[(i64, i32)]) {
        for h in after {
            let original = before
                .iter()
                .find(|o| o.base_offset == h.base_offset)
                .unwrap();
            let count = counts
                .iter()
                .find(|c| c.0 == h.base_offset)
                .map_or(original.record_count, |c| c.1);
            let expect = BatchHeader {
                batch_length: h.batch_length,
                crc: h.crc,
                record_count: count,
                ..*original
            };
            assert_eq!(*h, expect);
        }
    }

    #[test]
    fn each_codec_keeps_only_the_latest_value_per_key() {
        type R = (Option<&'static str>, Option<&'static str>);
        for codec in CODECS {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), roll_every_batch()).unwrap();
            let none = Compression::None;
            let history: [(Compression, Vec<R>); 6] = [
                (
                    codec,
                    vec![
                        (Some("a"), Some("a1")),
                        (Some("x"), Some("x1")),
                        (Some("b"), Some("b1")),
                        (None, Some("keyless")),
                        (Some("c"), Some("c1")),
                    ],
                ),
                (none, vec![(Some("a"), Some("a2")), (Some("d"), Some("d1"))]),
                (
                    codec,
                    vec![
                        (Some("d"), Some("d2")),
                        (Some("b"), Some("b2")),
                        (Some("e"), Some("e1")),
                    ],
                ),
                (
                    codec,
                    vec![
                        (Some("c"), None),
                        (Some("e"), Some("e2")),
                        (Some("f"), Some("f1")),
                    ],
                ),
                (none, vec![(Some("f"), Some("f2"))]),
                (codec, vec![(Some("a"), Some("a3"))]),
            ];
            let mut sequence = 0;
            for (i, (compression, recs)) in history.iter().enumerate() {
                let batch = kp_batch(*compression, 10 * i as i64, sequence, recs);
                append_keyless(&mut log, &batch, 5);
                sequence += recs.len() as i32;
            }
            assert_eq!(log.segments.len(), 6);
            let before = headers_by_base(&log);
            let all = decode_independently(&log);
            assert_eq!(all.len(), 15);

            // Tombstones are young: every older value goes, c's tombstone stays.
            let out = log.compact(500).unwrap();
            assert_eq!(out.opaque_batches, 0, "{codec:?}");
            assert_eq!(
                (out.segments_rewritten, out.records_removed),
                (4, 7),
                "{codec:?}"
            );
            let kept_offsets = [1, 5, 7, 8, 10, 11, 13, 14];
            let expect: Vec<Decoded> = all
                .iter()
                .filter(|r| kept_offsets.contains(&r.0))
                .cloned()
                .collect();
            let names: Vec<_> = expect
                .iter()
                .map(|r| r.2.as_deref().unwrap_or("-"))
                .collect();
            assert_eq!(names, ["x1", "a2", "d2", "b2", "-", "e2", "f2", "a3"]);
            assert_eq!(decode_independently(&log), expect, "{codec:?}");
            let after = headers_by_base(&log);
            assert_eq!(
                after.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
                [0, 5, 7, 10, 13, 14]
            );
            assert_headers_kept(&before, &after, &[(0, 1), (5, 1), (7, 2), (10, 2)]);
            // Our decoder agrees (offsets, keys, record bytes).
            let ours: Vec<i64> = contents(&log).iter().map(|r| r.0).collect();
            assert_eq!(ours, kept_offsets);

            // The tombstone's segment (timestamps 30..32) expires after 1_032.
            let out = log.compact(1_033).unwrap();
            assert_eq!(
                (out.records_removed, out.tombstones_removed),
                (1, 1),
                "{codec:?}"
            );
            let expect: Vec<Decoded> = expect.into_iter().filter(|r| r.0 != 10).collect();
            assert_eq!(decode_independently(&log), expect, "{codec:?}");
            let after = headers_by_base(&log);
            assert_headers_kept(&before, &after, &[(0, 1), (5, 1), (7, 2), (10, 1)]);

            // Reopened: indexes rebuilt, same records, nothing more to do.
            log.close().unwrap();
            let mut log = Log::open(dir.path(), roll_every_batch()).unwrap();
            assert_eq!(decode_independently(&log), expect, "{codec:?}");
            assert_eq!(log.read(2, 1, true).unwrap().first_offset, 0);
            // Last offsets were kept: offset 9 (e1, gone) still falls in batch 7.
            assert_eq!(log.read(9, 1, true).unwrap().first_offset, 7);
            assert_eq!(log.read(12, 1, true).unwrap().first_offset, 10);
            assert_eq!(log.compact(1_033).unwrap().segments_rewritten, 0);
        }
    }

    #[test]
    fn a_newer_value_in_a_compressed_batch_supersedes_an_older_uncompressed_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), roll_every_batch()).unwrap();
        log.append(
            &keyed_batch(&[(Some("k"), Some("old")), (Some("j"), Some("j1"))], 0),
            0,
            0,
        )
        .unwrap();
        let newer = keyed_batch(&[(Some("k"), Some("new"))], 10);
        log.append(&compressed(&newer, Codec::Zstd), 0, 0).unwrap();
        log.append(&keyed_batch(&[(Some("z"), Some("z"))], 20), 0, 0)
            .unwrap();
        log.compact(100).unwrap();
        assert_eq!(
            keys_at(&contents(&log)),
            [
                (1, "j".into(), false),
                (2, "k".into(), false),
                (3, "z".into(), false)
            ]
        );
    }

    #[test]
    fn crash_mid_compaction_of_a_compressed_batch_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), roll_every_batch()).unwrap();
        let first = keyed_batch(
            &[
                (Some("a"), Some("a1")),
                (Some("x"), Some("x1")),
                (Some("b"), Some("b1")),
            ],
            0,
        );
        log.append(&compressed(&first, Codec::Lz4), 0, 0).unwrap();
        log.append(
            &compressed(&keyed_batch(&[(Some("a"), Some("a2"))], 10), Codec::Snappy),
            0,
            0,
        )
        .unwrap();
        log.append(&keyed_batch(&[(Some("b"), None)], 20), 0, 0)
            .unwrap();
        log.append(&keyed_batch(&[(Some("z"), Some("z"))], 30), 0, 0)
            .unwrap();
        let before = contents(&log);

        assert_eq!(
            log.compact_until(500, StopAfter::Cleaned)
                .unwrap()
                .segments_rewritten,
            1
        );
        drop(log); // crash with a complete .cleaned file
        let mut log = Log::open(dir.path(), roll_every_batch()).unwrap();
        assert!(leftover_names(dir.path()).is_empty());
        assert_eq!(contents(&log), before);

        log.compact_until(500, StopAfter::Swap).unwrap();
        drop(log); // crash with the .swap file in place
        let mut log = Log::open(dir.path(), roll_every_batch()).unwrap();
        assert!(leftover_names(dir.path()).is_empty());
        let after = contents(&log);
        assert_latest_once(&after, &before);
        // Segment 0 lost a1 and b1 and is still one lz4 batch; b's tombstone is kept.
        assert_eq!(keys_at(&after)[0], (1, "x".into(), false));
        assert_eq!(contents_with_opaque(&log)[0], (0, true));
        assert_eq!(
            BatchHeader::parse(&log.read(0, 1, true).unwrap().bytes)
                .unwrap()
                .compression(),
            3
        );
        log.compact(500).unwrap();
        assert_eq!(
            keys_at(&contents(&log)),
            [
                (1, "x".into(), false),
                (3, "a".into(), false),
                (4, "b".into(), true),
                (5, "z".into(), false)
            ]
        );
    }
}

mod model {
    use super::*;
    use crate::compression::Codec;
    use crate::testutil::compressed;
    use proptest::prelude::*;

    /// A record of the generated history: key index (None = keyless), value (None = tombstone).
    type Spec = (Option<u8>, Option<u8>);

    fn batches() -> impl Strategy<Value = Vec<Vec<Spec>>> {
        let record = (
            prop_oneof![1 => Just(None), 12 => (0u8..6).prop_map(Some)],
            prop_oneof![1 => Just(None), 5 => any::<u8>().prop_map(Some)],
        );
        prop::collection::vec(prop::collection::vec(record, 1..4), 1..40)
    }

    /// The codec of each generated batch: mostly uncompressed, each codec sometimes.
    fn codecs() -> impl Strategy<Value = Vec<Option<Codec>>> {
        let codec = prop_oneof![
            4 => Just(None),
            1 => Just(Some(Codec::Gzip)),
            1 => Just(Some(Codec::Snappy)),
            1 => Just(Some(Codec::Lz4)),
            1 => Just(Some(Codec::Zstd)),
        ];
        prop::collection::vec(codec, 40)
    }

    /// (base offset, codec id) of every batch.
    fn batch_codecs(log: &Log) -> Vec<(i64, u8)> {
        let bytes = log.read(0, usize::MAX, true).unwrap().bytes;
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            out.push((h.base_offset, h.compression()));
            at += h.total_len();
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

        #[test]
        fn compaction_matches_the_model(
            history in batches(),
            codecs in codecs(),
            segment_bytes in 150u64..600,
            now in 0i64..1_500,
            twice in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), config(segment_bytes)).unwrap();
            let owned: Vec<Vec<(Option<String>, Option<String>)>> = history
                .iter()
                .map(|b| b.iter().map(|(k, v)| (k.map(|k| format!("k{k}")), v.map(|v| format!("v{v}")))).collect())
                .collect();
            for (i, b) in owned.iter().enumerate() {
                let refs: Vec<(Option<&str>, Option<&str>)> =
                    b.iter().map(|(k, v)| (k.as_deref(), v.as_deref())).collect();
                let batch = keyed_batch(&refs, 10 * i as i64);
                let batch = match codecs[i] {
                    Some(codec) => compressed(&batch, codec),
                    None => batch,
                };
                append_keyless(&mut log, &batch, 0);
            }
            let original = contents(&log);
            let original_codecs = batch_codecs(&log);
            let active_base = log.segments.active().base_offset();
            // Largest timestamp of the segment holding each offset.
            let mut seg_ts = Vec::new();
            for s in log.segments.iter() {
                seg_ts.push((s.base_offset(), s.largest_timestamp().unwrap()));
            }
            let largest_ts = |offset: i64| seg_ts.iter().rev().find(|(b, _)| *b <= offset).map_or(-1, |s| s.1);
            let expired = |offset: i64| largest_ts(offset) < now - 1_000;
            // A second pass sees rewritten segments whose largest timestamp may have
            // dropped (newer records compacted away), so it may also drop a tombstone whose
            // own timestamp is past delete.retention.ms. Batch i's records all carry the
            // timestamp 10*i (keyed_batch).
            let own_ts: Vec<i64> = owned
                .iter()
                .enumerate()
                .flat_map(|(i, b)| std::iter::repeat_n(10 * i as i64, b.len()))
                .collect();
            let may_expire = |offset: i64| {
                twice && usize::try_from(offset).ok().and_then(|o| own_ts.get(o)).is_some_and(|t| *t < now - 1_000)
            };

            log.compact(now).unwrap();
            if twice {
                log.compact(now).unwrap();
            }
            drop(log);
            let log = Log::open(dir.path(), config(segment_bytes)).unwrap();
            let kept = contents(&log);

            // Every batch keeps its base offset and codec (no compression was lost or
            // added); contents() checked each CRC and decoded each batch.
            for b in batch_codecs(&log) {
                prop_assert!(original_codecs.contains(&b), "batch {:?} changed", b);
            }
            // Offsets strictly increasing, each record byte-identical to the original.
            prop_assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
            for r in &kept {
                prop_assert!(original.contains(r));
            }
            // The active segment is untouched.
            let active_orig: Vec<&Rec> = original.iter().filter(|r| r.0 >= active_base).collect();
            let active_kept: Vec<&Rec> = kept.iter().filter(|r| r.0 >= active_base).collect();
            prop_assert_eq!(active_orig, active_kept);
            // Outside it: no keyless record, each key at most once, and it is the key's
            // latest there unless that was an expired tombstone.
            let mut latest_cleanable: HashMap<&Vec<u8>, &Rec> = HashMap::new();
            for r in original.iter().filter(|r| r.0 < active_base) {
                if let Some(k) = &r.1 {
                    latest_cleanable.insert(k, r);
                }
            }
            let cleaned: Vec<&Rec> = kept.iter().filter(|r| r.0 < active_base).collect();
            prop_assert!(cleaned.iter().all(|r| r.1.is_some()));
            for (key, latest) in &latest_cleanable {
                let of_key: Vec<&&Rec> = cleaned.iter().filter(|r| r.1.as_ref() == Some(*key)).collect();
                if latest.2 && expired(latest.0) {
                    prop_assert!(of_key.is_empty(), "expired tombstone kept at {}", latest.0);
                } else if latest.2 && may_expire(latest.0) {
                    prop_assert!(of_key.len() <= 1);
                    if let Some(kept_one) = of_key.first() {
                        prop_assert_eq!(**kept_one, *latest);
                    }
                } else {
                    prop_assert_eq!(of_key.len(), 1);
                    prop_assert_eq!(*of_key[0], *latest);
                }
            }
            // Every key's latest record in the whole log survives unless it is an
            // expired tombstone outside the active segment.
            let mut latest_all: HashMap<&Vec<u8>, &Rec> = HashMap::new();
            for r in &original {
                if let Some(k) = &r.1 {
                    latest_all.insert(k, r);
                }
            }
            for latest in latest_all.values() {
                let dropped_ok = latest.2 && latest.0 < active_base && (expired(latest.0) || may_expire(latest.0));
                prop_assert!(dropped_ok || kept.contains(latest));
            }
            // Every kept offset can be read back through the rebuilt indexes.
            for r in &kept {
                let slice = log.read(r.0, 1, true).unwrap();
                prop_assert!(slice.first_offset <= r.0);
            }
        }
    }
}
