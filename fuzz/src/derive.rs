//! From captured client frames to the committed corpus (`runnel-fuzz derive-corpus`,
//! run by `scripts/capture-corpus.sh`).
//!
//! 1. Every captured frame of a served API and version that `kafka-protocol` decodes to
//!    its last byte is a candidate; up to [`PER_VERSION`] are kept per API and version,
//!    taken from as many different clients as sent one.
//! 2. A served version no client sent is derived: a captured frame of the same API
//!    (the nearest version first) is decoded and re-encoded at that version, header
//!    included. A frame whose fields that version cannot carry fails to encode and the
//!    next one is tried.
//! 3. An API no client sent at all gets its default request at each version.
//!
//! `MANIFEST.tsv` beside the frames says where each came from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_broker::dispatch::{served_versions, ROUTES};

use crate::corpus::{api_name, file_name, frame_api};

/// Frames kept per API and version.
pub const PER_VERSION: usize = 3;

/// A frame on its way into the corpus.
#[derive(Debug, Clone)]
struct Candidate {
    client: String,
    origin: String,
    key: ApiKey,
    version: i16,
    bytes: Bytes,
}

/// Runs `$body` with `$t` standing for the request type of `$key` (every served API).
macro_rules! each_request {
    ($key:expr, $t:ident => $body:block) => {
        match $key {
            ApiKey::Produce => {
                type $t = ProduceRequest;
                $body
            }
            ApiKey::Fetch => {
                type $t = FetchRequest;
                $body
            }
            ApiKey::ListOffsets => {
                type $t = ListOffsetsRequest;
                $body
            }
            ApiKey::Metadata => {
                type $t = MetadataRequest;
                $body
            }
            ApiKey::OffsetCommit => {
                type $t = OffsetCommitRequest;
                $body
            }
            ApiKey::OffsetFetch => {
                type $t = OffsetFetchRequest;
                $body
            }
            ApiKey::FindCoordinator => {
                type $t = FindCoordinatorRequest;
                $body
            }
            ApiKey::JoinGroup => {
                type $t = JoinGroupRequest;
                $body
            }
            ApiKey::Heartbeat => {
                type $t = HeartbeatRequest;
                $body
            }
            ApiKey::LeaveGroup => {
                type $t = LeaveGroupRequest;
                $body
            }
            ApiKey::SyncGroup => {
                type $t = SyncGroupRequest;
                $body
            }
            ApiKey::DescribeGroups => {
                type $t = DescribeGroupsRequest;
                $body
            }
            ApiKey::ListGroups => {
                type $t = ListGroupsRequest;
                $body
            }
            ApiKey::ApiVersions => {
                type $t = ApiVersionsRequest;
                $body
            }
            ApiKey::CreateTopics => {
                type $t = CreateTopicsRequest;
                $body
            }
            ApiKey::DeleteTopics => {
                type $t = DeleteTopicsRequest;
                $body
            }
            ApiKey::DeleteRecords => {
                type $t = DeleteRecordsRequest;
                $body
            }
            ApiKey::InitProducerId => {
                type $t = InitProducerIdRequest;
                $body
            }
            ApiKey::DescribeConfigs => {
                type $t = DescribeConfigsRequest;
                $body
            }
            ApiKey::AlterConfigs => {
                type $t = AlterConfigsRequest;
                $body
            }
            ApiKey::CreatePartitions => {
                type $t = CreatePartitionsRequest;
                $body
            }
            ApiKey::IncrementalAlterConfigs => {
                type $t = IncrementalAlterConfigsRequest;
                $body
            }
            ApiKey::DeleteGroups => {
                type $t = DeleteGroupsRequest;
                $body
            }
            ApiKey::OffsetDelete => {
                type $t = OffsetDeleteRequest;
                $body
            }
            ApiKey::DescribeCluster => {
                type $t = DescribeClusterRequest;
                $body
            }
            ApiKey::OffsetForLeaderEpoch => {
                type $t = OffsetForLeaderEpochRequest;
                $body
            }
            ApiKey::ElectLeaders => {
                type $t = ElectLeadersRequest;
                $body
            }
            ApiKey::AlterPartitionReassignments => {
                type $t = AlterPartitionReassignmentsRequest;
                $body
            }
            ApiKey::ListPartitionReassignments => {
                type $t = ListPartitionReassignmentsRequest;
                $body
            }
            ApiKey::UnregisterBroker => {
                type $t = UnregisterBrokerRequest;
                $body
            }
            ApiKey::DescribeLogDirs => {
                type $t = DescribeLogDirsRequest;
                $body
            }
            other => bail!("{other:?} is not a served API"),
        }
    };
}

/// Decodes `frame` (header and body) at its own version and encodes it at `to`.
/// With `to` equal to the frame's version, this checks that it decodes fully.
fn reencode(frame: &[u8], to: i16) -> anyhow::Result<Bytes> {
    let Some((key, from)) = frame_api(frame) else {
        bail!("not a request of a known API");
    };
    let mut buf = Bytes::copy_from_slice(frame);
    let header = RequestHeader::decode(&mut buf, key.request_header_version(from))?;
    let mut out = BytesMut::new();
    header
        .with_request_api_version(to)
        .encode(&mut out, key.request_header_version(to))?;
    each_request!(key, T => {
        let body = T::decode(&mut buf, from)?;
        if buf.has_remaining() {
            bail!("{} bytes after the body", buf.remaining());
        }
        body.encode(&mut out, to)?;
    });

    Ok(out.freeze())
}

/// The default request of `key` at `version`, behind a header with a client id.
fn default_request(key: ApiKey, version: i16) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("runnel-fuzz")))
        .encode(&mut out, key.request_header_version(version))?;
    each_request!(key, T => { T::default().encode(&mut out, version)?; });

    Ok(out.freeze())
}

/// Reads `captured/<client>/*.bin` and writes the corpus into `out` (its old `.bin` files
/// and manifest are replaced). Returns the manifest text.
pub fn derive(captured: &Path, out: &Path) -> anyhow::Result<String> {
    let mut by_version: BTreeMap<(i16, i16), Vec<Candidate>> = BTreeMap::new();
    let mut clients: Vec<_> = std::fs::read_dir(captured)
        .with_context(|| format!("cannot read {}", captured.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    clients.sort();
    for dir in clients {
        let client = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files: Vec<_> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        for file in files {
            let bytes = Bytes::from(std::fs::read(&file)?);
            let Some((key, version)) = frame_api(&bytes) else {
                continue;
            };
            let served = served_versions(key).is_some_and(|r| (r.min..=r.max).contains(&version));
            if !served || reencode(&bytes, version).is_err() {
                continue;
            }
            by_version
                .entry((key as i16, version))
                .or_default()
                .push(Candidate {
                    client: client.clone(),
                    origin: "captured".to_string(),
                    key,
                    version,
                    bytes,
                });
        }
    }
    let mut chosen: Vec<Candidate> = Vec::new();
    for route in ROUTES {
        let captured_of_key: Vec<Candidate> = by_version
            .iter()
            .filter(|((k, _), _)| *k == route.key as i16)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        for version in route.min..=route.max {
            let here = by_version
                .get(&(route.key as i16, version))
                .cloned()
                .unwrap_or_default();
            if !here.is_empty() {
                chosen.extend(spread_over_clients(here));
                continue;
            }
            let mut sources = captured_of_key.clone();
            sources.sort_by_key(|c| ((c.version - version).abs(), c.client.clone()));
            let derived = sources.iter().find_map(|c| {
                let bytes = reencode(&c.bytes, version).ok()?;
                reencode(&bytes, version).ok()?;
                Some(Candidate {
                    client: c.client.clone(),
                    origin: format!("derived from {} v{}", api_name(c.key), c.version),
                    key: route.key,
                    version,
                    bytes,
                })
            });
            let candidate = match derived {
                Some(c) => c,
                None => Candidate {
                    client: "none".to_string(),
                    origin: "default request".to_string(),
                    key: route.key,
                    version,
                    bytes: default_request(route.key, version)?,
                },
            };
            chosen.push(candidate);
        }
    }
    std::fs::create_dir_all(out)?;
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "bin") {
            std::fs::remove_file(&path)?;
        }
    }
    let mut manifest = String::from("file\tclient\torigin\n");
    let mut counters: BTreeMap<(i16, i16), usize> = BTreeMap::new();
    for c in &chosen {
        let n = counters.entry((c.key as i16, c.version)).or_default();
        let name = file_name(c.key, c.version, *n);
        *n += 1;
        std::fs::write(out.join(&name), &c.bytes)?;
        let _ = writeln!(manifest, "{name}\t{}\t{}", c.client, c.origin);
    }
    std::fs::write(out.join("MANIFEST.tsv"), &manifest)?;
    Ok(manifest)
}

/// Up to [`PER_VERSION`] frames, one client after another.
fn spread_over_clients(mut frames: Vec<Candidate>) -> Vec<Candidate> {
    let mut out = Vec::new();
    while out.len() < PER_VERSION && !frames.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let mut rest = Vec::new();
        for f in frames {
            if out.len() < PER_VERSION && seen.insert(f.client.clone()) {
                out.push(f);
            } else {
                rest.push(f);
            }
        }
        frames = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_re_encodes_at_another_version_and_back() {
        let v1 = default_request(ApiKey::Metadata, 1).expect("v1");
        let v12 = reencode(&v1, 12).expect("to v12");
        assert_eq!(frame_api(&v12), Some((ApiKey::Metadata, 12)));
        assert_eq!(reencode(&v12, 1).expect("back to v1"), v1);
        assert!(reencode(&v1[..v1.len() - 1], 1).is_err() || v1.len() == 12);
    }

    #[test]
    fn every_served_version_is_in_the_committed_corpus() {
        let frames = crate::corpus::load(&crate::corpus::default_dir()).expect("corpus");
        for route in ROUTES {
            for v in route.min..=route.max {
                assert!(
                    frames.iter().any(|f| f.key == route.key && f.version == v),
                    "{:?} v{v} is missing",
                    route.key
                );
            }
        }
        for f in &frames {
            reencode(&f.bytes, f.version).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        }
    }
}
