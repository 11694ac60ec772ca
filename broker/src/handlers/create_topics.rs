//! CreateTopics (key 19): creates each topic with its partitions and configs, or with
//! `validate_only` only checks that it could. Manual replica assignments name registered
//! brokers, the same number for every partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::topic_config;
use crate::topics::{self, Layout, TopicError};

/// `config_source` of a value set on the topic.
const SOURCE_TOPIC: i8 = 1;
/// `config_source` of a default.
const SOURCE_DEFAULT: i8 = 5;

/// Answers CreateTopics.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: CreateTopicsRequest,
    info: RequestInfo,
) -> CreateTopicsResponse {
    let validate_only = request.validate_only;
    let version = info.version;
    let results = blocking(move || {
        let mut seen = std::collections::HashSet::new();
        request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                if !seen.insert(name.clone()) {
                    return failed(
                        topic,
                        ResponseError::InvalidRequest.code(),
                        "the topic is named twice in this request".into(),
                    );
                }
                create(&ctx, topic, validate_only, version)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    CreateTopicsResponse::default().with_topics(results)
}

fn create(
    ctx: &BrokerContext,
    topic: CreatableTopic,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    if !topic.assignments.is_empty()
        && (topic.num_partitions != -1 || topic.replication_factor != -1)
    {
        return failed(
            topic,
            ResponseError::InvalidRequest.code(),
            "give either replica assignments or partitions and replication factor, not both".into(),
        );
    }
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        match &c.value {
            Some(v) => {
                configs.insert(c.name.to_string(), v.to_string());
            }
            None => {
                if let Err(e) = topic_config::check_known(&c.name) {
                    return failed(topic, ResponseError::InvalidConfig.code(), e.0);
                }
            }
        }
    }
    let name = topic.name.0.to_string();
    let layout = if topic.assignments.is_empty() {
        Layout::Spread {
            partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
        }
    } else {
        let mut assignments: Vec<_> = topic.assignments.iter().collect();
        assignments.sort_by_key(|a| a.partition_index);
        let in_order = assignments
            .iter()
            .enumerate()
            .all(|(i, a)| usize::try_from(a.partition_index).ok() == Some(i));
        if !in_order {
            return failed(
                topic,
                ResponseError::InvalidReplicaAssignment.code(),
                "assignments must cover partitions 0..n, each once".into(),
            );
        }
        Layout::Explicit(
            assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        )
    };
    match topics::create_topic_as(ctx, &name, layout, configs, validate_only) {
        Ok(created) => {
            let defaults = topic_config::defaults(&ctx.config);
            let configs = (version >= 5).then(|| {
                defaults
                    .iter()
                    .map(|(k, default)| {
                        let set = created.configs.get(*k);
                        CreatableTopicConfigs::default()
                            .with_name(text(*k))
                            .with_value(Some(text(set.unwrap_or(default).clone())))
                            .with_config_source(if set.is_some() {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            })
                    })
                    .collect()
            });
            CreatableTopicResult::default()
                .with_name(topic.name)
                .with_topic_id(created.id)
                .with_num_partitions(created.partitions)
                .with_replication_factor(1)
                .with_configs(configs)
        }
        Err(e) => {
            if !matches!(e, TopicError::AlreadyExists(_)) {
                tracing::debug!(topic = name, error = %e, "topic not created");
            }
            failed(topic, e.code(), e.to_string())
        }
    }
}

fn failed(topic: CreatableTopic, code: i16, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic.name)
        .with_error_code(code)
        .with_error_message(Some(text(message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}
