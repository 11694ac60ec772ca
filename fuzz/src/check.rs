//! What every answer must satisfy, whatever the request was. A violation is a bug as
//! much as a crash is: the worker aborts on it and the supervisor keeps the frame.
//!
//! | check                | why                                                           |
//! |----------------------|---------------------------------------------------------------|
//! | size prefix = bytes − 4 | a client reads exactly that many bytes next                 |
//! | correlation id echoed | clients match answers to requests by it                       |
//! | decodes at the request's version, with no byte left over | what a client's parser does |
//! | unserved key or version: 2-byte UNSUPPORTED_VERSION body | what clients expect to fail on |
//!
//! A Fetch answer ([`runnel_broker::dispatch::Reply::Chunks`]) is assembled first, its file
//! regions read from the segment files, so the check sees the bytes a socket would.

use std::fmt;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use runnel_broker::dispatch::served_versions;
use runnel_broker::sendfile::Chunk;

/// Largest Fetch answer assembled for checking; the broker bounds a response by the
/// request's `max_bytes`, and the allocator cap bounds this read in any case.
const MAX_ASSEMBLED: u64 = 256 * 1024 * 1024;

/// UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// A broken answer, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

fn violation(message: impl Into<String>) -> Violation {
    Violation(message.into())
}

/// The bytes a socket would carry for `chunks`.
pub fn assemble(chunks: &[Chunk]) -> Result<Bytes, Violation> {
    let total: u64 = chunks.iter().map(Chunk::len).sum();
    if total > MAX_ASSEMBLED {
        return Err(violation(format!("a Fetch answer of {total} bytes")));
    }
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(b) => out.extend_from_slice(b),
            Chunk::File(region) => region
                .read_into(&mut out)
                .map_err(|e| violation(format!("a file region cannot be read: {e}")))?,
        }
    }
    Ok(Bytes::from(out))
}

/// Checks `response` (size prefix included) against the `request` (no size prefix) it
/// answers. The request's header reached the broker's dispatch, so it is at least 8 bytes.
pub fn answer(request: &[u8], response: &[u8]) -> Result<(), Violation> {
    let (Some(req_head), Some(head)) = (request.get(0..8), response.get(0..8)) else {
        return Err(violation(format!(
            "an answer of {} bytes to a request of {}",
            response.len(),
            request.len()
        )));
    };
    let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if usize::try_from(size).ok() != Some(response.len() - 4) {
        return Err(violation(format!(
            "size prefix {size}, but {} bytes follow",
            response.len() - 4
        )));
    }
    if head[4..8] != req_head[4..8] {
        return Err(violation("the correlation id is not the request's"));
    }
    let raw_key = i16::from_be_bytes([req_head[0], req_head[1]]);
    let version = i16::from_be_bytes([req_head[2], req_head[3]]);
    let key = ApiKey::try_from(raw_key).ok();
    let served = key
        .and_then(served_versions)
        .is_some_and(|r| (r.min..=r.max).contains(&version));
    let mut buf = Bytes::copy_from_slice(&response[4..]);
    match key {
        Some(key) if served => {
            ResponseHeader::decode(&mut buf, key.response_header_version(version))
                .map_err(|e| violation(format!("response header: {e}")))?;
            decode_body(key, &mut buf, version)
                .map_err(|e| violation(format!("{key:?} v{version} response: {e:#}")))?;
        }
        Some(ApiKey::ApiVersions) => {
            // KIP-511: a v0 answer with the served list, whatever version was asked.
            ResponseHeader::decode(&mut buf, 0)
                .and_then(|_| ApiVersionsResponse::decode(&mut buf, 0))
                .map_err(|e| violation(format!("ApiVersions v0 fallback answer: {e:#}")))?;
        }
        _ => {
            buf.advance(4);
            if buf.remaining() != 2 || buf.get_i16() != UNSUPPORTED_VERSION {
                return Err(violation(format!(
                    "key {raw_key} v{version} is not served, and the answer is not UNSUPPORTED_VERSION"
                )));
            }
        }
    }
    if buf.has_remaining() {
        return Err(violation(format!(
            "{} bytes left after decoding the answer to key {raw_key} v{version}",
            buf.remaining()
        )));
    }
    Ok(())
}

/// Decodes the response body of every served API.
macro_rules! decode_body {
    ($key:expr, $buf:expr, $version:expr; $( $k:ident => $resp:ty ),* $(,)?) => {
        match $key {
            $( ApiKey::$k => <$resp>::decode($buf, $version).map(drop), )*
            other => Err(anyhow::anyhow!("{other:?} is not a served API")),
        }
    };
}

fn decode_body(key: ApiKey, buf: &mut Bytes, version: i16) -> anyhow::Result<()> {
    decode_body!(key, buf, version;
        Produce => ProduceResponse,
        Fetch => FetchResponse,
        ListOffsets => ListOffsetsResponse,
        Metadata => MetadataResponse,
        OffsetCommit => OffsetCommitResponse,
        OffsetFetch => OffsetFetchResponse,
        FindCoordinator => FindCoordinatorResponse,
        JoinGroup => JoinGroupResponse,
        Heartbeat => HeartbeatResponse,
        LeaveGroup => LeaveGroupResponse,
        SyncGroup => SyncGroupResponse,
        DescribeGroups => DescribeGroupsResponse,
        ListGroups => ListGroupsResponse,
        ApiVersions => ApiVersionsResponse,
        CreateTopics => CreateTopicsResponse,
        DeleteTopics => DeleteTopicsResponse,
        DeleteRecords => DeleteRecordsResponse,
        InitProducerId => InitProducerIdResponse,
        DescribeConfigs => DescribeConfigsResponse,
        AlterConfigs => AlterConfigsResponse,
        CreatePartitions => CreatePartitionsResponse,
        IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
        DeleteGroups => DeleteGroupsResponse,
        OffsetDelete => OffsetDeleteResponse,
        DescribeCluster => DescribeClusterResponse,
        OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
        ElectLeaders => ElectLeadersResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unserved_keys_get_unsupported_version() {
        let request = [0x7f, 0, 0, 1, 0, 0, 0, 9];
        let good = [0, 0, 0, 6, 0, 0, 0, 9, 0, 35];
        assert_eq!(answer(&request, &good), Ok(()));
        let wrong_id = [0, 0, 0, 6, 0, 0, 0, 8, 0, 35];
        assert!(answer(&request, &wrong_id).is_err());
        let wrong_size = [0, 0, 0, 7, 0, 0, 0, 9, 0, 35];
        assert!(answer(&request, &wrong_size).is_err());
        let wrong_code = [0, 0, 0, 6, 0, 0, 0, 9, 0, 0];
        assert!(answer(&request, &wrong_code).is_err());
    }

    #[test]
    fn served_answers_must_decode_to_the_last_byte() {
        // Heartbeat v0: correlation id, error code.
        let request = [0, 12, 0, 0, 0, 0, 0, 5];
        assert_eq!(answer(&request, &[0, 0, 0, 6, 0, 0, 0, 5, 0, 0]), Ok(()));
        assert!(answer(&request, &[0, 0, 0, 7, 0, 0, 0, 5, 0, 0, 1]).is_err());
        assert!(answer(&request, &[0, 0, 0, 5, 0, 0, 0, 5, 0]).is_err());
    }
}
