//! The API versions of a run: for each API the bench uses, the highest version that the
//! bootstrap broker serves (its ApiVersions, asked by `runnel_client`), the codec knows
//! and the bench builds requests for.

use std::ops::RangeInclusive;

use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
};
use runnel_client::{ClientError, ServedVersions};
use serde::Serialize;

use crate::error::BenchError;

/// Produce versions the bench speaks. From v13 Produce and Fetch name topics by id,
/// which the bench takes from Metadata (v10 and later).
pub const PRODUCE: RangeInclusive<i16> = 3..=13;
/// Fetch versions the bench speaks.
pub const FETCH: RangeInclusive<i16> = 4..=18;
/// ListOffsets versions the bench speaks.
pub const LIST_OFFSETS: RangeInclusive<i16> = 1..=10;
/// Metadata versions the bench speaks.
pub const METADATA: RangeInclusive<i16> = 1..=13;
/// CreateTopics versions the bench speaks.
pub const CREATE_TOPICS: RangeInclusive<i16> = 2..=7;

/// Highest version of Produce and Fetch that still names topics by name.
pub const LAST_VERSION_WITH_TOPIC_NAMES: i16 = 12;

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

impl Versions {
    /// Picks the highest common version of every API the bench uses; CreateTopics is
    /// optional (only `--create-topic` needs it).
    pub fn negotiate(served: &ServedVersions) -> Result<Self, BenchError> {
        let create_topics = match served.version::<CreateTopicsRequest>(CREATE_TOPICS) {
            Ok(version) => Some(version),
            Err(ClientError::UnsupportedVersion { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        Ok(Versions {
            produce: served.version::<ProduceRequest>(PRODUCE)?,
            fetch: served.version::<FetchRequest>(FETCH)?,
            list_offsets: served.version::<ListOffsetsRequest>(LIST_OFFSETS)?,
            metadata: served.version::<MetadataRequest>(METADATA)?,
            create_topics,
        })
    }

    /// Keeps Produce and Fetch at versions that name topics, for a topic without an id.
    pub fn without_topic_ids(mut self) -> Self {
        self.produce = self.produce.min(LAST_VERSION_WITH_TOPIC_NAMES);
        self.fetch = self.fetch.min(LAST_VERSION_WITH_TOPIC_NAMES);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;
    use runnel_client::Api;

    fn served(ranges: &[(ApiKey, i16, i16)]) -> ServedVersions {
        ServedVersions::new(
            "127.0.0.1:9092",
            ranges
                .iter()
                .map(|(key, min, max)| (*key as i16, *min, *max)),
        )
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
        let error = Versions::negotiate(&old).unwrap_err();
        assert!(
            matches!(
                error,
                BenchError::Client(ClientError::UnsupportedVersion {
                    api: Api(0),
                    broker: Some((0, 2)),
                    client: (3, 13),
                    ..
                })
            ),
            "{error}"
        );
        assert!(Versions::negotiate(&served(&[])).is_err());
    }
}
