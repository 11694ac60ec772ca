//! DescribeCluster (key 60): the cluster's brokers, its id and the active controller.
//! v2 (KIP-1073) lists fenced brokers too, marked as such, when the client asks.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::text;
use crate::context::BrokerContext;
use crate::dispatch::RequestInfo;

/// `endpoint_type` 1: brokers (2 would be controllers, which are not listed separately).
const ENDPOINT_BROKERS: i8 = 1;

/// Answers DescribeCluster.
pub async fn handle(
    ctx: Arc<BrokerContext>,
    request: DescribeClusterRequest,
    info: RequestInfo,
) -> DescribeClusterResponse {
    if request.endpoint_type != ENDPOINT_BROKERS {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_endpoint_type(request.endpoint_type);
    }
    let broker = |id, host, port, rack: Option<String>, fenced| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(text(host))
            .with_port(port)
            .with_rack(rack.map(text))
            .with_is_fenced(fenced)
    };
    let image = ctx.image();
    let brokers =
        if info.version >= 2 && request.include_fenced_brokers && !image.brokers.is_empty() {
            image
                .brokers
                .values()
                .map(|b| broker(b.node_id, b.host.clone(), b.port, b.rack.clone(), b.fenced))
                .collect()
        } else {
            ctx.brokers()
                .into_iter()
                .map(|(id, host, port, rack)| broker(id, host, port, rack, false))
                .collect()
        };
    DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_id(text(image.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.controller_id()))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(brokers)
}
