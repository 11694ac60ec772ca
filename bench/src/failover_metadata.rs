//! What a failover run asks Metadata for: where each broker is, who leads the produced
//! partition, and whether every partition of the topic has its whole replica set in the
//! ISR. [`MetadataClient`] asks any live broker of the bootstrap list, so it keeps
//! answering while one broker is dead.

use std::collections::BTreeMap;

use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use runnel_client::{ClientConfig, Connection};

use crate::cluster::metadata_request;
use crate::error::BenchError;
use crate::versions::METADATA;

/// One partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader's node id (-1 when none).
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The replica set.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// The view of `partition` of `topic` in `response`, if listed without error.
pub fn partition_view(
    response: &MetadataResponse,
    topic: &TopicName,
    partition: i32,
) -> Option<PartitionView> {
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref() == Some(topic) && t.error_code == 0)?;
    let p = topic
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)?;
    Some(PartitionView {
        leader: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
    })
}

/// The partitions of `topic` that lack a leader or whose ISR is not their whole replica
/// set; all of them (or `[-1]`) when the topic is not listed.
pub fn partitions_not_whole(response: &MetadataResponse, topic: &TopicName) -> Vec<i32> {
    let Some(t) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref() == Some(topic) && t.error_code == 0)
    else {
        return vec![-1];
    };
    if t.partitions.is_empty() {
        return vec![-1];
    }
    let mut short: Vec<i32> = t
        .partitions
        .iter()
        .filter(|p| {
            let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            replicas.sort_unstable();
            isr.sort_unstable();
            p.leader_id.0 < 0 || p.error_code != 0 || replicas.is_empty() || isr != replicas
        })
        .map(|p| p.partition_index)
        .collect();
    short.sort_unstable();
    short
}

/// Each broker's advertised `host:port`, by node id.
pub fn broker_addresses(response: &MetadataResponse) -> BTreeMap<i32, String> {
    response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect()
}

/// Asks Metadata of the first bootstrap broker that answers, keeping that connection
/// until it fails.
#[derive(Debug)]
pub struct MetadataClient {
    bootstrap: Vec<String>,
    client: ClientConfig,
    connection: Option<(Connection, i16)>,
    next: usize,
}

impl MetadataClient {
    /// A client over `bootstrap` (`host:port` each, at least one).
    pub fn new(bootstrap: Vec<String>, client: ClientConfig) -> Self {
        MetadataClient {
            bootstrap,
            client,
            connection: None,
            next: 0,
        }
    }

    /// A connection to the first bootstrap broker that answers ApiVersions, starting after
    /// the last one that failed; with its Metadata version.
    pub async fn connection(&mut self) -> Result<&mut (Connection, i16), BenchError> {
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        self.connection.as_mut().ok_or(BenchError::NoBroker {
            bootstrap: self.bootstrap.join(","),
        })
    }

    async fn connect(&mut self) -> Result<(Connection, i16), BenchError> {
        let mut last = None;
        for _ in 0..self.bootstrap.len() {
            let address = &self.bootstrap[self.next % self.bootstrap.len()];
            match Connection::connect(address, &self.client).await {
                Ok(mut connection) => match connection.version::<MetadataRequest>(METADATA).await {
                    Ok(version) => return Ok((connection, version)),
                    Err(e) => last = Some(BenchError::from(e)),
                },
                Err(e) => last = Some(BenchError::from(e)),
            }
            self.next += 1;
        }
        tracing::debug!(error = ?last, "no bootstrap broker answered");
        Err(BenchError::NoBroker {
            bootstrap: self.bootstrap.join(","),
        })
    }

    /// Forgets the connection (after an error on it) and starts with the next broker.
    pub fn reset(&mut self) {
        if self.connection.take().is_some() {
            self.next += 1;
        }
    }

    /// Metadata for `topic`; on error the connection is dropped and the next call tries
    /// the next broker.
    pub async fn topic(&mut self, topic: &TopicName) -> Result<MetadataResponse, BenchError> {
        let (connection, version) = self.connection().await?;
        let version = *version;
        let request = metadata_request(Some(std::slice::from_ref(topic)), version);
        match connection.call(&request, version).await {
            Ok(response) => Ok(response),
            Err(e) => {
                self.reset();
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::StrBytes;

    fn name(text: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(text))
    }

    fn partition(
        index: i32,
        leader: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> MetadataResponsePartition {
        let ids = |ids: &[i32]| ids.iter().map(|&i| BrokerId(i)).collect();
        MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(4)
            .with_replica_nodes(ids(replicas))
            .with_isr_nodes(ids(isr))
    }

    fn response(partitions: Vec<MetadataResponsePartition>) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(19094)])
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(name("t")))
                .with_partitions(partitions)])
    }

    #[test]
    fn a_partition_is_whole_when_its_isr_is_its_replica_set() {
        let r = response(vec![
            partition(0, 1, &[0, 1, 2], &[2, 1, 0]),
            partition(1, 2, &[0, 1, 2], &[2, 1]),
            partition(2, -1, &[0, 1, 2], &[0, 1, 2]),
            partition(3, 0, &[0], &[0]),
        ]);
        assert_eq!(partitions_not_whole(&r, &name("t")), vec![1, 2]);
        assert_eq!(partitions_not_whole(&r, &name("other")), vec![-1]);
        assert_eq!(
            partitions_not_whole(&response(vec![]), &name("t")),
            vec![-1]
        );
    }

    #[test]
    fn views_name_leader_epoch_and_isr() {
        let r = response(vec![partition(0, 1, &[0, 1, 2], &[1, 2])]);
        assert_eq!(
            partition_view(&r, &name("t"), 0),
            Some(PartitionView {
                leader: 1,
                leader_epoch: 4,
                replicas: vec![0, 1, 2],
                isr: vec![1, 2],
            })
        );
        assert_eq!(partition_view(&r, &name("t"), 1), None);
        assert_eq!(
            broker_addresses(&r),
            BTreeMap::from([(2, "127.0.0.1:19094".to_string())])
        );
    }
}
