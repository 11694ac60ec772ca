//! DescribeConfigs (key 32): every topic config with its value and whether it is the
//! default, and the broker's settings: the static ones (read-only: set by flags) and the
//! dynamic replication throttle rates, with Kafka's sources (DYNAMIC_BROKER_CONFIG,
//! DYNAMIC_DEFAULT_BROKER_CONFIG, DEFAULT_CONFIG).

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::dynamic_config;
use crate::metadata::BrokerConfigSource;
use crate::topic_config;

/// `resource_type` of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// `resource_type` of a broker.
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// `config_type` LONG.
const TYPE_LONG: i8 = 5;

/// Answers DescribeConfigs.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DescribeConfigsRequest,
    _info: RequestInfo,
) -> DescribeConfigsResponse {
    let image = ctx.image();
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let entries: Vec<(String, String, i8, i8, bool)> = match r.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = image.topic(r.resource_name.as_str()) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(text(format!(
                                "topic {:?} does not exist",
                                r.resource_name.as_str()
                            ))));
                    };
                    topic_config::defaults(&ctx.config)
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, default)| {
                            let ty = topic_config::lookup(k).map_or(2, |d| d.config_type());
                            match topic.configs.get(k) {
                                Some(v) => (k.to_string(), v.clone(), SOURCE_TOPIC, ty, false),
                                None => (k.to_string(), default, SOURCE_DEFAULT, ty, false),
                            }
                        })
                        .collect()
                }
                RESOURCE_BROKER => {
                    if r.resource_name.as_str() != ctx.node_id().to_string()
                        && !r.resource_name.is_empty()
                    {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(text(format!(
                                "this is broker {}",
                                ctx.node_id()
                            ))));
                    }
                    let scope = dynamic_config::scope_of(r.resource_name.as_str())
                        .ok()
                        .flatten();
                    let mut entries: Vec<_> = broker_configs(&ctx)
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| (k.to_string(), v, SOURCE_STATIC_BROKER, 2, true))
                        .collect();
                    entries.extend(
                        dynamic_config::DYNAMIC_BROKER_CONFIGS
                            .into_iter()
                            .filter(|k| wanted(k))
                            .map(|k| {
                                let (value, source) = dynamic_config::effective(&image, scope, k);
                                let source =
                                    source.map_or(SOURCE_DEFAULT, BrokerConfigSource::code);
                                (k.to_string(), value.to_string(), source, TYPE_LONG, false)
                            }),
                    );
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    entries
                }
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(text(format!(
                            "resource type {other} is not supported"
                        ))));
                }
            };
            let configs = entries
                .into_iter()
                .map(|(name, value, source, ty, read_only)| {
                    let synonyms = if request.include_synonyms {
                        vec![DescribeConfigsSynonym::default()
                            .with_name(text(name.clone()))
                            .with_value(Some(text(value.clone())))
                            .with_source(source)]
                    } else {
                        Vec::new()
                    };
                    let doc = request
                        .include_documentation
                        .then(|| topic_config::lookup(&name).map(|d| text(d.doc)))
                        .flatten();
                    DescribeConfigsResourceResult::default()
                        .with_name(text(name))
                        .with_value(Some(text(value)))
                        .with_read_only(read_only)
                        .with_config_source(source)
                        .with_config_type(ty)
                        .with_synonyms(synonyms)
                        .with_documentation(doc)
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn broker_configs(ctx: &BrokerContext) -> Vec<(&'static str, String)> {
    let c = &ctx.config;
    vec![
        (
            "auto.create.topics.enable",
            c.auto_create_topics_enable.to_string(),
        ),
        ("broker.id", c.node_id.to_string()),
        (
            "connections.max.idle.ms",
            c.connections_max_idle_ms.to_string(),
        ),
        ("default.replication.factor", "1".to_string()),
        ("log.dirs", c.data_dir.display().to_string()),
        ("log.segment.bytes", c.log_segment_bytes.to_string()),
        ("max.connections", c.max_connections.to_string()),
        ("message.max.bytes", c.message_max_bytes.to_string()),
        ("node.id", c.node_id.to_string()),
        ("num.partitions", c.num_partitions.to_string()),
        (
            "queued.max.request.bytes",
            c.queued_max_request_bytes.to_string(),
        ),
        (
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
        ),
    ]
}
