//! The layouts are checked against the codec itself: for every served API and version,
//! bodies generated from `requests.schema` (random values, arrays of a few elements,
//! known tagged fields) must decode with `kafka-protocol` to the last byte and encode
//! back to the same bytes. A wrong type, version range or tag in the schema fails this.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::schema::{FieldType, Message};
use super::{check_body, messages, BoundsError};
use crate::dispatch::ROUTES;

/// xorshift64*: a fixed-seed source of test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// How the generator fills arrays: a few elements, or one array announcing `huge`.
#[derive(Clone, Copy)]
enum Counts {
    Few,
    /// The `n`th array written (in wire order) announces this count, written as is.
    Hostile {
        nth: usize,
        huge: u32,
    },
}

struct Gen<'a> {
    message: &'a Message,
    version: i16,
    flexible: bool,
    rng: Rng,
    counts: Counts,
    arrays_seen: usize,
    hostile_written: bool,
}

impl Gen<'_> {
    fn length(&mut self, out: &mut Vec<u8>, len: usize, width: usize) {
        if self.flexible {
            put_uvarint(out, len as u32 + 1);
        } else if width == 2 {
            out.extend_from_slice(&(len as i16).to_be_bytes());
        } else {
            out.extend_from_slice(&(len as i32).to_be_bytes());
        }
    }

    fn value(&mut self, ty: &FieldType, out: &mut Vec<u8>, depth: usize) {
        match ty {
            // Booleans and i8s alike: 0 or 1 encode back unchanged.
            FieldType::Fixed(1) => out.push(self.rng.below(2) as u8),
            FieldType::Fixed(n) => {
                for _ in 0..*n {
                    out.push(self.rng.next() as u8);
                }
            }
            FieldType::String => {
                let len = self.rng.below(6) as usize;
                self.length(out, len, 2);
                for _ in 0..len {
                    out.push(b'a' + self.rng.below(26) as u8);
                }
            }
            FieldType::Bytes => {
                let len = self.rng.below(9) as usize;
                self.length(out, len, 4);
                for _ in 0..len {
                    out.push(self.rng.next() as u8);
                }
            }
            FieldType::Struct(index) => self.structure(*index, out, depth),
            FieldType::Array(element) => {
                let nth = self.arrays_seen;
                self.arrays_seen += 1;
                if let Counts::Hostile { nth: target, huge } = self.counts {
                    if target == nth {
                        self.hostile_written = true;
                        if self.flexible {
                            put_uvarint(out, huge);
                        } else {
                            out.extend_from_slice(&huge.to_be_bytes());
                        }
                        // One element's worth of bytes follows, as an attacker would send.
                        self.value(element, out, depth + 1);
                        return;
                    }
                }
                let count = if depth > 3 {
                    0
                } else {
                    self.rng.below(3) as usize
                };
                self.length(out, count, 4);
                for _ in 0..count {
                    self.value(element, out, depth + 1);
                }
            }
        }
    }

    fn structure(&mut self, index: usize, out: &mut Vec<u8>, depth: usize) {
        let message = self.message;
        let structure = &message.structs[index];
        for field in &structure.fields {
            if field.tag.is_none() && field.present(self.version) {
                self.value(&field.ty, out, depth);
            }
        }
        if !self.flexible {
            return;
        }
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut known: Vec<_> = structure
            .fields
            .iter()
            .filter(|f| f.present(self.version))
            .filter_map(|f| f.tag.map(|t| (t, f)))
            .collect();
        known.sort_by_key(|(t, _)| *t);
        for (tag, field) in known {
            if self.rng.below(2) == 0 {
                let mut value = Vec::new();
                self.value(&field.ty, &mut value, depth);
                tagged.push((tag, value));
            }
        }
        put_uvarint(out, tagged.len() as u32);
        for (tag, value) in tagged {
            put_uvarint(out, tag);
            put_uvarint(out, value.len() as u32);
            out.extend_from_slice(&value);
        }
    }
}

fn generate(message: &Message, version: i16, seed: u64, counts: Counts) -> (Vec<u8>, bool) {
    let mut g = Gen {
        message,
        version,
        flexible: message.flexible(version),
        rng: Rng(seed.max(1)),
        counts,
        arrays_seen: 0,
        hostile_written: false,
    };
    let mut out = Vec::new();
    g.structure(0, &mut out, 0);
    (out, g.hostile_written)
}

fn round_trip<R: Decodable + Encodable>(body: &[u8], version: i16) -> Result<Vec<u8>, String> {
    let mut buf = Bytes::copy_from_slice(body);
    let request = R::decode(&mut buf, version).map_err(|e| format!("decode: {e}"))?;
    if !buf.is_empty() {
        return Err(format!("{} bytes left after decoding", buf.len()));
    }
    let mut out = BytesMut::new();
    request
        .encode(&mut out, version)
        .map_err(|e| format!("encode: {e}"))?;
    Ok(out.to_vec())
}

macro_rules! codecs {
    ($($key:ident => $req:ty),* $(,)?) => {
        fn codec_round_trip(api: &str, body: &[u8], version: i16) -> Result<Vec<u8>, String> {
            match api {
                $( stringify!($key) => round_trip::<$req>(body, version), )*
                other => Err(format!("no codec listed for {other}")),
            }
        }
    };
}

codecs! {
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    Metadata => MetadataRequest,
    OffsetCommit => OffsetCommitRequest,
    OffsetFetch => OffsetFetchRequest,
    FindCoordinator => FindCoordinatorRequest,
    JoinGroup => JoinGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    SyncGroup => SyncGroupRequest,
    DescribeGroups => DescribeGroupsRequest,
    ListGroups => ListGroupsRequest,
    ApiVersions => ApiVersionsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    DeleteRecords => DeleteRecordsRequest,
    InitProducerId => InitProducerIdRequest,
    DescribeConfigs => DescribeConfigsRequest,
    AlterConfigs => AlterConfigsRequest,
    CreatePartitions => CreatePartitionsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    DeleteGroups => DeleteGroupsRequest,
    OffsetDelete => OffsetDeleteRequest,
    DescribeCluster => DescribeClusterRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    ElectLeaders => ElectLeadersRequest,
    AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
    ListPartitionReassignments => ListPartitionReassignmentsRequest,
    UnregisterBroker => UnregisterBrokerRequest,
    DescribeLogDirs => DescribeLogDirsRequest,
    ConsumerProtocolSubscription => ConsumerProtocolSubscription,
}

/// Every served (API name, version), and the other client messages the broker decodes.
fn served() -> Vec<(String, i16)> {
    ROUTES
        .iter()
        .flat_map(|r| (r.min..=r.max).map(move |v| (format!("{:?}", r.key), v)))
        .chain((0..=3).map(|v| ("ConsumerProtocolSubscription".to_string(), v)))
        .collect()
}

#[test]
fn every_served_api_has_a_layout() {
    let messages = messages().expect("the schema parses");
    for route in ROUTES {
        let api = format!("{:?}", route.key);
        assert!(messages.contains_key(&api), "no layout for {api}");
    }
}

#[test]
fn generated_bodies_decode_whole_and_encode_back_identically() {
    let messages = messages().expect("the schema parses");
    for (api, version) in served() {
        let message = &messages[&api];
        for seed in 1..=40u64 {
            let (body, _) = generate(message, version, seed * 7919, Counts::Few);
            check_body(&api, version, &body)
                .unwrap_or_else(|e| panic!("{api} v{version} seed {seed}: pre-pass refused: {e}"));
            let encoded = codec_round_trip(&api, &body, version)
                .unwrap_or_else(|e| panic!("{api} v{version} seed {seed}: {e}"));
            assert_eq!(
                encoded, body,
                "{api} v{version} seed {seed}: re-encoded differently"
            );
        }
    }
}

#[test]
fn every_array_announcing_a_huge_count_is_refused() {
    let messages = messages().expect("the schema parses");
    let mut refused = 0;
    for (api, version) in served() {
        let message = &messages[&api];
        for nth in 0..8 {
            for huge in [0x7fff_ffff_u32, 0x8000_0000, 0xffff_fffe, 1 << 20] {
                // Seeds whose generated bodies reach the nth array.
                let (body, written) = generate(
                    message,
                    version,
                    99 + nth as u64,
                    Counts::Hostile { nth, huge },
                );
                if !written {
                    continue;
                }
                let result = check_body(&api, version, &body);
                // A non-flexible 0xffff_fffe is -2: negative, refused all the same.
                assert!(
                    matches!(
                        result,
                        Err(BoundsError::CountTooLarge { .. } | BoundsError::NegativeLength { .. })
                    ),
                    "{api} v{version} array #{nth} count {huge:#x}: {result:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 500,
        "only {refused} hostile bodies were generated"
    );
}

#[test]
fn every_array_element_takes_at_least_one_byte() {
    // The bound `count × min_size ≤ remaining` means something only if min_size ≥ 1.
    let messages = messages().expect("the schema parses");
    for (api, version) in served() {
        let message: &'static Message = &messages[&api];
        let walker = super::Walker {
            buf: &[],
            at: 0,
            version,
            flexible: message.flexible(version),
            message,
        };
        for s in &message.structs {
            for f in s.fields.iter().filter(|f| f.present(version)) {
                if let FieldType::Array(element) = &f.ty {
                    assert!(
                        walker.min_size(element) >= 1,
                        "{api} v{version} {}: empty elements",
                        f.name
                    );
                }
            }
        }
    }
}

#[test]
fn the_reported_frame_is_refused() {
    // Metadata v1, topics announcing 2^31-1 entries: 19 bytes that aborted the broker.
    let body = 0x7fff_ffff_i32.to_be_bytes();
    assert!(matches!(
        check_body("Metadata", 1, &body),
        Err(BoundsError::CountTooLarge {
            field: "topics",
            count: 0x7fff_ffff,
            ..
        })
    ));
    // A null topics array (all topics) and an empty one are fine.
    assert!(check_body("Metadata", 1, &(-1i32).to_be_bytes()).is_ok());
    assert!(check_body("Metadata", 1, &0i32.to_be_bytes()).is_ok());
}

#[test]
fn count_bounds_at_the_boundary() {
    // DeleteGroups v1 (non-flexible): [string], each at least 2 bytes.
    let body = |count: i32, strings: usize| {
        let mut b = count.to_be_bytes().to_vec();
        for _ in 0..strings {
            b.extend_from_slice(&0i16.to_be_bytes());
        }
        b
    };
    assert!(check_body("DeleteGroups", 1, &body(3, 3)).is_ok());
    // Four announced, bytes for three: count × 2 > remaining.
    assert!(matches!(
        check_body("DeleteGroups", 1, &body(4, 3)),
        Err(BoundsError::CountTooLarge {
            count: 4,
            min_element: 2,
            remaining: 6,
            ..
        })
    ));
    assert!(matches!(
        check_body("DeleteGroups", 1, &body(-2, 0)),
        Err(BoundsError::NegativeLength { len: -2, .. })
    ));
    // String lengths: max - 1, max, max + 1 of the bytes left.
    let string = |len: i16, have: usize| {
        let mut b = 1i32.to_be_bytes().to_vec();
        b.extend_from_slice(&len.to_be_bytes());
        b.extend(std::iter::repeat_n(b'g', have));
        b
    };
    assert!(check_body("DeleteGroups", 1, &string(4, 5)).is_ok());
    assert!(check_body("DeleteGroups", 1, &string(5, 5)).is_ok());
    assert!(matches!(
        check_body("DeleteGroups", 1, &string(6, 5)),
        Err(BoundsError::LengthTooLarge {
            len: 6,
            remaining: 5,
            ..
        })
    ));
}

#[test]
fn a_known_tag_must_fill_its_declared_size() {
    // Fetch v15: empty body fields, then a tag section holding ReplicaState (tag 1)
    // declared longer than its value.
    let messages = messages().expect("the schema parses");
    let (mut body, _) = generate(&messages["Fetch"], 15, 3, Counts::Few);
    // Replace the top-level tag section (the generator may have written one) by ours.
    let tail = {
        let mut t = vec![1u8, 1, 14]; // one field, tag 1, size 14
        t.extend_from_slice(&7i32.to_be_bytes());
        t.extend_from_slice(&9i64.to_be_bytes());
        t.push(0); // ReplicaState's own empty tag section: 13 bytes, not 14
        t.push(0); // padding to the declared size
        t
    };
    let section = find_top_level_tag_section(&messages["Fetch"], 15, &body);
    body.truncate(section);
    body.extend_from_slice(&tail);
    assert!(matches!(
        check_body("Fetch", 15, &body),
        Err(BoundsError::TagSize {
            declared: 14,
            used: 13,
            ..
        })
    ));
}

/// Where the body's own tag section starts: walk the untagged fields.
fn find_top_level_tag_section(message: &'static Message, version: i16, body: &[u8]) -> usize {
    let mut w = super::Walker {
        buf: body,
        at: 0,
        version,
        flexible: message.flexible(version),
        message,
    };
    for f in &message.structs[0].fields {
        if f.tag.is_none() && f.present(version) {
            w.walk(&f.ty, &f.name).expect("generated body walks");
        }
    }
    w.at
}
