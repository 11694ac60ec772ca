//! DescribeCluster (key 60): the cluster's brokers, its id and the active controller.

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
    _info: RequestInfo,
) -> DescribeClusterResponse {
    if request.endpoint_type != ENDPOINT_BROKERS {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_endpoint_type(request.endpoint_type);
    }
    let brokers = ctx
        .brokers()
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(text(host))
                .with_port(port)
                .with_rack(rack.map(text))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_id(text(ctx.image().cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.controller_id()))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(brokers)
}
