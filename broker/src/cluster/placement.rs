//! Where a new partition's replicas go: Kafka's round-robin over the registered brokers,
//! rack-aware when brokers name their racks.
//!
//! Brokers are ordered so that consecutive ones are in different racks where possible
//! (rack by rack, taking one broker of each rack in turn). Partition `p`'s replicas are
//! the `factor` brokers from position `start + p` on, so preferred leaders (the first
//! replica) go round the brokers evenly and a partition's replicas span as many racks as
//! there are, up to its factor.

use std::collections::BTreeMap;

/// Why replicas cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// More replicas asked for than brokers registered (or fewer than one).
    #[error("replication factor {factor} is not from 1 to the {brokers} registered broker(s)")]
    Factor {
        /// The factor asked for.
        factor: i32,
        /// Brokers available.
        brokers: usize,
    },
}

/// Replicas for `count` partitions numbered from `first`, `factor` each, over `brokers`
/// (node id and rack). `start` picks where the round begins (random per topic, as in
/// Kafka, so that topics do not all lead on the same broker).
pub fn assign(
    brokers: &[(i32, Option<String>)],
    first: i32,
    count: i32,
    factor: i32,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let order = rack_alternating(brokers);
    let n = order.len();
    let replicas = usize::try_from(factor).unwrap_or(0);
    if replicas == 0 || replicas > n {
        return Err(PlacementError::Factor { factor, brokers: n });
    }
    Ok((first..first.saturating_add(count.max(0)))
        .map(|p| {
            let base = start.wrapping_add(usize::try_from(p).unwrap_or(0));
            (0..replicas).map(|j| order[(base + j) % n]).collect()
        })
        .collect())
}

/// Node ids ordered rack by rack in turn: a0, b0, c0, a1, b1, ... (racks and the brokers
/// in each sorted); brokers without a rack form one rack of their own.
fn rack_alternating(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut racks: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        racks.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in racks.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| racks.values().filter_map(move |ids| ids.get(i).copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<(i32, Option<String>)> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| (i as i32, r.map(str::to_string)))
            .collect()
    }

    #[test]
    fn factors_outside_one_to_brokers_are_refused() {
        let three = brokers(&[None, None, None]);
        for factor in [0, -1, 4] {
            assert_eq!(
                assign(&three, 0, 1, factor, 0),
                Err(PlacementError::Factor { factor, brokers: 3 })
            );
        }
        assert_eq!(
            assign(&three, 0, 2, 3, 1),
            Ok(vec![vec![1, 2, 0], vec![2, 0, 1]])
        );
    }

    #[test]
    fn replicas_of_a_partition_span_the_racks() {
        let b = brokers(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let placed = assign(&b, 0, 12, 3, 0).unwrap_or_default();
        let rack = |id: i32| b[id as usize].1.clone();
        for replicas in placed {
            let racks: BTreeSet<_> = replicas.iter().map(|&id| rack(id)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    proptest! {
        #[test]
        fn every_partition_gets_distinct_replicas_and_leaders_are_even(
            n in 1usize..8,
            count in 1i32..50,
            factor_seed in 0usize..8,
            start in 0usize..100,
            first in 0i32..20,
            racked in proptest::bool::ANY,
        ) {
            let racks: Vec<Option<&str>> = (0..n)
                .map(|i| racked.then_some(["x", "y", "z"][i % 3]))
                .collect();
            let b = brokers(&racks);
            let factor = (factor_seed % n) as i32 + 1;
            let placed = assign(&b, first, count, factor, start).unwrap_or_default();
            prop_assert_eq!(placed.len(), count as usize);
            let mut leaders: HashMap<i32, usize> = HashMap::new();
            for replicas in &placed {
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), factor as usize);
                prop_assert!(replicas.iter().all(|id| (0..n as i32).contains(id)));
                *leaders.entry(replicas[0]).or_default() += 1;
            }
            let most = leaders.values().max().copied().unwrap_or(0);
            let least = if leaders.len() < n.min(count as usize) { 0 } else {
                leaders.values().min().copied().unwrap_or(0)
            };
            prop_assert!(most - least <= 1, "leaders {:?}", leaders);
        }
    }
}
