//! The group coordinator: consumer-group membership (the classic JoinGroup / SyncGroup /
//! Heartbeat / LeaveGroup protocol) and committed offsets, kept durably in
//! `__consumer_offsets` and loaded on start. On a single broker this broker coordinates
//! every group; the offsets partition of a group is `partition_for(group)`.
//!
//! Concurrency: all groups live behind one `std::sync::Mutex`, held only for in-memory
//! steps (never across an `.await` or file I/O). JoinGroup and SyncGroup park on oneshot
//! channels outside the lock. Timers (session, rebalance, initial delay) advance in
//! [`GroupCoordinator::tick`], called by one background task.

mod assignment;
pub mod errors;
mod group;
pub mod offsets;
pub mod store;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use group::Group;
use offsets::{CommittedOffset, OffsetRecord};
pub use types::{GroupState, JoinRequest, JoinResult, Member, Pending, SyncResult};

/// Group coordinator settings, by Kafka's names.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
    /// `offsets.retention.minutes`, as a duration.
    pub offsets_retention: Duration,
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
}

/// A group and its committed offsets.
pub struct GroupEntry {
    /// Membership.
    pub group: Group,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

/// Every group this broker coordinates.
pub struct GroupCoordinator {
    /// Settings.
    pub config: GroupConfig,
    groups: Mutex<HashMap<String, GroupEntry>>,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Locks the groups for one in-memory step.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, GroupEntry>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `group`, created empty if absent.
    pub fn entry<'a>(
        groups: &'a mut HashMap<String, GroupEntry>,
        group: &str,
        now: Instant,
    ) -> &'a mut GroupEntry {
        groups
            .entry(group.to_string())
            .or_insert_with(|| GroupEntry {
                group: Group::new(group, now),
                offsets: BTreeMap::new(),
            })
    }

    /// Applies offset records read from `__consumer_offsets` (start-up) or just written.
    pub fn apply_offsets(&self, records: Vec<OffsetRecord>, now: Instant) {
        let mut groups = self.lock();
        for r in records {
            let entry = Self::entry(&mut groups, &r.group, now);
            match r.value {
                Some(v) => entry.offsets.insert((r.topic, r.partition), v),
                None => entry.offsets.remove(&(r.topic, r.partition)),
            };
        }
        // Groups whose offsets were all deleted and that have no members are forgotten.
        groups.retain(|_, e| !e.offsets.is_empty() || e.group.state != GroupState::Empty);
    }

    /// Forgets the groups whose offsets live in the `__consumer_offsets` partitions
    /// `lost` (of `partitions`): this broker no longer coordinates them, and their new
    /// coordinator loads them from the log. Members waiting in JoinGroup or SyncGroup are
    /// released and look the coordinator up again.
    pub fn unload(&self, lost: &std::collections::BTreeSet<i32>, partitions: i32) {
        if lost.is_empty() {
            return;
        }
        let mut groups = self.lock();
        groups.retain(|id, _| !lost.contains(&offsets::partition_for(id, partitions)));
    }

    /// Advances every group's timers.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for entry in groups.values_mut() {
            entry.group.tick(&self.config, now);
        }
    }

    /// Offsets to delete because their group has been empty longer than
    /// `offsets.retention.minutes` and they were committed before that.
    pub fn expired_offsets(&self, now: Instant, now_ms: i64) -> Vec<OffsetRecord> {
        let retention = self.config.offsets_retention;
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let groups = self.lock();
        let mut out = Vec::new();
        for (id, entry) in groups.iter() {
            let empty_long_enough = entry.group.state == GroupState::Empty
                && entry
                    .group
                    .empty_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= retention);
            if !empty_long_enough {
                continue;
            }
            for ((topic, partition), v) in &entry.offsets {
                if now_ms.saturating_sub(v.commit_timestamp) >= retention_ms {
                    out.push(OffsetRecord {
                        group: id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: None,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
