//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT single topic
//! configs (APPEND and SUBTRACT apply to list configs: `cleanup.policy`), and SET and
//! DELETE of the dynamic broker configs (`dynamic_config`: the replication throttle
//! rates; every other broker config is read-only at runtime).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::dynamic_config;
use crate::error_codes::NONE;
use crate::topics;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Result of altering one resource.
pub struct ResourceOutcome {
    /// Kafka error code.
    pub code: i16,
    /// Why, when it failed.
    pub message: Option<String>,
}

/// Applies config changes to one resource; shared with AlterConfigs. Blocking.
pub fn alter(
    ctx: &BrokerContext,
    resource_type: i8,
    name: &str,
    changes: Result<BTreeMap<String, Option<String>>, String>,
    replace: bool,
    validate_only: bool,
) -> ResourceOutcome {
    let fail = |e: ResponseError, m: String| ResourceOutcome {
        code: e.code(),
        message: Some(m),
    };
    if resource_type != RESOURCE_TOPIC && resource_type != RESOURCE_BROKER {
        return fail(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} is not supported"),
        );
    }
    let changes = match changes {
        Ok(c) => c,
        Err(m) => return fail(ResponseError::InvalidConfig, m),
    };
    let outcome = if resource_type == RESOURCE_BROKER {
        dynamic_config::alter(ctx, name, changes, replace, validate_only)
            .map_err(|e| (e.code(), e.to_string()))
    } else {
        topics::alter_topic_configs(ctx, name, changes, replace, validate_only)
            .map_err(|e| (e.code(), e.to_string()))
    };
    match outcome {
        Ok(()) => ResourceOutcome {
            code: NONE,
            message: None,
        },
        Err((code, message)) => ResourceOutcome {
            code,
            message: Some(message),
        },
    }
}

/// Turns the operations on one resource into set/reset changes against the current values.
fn changes_of(
    ctx: &BrokerContext,
    r: &AlterConfigsResource,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let image = ctx.image();
    let current = image
        .topic(r.resource_name.as_str())
        .map(|t| t.configs.clone())
        .unwrap_or_default();
    let defaults = crate::topic_config::defaults(&ctx.config);
    let mut changes = BTreeMap::new();
    for c in &r.configs {
        let name = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        let change = match c.config_operation {
            OP_SET => Some(value.ok_or_else(|| format!("SET of {name} needs a value"))?),
            OP_DELETE => None,
            OP_APPEND | OP_SUBTRACT => {
                if name != "cleanup.policy" {
                    return Err(format!("{name} is not a list config; APPEND and SUBTRACT apply to cleanup.policy only"));
                }
                let now = current
                    .get(&name)
                    .or(defaults.get("cleanup.policy"))
                    .cloned()
                    .unwrap_or_default();
                let mut items: Vec<String> = now
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for v in value
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                {
                    if c.config_operation == OP_APPEND && !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    } else if c.config_operation == OP_SUBTRACT {
                        items.retain(|i| i != v);
                    }
                }
                Some(items.join(","))
            }
            other => return Err(format!("unknown config operation {other}")),
        };
        changes.insert(name, change);
    }
    Ok(changes)
}

/// Answers IncrementalAlterConfigs.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: IncrementalAlterConfigsRequest,
    _info: RequestInfo,
) -> IncrementalAlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = blocking(move || {
        request
            .resources
            .into_iter()
            .map(|r| {
                let changes = changes_of(&ctx, &r);
                let outcome = alter(
                    &ctx,
                    r.resource_type,
                    r.resource_name.as_str(),
                    changes,
                    false,
                    validate_only,
                );
                AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_code(outcome.code)
                    .with_error_message(outcome.message.map(text))
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
