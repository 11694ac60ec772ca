//! One consumer group's membership state machine, as in Kafka's classic group protocol.
//!
//! ```text
//!            join (first member)            all members joined / rebalance timeout
//!   Empty ───────────────────────▶ PreparingRebalance ─────────────────────────▶ CompletingRebalance
//!     ▲                                 ▲        │ (no members left)                 │ leader's SyncGroup
//!     └─────────────────────────────────┼────────┘                                   ▼
//!                                       └──── join / leave / session expiry ───── Stable
//! ```
//!
//! Everything here is synchronous and takes `now` explicitly; the coordinator holds the
//! lock, and waiting JoinGroup/SyncGroup requests park on oneshot channels stored in the
//! members. No method blocks.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::errors::{
    FENCED_INSTANCE_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, MEMBER_ID_REQUIRED,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use super::types::{GroupState, JoinRequest, JoinResult, Member, Pending, SyncResult};
use super::GroupConfig;

/// One consumer group's membership (offsets are kept beside it by the coordinator).
#[derive(Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Current state.
    pub state: GroupState,
    /// Generation of the last completed join.
    pub generation: i32,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// Chosen protocol of the current generation.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// Members by id, in join order of their ids.
    pub members: BTreeMap<String, Member>,
    /// KIP-394: member ids handed out and not yet used, with their expiry.
    pending: HashMap<String, Instant>,
    /// Static members: instance id → member id.
    instances: HashMap<String, String>,
    /// When the current PreparingRebalance or CompletingRebalance must end.
    deadline: Option<Instant>,
    /// While the first members gather (group.initial.rebalance.delay.ms).
    initial_delay_until: Option<Instant>,
    /// When the group last became empty.
    pub empty_since: Option<Instant>,
}

impl Group {
    /// A new empty group.
    pub fn new(id: &str, now: Instant) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            deadline: None,
            initial_delay_until: None,
            empty_since: Some(now),
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// Handles JoinGroup.
    pub fn join(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
    ) -> Pending<JoinResult> {
        let fail = |error| {
            Pending::Ready(JoinResult {
                error,
                ..Default::default()
            })
        };
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        if !self.members.is_empty() {
            let same_type = self.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            let shared = req.protocols.iter().any(|(n, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            });
            if !same_type || !shared {
                return fail(INCONSISTENT_GROUP_PROTOCOL);
            }
        }
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = &req.instance_id {
                if let Some(old) = self.instances.get(instance).cloned() {
                    return self.replace_static_member(&old, req, config, now);
                }
                member_id = self.new_member_id(&req.client_id);
            } else if req.require_known_member_id {
                let id = self.new_member_id(&req.client_id);
                self.pending.insert(id.clone(), now + req.session_timeout);
                return Pending::Ready(JoinResult {
                    error: MEMBER_ID_REQUIRED,
                    member_id: id,
                    ..Default::default()
                });
            } else {
                member_id = self.new_member_id(&req.client_id);
            }
        } else if let Some(instance) = &req.instance_id {
            if self
                .instances
                .get(instance)
                .is_some_and(|m| *m != member_id)
            {
                return fail(FENCED_INSTANCE_ID);
            }
        }
        let known = self.members.contains_key(&member_id);
        if !known && self.pending.remove(&member_id).is_none() && !req.member_id.is_empty() {
            return Pending::Ready(JoinResult {
                error: UNKNOWN_MEMBER_ID,
                member_id,
                ..Default::default()
            });
        }
        if self.members.len() >= config.max_size && !known {
            return fail(super::errors::GROUP_MAX_SIZE_REACHED);
        }
        let (tx, rx) = oneshot::channel();
        if known {
            let changed = self
                .members
                .get(&member_id)
                .is_some_and(|m| m.protocols != req.protocols);
            let is_leader = self.leader.as_deref() == Some(member_id.as_str());
            if matches!(
                self.state,
                GroupState::Stable | GroupState::CompletingRebalance
            ) && !changed
                && !is_leader
            {
                // Nothing changed: hand back the current generation without a rebalance.
                if let Some(m) = self.members.get_mut(&member_id) {
                    m.last_heartbeat = now;
                }
                return Pending::Ready(self.join_result(&member_id, false));
            }
            if let Some(m) = self.members.get_mut(&member_id) {
                m.protocols = req.protocols;
                m.session_timeout = req.session_timeout;
                m.rebalance_timeout = req.rebalance_timeout;
                m.last_heartbeat = now;
                m.join_waiter = Some(tx);
            }
        } else {
            if let Some(instance) = &req.instance_id {
                self.instances.insert(instance.clone(), member_id.clone());
            }
            self.protocol_type = Some(req.protocol_type.clone());
            self.members.insert(
                member_id.clone(),
                Member {
                    id: member_id.clone(),
                    instance_id: req.instance_id,
                    client_id: req.client_id,
                    client_host: req.client_host,
                    session_timeout: req.session_timeout,
                    rebalance_timeout: req.rebalance_timeout,
                    protocols: req.protocols,
                    assignment: Bytes::new(),
                    last_heartbeat: now,
                    join_waiter: Some(tx),
                    sync_waiter: None,
                },
            );
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(
                config,
                now,
                "a member joined, or the leader or a member with new protocols rejoined",
            );
        } else if let Some(until) = self.initial_delay_until {
            // Another member arrived while the first ones gather: wait a little longer,
            // within the rebalance timeout.
            let limit = self.deadline.unwrap_or(now);
            self.initial_delay_until =
                Some((now + config.initial_rebalance_delay).min(limit).max(until));
        }
        self.try_complete_join(now);
        Pending::Wait(rx)
    }

    fn replace_static_member(
        &mut self,
        old: &str,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
    ) -> Pending<JoinResult> {
        let Some(mut member) = self.members.remove(old) else {
            return Pending::Ready(JoinResult {
                error: UNKNOWN_MEMBER_ID,
                ..Default::default()
            });
        };
        // The old instance is fenced: its waiters learn it.
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResult {
                error: FENCED_INSTANCE_ID,
                ..Default::default()
            });
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResult {
                error: FENCED_INSTANCE_ID,
                ..Default::default()
            });
        }
        let new_id = self.new_member_id(&req.client_id);
        member.id = new_id.clone();
        member.protocols = req.protocols.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_heartbeat = now;
        if let Some(instance) = &req.instance_id {
            self.instances.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if self.state == GroupState::Stable && self.select_protocol() == self.protocol_name {
            // A static member came back without changing the group's protocol: no
            // rebalance (KIP-345). A returning leader gets the members but is told to
            // keep the current assignment (KIP-814); its SyncGroup returns the stored one.
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            let mut result = self.join_result(&new_id, is_leader);
            result.skip_assignment = is_leader;
            return Pending::Ready(result);
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&new_id) {
            m.join_waiter = Some(tx);
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(config, now, "a static member rejoined with other protocols");
        }
        self.try_complete_join(now);
        Pending::Wait(rx)
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            protocol_type: self.protocol_type.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Starts a rebalance: every member must rejoin within the rebalance timeout.
    fn prepare_rebalance(&mut self, config: &GroupConfig, now: Instant, reason: &str) {
        tracing::info!(
            group = self.id,
            generation = self.generation,
            reason,
            "preparing rebalance"
        );
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult {
                        error: REBALANCE_IN_PROGRESS,
                        ..Default::default()
                    });
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.initial_delay_until = (self.state == GroupState::Empty
            && !config.initial_rebalance_delay.is_zero())
        .then(|| now + config.initial_rebalance_delay.min(timeout));
        self.state = GroupState::PreparingRebalance;
        self.deadline = Some(now + timeout);
    }

    /// Completes the join phase when every member has rejoined (and the initial delay is
    /// over), or when `force`d by the rebalance timeout, dropping those that did not.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = self.deadline.is_some_and(|d| now >= d);
        if !(timed_out || (all_joined && delay_over)) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.pending.clear();
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty(now);
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or(""),
            "join phase complete; waiting for the leader's assignment"
        );
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.deadline = Some(now + timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result(&id, is_leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    fn become_empty(&mut self, now: Instant) {
        self.state = GroupState::Empty;
        self.leader = None;
        self.protocol_name = None;
        self.deadline = None;
        self.empty_since = Some(now);
    }

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((choice, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == choice) {
                    v.0 += 1;
                }
            }
        }
        // Highest vote wins; ties go to the first member's preference order.
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .into_iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| c.clone())
    }

    /// Checks member id, instance id and generation of a request from a member.
    pub fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            if self.instances.get(instance).is_some_and(|m| m != member_id) {
                return Err(FENCED_INSTANCE_ID);
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// Handles SyncGroup.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Pending<SyncResult> {
        let fail = |error| {
            Pending::Ready(SyncResult {
                error,
                ..Default::default()
            })
        };
        if let Err(e) = self.validate_member(member_id, instance_id, generation) {
            return fail(e);
        }
        match self.state {
            GroupState::PreparingRebalance => fail(REBALANCE_IN_PROGRESS),
            GroupState::Stable => Pending::Ready(self.sync_result(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = now;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    self.deadline = None;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let result = self.sync_result(&id);
                        if let Some(w) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(result);
                        }
                    }
                }
                Pending::Wait(rx)
            }
            GroupState::Empty | GroupState::Dead => fail(UNKNOWN_MEMBER_ID),
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Handles Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if let Err(e) = self.validate_member(member_id, instance_id, generation) {
            return e;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            _ => 0,
        }
    }

    /// Handles one member of LeaveGroup: by member id, or by instance id for static members.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        config: &GroupConfig,
        now: Instant,
    ) -> i16 {
        let id = match instance_id {
            Some(instance) => match self.instances.get(instance) {
                Some(m) if member_id.is_empty() || m == member_id => m.clone(),
                Some(_) => return FENCED_INSTANCE_ID,
                None => return UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return UNKNOWN_MEMBER_ID;
        }
        self.remove(&id);
        self.member_left(config, now);
        0
    }

    fn remove(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(instance) = &m.instance_id {
                self.instances.remove(instance);
            }
        }
    }

    fn member_left(&mut self, config: &GroupConfig, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.become_empty(now);
                } else {
                    self.prepare_rebalance(config, now, "a member left or expired");
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Advances timers: expires silent members and pending member ids, and ends rebalance
    /// phases whose timeout has passed.
    pub fn tick(&mut self, config: &GroupConfig, now: Instant) {
        self.pending.retain(|_, expiry| *expiry > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now >= m.last_heartbeat + m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = self.id, member = id, "member session expired");
                self.remove(id);
            }
            self.member_left(config, now);
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::CompletingRebalance if self.deadline.is_some_and(|d| now >= d) => {
                // The leader never sent the assignment: members that did not sync are
                // dropped and the group rebalances again.
                let silent: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in silent {
                    self.remove(&id);
                }
                self.member_left(config, now);
                if self.state == GroupState::CompletingRebalance {
                    self.prepare_rebalance(
                        config,
                        now,
                        "the leader did not send the assignment in time",
                    );
                }
            }
            _ => {}
        }
    }

    /// Whether the group has members subscribed to `topic` (consumer protocol metadata
    /// names the subscribed topics). Used by OffsetDelete.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members.values().any(|m| {
            super::assignment::subscribed_topics(&m.metadata_for(&protocol))
                .iter()
                .any(|t| t == topic)
        })
    }
}
