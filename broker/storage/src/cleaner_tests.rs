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

/// Every record readable from the log start, in order.
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
        for r in records::parse_records(batch, &h).unwrap() {
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
        log.append(&keyed_batch(b, 10 * i as i64), 0, 0).unwrap();
    }
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
fn compressed_batches_are_kept_whole_and_keep_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(100)).unwrap();
    let mut gz = keyed_batch(&[(Some("b"), Some("hidden"))], 0);
    gz[22] |= 1; // "gzip": the cleaner must not look inside
    let crc = crate::batch::compute_crc(&gz);
    gz[17..21].copy_from_slice(&crc.to_be_bytes());
    log.append(&gz, 0, 0).unwrap();
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

mod model {
    use super::*;
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

        #[test]
        fn compaction_matches_the_model(
            history in batches(),
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
                log.append(&keyed_batch(&refs, 10 * i as i64), 0, 0).unwrap();
            }
            let original = contents(&log);
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
