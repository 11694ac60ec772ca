//! Record batches that lie, over real TCP: headers claiming more records than they
//! hold and compressed batches that inflate past the decompression limit are refused
//! at produce and, stored anyway (by an older broker, or a disk), are never decoded
//! without bounds by ListOffsets; and two Kafka conformance rules: a compacted topic
//! refuses records without a key (INVALID_RECORD, per record), and `compression.type`
//! re-compresses batches on append.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, BrokerId,
    CreateTopicsRequest, FetchRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use runnel_storage::MAX_DECOMPRESSED_RECORDS_BYTES;
use tokio::net::TcpStream;

const INVALID_RECORD: i16 = 87;
const CORRUPT_MESSAGE: i16 = 2;
const INVALID_CONFIG: i16 = 40;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn name(topic: &str) -> TopicName {
    TopicName(s(topic))
}

async fn create(
    st: &mut TcpStream,
    topic: &str,
    configs: &[(&str, &str)],
) -> anyhow::Result<(i16, Option<String>)> {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let r = call(
        st,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]),
        7,
    )
    .await?;
    let t = &r.topics[0];
    Ok((
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    ))
}

/// Produces `records` to partition 0 of each named topic in one request; returns the
/// partition responses in the order given.
async fn produce(
    st: &mut TcpStream,
    topics: &[(&str, Bytes)],
    version: i16,
) -> anyhow::Result<Vec<PartitionProduceResponse>> {
    let data = topics
        .iter()
        .map(|(topic, records)| {
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.clone()))])
        })
        .collect();
    let r = call(
        st,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(data),
        version,
    )
    .await?;
    Ok(r.responses
        .into_iter()
        .flat_map(|t| t.partition_responses)
        .collect())
}

/// ListOffsets for partition 0 at `timestamp`: (error code, offset, timestamp).
async fn list(st: &mut TcpStream, topic: &str, timestamp: i64) -> anyhow::Result<(i16, i64, i64)> {
    let r = call(
        st,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_timestamp(timestamp)
                ])]),
        6,
    )
    .await?;
    let p = &r.topics[0].partitions[0];
    Ok((p.error_code, p.offset, p.timestamp))
}

/// Fetches partition 0 from offset 0: the raw record bytes.
async fn fetch(st: &mut TcpStream, topic: &str) -> anyhow::Result<Bytes> {
    let r = call(
        st,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
        12,
    )
    .await?;
    let p = &r.responses[0].partitions[0];
    anyhow::ensure!(p.error_code == 0, "fetch error {}", p.error_code);
    Ok(p.records.clone().unwrap_or_default())
}

/// One batch of `(key, value)` records at `timestamp` + index, encoded by
/// kafka-protocol (as a Java client would) with `compression`.
fn encoded(
    records: &[(Option<&str>, &str)],
    timestamp: i64,
    compression: Compression,
) -> anyhow::Result<Bytes> {
    let records: Vec<(Option<Bytes>, Bytes)> = records
        .iter()
        .map(|(k, v)| {
            (
                k.map(|k| Bytes::from(k.to_string())),
                Bytes::from(v.to_string()),
            )
        })
        .collect();
    common::encoded_batch(&records, timestamp, 1, compression)
}

/// A v2 batch header for `region`, with `record_count` (and the matching last offset
/// delta) and `codec` as claimed, timestamps `timestamp`, and a correct CRC-32C.
fn raw_batch(
    base_offset: i64,
    region: &[u8],
    record_count: i32,
    codec: i16,
    timestamp: i64,
) -> anyhow::Result<Bytes> {
    let mut b = BytesMut::with_capacity(61 + region.len());
    b.put_i64(base_offset);
    b.put_i32(i32::try_from(49 + region.len())?);
    b.put_i32(0); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(0); // CRC, below
    b.put_i16(codec);
    b.put_i32(record_count.wrapping_sub(1));
    b.put_i64(timestamp);
    b.put_i64(timestamp);
    b.put_i64(-1); // producer id
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(record_count);
    b.put_slice(region);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b.freeze())
}

/// The records region of an `encoded` batch.
fn region_of(batch: &[u8]) -> &[u8] {
    &batch[61..]
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    use kafka_protocol::compression::{Compressor, Gzip};
    let mut out = BytesMut::new();
    Gzip::compress(&mut out, |buf: &mut BytesMut| {
        buf.extend_from_slice(data);
        Ok(())
    })?;
    Ok(out.to_vec())
}

/// A gzip stream (of concatenated members, as `GZIPInputStream` reads) holding one
/// record whose value is `mib` MiB of zeros: a few hundred KiB that inflate past the
/// 64 MiB limit when `mib` is 64.
fn gzip_bomb(mib: usize) -> anyhow::Result<Vec<u8>> {
    let value_len = mib << 20;
    let mut body = vec![0u8, 0, 0]; // attributes, timestamp delta, offset delta
    zigzag(&mut body, -1); // null key
    zigzag(&mut body, value_len as i64);
    // The body's length counts the value and the trailing header count.
    let mut head = Vec::new();
    zigzag(&mut head, (body.len() + value_len + 1) as i64);
    head.extend_from_slice(&body);
    let mut stream = gzip(&head)?;
    let zeros = gzip(&vec![0u8; 1 << 20])?;
    for _ in 0..mib {
        stream.extend_from_slice(&zeros);
    }
    stream.extend_from_slice(&gzip(&[0])?); // no headers
    Ok(stream)
}

#[tokio::test]
async fn lying_record_counts_and_inflating_batches_are_refused_at_produce() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    create(&mut st, "t", &[]).await?;
    let real = encoded(&[(None, "a"), (None, "b")], 1_000, Compression::None)?;
    let region = region_of(&real);
    // The region holds at most region.len() / 7 records; two are real.
    let max = i32::try_from(region.len() / 7)?;
    for (count, code) in [
        (i32::MAX, INVALID_RECORD),
        (max + 1, INVALID_RECORD),
        (2, 0),
    ] {
        let r = produce(&mut st, &[("t", raw_batch(0, region, count, 0, 1_000)?)], 9).await?;
        assert_eq!(r[0].error_code, code, "record count {count}");
        if code != 0 {
            let message = r[0].error_message.as_deref().unwrap_or_default();
            assert!(message.contains("record count"), "{message}");
        }
    }
    // Compressed, claiming 2^31 - 1 records: refused from the header alone.
    let lz4 = encoded(&[(None, "a")], 1_000, Compression::Lz4)?;
    let lying = raw_batch(0, region_of(&lz4), i32::MAX, 3, 1_000)?;
    let r = produce(&mut st, &[("t", lying)], 9).await?;
    assert_eq!(r[0].error_code, INVALID_RECORD);
    // 64 MiB of zeros in one record, gzip'd. A topic whose append reads the records
    // (compacted: keys are checked; or a compression.type to re-compress into) refuses
    // it once decompression passes 64 MiB.
    let bomb = gzip_bomb(MAX_DECOMPRESSED_RECORDS_BYTES >> 20)?;
    assert!(bomb.len() < 1 << 20, "{} bytes on the wire", bomb.len());
    for (topic, configs) in [
        ("compacted", [("cleanup.policy", "compact")]),
        ("zstd", [("compression.type", "zstd")]),
    ] {
        create(&mut st, topic, &configs).await?;
        let r = produce(&mut st, &[(topic, raw_batch(0, &bomb, 1, 1, 1_000)?)], 9).await?;
        assert_eq!(r[0].error_code, INVALID_RECORD, "{topic}");
        let message = r[0].error_message.as_deref().unwrap_or_default();
        assert!(message.contains("decompresses to more than"), "{message}");
        assert_eq!(list(&mut st, topic, -1).await?, (0, 0, -1));
    }
    // Only the honest batch of `t` was stored so far.
    assert_eq!(list(&mut st, "t", -1).await?, (0, 2, -1));
    // A `producer` topic keeps compressed batches as received, without inflating them
    // (the zero-copy path): the bomb is stored, and the broker never decompresses it
    // past the limit: ListOffsets by a timestamp inside it answers CORRUPT_MESSAGE.
    let r = produce(&mut st, &[("t", raw_batch(0, &bomb, 1, 1, 5_000)?)], 9).await?;
    assert_eq!(r[0].error_code, 0);
    assert_eq!(list(&mut st, "t", -1).await?, (0, 3, -1));
    assert_eq!(list(&mut st, "t", 4_000).await?.0, CORRUPT_MESSAGE);
    broker.stop().await
}

#[tokio::test]
async fn stored_batches_that_lie_are_answered_without_unbounded_decoding() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    create(&mut st, "lies", &[]).await?;
    let honest = encoded(&[(None, "a"), (None, "b")], 1_000, Compression::None)?;
    assert_eq!(
        produce(&mut st, &[("lies", honest.clone())], 9).await?[0].error_code,
        0
    );
    drop(st);
    let dir = broker.stop_keeping_data().await?;

    // Written into the segment behind the broker's back, as by an older version that
    // checked only lastOffsetDelta: a batch claiming 2^31 - 1 records at offset 2 and
    // a gzip bomb after it. Without the clean-shutdown marker, recovery scans them in.
    let partition = dir.path().join("lies-0");
    let lying = raw_batch(2, region_of(&honest), i32::MAX, 0, 5_000)?;
    let bomb_at = 2 + i64::from(i32::MAX);
    let bomb = raw_batch(bomb_at, &gzip_bomb(65)?, 1, 1, 9_000)?;
    let segment = partition.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment)?;
    bytes.extend_from_slice(&lying);
    bytes.extend_from_slice(&bomb);
    std::fs::write(&segment, bytes)?;
    std::fs::remove_file(partition.join("clean-shutdown"))?;

    let broker = TestBroker::start_in(dir, |_| {}).await?;
    let mut st = broker.connect().await?;
    assert_eq!(list(&mut st, "lies", -1).await?, (0, bomb_at + 1, -1));
    // The honest batch still answers; the two liars answer CORRUPT_MESSAGE, at once.
    assert_eq!(list(&mut st, "lies", 1_001).await?, (0, 1, 1_001));
    for timestamp in [2_000, 5_000, 8_000, 9_000] {
        let (code, offset, _) = list(&mut st, "lies", timestamp).await?;
        assert_eq!(
            (code, offset),
            (CORRUPT_MESSAGE, -1),
            "timestamp {timestamp}"
        );
    }
    // The broker, and this connection, carry on.
    let r = call(&mut st, &MetadataRequest::default().with_topics(None), 1).await?;
    assert_eq!(r.topics.len(), 1);
    assert_eq!(list(&mut st, "lies", -2).await?, (0, 0, -1));
    broker.stop().await
}

#[tokio::test]
async fn keyless_records_to_a_compacted_topic_are_refused_per_record() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    assert_eq!(
        create(&mut st, "compacted", &[("cleanup.policy", "compact")])
            .await?
            .0,
        0
    );
    create(&mut st, "plain", &[]).await?;
    let mixed = encoded(
        &[(Some("k"), "1"), (None, "2"), (Some("k"), "3"), (None, "4")],
        1_000,
        Compression::None,
    )?;
    let keyless = encoded(&[(None, "x")], 1_000, Compression::None)?;
    let r = produce(
        &mut st,
        &[("compacted", mixed.clone()), ("plain", keyless.clone())],
        9,
    )
    .await?;
    let refused = &r[0];
    assert_eq!(
        (refused.error_code, refused.base_offset),
        (INVALID_RECORD, -1)
    );
    let errors: Vec<(i32, String)> = refused
        .record_errors
        .iter()
        .map(|e| {
            let message = e.batch_index_error_message.as_deref().unwrap_or_default();
            (e.batch_index, message.to_string())
        })
        .collect();
    let message =
        "Compacted topic cannot accept message without key in topic partition compacted-0";
    assert_eq!(errors, [(1, message.to_string()), (3, message.to_string())]);
    let summary = refused.error_message.as_deref().unwrap_or_default();
    assert!(
        summary.starts_with("One or more records have been rejected due to 2 record errors"),
        "{summary}"
    );
    // The other partition of the request is answered as usual.
    assert_eq!((r[1].error_code, r[1].base_offset), (0, 0));
    // Compressed, and before v8 (no per-record errors on the wire): still refused.
    let lz4 = encoded(&[(None, "y")], 1_000, Compression::Lz4)?;
    let r = produce(&mut st, &[("compacted", lz4)], 7).await?;
    assert_eq!(r[0].error_code, INVALID_RECORD);
    assert!(r[0].record_errors.is_empty() && r[0].error_message.is_none());
    // Nothing of the refused batches was stored; keyed records are.
    assert_eq!(list(&mut st, "compacted", -1).await?, (0, 0, -1));
    assert_eq!(list(&mut st, "plain", -1).await?, (0, 1, -1));
    let keyed = encoded(&[(Some("k"), "5")], 1_000, Compression::Zstd)?;
    assert_eq!(
        produce(&mut st, &[("compacted", keyed)], 9).await?[0].error_code,
        0
    );
    broker.stop().await
}

/// A stored batch: its codec id and its records' (offset, value) pairs.
type StoredBatch = (u8, Vec<(i64, String)>);

/// Every stored batch of `records`.
fn stored(mut records: Bytes) -> anyhow::Result<Vec<StoredBatch>> {
    let mut out = Vec::new();
    while records.len() >= 61 {
        let codec = records[22] & 0x07;
        let len = 12 + usize::try_from(i32::from_be_bytes(records[8..12].try_into()?))?;
        let mut one = records.split_to(len);
        let mut values = Vec::new();
        for set in RecordBatchDecoder::decode_all(&mut one)? {
            for r in set.records {
                let value = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                values.push((r.offset, value.unwrap_or_default()));
            }
        }
        out.push((codec, values));
    }
    Ok(out)
}

#[tokio::test]
async fn compression_type_recompresses_on_append_and_is_validated() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    assert_eq!(
        create(&mut st, "gz", &[("compression.type", "gzip")])
            .await?
            .0,
        0
    );
    create(&mut st, "keep", &[("compression.type", "producer")]).await?;
    let lz4 = encoded(&[(None, "a"), (None, "b")], 1_000, Compression::Lz4)?;
    let none = encoded(&[(None, "c")], 2_000, Compression::None)?;
    for batch in [&lz4, &none] {
        let r = produce(
            &mut st,
            &[("gz", batch.clone()), ("keep", batch.clone())],
            9,
        )
        .await?;
        assert!(r.iter().all(|p| p.error_code == 0), "{r:?}");
    }
    let values = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
        pairs.iter().map(|(o, v)| (*o, v.to_string())).collect()
    };
    let expect_ab = values(&[(0, "a"), (1, "b")]);
    let expect_c = values(&[(2, "c")]);
    assert_eq!(
        stored(fetch(&mut st, "gz").await?)?,
        [(1, expect_ab.clone()), (1, expect_c.clone())]
    );
    let kept = fetch(&mut st, "keep").await?;
    assert_eq!(stored(kept.clone())?, [(3, expect_ab), (0, expect_c)]);
    // `producer` keeps the bytes (apart from the base offset and leader epoch).
    assert_eq!(kept[16..lz4.len()], lz4[16..]);
    // Timestamps survive re-compression.
    assert_eq!(list(&mut st, "gz", 1_001).await?, (0, 1, 1_001));

    // Changed at runtime: later batches get the new codec.
    let c = incremental_alter_configs_request::AlterableConfig::default()
        .with_name(s("compression.type"))
        .with_config_operation(0)
        .with_value(Some(s("zstd")));
    let r = call(
        &mut st,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("gz"))
                .with_configs(vec![c]),
        ]),
        1,
    )
    .await?;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        produce(&mut st, &[("gz", lz4.clone())], 9).await?[0].error_code,
        0
    );
    let codecs: Vec<u8> = stored(fetch(&mut st, "gz").await?)?
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(codecs, [1, 1, 4]);

    // Values Kafka does not define are INVALID_CONFIG, by every API that sets configs.
    for bad in ["none", "GZIP", "brotli", ""] {
        let (code, message) = create(&mut st, "bad", &[("compression.type", bad)]).await?;
        assert_eq!(code, INVALID_CONFIG, "{bad:?}");
        assert!(message.unwrap_or_default().contains("compression.type"));
        let c = alter_configs_request::AlterableConfig::default()
            .with_name(s("compression.type"))
            .with_value(Some(s(bad)));
        let r = call(
            &mut st,
            &AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("gz"))
                    .with_configs(vec![c]),
            ]),
            1,
        )
        .await?;
        assert_eq!(r.responses[0].error_code, INVALID_CONFIG, "{bad:?}");
        let c = incremental_alter_configs_request::AlterableConfig::default()
            .with_name(s("compression.type"))
            .with_config_operation(0)
            .with_value(Some(s(bad)));
        let r = call(
            &mut st,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("gz"))
                    .with_configs(vec![c]),
            ]),
            1,
        )
        .await?;
        assert_eq!(r.responses[0].error_code, INVALID_CONFIG, "{bad:?}");
    }
    broker.stop().await
}

#[tokio::test]
async fn committed_offsets_load_past_a_lying_batch_and_clients_cannot_write_them(
) -> anyhow::Result<()> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};
    const INVALID_TOPIC_EXCEPTION: i16 = 17;
    let group = "lied-to";
    let commit = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(offset)
                ])])
    };
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("t"))
            .with_partition_indexes(vec![0])]));

    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    create(&mut st, "t", &[]).await?;
    let r = call(&mut st, &commit(42), 2).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    // A client's batch to the internal topic is refused, as Kafka refuses it.
    let batch = encoded(&[(Some("k"), "v")], 1_000, Compression::None)?;
    let refused = produce(&mut st, &[("__consumer_offsets", batch.clone())], 9).await?;
    assert_eq!(refused[0].error_code, INVALID_TOPIC_EXCEPTION);
    drop(st);
    let dir = broker.stop_keeping_data().await?;

    // Behind the broker's back (an older broker let clients write there): a batch
    // claiming 2^31-1 records after the group's commit. Loading offsets at start-up
    // decoded it with the codec's unbounded reserve; now it is skipped.
    let partitions: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("__consumer_offsets-"))
        })
        .filter(|p| {
            std::fs::metadata(p.join("00000000000000000000.log")).is_ok_and(|m| m.len() > 0)
        })
        .collect();
    assert_eq!(
        partitions.len(),
        1,
        "one offsets partition holds the commit"
    );
    let segment = partitions[0].join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment)?;
    bytes.extend_from_slice(&raw_batch(1, region_of(&batch), i32::MAX, 0, 5_000)?);
    std::fs::write(&segment, bytes)?;
    let _ = std::fs::remove_file(partitions[0].join("clean-shutdown"));

    let broker = TestBroker::start_in(dir, |_| {}).await?;
    let mut st = broker.connect().await?;
    let r = call(&mut st, &fetch, 1).await?;
    assert_eq!(r.topics[0].partitions[0].committed_offset, 42);
    // And the group goes on committing.
    assert_eq!(
        call(&mut st, &commit(43), 2).await?.topics[0].partitions[0].error_code,
        0
    );
    assert_eq!(
        call(&mut st, &fetch, 1).await?.topics[0].partitions[0].committed_offset,
        43
    );
    broker.stop().await
}
