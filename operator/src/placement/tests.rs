use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn brokers(ids: std::ops::Range<i32>) -> Vec<Broker> {
    ids.map(Broker::new).collect()
}

/// `partitions` partitions of `t` with replication factor `rf`, placed round-robin on
/// brokers `0..on` (as a broker places a new topic).
fn round_robin(t: &str, partitions: i32, rf: i32, on: i32) -> BTreeMap<TopicPartition, Vec<i32>> {
    (0..partitions)
        .map(|p| (tp(t, p), (0..rf).map(|r| (p + r) % on).collect()))
        .collect()
}

fn applied(
    mut replicas: BTreeMap<TopicPartition, Vec<i32>>,
    plan: &Plan,
) -> BTreeMap<TopicPartition, Vec<i32>> {
    for (tp, target) in &plan.targets {
        replicas.insert(tp.clone(), target.clone());
    }
    replicas
}

fn count_on(replicas: &BTreeMap<TopicPartition, Vec<i32>>, broker: i32) -> usize {
    replicas.values().filter(|r| r.contains(&broker)).count()
}

fn leaders_on(replicas: &BTreeMap<TopicPartition, Vec<i32>>, broker: i32) -> usize {
    replicas
        .values()
        .filter(|r| r.first() == Some(&broker))
        .count()
}

/// Every partition keeps its replica count, on distinct brokers of the set.
fn assert_valid(
    before: &BTreeMap<TopicPartition, Vec<i32>>,
    after: &BTreeMap<TopicPartition, Vec<i32>>,
    set: &[Broker],
) {
    for (tp, replicas) in after {
        assert_eq!(replicas.len(), before[tp].len(), "{tp}: {replicas:?}");
        let distinct: BTreeSet<_> = replicas.iter().collect();
        assert_eq!(distinct.len(), replicas.len(), "{tp}: {replicas:?}");
        assert!(
            replicas.iter().all(|b| set.iter().any(|s| s.id == *b)),
            "{tp}: {replicas:?}"
        );
    }
}

#[test]
fn new_brokers_get_an_even_share_of_replicas_and_leaders() {
    let before = round_robin("orders", 6, 2, 3);
    let set = brokers(0..5);
    let plan = plan(&set, &before, &BTreeMap::new()).unwrap();
    let after = applied(before.clone(), &plan);
    assert_valid(&before, &after, &set);
    let counts: Vec<usize> = (0..5).map(|b| count_on(&after, b)).collect();
    assert!(counts.iter().all(|c| (2..=3).contains(c)), "{counts:?}");
    let leaders: Vec<usize> = (0..5).map(|b| leaders_on(&after, b)).collect();
    assert!(leaders.iter().all(|c| *c <= 2), "{leaders:?}");
    // Only what the new brokers need moves: 12 replicas over 5 brokers, 4 or 5 of them.
    let moved: usize = plan
        .targets
        .iter()
        .map(|(tp, t)| t.iter().filter(|b| !before[tp].contains(b)).count())
        .sum();
    assert!((4..=5).contains(&moved), "{moved} replicas moved: {plan:?}");
    assert_eq!(
        super::plan(&set, &after, &BTreeMap::new()).unwrap(),
        Plan::default(),
        "a balanced placement is a fixed point"
    );
}

#[test]
fn brokers_that_go_are_drained_onto_those_that_stay() {
    let before = round_robin("orders", 10, 2, 5);
    let set = brokers(0..3);
    let sizes = before.keys().map(|tp| (tp.clone(), 1_000)).collect();
    let plan = plan(&set, &before, &sizes).unwrap();
    let after = applied(before.clone(), &plan);
    assert_valid(&before, &after, &set);
    assert_eq!(count_on(&after, 3) + count_on(&after, 4), 0);
    let counts: Vec<usize> = (0..3).map(|b| count_on(&after, b)).collect();
    assert!(counts.iter().all(|c| (6..=7).contains(c)), "{counts:?}");
    // Each of the 8 replicas on 3 and 4 is copied once.
    assert_eq!(plan.bytes_to_move, 8_000);
}

#[test]
fn bytes_decide_and_the_smallest_sufficient_move_is_made() {
    // Broker 0 holds a 1000-byte and a 10-byte partition, broker 1 a 900-byte one: the
    // gap (110 bytes) is narrowed by moving the small partition, not the large one.
    let before = BTreeMap::from([
        (tp("a", 0), vec![0]),
        (tp("a", 1), vec![0]),
        (tp("b", 0), vec![1]),
    ]);
    let sizes = BTreeMap::from([(tp("a", 0), 1_000), (tp("a", 1), 10), (tp("b", 0), 900)]);
    let plan = plan(&brokers(0..2), &before, &sizes).unwrap();
    // Unit = 636: moving a-1 (weight 646) narrows the gap by 200 bytes, less than a
    // unit, so nothing moves.
    assert_eq!(plan, Plan::default());

    let sizes = BTreeMap::from([(tp("a", 0), 5_000), (tp("a", 1), 10), (tp("b", 0), 100)]);
    let plan = super::plan(&brokers(0..3), &before, &sizes).unwrap();
    assert_eq!(
        plan.targets,
        BTreeMap::from([(tp("a", 1), vec![2])]),
        "the empty broker takes the small partition; the large one stays"
    );
    assert_eq!(plan.bytes_to_move, 10);
}

#[test]
fn racks_stay_spread() {
    let set = vec![
        Broker {
            id: 0,
            rack: Some("a".into()),
        },
        Broker {
            id: 1,
            rack: Some("b".into()),
        },
        Broker {
            id: 2,
            rack: Some("a".into()),
        },
        Broker {
            id: 3,
            rack: Some("b".into()),
        },
    ];
    let before: BTreeMap<_, _> = (0..8).map(|p| (tp("t", p), vec![0, 1])).collect();
    let plan = plan(&set, &before, &BTreeMap::new()).unwrap();
    let after = applied(before.clone(), &plan);
    assert_valid(&before, &after, &set);
    for (tp, replicas) in &after {
        let racks: BTreeSet<_> = replicas
            .iter()
            .map(|b| set[*b as usize].rack.clone())
            .collect();
        assert_eq!(racks.len(), 2, "{tp}: {replicas:?}");
    }
    // 16 replicas, 4 per broker.
    let counts: Vec<usize> = (0..4).map(|b| count_on(&after, b)).collect();
    assert_eq!(counts, [4, 4, 4, 4], "{after:?}");
}

#[test]
fn too_few_brokers_is_an_error_naming_the_partition() {
    let before = round_robin("wide", 2, 4, 5);
    assert_eq!(
        plan(&brokers(0..3), &before, &BTreeMap::new()),
        Err(PlanError::NotEnoughBrokers {
            partition: tp("wide", 0),
            replicas: 4,
            brokers: 3
        })
    );
}

#[test]
fn replication_factor_grows_onto_the_least_loaded_and_shrinks_off_the_most_loaded() {
    let mut before = round_robin("orders", 3, 1, 3);
    before.extend(round_robin("other", 3, 2, 2));
    let set = brokers(0..3);
    let grown = replication_factor(&set, &before, &BTreeMap::new(), "orders", 3).unwrap();
    assert_eq!(grown.targets.len(), 3);
    for (tp, target) in &grown.targets {
        assert_eq!(target.len(), 3);
        assert_eq!(target[0], before[tp][0], "the preferred leader stays first");
    }
    let after = applied(before.clone(), &grown);
    let shrunk = replication_factor(&set, &after, &BTreeMap::new(), "orders", 2).unwrap();
    for (tp, target) in &shrunk.targets {
        assert_eq!(target.len(), 2);
        assert_eq!(target[0], after[tp][0]);
    }
    assert_eq!(shrunk.bytes_to_move, 0, "removing replicas copies nothing");
    assert!(matches!(
        replication_factor(&set, &before, &BTreeMap::new(), "orders", 4),
        Err(PlanError::NotEnoughBrokers { replicas: 4, .. })
    ));
}

/// Bytes and replicas on each broker of `set`, by `sizes`.
fn bytes_and_counts(
    replicas: &BTreeMap<TopicPartition, Vec<i32>>,
    sizes: &BTreeMap<TopicPartition, i64>,
    set: &[Broker],
) -> BTreeMap<i32, (i64, usize)> {
    set.iter()
        .map(|b| {
            let held = replicas.iter().filter(|(_, r)| r.contains(&b.id));
            let bytes = held
                .clone()
                .map(|(tp, _)| sizes.get(tp).copied().unwrap_or(0))
                .sum();
            (b.id, (bytes, held.count()))
        })
        .collect()
}

#[test]
fn a_new_replica_goes_to_the_broker_with_fewest_bytes_not_fewest_replicas() {
    // Brokers 0 and 1 hold one 1 GB partition each; broker 2 holds three empty ones, and
    // the topic to grow (one empty partition) leads on broker 0.
    let gb = 1 << 30;
    let mut before = BTreeMap::from([
        (tp("big", 0), vec![0]),
        (tp("big", 1), vec![1]),
        (tp("orders", 0), vec![0]),
    ]);
    before.extend((0..3).map(|p| (tp("small", p), vec![2])));
    let sizes = BTreeMap::from([(tp("big", 0), gb), (tp("big", 1), gb)]);
    let set = brokers(0..3);
    let by_counts = replication_factor(&set, &before, &BTreeMap::new(), "orders", 2).unwrap();
    assert_eq!(
        by_counts.targets[&tp("orders", 0)],
        [0, 1],
        "counts alone: broker 1"
    );
    let by_bytes = replication_factor(&set, &before, &sizes, "orders", 2).unwrap();
    assert_eq!(
        by_bytes.targets[&tp("orders", 0)],
        [0, 2],
        "by bytes: broker 2"
    );
}

#[test]
fn a_surplus_replica_leaves_the_broker_with_most_bytes_not_most_replicas() {
    // `orders-0` on 0, 1, 2; broker 1 holds a 1 GB partition, broker 2 five empty ones.
    let mut before = BTreeMap::from([(tp("orders", 0), vec![0, 1, 2]), (tp("big", 0), vec![1])]);
    before.extend((0..5).map(|p| (tp("small", p), vec![2])));
    let sizes = BTreeMap::from([(tp("big", 0), 1 << 30)]);
    let set = brokers(0..3);
    let by_counts = replication_factor(&set, &before, &BTreeMap::new(), "orders", 2).unwrap();
    assert_eq!(
        by_counts.targets[&tp("orders", 0)],
        [0, 1],
        "counts alone: off 2"
    );
    let by_bytes = replication_factor(&set, &before, &sizes, "orders", 2).unwrap();
    assert_eq!(
        by_bytes.targets[&tp("orders", 0)],
        [0, 2],
        "by bytes: off 1"
    );
}

#[test]
fn a_surplus_replica_leaves_by_bytes_only_where_the_rack_spread_stays() {
    // `orders-0` on racks a, a, b; broker 2 (rack b) holds the most bytes, but removing
    // it would leave one rack: a replica on rack a goes instead.
    let set: Vec<Broker> = [(0, "a"), (1, "a"), (2, "b"), (3, "b")]
        .map(|(id, rack)| Broker {
            id,
            rack: Some(rack.into()),
        })
        .to_vec();
    let before = BTreeMap::from([
        (tp("orders", 0), vec![0, 1, 2]),
        (tp("big", 0), vec![2]),
        (tp("big", 1), vec![3]),
    ]);
    let sizes = BTreeMap::from([(tp("big", 0), 1 << 30), (tp("big", 1), 1 << 20)]);
    let shrunk = replication_factor(&set, &before, &sizes, "orders", 2).unwrap();
    assert_eq!(shrunk.targets[&tp("orders", 0)], [0, 2]);
}

/// A small deterministic generator (xorshift), so the property runs need no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn any_cluster_gets_a_valid_deterministic_fixed_point() {
    let mut rng = Rng(0x5eed);
    for _ in 0..200 {
        let was = rng.below(5) as i32 + 1;
        let now = rng.below(5) as i32 + 1;
        let mut before = BTreeMap::new();
        for t in 0..rng.below(4) + 1 {
            let rf = (rng.below(3) as i32 + 1).min(was).min(now);
            for p in 0..rng.below(6) as i32 + 1 {
                let start = rng.below(was as u64) as i32;
                let replicas = (0..rf).map(|r| (start + r) % was).collect();
                before.insert(tp(&format!("t{t}"), p), replicas);
            }
        }
        let sizes = before
            .keys()
            .map(|tp| (tp.clone(), rng.below(3) as i64 * rng.below(10_000) as i64))
            .collect();
        let set = brokers(0..now);
        let first = plan(&set, &before, &sizes).unwrap();
        assert_eq!(first, plan(&set, &before, &sizes).unwrap(), "deterministic");
        let after = applied(before.clone(), &first);
        assert_valid(&before, &after, &set);
        assert_eq!(
            plan(&set, &after, &sizes).unwrap(),
            Plan::default(),
            "not a fixed point: {before:?} -> {after:?}"
        );
        // Replica counts end within two of each other whenever sizes are equal-ish.
        let counts: Vec<usize> = (0..now).map(|b| count_on(&after, b)).collect();
        assert!(counts.iter().sum::<usize>() == before.values().map(Vec::len).sum::<usize>());
    }
}

#[test]
fn any_replication_factor_change_keeps_leaders_and_reaches_the_count() {
    let mut rng = Rng(0xfac7);
    for _ in 0..200 {
        let brokers_now = rng.below(5) as i32 + 1;
        let set = brokers(0..brokers_now);
        let rf = rng.below(brokers_now as u64) as i32 + 1;
        let mut before = round_robin("t", rng.below(6) as i32 + 1, rf, brokers_now);
        before.extend(round_robin("other", 3, 1, brokers_now));
        let want = rng.below(brokers_now as u64) as usize + 1;
        let plan = replication_factor(&set, &before, &BTreeMap::new(), "t", want).unwrap();
        assert_eq!(
            plan,
            replication_factor(&set, &before, &BTreeMap::new(), "t", want).unwrap()
        );
        let after = applied(before.clone(), &plan);
        for (tp, replicas) in &after {
            if tp.topic != "t" {
                assert_eq!(replicas, &before[tp], "another topic was touched");
                continue;
            }
            assert_eq!(replicas.len(), want, "{tp}: {replicas:?}");
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), want, "{tp}: {replicas:?}");
            assert_eq!(
                replicas[0], before[tp][0],
                "{tp}: the preferred leader stays"
            );
        }
    }
}

#[test]
fn a_replication_factor_change_never_picks_a_broker_beaten_on_both_bytes_and_replicas() {
    // Whatever the cluster: a replica is added only on a broker no other eligible broker
    // beats on both bytes and replica count, and removed only from one that beats no
    // other candidate on both (candidates: not the leader, rack spread kept).
    let mut rng = Rng(0xb17e5);
    for _ in 0..300 {
        let n = rng.below(4) as i32 + 3;
        let set: Vec<Broker> = if rng.below(2) == 0 {
            brokers(0..n)
        } else {
            (0..n)
                .map(|id| Broker {
                    id,
                    rack: Some(format!("r{}", id % 2)),
                })
                .collect()
        };
        let mut before = BTreeMap::new();
        for p in 0..rng.below(12) as i32 + 1 {
            before.insert(tp("other", p), vec![rng.below(n as u64) as i32]);
        }
        let rf = rng.below(n as u64 - 1) as i32 + 1;
        let start = rng.below(n as u64) as i32;
        before.insert(tp("t", 0), (0..rf).map(|r| (start + r) % n).collect());
        let sizes: BTreeMap<_, _> = before
            .keys()
            .map(|tp| (tp.clone(), rng.below(4) as i64 * rng.below(1 << 30) as i64))
            .collect();
        let load = bytes_and_counts(&before, &sizes, &set);
        let beats = |a: i32, b: i32| {
            let ((ab, ac), (bb, bc)) = (load[&a], load[&b]);
            ab <= bb && ac <= bc && (ab, ac) != (bb, bc)
        };
        let replicas = before[&tp("t", 0)].clone();
        let racks = |r: &[i32]| {
            r.iter()
                .map(|b| set[*b as usize].rack.clone().unwrap_or(format!("#{b}")))
                .collect::<BTreeSet<_>>()
                .len()
        };

        let grown = replication_factor(&set, &before, &sizes, "t", replicas.len() + 1).unwrap();
        let target = &grown.targets[&tp("t", 0)];
        let added = *target.last().unwrap();
        let eligible: Vec<i32> = (0..n)
            .filter(|b| !replicas.contains(b))
            .filter(|b| racks(target) <= racks(&[&replicas[..], &[*b]].concat()))
            .collect();
        assert!(
            !eligible.iter().any(|b| beats(*b, added)),
            "added on {added} ({:?}) though {eligible:?} ({load:?}) hold less",
            load[&added]
        );

        if replicas.len() < 2 {
            continue;
        }
        let shrunk = replication_factor(&set, &before, &sizes, "t", replicas.len() - 1).unwrap();
        let target = &shrunk.targets[&tp("t", 0)];
        let removed = *replicas.iter().find(|b| !target.contains(b)).unwrap();
        assert_eq!(target[0], replicas[0], "the leader stays");
        let without =
            |b: i32| -> Vec<i32> { replicas.iter().copied().filter(|r| *r != b).collect() };
        let candidates: Vec<i32> = replicas[1..]
            .iter()
            .copied()
            .filter(|b| racks(&without(*b)) >= racks(&without(removed)))
            .collect();
        assert!(
            !candidates.iter().any(|b| beats(removed, *b)),
            "removed from {removed} ({:?}) though {candidates:?} ({load:?}) hold more",
            load[&removed]
        );
    }
}
