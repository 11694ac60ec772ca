//! Hostile lengths and counts over real TCP: arrays announcing billions of elements in
//! every shape (top level, nested, compact and not, of structs, strings and ints),
//! strings and bytes longer than the frame, huge tag sections, and clients that announce
//! large frames and trickle them. Each closes only its own connection, is counted in
//! `runnel_request_errors_total`, and the broker goes on serving everyone else.

mod common;

use common::{call, is_closed, read_response, sample, scrape, TestBroker, WAIT};
use kafka_protocol::messages::ApiVersionsRequest;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A request frame: size prefix, header v1 (non-flexible) or v2 (flexible, empty tag
/// section), then `body`.
fn frame(key: i16, version: i16, flexible_header: bool, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&key.to_be_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&7i32.to_be_bytes());
    v.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    if flexible_header {
        v.push(0); // no tagged fields
    }
    v.extend_from_slice(body);
    let mut out = (v.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&v);
    out
}

fn be32(n: i32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// `n` as an unsigned varint.
fn uvarint(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// A non-flexible string.
fn str16(s: &str) -> Vec<u8> {
    let mut v = (s.len() as i16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// (what it is, API name for the metric, frame)
fn hostile_frames() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let huge = 0x7fff_ffff;
    let compact_huge = uvarint(u32::MAX);
    vec![
        (
            "Metadata v1: topics announcing 2^31-1 (the reported 19-byte frame)",
            "Metadata",
            frame(3, 1, false, &be32(huge)),
        ),
        (
            "Metadata v12: compact topics announcing 2^32-2",
            "Metadata",
            frame(3, 12, true, &compact_huge),
        ),
        (
            "Produce v3: partitions of one topic announcing 2^31-1",
            "Produce",
            frame(
                0,
                3,
                false,
                &[
                    &(-1i16).to_be_bytes()[..],
                    &1i16.to_be_bytes(),
                    &be32(1000),
                    &be32(1),
                    &str16("t"),
                    &be32(huge),
                ]
                .concat(),
            ),
        ),
        (
            "Produce v9: compact partitions of one topic announcing 2^32-2",
            "Produce",
            frame(
                0,
                9,
                true,
                &[
                    &[0u8][..],
                    &1i16.to_be_bytes(),
                    &be32(1000),
                    &uvarint(2),
                    &uvarint(2),
                    b"t",
                    &compact_huge,
                ]
                .concat(),
            ),
        ),
        (
            "Produce v3: records announcing 2^31-1 bytes",
            "Produce",
            frame(
                0,
                3,
                false,
                &[
                    &(-1i16).to_be_bytes()[..],
                    &1i16.to_be_bytes(),
                    &be32(1000),
                    &be32(1),
                    &str16("t"),
                    &be32(1),
                    &be32(0),
                    &be32(huge),
                ]
                .concat(),
            ),
        ),
        (
            "CreateTopics v4: configs of one topic announcing 2^31-1",
            "CreateTopics",
            frame(
                19,
                4,
                false,
                &[
                    &be32(1)[..],
                    &str16("t"),
                    &be32(1),
                    &1i16.to_be_bytes(),
                    &be32(0),
                    &be32(huge),
                ]
                .concat(),
            ),
        ),
        (
            "CreateTopics v5: compact broker ids of an assignment announcing 2^32-2",
            "CreateTopics",
            frame(
                19,
                5,
                true,
                &[
                    &uvarint(2)[..],
                    &uvarint(2),
                    b"t",
                    &be32(1),
                    &1i16.to_be_bytes(),
                    &uvarint(2),
                    &be32(0),
                    &compact_huge,
                ]
                .concat(),
            ),
        ),
        (
            "DescribeGroups v0: group names (strings) announcing 2^31-1",
            "DescribeGroups",
            frame(15, 0, false, &be32(huge)),
        ),
        (
            "ListGroups v4: compact states filter (strings) announcing 2^32-2",
            "ListGroups",
            frame(16, 4, true, &compact_huge),
        ),
        (
            "JoinGroup v0: a group id of 32767 bytes in a short frame",
            "JoinGroup",
            frame(11, 0, false, &[&0x7fffi16.to_be_bytes()[..], b"g"].concat()),
        ),
        (
            "OffsetCommit v2: partitions announcing 2^31-1",
            "OffsetCommit",
            frame(
                8,
                2,
                false,
                &[
                    &str16("g")[..],
                    &be32(1),
                    &str16("m"),
                    &8i64.to_be_bytes(),
                    &be32(1),
                    &str16("t"),
                    &be32(huge),
                ]
                .concat(),
            ),
        ),
        (
            "Fetch v12: a tag section announcing 2^32-1 fields",
            "Fetch",
            frame(
                1,
                12,
                true,
                &[
                    &be32(-1)[..],
                    &be32(0),
                    &be32(0),
                    &be32(0),
                    &[0],
                    &be32(0),
                    &be32(-1),
                    &uvarint(1),
                    &uvarint(1),
                    &uvarint(1),
                    &uvarint(u32::MAX),
                ]
                .concat(),
            ),
        ),
        (
            "DeleteTopics v4: compact topic names announcing 2^32-2",
            "DeleteTopics",
            frame(20, 4, true, &compact_huge),
        ),
    ]
}

#[tokio::test]
async fn huge_counts_in_every_shape_close_only_that_connection() -> anyhow::Result<()> {
    let broker = TestBroker::start(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await?;
    let metrics = broker
        .metrics_addr
        .ok_or_else(|| anyhow::anyhow!("no metrics endpoint"))?;
    // A bystander connection opened before the attacks keeps working throughout.
    let mut bystander = broker.connect().await?;
    let frames = hostile_frames();
    for (what, _, bytes) in &frames {
        let mut s = broker.connect().await?;
        s.write_all(bytes).await?;
        assert!(
            is_closed(&mut s).await,
            "{what}: the connection stayed open"
        );
        common::still_serving(&broker).await?;
        let r = call(&mut bystander, &ApiVersionsRequest::default(), 3).await?;
        assert_eq!(r.error_code, 0, "{what}: the bystander's request failed");
    }
    let text = scrape(metrics).await?;
    for api in [
        "Metadata",
        "Produce",
        "CreateTopics",
        "DescribeGroups",
        "ListGroups",
        "JoinGroup",
        "OffsetCommit",
        "Fetch",
        "DeleteTopics",
    ] {
        let sent = frames.iter().filter(|(_, a, _)| *a == api).count() as f64;
        let counted = sample(
            &text,
            &format!("runnel_request_errors_total{{api=\"{api}\"}}"),
        );
        assert_eq!(counted, Some(sent), "{api}: errors counted");
    }
    broker.stop().await
}

/// Announces a frame of `size` bytes, then sends one byte a second until dropped.
async fn trickle(addr: std::net::SocketAddr, size: i32) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&size.to_be_bytes()).await?;
    s.write_all(&[0, 18]).await?;
    Ok(s)
}

#[tokio::test]
async fn trickling_large_frames_do_not_stall_other_clients() -> anyhow::Result<()> {
    let max = 100 << 20;
    let broker = TestBroker::start(|c| {
        c.socket_request_max_bytes = max;
        // Room for one announced frame and a half: before the budget was taken as bytes
        // arrived, the first trickler held 100 MiB and the second queued for the rest,
        // and every later request queued behind it until the idle timeout.
        c.queued_max_request_bytes = max + max / 2;
    })
    .await?;
    let mut tricklers = Vec::new();
    for _ in 0..4 {
        tricklers.push(trickle(broker.addr, max as i32).await?);
    }
    let dripping = tokio::spawn(async move {
        for tick in 0u8.. {
            for s in tricklers.iter_mut() {
                if s.write_all(&[tick]).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    // A 10 MiB request (ApiVersions v0 whose padding the codec ignores) and small ones
    // are answered while the tricklers hold their connections.
    let mut big = vec![0u8; 10 << 20];
    big[..10].copy_from_slice(&[0, 18, 0, 0, 0, 0, 0, 9, 0xff, 0xff]);
    let mut framed = (big.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&big);
    for _ in 0..3 {
        let mut s = broker.connect().await?;
        tokio::time::timeout(WAIT, s.write_all(&framed)).await??;
        let body = read_response(&mut s)
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(common::correlation_and_code(body), (9, 0));
        common::still_serving(&broker).await?;
    }
    dripping.abort();
    broker.stop().await
}

#[tokio::test]
async fn group_ids_too_long_for_the_offsets_key_are_refused_not_cut() -> anyhow::Result<()> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        FindCoordinatorRequest, GroupId, JoinGroupRequest, OffsetCommitRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    const INVALID_GROUP_ID: i16 = 24;
    let broker = TestBroker::start(|_| {}).await?;
    let mut s = broker.connect().await?;
    // Flexible versions carry strings longer than an i16 can count.
    let long = GroupId(StrBytes::from_string("g".repeat(i16::MAX as usize + 1)));
    let commit = OffsetCommitRequest::default()
        .with_group_id(long.clone())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()])]);
    let answer = call(&mut s, &commit, 8).await?;
    assert_eq!(answer.topics[0].partitions[0].error_code, INVALID_GROUP_ID);
    let join = JoinGroupRequest::default()
        .with_group_id(long.clone())
        .with_session_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    assert_eq!(call(&mut s, &join, 6).await?.error_code, INVALID_GROUP_ID);
    let find = FindCoordinatorRequest::default().with_key(long.0.clone());
    assert_eq!(call(&mut s, &find, 3).await?.error_code, INVALID_GROUP_ID);
    // One byte shorter is a valid group id.
    let fits = GroupId(StrBytes::from_string("g".repeat(i16::MAX as usize)));
    let find = FindCoordinatorRequest::default().with_key(fits.0.clone());
    assert_eq!(call(&mut s, &find, 3).await?.error_code, 0);
    broker.stop().await
}
