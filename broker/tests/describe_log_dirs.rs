//! DescribeLogDirs over TCP: the data directory, and partition sizes that grow by exactly
//! the bytes produced (batches are stored as they arrive).

mod common;

use bytes::Bytes;
use common::{call, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpStream;

fn topic(v: &str) -> TopicName {
    TopicName(StrBytes::from_string(v.to_string()))
}

/// Partition sizes of `name` as DescribeLogDirs v4 reports them, with the directory.
async fn sizes(
    st: &mut TcpStream,
    request: DescribeLogDirsRequest,
    name: &str,
) -> anyhow::Result<(String, Vec<(i32, i64)>)> {
    let r = call(st, &request, 4).await?;
    let [dir] = r.results.as_slice() else {
        anyhow::bail!("one log dir expected: {r:?}");
    };
    anyhow::ensure!(dir.error_code == 0, "{dir:?}");
    anyhow::ensure!(
        0 <= dir.usable_bytes && dir.usable_bytes <= dir.total_bytes,
        "{dir:?}"
    );
    let sizes = dir
        .topics
        .iter()
        .filter(|t| t.name.as_str() == name)
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    Ok((dir.log_dir.to_string(), sizes))
}

async fn produce(st: &mut TcpStream, batch: Bytes) -> anyhow::Result<()> {
    let r = call(
        st,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("sized"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(batch))])]),
        9,
    )
    .await?;
    let code = r.responses[0].partition_responses[0].error_code;
    anyhow::ensure!(code == 0, "produce failed with {code}");
    Ok(())
}

#[tokio::test]
async fn partition_sizes_grow_by_the_bytes_produced() -> anyhow::Result<()> {
    let broker = TestBroker::start(|_| {}).await?;
    let mut st = broker.connect().await?;
    let created = call(
        &mut st,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic("sized"))
            .with_num_partitions(2)
            .with_replication_factor(1)]),
        7,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0);
    let all = DescribeLogDirsRequest::default().with_topics(None);

    let (dir, before) = sizes(&mut st, all.clone(), "sized").await?;
    assert_eq!(dir, broker.dir.path().display().to_string());
    assert_eq!(before, vec![(0, 0), (1, 0)]);

    let mut produced = 0;
    for i in 0..10u8 {
        let batch = common::plain_batch(&[(None, Bytes::from(vec![i; 5000]))], 1_700_000_000_000)?;
        produced += batch.len() as i64;
        produce(&mut st, batch).await?;
        let (_, now) = sizes(&mut st, all.clone(), "sized").await?;
        assert_eq!(now, vec![(0, 0), (1, produced)], "after batch {i}");
    }

    // Named partitions: only the hosted ones come back.
    let named = DescribeLogDirsRequest::default().with_topics(Some(vec![
        DescribableLogDirTopic::default()
            .with_topic(topic("sized"))
            .with_partitions(vec![1, 5]),
        DescribableLogDirTopic::default()
            .with_topic(topic("absent"))
            .with_partitions(vec![0]),
    ]));
    let r = call(&mut st, &named, 1).await?;
    let listed: Vec<(String, Vec<i32>)> = r.results[0]
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    assert_eq!(listed, vec![("sized".to_string(), vec![1])]);
    broker.stop().await
}
