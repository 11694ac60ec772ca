//! AlterConfigs (key 33): replaces a topic's whole config set (configs not named return
//! to their defaults), or a broker's dynamic configs (the replication throttle rates;
//! other broker settings are read-only at runtime).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::blocking;
use super::incremental_alter_configs::{alter, ResourceOutcome};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;

/// Answers AlterConfigs.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: AlterConfigsRequest,
    _info: RequestInfo,
) -> AlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = blocking(move || {
        request
            .resources
            .into_iter()
            .map(|r| {
                let changes: BTreeMap<String, Option<String>> = r
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                let ResourceOutcome { code, message } = alter(
                    &ctx,
                    r.resource_type,
                    r.resource_name.as_str(),
                    Ok(changes),
                    true,
                    validate_only,
                );
                AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_code(code)
                    .with_error_message(message.map(super::text))
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    AlterConfigsResponse::default().with_responses(responses)
}
