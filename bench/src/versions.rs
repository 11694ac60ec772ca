//! ApiVersions negotiation: for each API the bench uses, the highest version that both
//! the broker (from its ApiVersions response) and the bench speak.

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::connection::Connection;
use crate::error::BenchError;

/// The versions the bench speaks, per API. Produce and Fetch from v13 name topics by id,
/// which the bench takes from Metadata (v10 and later).
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 1, 13),
    (ApiKey::CreateTopics, 2, 7),
];

/// Highest version of Produce and Fetch that still names topics by name.
pub const LAST_VERSION_WITH_TOPIC_NAMES: i16 = 12;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// One API's served range, as a broker lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedRange {
    /// The API key.
    pub api_key: i16,
    /// Lowest served version.
    pub min: i16,
    /// Highest served version.
    pub max: i16,
}

/// The versions chosen for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// Produce version.
    pub produce: i16,
    /// Fetch version.
    pub fetch: i16,
    /// ListOffsets version.
    pub list_offsets: i16,
    /// Metadata version.
    pub metadata: i16,
    /// CreateTopics version, if the broker serves one the bench speaks.
    pub create_topics: Option<i16>,
}

fn choose(api: ApiKey, served: &[ServedRange]) -> Result<i16, BenchError> {
    let (client_min, client_max) = CLIENT_VERSIONS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|(_, min, max)| (*min, *max))
        .unwrap_or((0, -1));
    let broker = served.iter().find(|r| r.api_key == api as i16);
    let (broker_min, broker_max) = broker.map(|r| (r.min, r.max)).unwrap_or((-1, -1));
    let high = client_max.min(broker_max);
    if broker.is_none() || high < client_min.max(broker_min) {
        return Err(BenchError::NoCommonVersion {
            api,
            broker_min,
            broker_max,
            client_min,
            client_max,
        });
    }
    Ok(high)
}

impl Versions {
    /// Picks the highest common version of every API the bench uses.
    pub fn negotiate(served: &[ServedRange]) -> Result<Self, BenchError> {
        Ok(Versions {
            produce: choose(ApiKey::Produce, served)?,
            fetch: choose(ApiKey::Fetch, served)?,
            list_offsets: choose(ApiKey::ListOffsets, served)?,
            metadata: choose(ApiKey::Metadata, served)?,
            create_topics: choose(ApiKey::CreateTopics, served).ok(),
        })
    }

    /// Keeps Produce and Fetch at versions that name topics, for a topic without an id.
    pub fn without_topic_ids(mut self) -> Self {
        self.produce = self.produce.min(LAST_VERSION_WITH_TOPIC_NAMES);
        self.fetch = self.fetch.min(LAST_VERSION_WITH_TOPIC_NAMES);
        self
    }
}

/// Asks the broker for its API versions: v3 first; a broker that does not speak v3
/// answers (in the v0 format) with UNSUPPORTED_VERSION, and the bench asks again at v0.
pub async fn fetch_served(connection: &mut Connection) -> Result<Vec<ServedRange>, BenchError> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("runnel-bench"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let response = match connection.call(&request, 3).await {
        Ok(response) if response.error_code != UNSUPPORTED_VERSION => response,
        Ok(_) | Err(BenchError::Decode { .. }) => {
            connection.call(&ApiVersionsRequest::default(), 0).await?
        }
        Err(other) => return Err(other),
    };
    if let Some(error) = BenchError::from_code(ApiKey::ApiVersions, response.error_code) {
        return Err(error);
    }
    Ok(response
        .api_keys
        .iter()
        .map(|k| ServedRange {
            api_key: k.api_key,
            min: k.min_version,
            max: k.max_version,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(ranges: &[(ApiKey, i16, i16)]) -> Vec<ServedRange> {
        ranges
            .iter()
            .map(|(key, min, max)| ServedRange {
                api_key: *key as i16,
                min: *min,
                max: *max,
            })
            .collect()
    }

    #[test]
    fn picks_highest_common_version() {
        let broker = served(&[
            (ApiKey::Produce, 3, 11),
            (ApiKey::Fetch, 4, 16),
            (ApiKey::ListOffsets, 1, 6),
            (ApiKey::Metadata, 0, 12),
            (ApiKey::CreateTopics, 2, 7),
        ]);
        let versions = Versions::negotiate(&broker).unwrap();
        assert_eq!(
            versions,
            Versions {
                produce: 11,
                fetch: 16,
                list_offsets: 6,
                metadata: 12,
                create_topics: Some(7),
            }
        );
        let names = versions.without_topic_ids();
        assert_eq!((names.produce, names.fetch), (11, 12));
    }

    #[test]
    fn newer_broker_is_capped_at_the_bench_versions() {
        let broker = served(&[
            (ApiKey::Produce, 0, 20),
            (ApiKey::Fetch, 0, 20),
            (ApiKey::ListOffsets, 0, 20),
            (ApiKey::Metadata, 0, 20),
        ]);
        let versions = Versions::negotiate(&broker).unwrap();
        assert_eq!(versions.produce, 13);
        assert_eq!(versions.fetch, 18);
        assert_eq!(versions.create_topics, None);
    }

    #[test]
    fn disjoint_or_missing_ranges_fail() {
        let old = served(&[
            (ApiKey::Produce, 0, 2),
            (ApiKey::Fetch, 4, 4),
            (ApiKey::ListOffsets, 1, 1),
            (ApiKey::Metadata, 1, 1),
        ]);
        assert!(matches!(
            Versions::negotiate(&old),
            Err(BenchError::NoCommonVersion {
                api: ApiKey::Produce,
                ..
            })
        ));
        assert!(Versions::negotiate(&[]).is_err());
    }
}
