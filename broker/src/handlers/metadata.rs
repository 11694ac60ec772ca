//! Metadata (key 3): brokers, cluster id, controller, and topics with their partitions.
//! Unknown topics are created when the request allows it (v4+) and
//! `auto.create.topics.enable` is on, with `num.partitions` partitions.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::metadata::TopicImage;
use crate::topics::{self, TopicError};

/// Answers Metadata.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: MetadataRequest,
    info: RequestInfo,
) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all = match &request.topics {
        None => true,
        Some(t) => t.is_empty() && info.version == 0,
    };
    let auto_create = ctx.config.auto_create_topics_enable
        && (info.version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if all {
        topics.extend(ctx.image().topics().map(|t| describe(&ctx, t)));
    } else {
        for wanted in request.topics.unwrap_or_default() {
            topics.push(
                lookup(
                    &ctx,
                    wanted.name.map(|n| n.0.to_string()),
                    wanted.topic_id,
                    auto_create,
                )
                .await,
            );
        }
    }
    let brokers = ctx
        .brokers()
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(text(host))
                .with_port(port)
                .with_rack(rack.map(text))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(text(ctx.image().cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.controller_id()))
        .with_cluster_authorized_operations(i32::MIN)
        .with_topics(topics)
}

async fn lookup(
    ctx: &Arc<BrokerContext>,
    name: Option<String>,
    id: Uuid,
    auto_create: bool,
) -> MetadataResponseTopic {
    let image = ctx.image();
    let Some(name) = name else {
        return match image.topic_by_id(&id) {
            Some(t) => describe(ctx, t),
            None => error_topic(None, id, ResponseError::UnknownTopicId),
        };
    };
    if let Some(t) = image.topic(&name) {
        return describe(ctx, t);
    }
    if let Err(e) = topics::validate_name(&name) {
        tracing::debug!(error = %e, "metadata for an invalid topic name");
        return error_topic(Some(name), id, ResponseError::InvalidTopicException);
    }
    if !auto_create {
        return error_topic(Some(name), id, ResponseError::UnknownTopicOrPartition);
    }
    let ctx2 = Arc::clone(ctx);
    let create = name.clone();
    let created =
        blocking(move || topics::create_topic(&ctx2, &create, -1, -1, Default::default(), false))
            .await;
    match created {
        Some(Ok(t)) => describe(ctx, &t),
        // Another request created it first.
        Some(Err(TopicError::AlreadyExists(_))) => match ctx.image().topic(&name) {
            Some(t) => describe(ctx, t),
            None => error_topic(Some(name), id, ResponseError::LeaderNotAvailable),
        },
        Some(Err(e)) => {
            tracing::warn!(topic = name, error = %e, "auto-creating a topic failed");
            error_topic(Some(name), id, ResponseError::UnknownTopicOrPartition)
        }
        None => error_topic(Some(name), id, ResponseError::UnknownServerError),
    }
}

fn describe(ctx: &BrokerContext, topic: &TopicImage) -> MetadataResponseTopic {
    let me = ctx.node_id();
    let image = ctx.image();
    let partitions = (0..topic.partitions)
        .map(|p| {
            let replicas = topic.replicas(p, me);
            let leadership = topic.leadership(p, me);
            let leader = ctx.live_leader(&image, topic, p);
            let offline = replicas
                .iter()
                .filter(|&&r| ctx.quorum().is_some() && !image.is_live(r))
                .map(|&r| BrokerId(r))
                .collect();
            let partition = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_leader_epoch(leadership.leader_epoch)
                .with_replica_nodes(replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(leadership.isr.iter().map(|&r| BrokerId(r)).collect())
                .with_offline_replicas(offline);
            match leader {
                Some(_) => partition,
                None => partition.with_error_code(ResponseError::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn error_topic(name: Option<String>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(text(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(i32::MIN)
}
