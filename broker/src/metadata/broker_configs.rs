//! Broker configs set at runtime, as the image holds them: a cluster-wide default and
//! per-broker values (Kafka's `DYNAMIC_DEFAULT_BROKER_CONFIG` and
//! `DYNAMIC_BROKER_CONFIG`). A broker's value wins over the default, which wins over
//! the broker's static setting. Which names may be set, and their values, is checked
//! before the record is written (`crate::dynamic_config`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a broker config's effective value comes from (DescribeConfigs' `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerConfigSource {
    /// Set for this broker (`DYNAMIC_BROKER_CONFIG`, 2).
    Broker,
    /// Set as the default of every broker (`DYNAMIC_DEFAULT_BROKER_CONFIG`, 3).
    ClusterDefault,
}

impl BrokerConfigSource {
    /// Kafka's `ConfigSource` id.
    pub fn code(self) -> i8 {
        match self {
            BrokerConfigSource::Broker => 2,
            BrokerConfigSource::ClusterDefault => 3,
        }
    }
}

/// Dynamic broker configs by scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicBrokerConfigs {
    /// The cluster-wide defaults.
    #[serde(default)]
    pub default: BTreeMap<String, String>,
    /// Per broker id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BTreeMap<String, String>>,
}

impl DynamicBrokerConfigs {
    /// Nothing set anywhere.
    pub fn is_empty(&self) -> bool {
        self.default.is_empty() && self.brokers.is_empty()
    }

    /// The configs set in one scope: broker `Some(id)` or the default (`None`).
    pub fn scope(&self, node_id: Option<i32>) -> Option<&BTreeMap<String, String>> {
        match node_id {
            Some(id) => self.brokers.get(&id),
            None => Some(&self.default),
        }
    }

    /// The dynamic value of `name` for broker `node_id` and where it comes from; `None`
    /// when neither the broker nor the default sets it.
    pub fn effective(&self, node_id: i32, name: &str) -> Option<(&str, BrokerConfigSource)> {
        let own = self
            .brokers
            .get(&node_id)
            .and_then(|c| c.get(name))
            .map(|v| (v.as_str(), BrokerConfigSource::Broker));
        own.or_else(|| {
            self.default
                .get(name)
                .map(|v| (v.as_str(), BrokerConfigSource::ClusterDefault))
        })
    }

    /// Applies an `AlterBrokerConfigs` record.
    pub(super) fn apply(
        &mut self,
        node_id: Option<i32>,
        changes: &BTreeMap<String, Option<String>>,
    ) {
        let scope = match node_id {
            Some(id) => self.brokers.entry(id).or_default(),
            None => &mut self.default,
        };
        for (name, value) in changes {
            match value {
                Some(v) => scope.insert(name.clone(), v.clone()),
                None => scope.remove(name),
            };
        }
        if let Some(id) = node_id {
            if self.brokers.get(&id).is_some_and(BTreeMap::is_empty) {
                self.brokers.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataImage, MetadataRecord};

    fn alter(node_id: Option<i32>, name: &str, value: Option<&str>) -> MetadataRecord {
        MetadataRecord::AlterBrokerConfigs {
            node_id,
            changes: [(name.to_string(), value.map(str::to_string))].into(),
        }
    }

    #[test]
    fn a_brokers_value_wins_over_the_default_and_removal_falls_back() {
        const RATE: &str = "leader.replication.throttled.rate";
        let mut image = MetadataImage::default();
        assert_eq!(image.broker_configs.effective(1, RATE), None);
        image.apply(&alter(None, RATE, Some("100")));
        assert_eq!(
            image.broker_configs.effective(1, RATE),
            Some(("100", BrokerConfigSource::ClusterDefault))
        );
        image.apply(&alter(Some(1), RATE, Some("7")));
        assert_eq!(
            image.broker_configs.effective(1, RATE),
            Some(("7", BrokerConfigSource::Broker))
        );
        assert_eq!(
            image.broker_configs.effective(2, RATE),
            Some(("100", BrokerConfigSource::ClusterDefault))
        );
        image.apply(&alter(Some(1), RATE, None));
        assert!(image.broker_configs.brokers.is_empty());
        assert_eq!(
            image.broker_configs.effective(1, RATE),
            Some(("100", BrokerConfigSource::ClusterDefault))
        );
        image.apply(&alter(None, RATE, None));
        assert!(image.broker_configs.is_empty());
    }

    #[test]
    fn the_record_round_trips_through_json() -> anyhow::Result<()> {
        let record = alter(Some(3), "follower.replication.throttled.rate", Some("1"));
        let json = serde_json::to_string(&record)?;
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json)?, record);
        let mut image = MetadataImage::default();
        image.apply(&record);
        let json = serde_json::to_string(&image)?;
        assert_eq!(serde_json::from_str::<MetadataImage>(&json)?, image);
        Ok(())
    }
}
