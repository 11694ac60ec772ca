//! Request dispatch: one table maps each Kafka API key to its request type, the versions
//! served, and its handler. ApiVersions is answered from the same table, so what is
//! advertised is exactly what is implemented.
//!
//! Request header layout (after the frame size):
//!
//! | bytes | field                       | header versions |
//! |-------|-----------------------------|-----------------|
//! | 0..2  | api_key: i16                | all             |
//! | 2..4  | api_version: i16            | all             |
//! | 4..8  | correlation_id: i32         | all             |
//! | 8..   | client_id: nullable string  | v1, v2          |
//! | ..    | tagged fields               | v2 (flexible)   |

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeLogDirsRequest, ElectLeadersRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader, ResponseHeader, SyncGroupRequest,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};
use tracing::{debug, info_span, Instrument};

use crate::bounds;
use crate::connection::Frame;
use crate::context::BrokerContext;
use crate::error_codes::UNSUPPORTED_VERSION;
use crate::handlers::fetch_encode::{self, FetchReply};
use crate::handlers::{
    alter_configs, alter_partition_reassignments, api_versions, create_partitions, create_topics,
    delete_groups, delete_records, delete_topics, describe_cluster, describe_configs,
    describe_groups, describe_log_dirs, elect_leaders, fetch, find_coordinator, heartbeat,
    incremental_alter_configs, init_producer_id, join_group, leave_group, list_groups,
    list_offsets, list_partition_reassignments, metadata, offset_commit, offset_delete,
    offset_fetch, offset_for_leader_epoch, produce, sync_group, unregister_broker,
};
use crate::sendfile::Chunk;

/// What the connection writes back for one request.
pub enum Reply {
    /// A complete response frame, size prefix included.
    Frame(Bytes),
    /// A complete response frame in parts, size prefix included: bytes and file
    /// regions, written in order (Fetch records, sent with `sendfile(2)`).
    Chunks(Vec<Chunk>),
    /// Nothing: a Produce with acks=0 gets no response.
    None,
    /// The request was malformed: close the connection after earlier responses.
    Close,
    /// The request's effects are in place but its answer waits (acks=all durability);
    /// later requests on the connection are handled meanwhile, answers stay in order.
    Later(Pin<Box<dyn Future<Output = Reply> + Send>>),
}

/// A handler's answer: now, or once its effects are durable.
pub enum Answer<R> {
    /// The response.
    Now(R),
    /// The response once this future completes.
    Later(Pin<Box<dyn Future<Output = R> + Send>>),
}

impl<R> From<R> for Answer<R> {
    fn from(response: R) -> Self {
        Answer::Now(response)
    }
}

/// A handler's response type: how it becomes a frame.
pub trait Respond {
    /// Encodes the response for `version` behind a response header with `correlation_id`.
    fn into_reply(self, correlation_id: i32, version: i16) -> Reply;
}

/// Every `kafka-protocol` response, encoded whole by its generated encoder.
impl<R: Encodable + HeaderVersion> Respond for R {
    fn into_reply(self, correlation_id: i32, version: i16) -> Reply {
        encoded(correlation_id, version, &self)
    }
}

/// Fetch: records stay in the segment files until the connection sends them.
impl Respond for FetchReply {
    fn into_reply(self, correlation_id: i32, version: i16) -> Reply {
        match fetch_encode::encode(correlation_id, version, &self) {
            Ok(chunks) => Reply::Chunks(chunks),
            Err(e) => {
                tracing::error!(error = %e, "encoding a response failed; closing the connection");
                Reply::Close
            }
        }
    }
}

/// Who sent a request: passed to every handler.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The API version the request was encoded with.
    pub version: i16,
    /// The client's `client.id`, if any.
    pub client_id: Option<String>,
    /// The address the client connects from.
    pub client_host: String,
}

/// One served API: its key and the inclusive version range.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The Kafka API.
    pub key: ApiKey,
    /// Lowest version served.
    pub min: i16,
    /// Highest version served.
    pub max: i16,
}

fn always_answer<T>(_: &T) -> bool {
    false
}

/// The response type of a route: the request's own, unless the route names another.
macro_rules! response_type {
    ($req:ty) => {
        <$req as Request>::Response
    };
    ($req:ty, $resp:ty) => {
        $resp
    };
}

/// Rows: `Key => Request [=> Response], versions, handler, silent`.
macro_rules! routes {
    ($( $key:ident => $req:ty $(=> $resp:ty)?, $min:literal ..= $max:literal, $handler:path, $silent:path; )*) => {
        /// Every API this broker serves, with the versions served.
        pub const ROUTES: &[Route] = &[ $( Route { key: ApiKey::$key, min: $min, max: $max }, )* ];

        async fn route(ctx: Arc<BrokerContext>, key: ApiKey, header: RequestHeader, body: Bytes, client_host: Arc<str>) -> Reply {
            match key {
                $( ApiKey::$key => call::<$req, response_type!($req $(, $resp)?), _, _, _>(ctx, stringify!($key), header, body, client_host, $handler, $silent).await, )*
                _ => unsupported(header.correlation_id),
            }
        }
    };
}

routes! {
    Produce => ProduceRequest, 3..=11, produce::handle, produce::is_silent;
    Fetch => FetchRequest => FetchReply, 4..=16, fetch::handle, always_answer;
    ListOffsets => ListOffsetsRequest, 1..=6, list_offsets::handle, always_answer;
    Metadata => MetadataRequest, 0..=12, metadata::handle, always_answer;
    OffsetCommit => OffsetCommitRequest, 2..=8, offset_commit::handle, always_answer;
    OffsetFetch => OffsetFetchRequest, 1..=8, offset_fetch::handle, always_answer;
    FindCoordinator => FindCoordinatorRequest, 0..=4, find_coordinator::handle, always_answer;
    JoinGroup => JoinGroupRequest, 0..=9, join_group::handle, always_answer;
    Heartbeat => HeartbeatRequest, 0..=4, heartbeat::handle, always_answer;
    LeaveGroup => LeaveGroupRequest, 0..=5, leave_group::handle, always_answer;
    SyncGroup => SyncGroupRequest, 0..=5, sync_group::handle, always_answer;
    DescribeGroups => DescribeGroupsRequest, 0..=5, describe_groups::handle, always_answer;
    ListGroups => ListGroupsRequest, 0..=5, list_groups::handle, always_answer;
    ApiVersions => ApiVersionsRequest, 0..=4, api_versions::handle, always_answer;
    CreateTopics => CreateTopicsRequest, 2..=7, create_topics::handle, always_answer;
    DeleteTopics => DeleteTopicsRequest, 1..=6, delete_topics::handle, always_answer;
    DeleteRecords => DeleteRecordsRequest, 0..=2, delete_records::handle, always_answer;
    InitProducerId => InitProducerIdRequest, 0..=5, init_producer_id::handle, always_answer;
    DescribeConfigs => DescribeConfigsRequest, 1..=4, describe_configs::handle, always_answer;
    AlterConfigs => AlterConfigsRequest, 0..=2, alter_configs::handle, always_answer;
    CreatePartitions => CreatePartitionsRequest, 0..=3, create_partitions::handle, always_answer;
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest, 0..=1, incremental_alter_configs::handle, always_answer;
    DeleteGroups => DeleteGroupsRequest, 0..=2, delete_groups::handle, always_answer;
    OffsetDelete => OffsetDeleteRequest, 0..=0, offset_delete::handle, always_answer;
    DescribeCluster => DescribeClusterRequest, 0..=2, describe_cluster::handle, always_answer;
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, 2..=4, offset_for_leader_epoch::handle, always_answer;
    ElectLeaders => ElectLeadersRequest, 0..=2, elect_leaders::handle, always_answer;
    AlterPartitionReassignments => AlterPartitionReassignmentsRequest, 0..=1, alter_partition_reassignments::handle, always_answer;
    ListPartitionReassignments => ListPartitionReassignmentsRequest, 0..=0, list_partition_reassignments::handle, always_answer;
    UnregisterBroker => UnregisterBrokerRequest, 0..=0, unregister_broker::handle, always_answer;
    DescribeLogDirs => DescribeLogDirsRequest, 1..=4, describe_log_dirs::handle, always_answer;
}

/// The served version range of `key`, if it is served at all.
pub fn served_versions(key: ApiKey) -> Option<Route> {
    ROUTES.iter().copied().find(|r| r.key == key)
}

/// Handles one request frame and produces what to write back.
pub async fn handle_frame(ctx: Arc<BrokerContext>, frame: Frame, client_host: Arc<str>) -> Reply {
    let bytes = frame.bytes.clone();
    let Some((raw_key, version, correlation_id)) = peek_header(&bytes) else {
        debug!(
            len = bytes.len(),
            "request too short for a header; closing the connection"
        );
        return Reply::Close;
    };
    let key = ApiKey::try_from(raw_key).ok();
    let served = key.and_then(served_versions);
    let supported = served.is_some_and(|r| (r.min..=r.max).contains(&version));
    let (Some(key), true) = (key, supported) else {
        debug!(
            api_key = raw_key,
            api_version = version,
            "unsupported API key or version"
        );
        let name = key.map_or_else(|| "Unknown".to_string(), |k| format!("{k:?}"));
        ctx.metrics
            .requests
            .with_label_values(&[name.as_str()])
            .inc();
        ctx.metrics
            .request_errors
            .with_label_values(&[name.as_str()])
            .inc();
        if key == Some(ApiKey::ApiVersions) {
            // KIP-511: answer with v0 and the list, so the client can pick a version.
            return api_versions::unsupported_version_reply(correlation_id);
        }
        return unsupported(correlation_id);
    };
    let mut buf = bytes;
    let header = match RequestHeader::decode(&mut buf, key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => {
            debug!(error = %e, "malformed request header; closing the connection");
            return Reply::Close;
        }
    };
    let span = info_span!(
        "request",
        api_key = ?key,
        api_version = version,
        correlation_id,
        client_id = header.client_id.as_deref().unwrap_or(""),
    );
    let api = format!("{key:?}");
    let metrics = Arc::clone(&ctx.metrics);
    metrics
        .request_queue_time
        .observe(frame.arrived.elapsed().as_secs_f64());
    let reply = route(ctx, key, header, buf, client_host)
        .instrument(span)
        .await;
    metrics.requests.with_label_values(&[api.as_str()]).inc();
    if matches!(reply, Reply::Close) {
        metrics
            .request_errors
            .with_label_values(&[api.as_str()])
            .inc();
    }
    let arrived = frame.arrived;
    drop(frame);
    let observe = move || {
        metrics
            .request_duration
            .with_label_values(&[api.as_str()])
            .observe(arrived.elapsed().as_secs_f64());
    };
    match reply {
        Reply::Later(pending) => Reply::Later(Box::pin(async move {
            let reply = pending.await;
            observe();
            reply
        })),
        now => {
            observe();
            now
        }
    }
}

/// The fixed leading fields of every request header: api key, version, correlation id.
fn peek_header(bytes: &[u8]) -> Option<(i16, i16, i32)> {
    let key = i16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    let correlation = i32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    Some((key, version, correlation))
}

async fn call<Req, Resp, F, Fut, Out>(
    ctx: Arc<BrokerContext>,
    api: &'static str,
    header: RequestHeader,
    mut body: Bytes,
    client_host: Arc<str>,
    handler: F,
    silent: fn(&Req) -> bool,
) -> Reply
where
    Req: Request,
    Resp: Respond + Send + 'static,
    F: FnOnce(Arc<BrokerContext>, Req, RequestInfo) -> Fut,
    Fut: Future<Output = Out>,
    Out: Into<Answer<Resp>>,
{
    let version = header.request_api_version;
    // The codec reserves memory from counts on the wire: bound them all first.
    if let Err(e) = bounds::check_body(api, version, &body) {
        debug!(error = %e, "request body out of bounds; closing the connection");
        return Reply::Close;
    }
    let request = match Req::decode(&mut body, version) {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "malformed request body; closing the connection");
            return Reply::Close;
        }
    };
    let no_response = silent(&request);
    let info = RequestInfo {
        version,
        client_id: header.client_id.as_ref().map(|c| c.to_string()),
        client_host: client_host.to_string(),
    };
    let answer = handler(ctx, request, info).await.into();
    if no_response {
        return Reply::None;
    }
    let correlation_id = header.correlation_id;
    match answer {
        Answer::Now(response) => response.into_reply(correlation_id, version),
        Answer::Later(pending) => Reply::Later(Box::pin(
            async move { pending.await.into_reply(correlation_id, version) }.in_current_span(),
        )),
    }
}

fn encoded<R: Encodable + HeaderVersion>(correlation_id: i32, version: i16, response: &R) -> Reply {
    match encode_response(correlation_id, version, response) {
        Ok(frame) => Reply::Frame(frame),
        Err(e) => {
            tracing::error!(error = %e, "encoding a response failed; closing the connection");
            Reply::Close
        }
    }
}

/// Why a response could not be encoded (a defect: handlers build valid responses).
#[derive(Debug, thiserror::Error)]
pub enum ResponseEncodeError {
    /// The codec refused a field (for example one the version does not carry).
    #[error("the codec cannot encode the response: {0}")]
    Codec(Box<dyn std::error::Error + Send + Sync>),
    /// The response does not fit a frame's 32-bit size.
    #[error("a response of {0} bytes does not fit a frame")]
    TooLarge(usize),
}

/// The codec's errors, kept as their source.
fn codec<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> ResponseEncodeError {
    ResponseEncodeError::Codec(e.into())
}

/// Encodes a response frame: size, response header, body.
pub fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, ResponseEncodeError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version).map_err(codec)?
        + response.compute_size(version).map_err(codec)?;
    let prefix = i32::try_from(size).map_err(|_| ResponseEncodeError::TooLarge(size))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(prefix);
    header.encode(&mut buf, header_version).map_err(codec)?;
    response.encode(&mut buf, version).map_err(codec)?;
    Ok(buf.freeze())
}

/// The answer to an API key or version this broker does not serve: the correlation id and
/// UNSUPPORTED_VERSION, the leading error code that the client's own parser expects to fail on.
fn unsupported(correlation_id: i32) -> Reply {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_i32(6);
    buf.put_i32(correlation_id);
    buf.put_i16(UNSUPPORTED_VERSION);
    Reply::Frame(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_within_the_codec_versions() {
        for route in ROUTES {
            let codec = route.key.valid_versions();
            assert!(
                route.min >= codec.min && route.max <= codec.max,
                "{route:?} vs {codec:?}"
            );
            assert!(route.min <= route.max);
        }
    }

    #[test]
    fn peek_needs_eight_bytes() {
        assert_eq!(peek_header(&[0, 18, 0, 3, 0, 0, 0, 7]), Some((18, 3, 7)));
        assert_eq!(peek_header(&[0, 18, 0, 3, 0, 0, 0]), None);
    }
}
