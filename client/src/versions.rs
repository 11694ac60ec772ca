//! ApiVersions: what one broker serves ([`ServedVersions`]) and which version of a
//! request to send it — the highest that the broker serves, the codec knows and the
//! caller implements.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::Request;

use crate::error::{Api, ClientError};

/// The versions one broker serves, per API key, from its ApiVersions response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedVersions {
    address: String,
    ranges: BTreeMap<i16, (i16, i16)>,
}

impl ServedVersions {
    /// The ranges `(api key, min, max)` the broker at `address` serves.
    pub fn new(
        address: impl Into<String>,
        ranges: impl IntoIterator<Item = (i16, i16, i16)>,
    ) -> Self {
        ServedVersions {
            address: address.into(),
            ranges: ranges
                .into_iter()
                .map(|(key, min, max)| (key, (min, max)))
                .collect(),
        }
    }

    /// The ranges of an ApiVersions response from the broker at `address`.
    pub fn from_response(address: impl Into<String>, response: &ApiVersionsResponse) -> Self {
        Self::new(
            address,
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        )
    }

    /// The broker's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The range `(min, max)` the broker serves of `api`, if it lists it.
    pub fn range(&self, api: Api) -> Option<(i16, i16)> {
        self.ranges.get(&api.0).copied()
    }

    /// The version to send `R` at: the highest in the broker's range, the codec's range
    /// and `supported` (the versions the caller builds requests for).
    ///
    /// Fails with [`ClientError::UnsupportedVersion`] when the three do not meet.
    pub fn version<R: Request>(&self, supported: RangeInclusive<i16>) -> Result<i16, ClientError> {
        let api = Api::of::<R>();
        let client_min = (*supported.start()).max(R::VERSIONS.min);
        let client_max = (*supported.end()).min(R::VERSIONS.max);
        let broker = self.range(api);
        broker
            .map(|(min, max)| (min.max(client_min), max.min(client_max)))
            .filter(|(min, max)| min <= max)
            .map(|(_, max)| max)
            .ok_or_else(|| ClientError::UnsupportedVersion {
                api,
                address: self.address.clone(),
                broker,
                client: (client_min, client_max),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest,
    };
    use kafka_protocol::protocol::Message;

    fn served(ranges: &[(i16, i16, i16)]) -> ServedVersions {
        ServedVersions::new("b:9092", ranges.iter().copied())
    }

    #[test]
    fn the_highest_common_version_is_chosen() {
        // Produce 0, Fetch 1, Metadata 3.
        let broker = served(&[(0, 3, 11), (1, 4, 16), (3, 0, 12)]);
        assert_eq!(broker.version::<ProduceRequest>(3..=13).unwrap(), 11);
        assert_eq!(broker.version::<FetchRequest>(4..=18).unwrap(), 16);
        assert_eq!(broker.version::<MetadataRequest>(4..=9).unwrap(), 9);
    }

    #[test]
    fn a_newer_broker_is_capped_at_the_client_and_the_codec() {
        let broker = served(&[(3, 0, i16::MAX)]);
        assert_eq!(broker.version::<MetadataRequest>(1..=12).unwrap(), 12);
        assert_eq!(
            broker.version::<MetadataRequest>(1..=i16::MAX).unwrap(),
            MetadataRequest::VERSIONS.max
        );
    }

    #[test]
    fn disjoint_or_missing_ranges_name_both_sides() {
        let broker = served(&[(1, 0, 3)]);
        let error = broker.version::<FetchRequest>(4..=12).unwrap_err();
        assert!(
            matches!(
                &error,
                ClientError::UnsupportedVersion {
                    api: Api(1),
                    broker: Some((0, 3)),
                    client: (4, 12),
                    address,
                } if address == "b:9092"
            ),
            "{error}"
        );
        let error = broker.version::<CreateTopicsRequest>(2..=7).unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::UnsupportedVersion {
                    broker: None,
                    client: (2, 7),
                    ..
                }
            ),
            "{error}"
        );
    }
}
