//! The hand-written Fetch encoder against `kafka-protocol`'s: byte-identical frames for
//! every version, fixed and random responses.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::*;
use crate::dispatch::encode_response;

/// A partition as the tests describe it: records are pieces, each becoming one region.
#[derive(Debug, Clone)]
struct PartitionSpec {
    index: i32,
    error_code: i16,
    offsets: (i64, i64, i64),
    aborted: Option<Vec<(i64, i64)>>,
    preferred: i32,
    records: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone)]
struct Spec {
    throttle_time_ms: i32,
    error_code: i16,
    session_id: i32,
    topics: Vec<(String, [u8; 16], Vec<PartitionSpec>)>,
}

/// The spec's records written to one file, and both encodings of the response built
/// from it: ours with the regions read back, and kafka-protocol's.
fn both(
    spec: &Spec,
    version: i16,
    correlation_id: i32,
) -> (Result<Vec<u8>, ()>, Result<Vec<u8>, ()>) {
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    let file = Arc::new(tmp.reopen().unwrap());
    let path: Arc<Path> = Arc::from(tmp.path());
    let mut at = 0u64;
    let mut ours = FetchReply {
        throttle_time_ms: spec.throttle_time_ms,
        error_code: spec.error_code,
        session_id: spec.session_id,
        topics: Vec::new(),
    };
    let mut theirs = FetchResponse::default()
        .with_throttle_time_ms(spec.throttle_time_ms)
        .with_error_code(spec.error_code)
        .with_session_id(spec.session_id);
    for (name, id, partitions) in &spec.topics {
        let name = TopicName(StrBytes::from_string(name.clone()));
        let topic_id = Uuid::from_bytes(*id);
        let mut our_topic = TopicReply {
            name: name.clone(),
            topic_id,
            partitions: Vec::new(),
        };
        let mut their_topic = FetchableTopicResponse::default()
            .with_topic(name)
            .with_topic_id(topic_id);
        for p in partitions {
            let regions = p.records.as_ref().map(|pieces| {
                pieces
                    .iter()
                    .map(|piece| {
                        tmp.write_all(piece).unwrap();
                        let r = FileRegion::new(
                            Arc::clone(&file),
                            Arc::clone(&path),
                            at,
                            piece.len() as u64,
                        );
                        at += piece.len() as u64;
                        r
                    })
                    .collect::<Vec<_>>()
            });
            our_topic.partitions.push(PartitionReply {
                partition_index: p.index,
                error_code: p.error_code,
                high_watermark: p.offsets.0,
                last_stable_offset: p.offsets.1,
                log_start_offset: p.offsets.2,
                aborted_transactions: p.aborted.as_ref().map(|a| {
                    a.iter()
                        .map(|&(producer_id, first_offset)| AbortedTransaction {
                            producer_id,
                            first_offset,
                        })
                        .collect()
                }),
                preferred_read_replica: p.preferred,
                records: regions,
            });
            their_topic.partitions.push(
                PartitionData::default()
                    .with_partition_index(p.index)
                    .with_error_code(p.error_code)
                    .with_high_watermark(p.offsets.0)
                    .with_last_stable_offset(p.offsets.1)
                    .with_log_start_offset(p.offsets.2)
                    .with_aborted_transactions(p.aborted.as_ref().map(|a| {
                        a.iter()
                            .map(|&(producer, first)| {
                                fetch_response::AbortedTransaction::default()
                                    .with_producer_id(ProducerId(producer))
                                    .with_first_offset(first)
                            })
                            .collect()
                    }))
                    .with_preferred_read_replica(BrokerId(p.preferred))
                    .with_records(
                        p.records
                            .as_ref()
                            .map(|pieces| Bytes::from(pieces.concat())),
                    ),
            );
        }
        ours.topics.push(our_topic);
        theirs.responses.push(their_topic);
    }
    tmp.flush().unwrap();
    let ours = encode(correlation_id, version, &ours)
        .map(|chunks| materialize(&chunks))
        .map_err(drop);
    let theirs = encode_response(correlation_id, version, &theirs)
        .map(|b| b.to_vec())
        .map_err(drop);
    (ours, theirs)
}

/// The frame's bytes, regions read from their files.
fn materialize(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(b) => out.extend_from_slice(b),
            Chunk::File(r) => r.read_into(&mut out).unwrap(),
        }
    }
    out
}

fn partition(index: i32) -> PartitionSpec {
    PartitionSpec {
        index,
        error_code: 0,
        offsets: (100, 100, 0),
        aborted: Some(Vec::new()),
        preferred: -1,
        records: Some(vec![b"batch-one".to_vec(), b"batch-two!".to_vec()]),
    }
}

/// Several topics and partitions; an error with null records; empty records; aborted
/// transactions; null aborted transactions; a non-default preferred replica (v11+).
fn fixed(version: i16) -> Spec {
    let preferred = if version >= 11 { 3 } else { -1 };
    Spec {
        throttle_time_ms: 7,
        error_code: 3,
        session_id: if version >= 7 { 12345 } else { 0 },
        topics: vec![
            (
                "orders".into(),
                [1; 16],
                vec![
                    partition(0),
                    PartitionSpec {
                        error_code: 1,
                        offsets: (-1, -1, -1),
                        aborted: None,
                        records: None,
                        ..partition(1)
                    },
                    PartitionSpec {
                        records: Some(Vec::new()),
                        ..partition(2)
                    },
                ],
            ),
            ("".into(), [0; 16], Vec::new()),
            (
                "payments.v2".into(),
                [9; 16],
                vec![PartitionSpec {
                    aborted: Some(vec![(17, 40), (-5, i64::MAX)]),
                    preferred,
                    records: Some(vec![vec![0xab; 300], Vec::new(), vec![1, 2, 3]]),
                    ..partition(5)
                }],
            ),
        ],
    }
}

#[test]
fn fixed_responses_match_kafka_protocol_in_every_version() {
    for version in MIN_VERSION..=MAX_VERSION {
        let (ours, theirs) = both(&fixed(version), version, 77);
        assert!(theirs.is_ok(), "v{version}: kafka-protocol refused");
        assert_eq!(ours, theirs, "v{version}");
    }
}

#[test]
fn an_empty_response_matches_and_ends_without_an_empty_chunk() {
    for version in MIN_VERSION..=MAX_VERSION {
        let spec = Spec {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: Vec::new(),
        };
        let (ours, theirs) = both(&spec, version, -1);
        assert_eq!(ours, theirs, "v{version}");
        let chunks = encode(1, version, &FetchReply::default()).unwrap();
        assert!(chunks.iter().all(|c| !c.is_empty()));
    }
}

#[test]
fn fields_missing_from_a_version_are_refused_like_kafka_protocol() {
    let mut spec = fixed(16);
    let (ours, theirs) = both(&spec, 6, 1);
    assert!(ours.is_err() && theirs.is_err(), "session id in v6");
    spec.session_id = 0;
    let (ours, theirs) = both(&spec, 10, 1);
    assert!(ours.is_err() && theirs.is_err(), "preferred replica in v10");
    assert_eq!(
        encode(1, 3, &FetchReply::default()).unwrap_err(),
        EncodeError::UnsupportedVersion(3)
    );
    assert!(encode(1, 17, &FetchReply::default()).is_err());
}

#[test]
fn the_size_prefix_counts_the_regions_and_regions_are_not_copied() {
    let (ours, _) = both(&fixed(12), 12, 5);
    let frame = ours.unwrap();
    let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(usize::try_from(size).unwrap() + 4, frame.len());
    let reply = FetchReply {
        topics: vec![TopicReply {
            partitions: vec![PartitionReply {
                records: Some(vec![FileRegion::new(
                    Arc::new(tempfile::tempfile().unwrap()),
                    Arc::from(Path::new("never-read")),
                    0,
                    1 << 30,
                )]),
                ..PartitionReply::empty(0)
            }],
            ..TopicReply::default()
        }],
        ..FetchReply::default()
    };
    // A 1 GiB region of an empty file: encoding never reads it.
    let chunks = encode(1, 16, &reply).unwrap();
    let total: u64 = chunks.iter().map(Chunk::len).sum();
    let Some(Chunk::Bytes(head)) = chunks.first() else {
        panic!("no leading bytes")
    };
    let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    assert_eq!(size + 4, total);
    assert!(matches!(chunks.get(1), Some(Chunk::File(r)) if r.len() == 1 << 30));
}

fn partition_spec(version: i16) -> impl Strategy<Value = PartitionSpec> {
    let piece = proptest::collection::vec(any::<u8>(), 0..200);
    (
        any::<i32>(),
        any::<i16>(),
        any::<(i64, i64, i64)>(),
        proptest::option::of(proptest::collection::vec(any::<(i64, i64)>(), 0..3)),
        any::<i32>(),
        proptest::option::of(proptest::collection::vec(piece, 0..3)),
    )
        .prop_map(
            move |(index, error_code, offsets, aborted, preferred, records)| PartitionSpec {
                index,
                error_code,
                offsets,
                aborted,
                preferred: if version >= 11 { preferred } else { -1 },
                records,
            },
        )
}

fn spec(version: i16) -> impl Strategy<Value = Spec> {
    let topic = (
        "[a-zA-Z0-9._-]{0,20}",
        any::<[u8; 16]>(),
        proptest::collection::vec(partition_spec(version), 0..4),
    );
    (
        any::<i32>(),
        any::<i16>(),
        any::<i32>(),
        proptest::collection::vec(topic, 0..4),
    )
        .prop_map(
            move |(throttle_time_ms, error_code, session_id, topics)| Spec {
                throttle_time_ms,
                error_code,
                session_id: if version >= 7 { session_id } else { 0 },
                topics,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_responses_match_kafka_protocol(
        (version, spec) in (MIN_VERSION..=MAX_VERSION).prop_flat_map(|v| (Just(v), spec(v))),
        correlation_id in any::<i32>(),
    ) {
        let (ours, theirs) = both(&spec, version, correlation_id);
        prop_assert!(theirs.is_ok());
        prop_assert_eq!(ours, theirs);
    }
}
