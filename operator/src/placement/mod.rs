//! Where partition replicas should live: the pure planner behind scale-up, scale-down
//! (draining) and replication-factor changes. No I/O: brokers, the replicas of every
//! partition and their sizes in, target replica lists out; the same inputs give the same
//! plan.
//!
//! Each replica weighs its partition's size in bytes plus one *unit*, the mean replica
//! size (at least one byte): bytes decide when partitions differ in size, and replica
//! counts decide when they are empty. A broker's load is the weight of its replicas, its
//! leader load the weight of the partitions it is the preferred (first) replica of.
//!
//! [`plan`] works in three passes, moving as few bytes as it can:
//!
//! 1. **drain**: every replica on a broker that is not in the set is replaced, in place,
//!    by the least loaded broker that keeps the rack spread;
//! 2. **balance replicas**: while a replica of the most loaded broker can go to a less
//!    loaded one and narrow their gap by more than a unit, the one that narrows it
//!    most moves (ties: fewer bytes, then the partition's name); otherwise it stops;
//! 3. **balance leaders**: the same between leader loads, by reordering replica lists
//!    only (a new preferred leader moves no data).
//!
//! The result is a fixed point: planning again from its output (same sizes) moves
//! nothing. Racks: when every broker has one, a move is allowed only if the partition's
//! replicas still span as many racks as they can (`min(replicas, racks)`), or at least
//! no fewer than before; brokers without racks are not constrained.

use std::collections::{BTreeMap, BTreeSet};

use crate::kafka::TopicPartition;

/// A broker the plan may place replicas on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    /// Broker id.
    pub id: i32,
    /// Its rack, when it has one.
    pub rack: Option<String>,
}

impl Broker {
    /// A broker without a rack.
    pub fn new(id: i32) -> Self {
        Self { id, rack: None }
    }
}

/// Why no plan exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A partition needs more replicas than there are brokers.
    #[error("{partition} needs {replicas} replicas but only {brokers} brokers are available")]
    NotEnoughBrokers {
        /// The partition.
        partition: TopicPartition,
        /// Replicas it needs.
        replicas: usize,
        /// Brokers available.
        brokers: usize,
    },
}

/// Target replica lists (the first is the preferred leader) of the partitions that
/// change, and what moving them costs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions whose replica list changes, with their target list.
    pub targets: BTreeMap<TopicPartition, Vec<i32>>,
    /// Bytes copied: for each target, its size times the replicas it gains.
    pub bytes_to_move: i64,
}

impl Plan {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// The balanced placement of every partition of `replicas` on `brokers`, moving
/// replicas off brokers not in `brokers`. `sizes` are bytes per partition (absent: 0).
pub fn plan(
    brokers: &[Broker],
    replicas: &BTreeMap<TopicPartition, Vec<i32>>,
    sizes: &BTreeMap<TopicPartition, i64>,
) -> Result<Plan, PlanError> {
    let mut state = State::new(brokers, replicas, sizes);
    state.drain()?;
    state.balance_replicas();
    state.balance_leaders();
    Ok(state.into_plan(replicas, sizes))
}

/// The targets that give every partition of `topic` `replication_factor` replicas: new
/// replicas go to the least loaded brokers that keep the rack spread (appended, so the
/// preferred leader stays), surplus ones leave the most loaded brokers (never the first
/// replica while another can go, nor one whose removal lowers the rack spread while
/// another's does not). Other partitions only count for the loads.
///
/// Loads are weighed as [`plan`] weighs them, by bytes with one unit per replica (see
/// the module docs), so a broker holding few bytes takes the new replica even when it
/// holds more (small) replicas than the others, and the rebalance, planning with the
/// same weights, finds nothing to undo. Without `sizes` every replica weighs one unit:
/// replica counts decide.
pub fn replication_factor(
    brokers: &[Broker],
    replicas: &BTreeMap<TopicPartition, Vec<i32>>,
    sizes: &BTreeMap<TopicPartition, i64>,
    topic: &str,
    replication_factor: usize,
) -> Result<Plan, PlanError> {
    let mut state = State::new(brokers, replicas, sizes);
    let partitions: Vec<TopicPartition> = replicas
        .keys()
        .filter(|tp| tp.topic == topic)
        .cloned()
        .collect();
    for tp in partitions {
        if replication_factor > brokers.len() {
            return Err(PlanError::NotEnoughBrokers {
                partition: tp,
                replicas: replication_factor,
                brokers: brokers.len(),
            });
        }
        // Replicas on brokers outside the set go first.
        let gone: Vec<i32> = state.assignment[&tp]
            .iter()
            .copied()
            .filter(|b| !state.loads.contains_key(b))
            .collect();
        for broker in gone {
            state.remove(&tp, broker);
        }
        while state.assignment[&tp].len() > replication_factor {
            let Some(victim) = state.removal_candidate(&tp) else {
                break;
            };
            state.remove(&tp, victim);
        }
        while state.assignment[&tp].len() < replication_factor {
            let Some(to) = state.best_receiver(&tp, None) else {
                break;
            };
            state.add(&tp, to);
        }
    }
    Ok(state.into_plan(replicas, sizes))
}

/// The planner's working state.
struct State {
    assignment: BTreeMap<TopicPartition, Vec<i32>>,
    weight: BTreeMap<TopicPartition, i64>,
    size: BTreeMap<TopicPartition, i64>,
    /// Load per broker of the set.
    loads: BTreeMap<i32, i64>,
    racks: BTreeMap<i32, String>,
    /// One unit: a move must narrow a gap by more than a mean replica, so that sizes
    /// drifting as clients write do not make the next plan move partitions back and forth.
    tolerance: i64,
}

impl State {
    fn new(
        brokers: &[Broker],
        replicas: &BTreeMap<TopicPartition, Vec<i32>>,
        sizes: &BTreeMap<TopicPartition, i64>,
    ) -> Self {
        let total_replicas: i64 = replicas.values().map(|r| r.len() as i64).sum();
        let total_bytes: i64 = replicas
            .iter()
            .map(|(tp, r)| size_of(sizes, tp).saturating_mul(r.len() as i64))
            .fold(0i64, i64::saturating_add);
        let unit = (total_bytes / total_replicas.max(1)).max(1);
        let weight: BTreeMap<TopicPartition, i64> = replicas
            .keys()
            .map(|tp| (tp.clone(), size_of(sizes, tp).saturating_add(unit)))
            .collect();
        let mut loads: BTreeMap<i32, i64> = brokers.iter().map(|b| (b.id, 0)).collect();
        for (tp, r) in replicas {
            for b in r {
                if let Some(load) = loads.get_mut(b) {
                    *load = load.saturating_add(weight[tp]);
                }
            }
        }
        // Racks constrain only when every broker has one.
        let racks = if brokers.iter().all(|b| b.rack.is_some()) {
            brokers
                .iter()
                .filter_map(|b| Some((b.id, b.rack.clone()?)))
                .collect()
        } else {
            BTreeMap::new()
        };
        Self {
            assignment: replicas.clone(),
            size: replicas
                .keys()
                .map(|tp| (tp.clone(), size_of(sizes, tp)))
                .collect(),
            weight,
            loads,
            racks,
            tolerance: unit,
        }
    }

    /// Distinct racks among `replicas` (a broker outside the set counts as its own).
    fn spread(&self, replicas: &[i32]) -> usize {
        replicas
            .iter()
            .map(|b| {
                self.racks
                    .get(b)
                    .cloned()
                    .unwrap_or_else(|| format!("#{b}"))
            })
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Whether replacing `before` by `after` keeps the rack rule.
    fn keeps_spread(&self, before: &[i32], after: &[i32]) -> bool {
        if self.racks.is_empty() {
            return true;
        }
        let rack_count = self.racks.values().collect::<BTreeSet<_>>().len();
        let full = self.spread(after) >= after.len().min(rack_count);
        full || self.spread(after) >= self.spread(before)
    }

    /// `replicas` with `from` replaced by `to` in place (appended when `from` is None).
    fn replaced(replicas: &[i32], from: Option<i32>, to: i32) -> Vec<i32> {
        match from {
            Some(from) => replicas
                .iter()
                .map(|b| if *b == from { to } else { *b })
                .collect(),
            None => replicas.iter().copied().chain([to]).collect(),
        }
    }

    /// The least loaded broker (then lowest id) that may take a replica of `tp` in place
    /// of `from` (or in addition); one breaking the rack rule only when no other can.
    fn best_receiver(&self, tp: &TopicPartition, from: Option<i32>) -> Option<i32> {
        let replicas = &self.assignment[tp];
        let mut free: Vec<(i64, i32)> = self
            .loads
            .iter()
            .filter(|(b, _)| !replicas.contains(b))
            .map(|(b, load)| (*load, *b))
            .collect();
        free.sort_unstable();
        free.iter()
            .find(|(_, b)| self.keeps_spread(replicas, &Self::replaced(replicas, from, *b)))
            .or(free.first())
            .map(|(_, b)| *b)
    }

    fn add_load(&mut self, broker: i32, weight: i64) {
        if let Some(load) = self.loads.get_mut(&broker) {
            *load = load.saturating_add(weight);
        }
    }

    fn add(&mut self, tp: &TopicPartition, to: i32) {
        let weight = self.weight[tp];
        if let Some(replicas) = self.assignment.get_mut(tp) {
            replicas.push(to);
        }
        self.add_load(to, weight);
    }

    fn remove(&mut self, tp: &TopicPartition, broker: i32) {
        let weight = self.weight[tp];
        if let Some(replicas) = self.assignment.get_mut(tp) {
            replicas.retain(|b| *b != broker);
        }
        self.add_load(broker, -weight);
    }

    fn move_replica(&mut self, tp: &TopicPartition, from: i32, to: i32) {
        let weight = self.weight[tp];
        if let Some(replicas) = self.assignment.get_mut(tp) {
            *replicas = Self::replaced(replicas, Some(from), to);
        }
        self.add_load(from, -weight);
        self.add_load(to, weight);
    }

    /// The replica of `tp` to drop when shrinking it: not the first while another can
    /// go; among those, one whose removal keeps the rack spread, on the most loaded
    /// broker, then the highest id.
    fn removal_candidate(&self, tp: &TopicPartition) -> Option<i32> {
        let replicas = &self.assignment[tp];
        let mut candidates: Vec<(bool, i64, i32)> = replicas
            .iter()
            .skip(usize::from(replicas.len() > 1))
            .map(|b| {
                let after: Vec<i32> = replicas.iter().copied().filter(|r| r != b).collect();
                let load = self.loads.get(b).copied().unwrap_or(i64::MAX);
                (self.keeps_spread(replicas, &after), load, *b)
            })
            .collect();
        candidates.sort_unstable();
        candidates.last().map(|(_, _, b)| *b)
    }

    fn drain(&mut self) -> Result<(), PlanError> {
        let brokers = self.loads.len();
        let mut order: Vec<TopicPartition> = self.assignment.keys().cloned().collect();
        order.sort_by(|a, b| self.weight[b].cmp(&self.weight[a]).then(a.cmp(b)));
        for tp in order {
            let replicas = self.assignment[&tp].clone();
            if replicas.len() > brokers {
                return Err(PlanError::NotEnoughBrokers {
                    partition: tp,
                    replicas: replicas.len(),
                    brokers,
                });
            }
            let gone: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|b| !self.loads.contains_key(b))
                .collect();
            for gone in gone {
                let Some(to) = self.best_receiver(&tp, Some(gone)) else {
                    return Err(PlanError::NotEnoughBrokers {
                        partition: tp,
                        replicas: replicas.len(),
                        brokers,
                    });
                };
                self.move_replica(&tp, gone, to);
            }
        }
        Ok(())
    }

    /// A bound on the passes of a balancing loop: each narrows a gap, so it ends anyway;
    /// the bound guards against a mistake turning it into a hang.
    fn pass_limit(&self) -> usize {
        self.assignment
            .values()
            .map(Vec::len)
            .sum::<usize>()
            .saturating_mul(self.loads.len())
            .saturating_add(16)
    }

    /// How much moving `weight` across a gap of `gap` narrows it (≤ 0: not at all).
    fn narrowing(gap: i64, weight: i64) -> i64 {
        gap - (gap - 2 * weight).abs()
    }

    fn balance_replicas(&mut self) {
        for _ in 0..self.pass_limit() {
            let Some((from, to, tp)) = self.best_replica_move() else {
                return;
            };
            self.move_replica(&tp, from, to);
        }
    }

    /// The move from the most loaded broker that narrows a gap most, to the least loaded
    /// broker that can take one.
    fn best_replica_move(&self) -> Option<(i32, i32, TopicPartition)> {
        let mut by_load: Vec<(i64, i32)> = self.loads.iter().map(|(b, l)| (*l, *b)).collect();
        by_load.sort_unstable();
        let &(max_load, max) = by_load.last()?;
        for &(min_load, min) in &by_load {
            let gap = max_load - min_load;
            if gap <= self.tolerance {
                return None;
            }
            let best = self
                .assignment
                .iter()
                .filter(|(_, r)| r.contains(&max) && !r.contains(&min))
                .filter(|(_, r)| self.keeps_spread(r, &Self::replaced(r, Some(max), min)))
                .map(|(tp, _)| {
                    let narrowing = Self::narrowing(gap, self.weight[tp]);
                    (-narrowing, self.size[tp], tp)
                })
                .filter(|(n, _, _)| -n > self.tolerance)
                .min();
            if let Some((_, _, tp)) = best {
                return Some((max, min, tp.clone()));
            }
        }
        None
    }

    fn leader_loads(&self) -> BTreeMap<i32, i64> {
        let mut loads: BTreeMap<i32, i64> = self.loads.keys().map(|b| (*b, 0)).collect();
        for (tp, r) in &self.assignment {
            if let Some(load) = r.first().and_then(|b| loads.get_mut(b)) {
                *load = load.saturating_add(self.weight[tp]);
            }
        }
        loads
    }

    fn balance_leaders(&mut self) {
        for _ in 0..self.pass_limit() {
            let loads = self.leader_loads();
            let mut by_load: Vec<(i64, i32)> = loads.iter().map(|(b, l)| (*l, *b)).collect();
            by_load.sort_unstable();
            let Some(&(max_load, max)) = by_load.last() else {
                return;
            };
            let found = by_load.iter().find_map(|&(min_load, min)| {
                let gap = max_load - min_load;
                if gap <= self.tolerance {
                    return None;
                }
                self.assignment
                    .iter()
                    .filter(|(_, r)| r.first() == Some(&max) && r.contains(&min))
                    .map(|(tp, _)| (-Self::narrowing(gap, self.weight[tp]), tp))
                    .filter(|(n, _)| -n > self.tolerance)
                    .min()
                    .map(|(_, tp)| (tp.clone(), min))
            });
            let Some((tp, min)) = found else {
                return;
            };
            if let Some(replicas) = self.assignment.get_mut(&tp) {
                if let Some(at) = replicas.iter().position(|b| *b == min) {
                    replicas.swap(0, at);
                }
            }
        }
    }

    fn into_plan(
        self,
        original: &BTreeMap<TopicPartition, Vec<i32>>,
        sizes: &BTreeMap<TopicPartition, i64>,
    ) -> Plan {
        let mut plan = Plan::default();
        for (tp, target) in self.assignment {
            let before = &original[&tp];
            if *before == target {
                continue;
            }
            let gained = target.iter().filter(|b| !before.contains(b)).count() as i64;
            plan.bytes_to_move = plan
                .bytes_to_move
                .saturating_add(size_of(sizes, &tp).saturating_mul(gained));
            plan.targets.insert(tp, target);
        }
        plan
    }
}

fn size_of(sizes: &BTreeMap<TopicPartition, i64>, tp: &TopicPartition) -> i64 {
    sizes.get(tp).copied().unwrap_or(0).max(0)
}

#[cfg(test)]
mod tests;
