//! Replication throttles (KIP-73) on three in-process brokers: a replica that comes back
//! behind catches up at about the throttle's rate — measured by the size DescribeLogDirs
//! reports for it — while the in-sync replica keeps acks=all produce fast. Once with the
//! leader's throttle, once with the follower's; both set at runtime through
//! IncrementalAlterConfigs and shown by DescribeConfigs. Then a real move
//! (AlterPartitionReassignments), throttled with no replica list: the replicas a
//! reassignment adds are throttled by default.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{call, free_port, start_three, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_broker::BrokerConfig;

const TOPIC: &str = "throttled";
const MIB: i64 = 1 << 20;
/// The throttle: 1 MiB/s.
const RATE: i64 = MIB;
/// What the returning replica lacks.
const BACKLOG: i64 = 4 * MIB;
const BROKER: i8 = 4;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A cluster member with a metrics endpoint (the throttle's byte counters).
fn member(id: usize, ports: [u16; 3]) -> impl FnOnce(&mut BrokerConfig) {
    let member = common::cluster_member(id, ports);
    move |c| {
        member(c);
        c.metrics_listen = Some(([127, 0, 0, 1], 0).into());
    }
}

/// Polls `check` every 50 ms until it holds, for at most 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Leader and ISR of `TOPIC`-0 as `broker` answers Metadata (`None` before it knows it).
async fn leadership(broker: &TestBroker) -> anyhow::Result<Option<(i32, Vec<i32>)>> {
    let mut st = broker.connect().await?;
    let metadata = call(&mut st, &MetadataRequest::default().with_topics(None), 9).await?;
    Ok(metadata
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == 0)
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|n| n.0).collect();
            isr.sort_unstable();
            (p.leader_id.0, isr)
        }))
}

async fn produce(broker: &TestBroker, acks: i16, value: Bytes) -> anyhow::Result<()> {
    produce_to(broker, TOPIC, acks, value).await
}

async fn produce_to(
    broker: &TestBroker,
    topic: &str,
    acks: i16,
    value: Bytes,
) -> anyhow::Result<()> {
    let batch = common::plain_batch(&[(None, value)], 1_700_000_000_000)?;
    let r = call(
        &mut broker.connect().await?,
        &ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]),
        9,
    )
    .await?;
    let code = r.responses[0].partition_responses[0].error_code;
    anyhow::ensure!(code == 0, "produce failed with {code}");
    Ok(())
}

/// The size of `TOPIC`-0 on `broker`, from DescribeLogDirs.
async fn size(broker: &TestBroker) -> anyhow::Result<i64> {
    let r = call(
        &mut broker.connect().await?,
        &DescribeLogDirsRequest::default().with_topics(None),
        4,
    )
    .await?;
    Ok(r.results
        .iter()
        .flat_map(|d| &d.topics)
        .filter(|t| t.name.as_str() == TOPIC)
        .flat_map(|t| &t.partitions)
        .filter(|p| p.partition_index == 0)
        .map(|p| p.partition_size)
        .sum())
}

/// Sets broker config `name` to `value` on resource `resource` ("" or a broker id).
async fn set_broker_config(
    broker: &TestBroker,
    resource: &str,
    name: &str,
    value: &str,
) -> anyhow::Result<(i16, Option<String>)> {
    let r = call(
        &mut broker.connect().await?,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(BROKER)
                .with_resource_name(s(resource))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(0)
                    .with_value(Some(s(value)))]),
        ]),
        1,
    )
    .await?;
    let answer = &r.responses[0];
    Ok((
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    ))
}

/// Value and source of broker config `name` of broker `node`, as it describes itself.
async fn describe(broker: &TestBroker, node: i32, name: &str) -> anyhow::Result<(String, i8)> {
    let r = call(
        &mut broker.connect().await?,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(s(&node.to_string()))
            .with_configuration_keys(Some(vec![s(name)]))]),
        4,
    )
    .await?;
    let [config] = r.results[0].configs.as_slice() else {
        anyhow::bail!("one config expected: {r:?}");
    };
    Ok((
        config
            .value
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        config.config_source,
    ))
}

/// Which side's throttle a run sets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Leader,
    Follower,
}

async fn catch_up_under_a_throttle(side: Side) -> anyhow::Result<()> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let mut brokers = start_three(|id| member(id, ports)).await?;
    let replicas_config = match side {
        Side::Leader => "leader.replication.throttled.replicas",
        Side::Follower => "follower.replication.throttled.replicas",
    };
    let created = call(
        &mut brokers[0].connect().await?,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(3)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(s(replicas_config))
                        .with_value(Some(s("*"))),
                    CreatableTopicConfig::default()
                        .with_name(s("min.insync.replicas"))
                        .with_value(Some(s("2"))),
                ])])
            .with_timeout_ms(10_000),
        5,
    )
    .await?;
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    eventually("a full ISR", || async {
        Ok(leadership(&brokers[0])
            .await?
            .is_some_and(|(_, isr)| isr == [0, 1, 2]))
    })
    .await?;
    let leader = leadership(&brokers[0]).await?.map_or(0, |(l, _)| l);
    let leader_id = leader;
    let lagging = (leader as usize + 1) % 3;
    // One follower stops; the other stays in sync while the backlog is written.
    let dir = brokers.remove(lagging).stop_keeping_data().await?;
    let at = if (leader_id as usize) > lagging {
        leader_id as usize - 1
    } else {
        leader_id as usize
    };
    let leader = &brokers[at];
    eventually("the ISR without the stopped broker", || async {
        Ok(leadership(leader)
            .await?
            .is_some_and(|(_, isr)| isr.len() == 2))
    })
    .await?;
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    while size(leader).await? < BACKLOG {
        produce(leader, -1, chunk.clone()).await?;
    }
    let backlog = size(leader).await?;

    // The throttle, at runtime: the leader's rate as the cluster default, or the
    // returning follower's own rate.
    let (resource, rate_config, described_node, source) = match side {
        Side::Leader => (
            "".to_string(),
            "leader.replication.throttled.rate",
            leader_id,
            3,
        ),
        Side::Follower => (
            lagging.to_string(),
            "follower.replication.throttled.rate",
            lagging as i32,
            2,
        ),
    };
    let refused = set_broker_config(leader, &resource, rate_config, "-1").await?;
    assert_eq!(refused.0, 40, "INVALID_CONFIG: {refused:?}");
    let refused = set_broker_config(leader, &resource, "log.retention.ms", "1").await?;
    assert!(
        refused.0 == 40
            && refused
                .1
                .is_some_and(|m| m.contains("read-only at runtime")),
        "static broker configs stay read-only"
    );
    let set = set_broker_config(leader, &resource, rate_config, &RATE.to_string()).await?;
    assert_eq!(set, (0, None));
    if side == Side::Leader {
        assert_eq!(
            describe(leader, leader_id, rate_config).await?,
            (RATE.to_string(), source)
        );
    }

    // The follower comes back and catches up, at about the rate.
    let started = Instant::now();
    brokers.insert(
        lagging,
        TestBroker::start_in(dir, member(lagging, ports)).await?,
    );
    let returning = &brokers[lagging];
    if side == Side::Follower {
        assert_eq!(
            describe(returning, described_node, rate_config).await?,
            (RATE.to_string(), source)
        );
    }
    let mut slowest_produce = Duration::ZERO;
    let small = Bytes::from_static(b"in sync");
    let leader = &brokers[leader_id as usize];
    loop {
        let size = size(returning).await.unwrap_or(0);
        if size >= backlog {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the returning replica holds {size} of {backlog} bytes after 60 s"
        );
        // acks=all needs the in-sync follower, which the throttle never holds back.
        let sent = Instant::now();
        produce(leader, -1, small.clone()).await?;
        slowest_produce = slowest_produce.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    // Unthrottled, 4 MiB between two local brokers moves in well under a second. At
    // 1 MiB/s with a burst of one second it takes about 3 s.
    let floor = Duration::from_secs_f64(((backlog - RATE) as f64 / RATE as f64 * 0.7).max(0.0));
    assert!(
        elapsed >= floor,
        "{side:?}: caught up {backlog} bytes in {elapsed:?}, faster than the throttle allows ({floor:?})"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "{side:?}: caught up in {elapsed:?}"
    );
    assert!(
        slowest_produce < Duration::from_secs(2),
        "{side:?}: an acks=all produce took {slowest_produce:?} during the catch-up"
    );
    eprintln!(
        "{side:?} throttle at {RATE} B/s: {backlog} bytes caught up in {elapsed:?} ({:.0} B/s); slowest acks=all produce {slowest_produce:?}",
        backlog as f64 / elapsed.as_secs_f64()
    );

    // The throttled bytes are counted on the throttling side.
    let (counted, direction) = match side {
        Side::Leader => (leader, "leader"),
        Side::Follower => (returning, "follower"),
    };
    let metrics = common::scrape(
        counted
            .metrics_addr
            .ok_or_else(|| anyhow::anyhow!("no metrics endpoint"))?,
    )
    .await?;
    let bytes = common::sample(
        &metrics,
        &format!("runnel_replication_throttled_bytes_total{{direction=\"{direction}\"}}"),
    )
    .unwrap_or(0.0);
    assert!(bytes >= (backlog - MIB) as f64, "{direction}: {bytes}");

    // And it rejoins the ISR.
    eventually("the full ISR again", || async {
        Ok(leadership(&brokers[0])
            .await?
            .is_some_and(|(_, isr)| isr == [0, 1, 2]))
    })
    .await?;
    for b in brokers {
        b.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_throttle_paces_a_returning_replica() -> anyhow::Result<()> {
    catch_up_under_a_throttle(Side::Leader).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_throttle_paces_its_own_catch_up() -> anyhow::Result<()> {
    catch_up_under_a_throttle(Side::Follower).await
}

/// Creates `name` with one partition of `replication` replicas and `configs`.
async fn create(
    broker: &TestBroker,
    name: &str,
    replication: i16,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let created = call(
        &mut broker.connect().await?,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(name)))
                .with_num_partitions(1)
                .with_replication_factor(replication)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                )])
            .with_timeout_ms(10_000),
        5,
    )
    .await?;
    anyhow::ensure!(created.topics[0].error_code == 0, "{created:?}");
    Ok(())
}

/// Partitions of `TOPIC` with a reassignment in flight, as `broker` lists them.
async fn moving(broker: &TestBroker) -> anyhow::Result<usize> {
    let r = call(
        &mut broker.connect().await?,
        &ListPartitionReassignmentsRequest::default().with_topics(None),
        0,
    )
    .await?;
    anyhow::ensure!(r.error_code == 0, "{r:?}");
    Ok(r.topics.iter().map(|t| t.partitions.len()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reassignment_is_throttled_without_naming_its_replicas() -> anyhow::Result<()> {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    let ports = [free_port()?, free_port()?, free_port()?];
    let brokers = start_three(|id| member(id, ports)).await?;
    // The partition to move (one replica, no throttled-replica list), and an RF=3 topic
    // whose acks=all produce must not notice the move.
    create(&brokers[0], TOPIC, 1, &[]).await?;
    create(&brokers[0], "steady", 3, &[("min.insync.replicas", "3")]).await?;
    eventually("the topic's leader", || async {
        Ok(leadership(&brokers[0]).await?.is_some_and(|(l, _)| l >= 0))
    })
    .await?;
    let source = leadership(&brokers[0]).await?.map_or(0, |(l, _)| l) as usize;
    let target = (source + 1) % 3;
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    eventually("the source leads", || async {
        Ok(produce(&brokers[source], 1, chunk.clone()).await.is_ok())
    })
    .await?;
    while size(&brokers[source]).await? < BACKLOG {
        produce(&brokers[source], 1, chunk.clone()).await?;
    }
    let backlog = size(&brokers[source]).await?;
    let small = Bytes::from_static(b"steady");
    eventually("steady takes acks=all", || async {
        Ok(produce_to(&brokers[0], "steady", -1, small.clone())
            .await
            .is_ok()
            || produce_to(&brokers[1], "steady", -1, small.clone())
                .await
                .is_ok()
            || produce_to(&brokers[2], "steady", -1, small.clone())
                .await
                .is_ok())
    })
    .await?;

    for rate in [
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
    ] {
        let set = set_broker_config(&brokers[0], "", rate, &RATE.to_string()).await?;
        assert_eq!(set, (0, None), "{rate}");
        // Committed through broker 0; the others apply it a moment later. The move starts
        // once every broker holds it, so all of its bytes are throttled and counted.
        for (node, b) in brokers.iter().enumerate() {
            let node = i32::try_from(node)?;
            eventually(&format!("{rate} on broker {node}"), || async {
                Ok(describe(b, node, rate).await?.0 == RATE.to_string())
            })
            .await?;
        }
    }
    let started = Instant::now();
    let r = call(
        &mut brokers[2].connect().await?,
        &AlterPartitionReassignmentsRequest::default().with_topics(vec![
            ReassignableTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(target as i32)]))]),
        ]),
        0,
    )
    .await?;
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");

    let mut slowest_produce = Duration::ZERO;
    let mut was_moving = false;
    loop {
        let in_flight = moving(&brokers[0]).await?;
        was_moving |= in_flight > 0;
        if in_flight == 0 && size(&brokers[target]).await? >= backlog {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the move has not completed after 60 s"
        );
        let sent = Instant::now();
        let mut produced = false;
        for b in &brokers {
            if produce_to(b, "steady", -1, small.clone()).await.is_ok() {
                produced = true;
                break;
            }
        }
        anyhow::ensure!(produced, "no broker took an acks=all produce to steady");
        slowest_produce = slowest_produce.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    assert!(was_moving, "ListPartitionReassignments showed the move");
    let floor = Duration::from_secs_f64(((backlog - RATE) as f64 / RATE as f64 * 0.7).max(0.0));
    assert!(
        elapsed >= floor && elapsed < Duration::from_secs(30),
        "moved {backlog} bytes in {elapsed:?} (at least {floor:?} at the throttle)"
    );
    assert!(
        slowest_produce < Duration::from_secs(2),
        "an acks=all produce took {slowest_produce:?} during the move"
    );
    eprintln!(
        "reassignment at {RATE} B/s: {backlog} bytes moved in {elapsed:?} ({:.0} B/s); slowest acks=all produce {slowest_produce:?}",
        backlog as f64 / elapsed.as_secs_f64()
    );
    // Both sides counted the move's bytes: the follower all of them (it fetches for the
    // move only once it has applied the move); the leader those it sent after applying
    // the move itself. Each broker applies the metadata log on its own, and a leader
    // serves a replica fetch from a broker it does not yet know as a replica: seen here
    // to send 2 of the 4 MiB before it applied the move (only the follower's throttle
    // held those back). So at least half.
    for (broker, direction, at_least) in [
        (source, "leader", backlog / 2),
        (target, "follower", backlog - MIB),
    ] {
        let addr = brokers[broker]
            .metrics_addr
            .ok_or_else(|| anyhow::anyhow!("no metrics endpoint"))?;
        let metrics = common::scrape(addr).await?;
        let bytes = common::sample(
            &metrics,
            &format!("runnel_replication_throttled_bytes_total{{direction=\"{direction}\"}}"),
        )
        .unwrap_or(0.0);
        assert!(bytes >= at_least as f64, "{direction}: {bytes}");
    }
    for b in brokers {
        b.stop().await?;
    }
    Ok(())
}
