//! DeleteTopics (key 20): deletes topics named (v0-5) or named or identified by id (v6+).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::error_codes::UNKNOWN_TOPIC_ID;
use crate::topics;

/// Answers DeleteTopics.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DeleteTopicsRequest,
    info: RequestInfo,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, Uuid)> = Vec::new();
    if info.version >= 6 {
        targets.extend(
            request
                .topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)),
        );
    } else {
        targets.extend(
            request
                .topic_names
                .into_iter()
                .map(|n| (Some(n.0.to_string()), Uuid::nil())),
        );
    }
    let results = blocking(move || {
        targets
            .into_iter()
            .map(|(name, id)| {
                let name = name.or_else(|| ctx.image().topic_by_id(&id).map(|t| t.name.clone()));
                let Some(name) = name else {
                    return DeletableTopicResult::default()
                        .with_topic_id(id)
                        .with_error_code(UNKNOWN_TOPIC_ID)
                        .with_error_message(Some(text(format!("no topic has id {id}"))));
                };
                let result =
                    DeletableTopicResult::default().with_name(Some(TopicName(text(name.clone()))));
                match topics::delete_topic(&ctx, &name) {
                    Ok(topic) => result.with_topic_id(topic.id),
                    Err(e) => result
                        .with_topic_id(id)
                        .with_error_code(e.code())
                        .with_error_message(Some(text(e.to_string()))),
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    DeleteTopicsResponse::default().with_responses(results)
}
