//! FindCoordinator (key 10): on a single broker this broker coordinates every group
//! (creating `__consumer_offsets` on first use, as Kafka does). Transactions are not
//! served yet: transaction keys get COORDINATOR_NOT_AVAILABLE. v4+ batches keys.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{blocking, text};
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;
use crate::groups::errors::{COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID};
use crate::groups::{offsets, store};

/// `key_type` of a consumer group.
const KEY_GROUP: i8 = 0;

/// Answers FindCoordinator.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: FindCoordinatorRequest,
    info: RequestInfo,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if info.version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let offsets_ready = if request.key_type == KEY_GROUP {
        let ctx2 = Arc::clone(&ctx);
        match blocking(move || store::ensure_offsets_topic(&ctx2)).await {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot create the offsets topic");
                false
            }
            None => false,
        }
    } else {
        false
    };
    let brokers = ctx.brokers();
    let answers: Vec<(StrBytes, i16, &str)> = keys
        .into_iter()
        .map(|key| {
            if request.key_type != KEY_GROUP {
                (
                    key,
                    COORDINATOR_NOT_AVAILABLE,
                    "transactions are not supported yet",
                )
            } else if !offsets::valid_group_id(&key) {
                (key, INVALID_GROUP_ID, "the group id is empty or too long")
            } else if !offsets_ready {
                (
                    key,
                    COORDINATOR_NOT_AVAILABLE,
                    "the offsets topic is not available",
                )
            } else if !brokers.iter().any(|b| b.0 == ctx.coordinator_of(&key)) {
                (
                    key,
                    COORDINATOR_NOT_AVAILABLE,
                    "the group's offsets partition has no live leader",
                )
            } else {
                (key, 0, "")
            }
        })
        .collect();
    let endpoint = |code: i16, key: &str| {
        let coordinator = ctx.coordinator_of(key);
        let found = brokers.iter().find(|(id, ..)| *id == coordinator);
        match found {
            Some((id, host, port, _)) if code == 0 => (*id, host.clone(), *port),
            _ => (-1, String::new(), -1),
        }
    };
    if info.version >= 4 {
        let coordinators = answers
            .into_iter()
            .map(|(key, code, message)| {
                let (node, host, port) = endpoint(code, &key);
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(text(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message((code != 0).then(|| text(message)))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (key, code, message) =
        answers
            .into_iter()
            .next()
            .unwrap_or((StrBytes::default(), INVALID_GROUP_ID, "no key"));
    let (node, host, port) = endpoint(code, &key);
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message((code != 0).then(|| text(message)))
        .with_node_id(BrokerId(node))
        .with_host(text(host))
        .with_port(port)
}
