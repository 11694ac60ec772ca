//! What the bench learns before the load starts: the negotiated versions, the topic's
//! partitions and their leaders, and where each leader may be reached.
//!
//! Address policy: the bench connects to the bootstrap address, and to a leader's
//! advertised address only if it resolves to the bootstrap's IP, or both are loopback
//! (a local multi-broker cluster on several ports), unless `--allow-other-hosts`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_client::{ClientConfig, Connection};
use tokio::time::Instant;

use crate::config::BenchConfig;
use crate::error::BenchError;
use crate::versions::{Versions, CREATE_TOPICS};

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION error code.
pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's TOPIC_ALREADY_EXISTS error code.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// How long a new topic may take to show leaders for all its partitions.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// Pause between Metadata requests while waiting for leaders.
pub(crate) const LEADER_POLL: Duration = Duration::from_millis(100);

/// One partition and the node that leads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    /// Partition index.
    pub partition: i32,
    /// The leader's node id.
    pub leader: i32,
}

/// The topic under load.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    /// The topic's name.
    pub name: TopicName,
    /// The topic's id (nil when the broker's Metadata version has none).
    pub topic_id: uuid::Uuid,
    /// Every partition with its leader, by partition index.
    pub partitions: Vec<PartitionLeader>,
}

/// The cluster as seen at the start of the run.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The bootstrap address the bench was given, resolved.
    pub bootstrap: SocketAddr,
    /// Versions negotiated with the bootstrap broker.
    pub versions: Versions,
    /// The topic and its leaders.
    pub topic: TopicLayout,
    /// Where each leader of the topic is reached.
    pub leaders: BTreeMap<i32, SocketAddr>,
}

impl Cluster {
    /// Resolves the bootstrap, negotiates versions, creates the topic if asked, and waits
    /// until every partition has a leader.
    pub async fn discover(config: &BenchConfig, client: &ClientConfig) -> Result<Self, BenchError> {
        let bootstrap =
            resolve(&config.bootstrap)
                .await?
                .into_iter()
                .next()
                .ok_or(BenchError::Resolve {
                    address: config.bootstrap.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
                })?;
        let mut connection = Connection::connect(&bootstrap.to_string(), client).await?;
        let mut versions = Versions::negotiate(connection.api_versions().await?)?;
        let name = TopicName(StrBytes::from_string(config.topic.clone()));
        if config.create_topic {
            let version = match versions.create_topics {
                Some(version) => version,
                // Not served: the connection's ApiVersions says how.
                None => {
                    connection
                        .version::<CreateTopicsRequest>(CREATE_TOPICS)
                        .await?
                }
            };
            create_topics(
                &mut connection,
                version,
                std::slice::from_ref(&name),
                config.partitions,
                config.replication_factor,
            )
            .await?;
        }
        let deadline = Instant::now() + LEADER_WAIT;
        let (topic, response) = loop {
            let response = metadata(&mut connection, versions.metadata, &name).await?;
            match layout(&response, &name, config.create_topic)? {
                Some(topic) => break (topic, response),
                None if Instant::now() < deadline => tokio::time::sleep(LEADER_POLL).await,
                None => {
                    let partition = first_leaderless(&response);
                    return Err(BenchError::NoLeader {
                        topic: config.topic.clone(),
                        partition,
                    });
                }
            }
        };
        if topic.topic_id.is_nil() {
            versions = versions.without_topic_ids();
        }
        let mut leaders = BTreeMap::new();
        for p in &topic.partitions {
            if leaders.contains_key(&p.leader) {
                continue;
            }
            let broker = response
                .brokers
                .iter()
                .find(|b| b.node_id.0 == p.leader)
                .ok_or(BenchError::UnknownBroker { node_id: p.leader })?;
            let advertised = format!("{}:{}", broker.host.as_str(), broker.port);
            let candidates = resolve(&advertised).await?;
            let address = allowed_address(bootstrap, &candidates, config.allow_other_hosts).ok_or(
                BenchError::HostNotAllowed {
                    node_id: p.leader,
                    address: advertised,
                    bootstrap,
                },
            )?;
            leaders.insert(p.leader, address);
        }
        Ok(Cluster {
            bootstrap,
            versions,
            topic,
            leaders,
        })
    }

    /// The address of node `leader`.
    pub fn leader_address(&self, leader: i32) -> Result<SocketAddr, BenchError> {
        self.leaders
            .get(&leader)
            .copied()
            .ok_or(BenchError::UnknownBroker { node_id: leader })
    }

    /// The topic's partitions grouped by leader.
    pub fn partitions_by_leader(&self, partitions: &[i32]) -> BTreeMap<i32, Vec<i32>> {
        let mut grouped: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &self.topic.partitions {
            if partitions.contains(&p.partition) {
                grouped.entry(p.leader).or_default().push(p.partition);
            }
        }
        grouped
    }
}

async fn resolve(address: &str) -> Result<Vec<SocketAddr>, BenchError> {
    tokio::net::lookup_host(address)
        .await
        .map(Iterator::collect)
        .map_err(|source| BenchError::Resolve {
            address: address.to_string(),
            source,
        })
}

/// The first of a leader's resolved addresses that the policy allows: the bootstrap's
/// IP, or loopback when the bootstrap is loopback; any address with `allow_other_hosts`.
pub fn allowed_address(
    bootstrap: SocketAddr,
    candidates: &[SocketAddr],
    allow_other_hosts: bool,
) -> Option<SocketAddr> {
    candidates
        .iter()
        .find(|c| c.ip() == bootstrap.ip())
        .or_else(|| {
            candidates
                .iter()
                .find(|c| c.ip().is_loopback() && bootstrap.ip().is_loopback())
        })
        .or_else(|| candidates.iter().find(|_| allow_other_hosts))
        .copied()
}

/// Creates `topics` with `partitions` each (CreateTopics at `version`); a topic that
/// exists already is used as is.
pub async fn create_topics(
    connection: &mut Connection,
    version: i16,
    topics: &[TopicName],
    partitions: i32,
    replication_factor: i16,
) -> Result<(), BenchError> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|name| {
                    CreatableTopic::default()
                        .with_name(name.clone())
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor)
                })
                .collect(),
        );
    let response = connection.call(&request, version).await?;
    for topic in &response.topics {
        if topic.error_code != TOPIC_ALREADY_EXISTS {
            if let Some(error) = BenchError::from_code(ApiKey::CreateTopics, topic.error_code) {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// A Metadata request for `topics`, or for every topic when `None`, that never creates a
/// topic (versions 1 and later: version 0 reads an empty list as "all").
pub fn metadata_request(topics: Option<&[TopicName]>, version: i16) -> MetadataRequest {
    let mut request = MetadataRequest::default().with_topics(topics.map(|names| {
        names
            .iter()
            .map(|name| MetadataRequestTopic::default().with_name(Some(name.clone())))
            .collect()
    }));
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    request
}

async fn metadata(
    connection: &mut Connection,
    version: i16,
    name: &TopicName,
) -> Result<MetadataResponse, BenchError> {
    let request = metadata_request(Some(std::slice::from_ref(name)), version);
    Ok(connection.call(&request, version).await?)
}

/// The topic's layout when every partition has a leader; `None` to ask again later.
fn layout(
    response: &MetadataResponse,
    name: &TopicName,
    created: bool,
) -> Result<Option<TopicLayout>, BenchError> {
    let Some(topic) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref() == Some(name))
    else {
        return Ok(None);
    };
    match topic.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION if !created => {
            return Err(BenchError::UnknownTopic {
                topic: name.0.to_string(),
            })
        }
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
        code => {
            return Err(BenchError::from_code(ApiKey::Metadata, code).unwrap_or(
                BenchError::UnknownTopic {
                    topic: name.0.to_string(),
                },
            ))
        }
    }
    if topic.partitions.is_empty() || topic.partitions.iter().any(|p| p.leader_id.0 < 0) {
        return Ok(None);
    }
    let mut partitions: Vec<PartitionLeader> = topic
        .partitions
        .iter()
        .map(|p| PartitionLeader {
            partition: p.partition_index,
            leader: p.leader_id.0,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    Ok(Some(TopicLayout {
        name: name.clone(),
        topic_id: topic.topic_id,
        partitions,
    }))
}

fn first_leaderless(response: &MetadataResponse) -> i32 {
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.leader_id < BrokerId(0))
        .map_or(-1, |p| p.partition_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn leaders_on_the_bootstrap_host_are_allowed() {
        let bootstrap = addr("127.0.0.1:9092");
        let same = [addr("127.0.0.1:9093")];
        assert_eq!(allowed_address(bootstrap, &same, false), Some(same[0]));
        // "localhost" may resolve to ::1 first: loopback goes with loopback.
        let localhost = [addr("[::1]:9092"), addr("127.0.0.1:9092")];
        assert_eq!(
            allowed_address(bootstrap, &localhost, false),
            Some(localhost[1])
        );
        let v6_only = [addr("[::1]:9092")];
        assert_eq!(
            allowed_address(bootstrap, &v6_only, false),
            Some(v6_only[0])
        );
    }

    #[test]
    fn metadata_requests_ask_for_named_topics_or_all_and_create_none() {
        let names = [
            TopicName(StrBytes::from_static_str("a")),
            TopicName(StrBytes::from_static_str("b")),
        ];
        let all = metadata_request(None, 12);
        assert_eq!(all.topics, None);
        assert!(!all.allow_auto_topic_creation);
        let named = metadata_request(Some(&names), 12);
        let asked: Vec<_> = named
            .topics
            .unwrap()
            .into_iter()
            .map(|t| t.name.unwrap())
            .collect();
        assert_eq!(asked, names);
        assert!(!named.allow_auto_topic_creation);
        // Before v4 the field does not exist (brokers create per their own setting).
        assert!(metadata_request(None, 3).allow_auto_topic_creation);
    }

    #[test]
    fn other_hosts_need_the_flag() {
        let bootstrap = addr("127.0.0.1:9092");
        let other = [addr("192.0.2.7:9092")];
        assert_eq!(allowed_address(bootstrap, &other, false), None);
        assert_eq!(allowed_address(bootstrap, &other, true), Some(other[0]));
        assert_eq!(allowed_address(bootstrap, &[], true), None);
    }
}
