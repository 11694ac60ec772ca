//! State-machine scenarios of the group protocol, driven with an explicit clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::errors::*;
use super::{Group, GroupConfig, GroupState, JoinRequest, JoinResult, Pending, SyncResult};

fn config(initial_delay_ms: u64) -> GroupConfig {
    GroupConfig {
        min_session_timeout: Duration::from_millis(1),
        max_session_timeout: Duration::from_secs(600),
        initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
        max_size: 100,
        offsets_retention: Duration::from_secs(3600),
        offsets_partitions: 50,
        max_metadata_bytes: 4096,
    }
}

fn request(member: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member.to_string(),
        instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("md-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn ready<T: std::fmt::Debug>(p: Pending<T>) -> T {
    match p {
        Pending::Ready(t) => t,
        Pending::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waiting<T>(p: Pending<T>) -> oneshot::Receiver<T> {
    match p {
        Pending::Wait(rx) => rx,
        Pending::Ready(_) => panic!("expected to wait"),
    }
}

/// A new dynamic member: MEMBER_ID_REQUIRED, then the real join.
fn join_new(
    g: &mut Group,
    c: &GroupConfig,
    now: Instant,
) -> (String, oneshot::Receiver<JoinResult>) {
    let first = ready(g.join(request("", None, &["range"]), c, now));
    assert_eq!(first.error, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    let rx = waiting(g.join(request(&first.member_id, None, &["range"]), c, now));
    (first.member_id, rx)
}

fn sync_all(g: &mut Group, members: &[(&str, i32)], leader: &str, now: Instant) -> Vec<SyncResult> {
    let assignments: Vec<(String, Bytes)> = members
        .iter()
        .map(|(m, _)| (m.to_string(), Bytes::from(format!("assign-{m}"))))
        .collect();
    let mut rxs = Vec::new();
    for (m, generation) in members.iter().filter(|(m, _)| *m != leader) {
        rxs.push(waiting(g.sync(m, None, *generation, vec![], now)));
    }
    let generation = members
        .iter()
        .find(|(m, _)| *m == leader)
        .map_or(0, |(_, g)| *g);
    let mut out = vec![match g.sync(leader, None, generation, assignments, now) {
        Pending::Wait(mut rx) => rx.try_recv().expect("leader answered"),
        Pending::Ready(r) => r,
    }];
    for mut rx in rxs {
        out.push(rx.try_recv().expect("member answered"));
    }
    out
}

#[test]
fn first_member_joins_leads_and_gets_its_assignment() {
    let c = config(0);
    let now = Instant::now();
    let mut g = Group::new("g", now);
    let (id, mut rx) = join_new(&mut g, &c, now);
    let joined = rx.try_recv().expect("join completed at once");
    assert_eq!(
        (joined.error, joined.generation, joined.leader.as_str()),
        (0, 1, id.as_str())
    );
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let synced = sync_all(&mut g, &[(&id, 1)], &id, now);
    assert_eq!(synced[0].assignment, Bytes::from(format!("assign-{id}")));
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn initial_delay_gathers_members_into_one_generation() {
    let c = config(3000);
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, mut rx_a) = join_new(&mut g, &c, t0);
    let (b, mut rx_b) = join_new(&mut g, &c, t0 + Duration::from_millis(500));
    assert!(rx_a.try_recv().is_err(), "still gathering");
    g.tick(&c, t0 + Duration::from_millis(2000));
    assert!(
        rx_a.try_recv().is_err(),
        "delay extended by the second member"
    );
    g.tick(&c, t0 + Duration::from_millis(3600));
    let (ja, jb) = (
        rx_a.try_recv().expect("a joined"),
        rx_b.try_recv().expect("b joined"),
    );
    assert_eq!((ja.generation, jb.generation), (1, 1));
    let leader = ja.leader.clone();
    assert!(leader == a || leader == b);
    let leader_view = if leader == a { &ja } else { &jb };
    assert_eq!(leader_view.members.len(), 2, "the leader sees every member");
}

#[test]
fn a_new_member_triggers_a_rebalance_that_existing_members_follow() {
    let c = config(0);
    let now = Instant::now();
    let mut g = Group::new("g", now);
    let (a, mut rx) = join_new(&mut g, &c, now);
    rx.try_recv().expect("a joined");
    sync_all(&mut g, &[(&a, 1)], &a, now);
    let (b, mut rx_b) = join_new(&mut g, &c, now);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, None, 1, now), REBALANCE_IN_PROGRESS);
    assert!(rx_b.try_recv().is_err(), "waits for a to rejoin");
    let mut rx_a = waiting(g.join(request(&a, None, &["range"]), &c, now));
    let (ja, jb) = (rx_a.try_recv().expect("a"), rx_b.try_recv().expect("b"));
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays the leader");
    let synced = sync_all(&mut g, &[(&a, 2), (&b, 2)], &a, now);
    assert_eq!(synced[1].assignment, Bytes::from(format!("assign-{b}")));
    // The old generation is fenced.
    assert_eq!(g.heartbeat(&a, None, 1, now), ILLEGAL_GENERATION);
    assert_eq!(g.heartbeat("nobody", None, 2, now), UNKNOWN_MEMBER_ID);
    assert_eq!(g.heartbeat(&b, None, 2, now), 0);
}

#[test]
fn a_silent_member_is_expired_and_the_rest_rebalance() {
    let c = config(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, mut rx_a) = join_new(&mut g, &c, t0);
    rx_a.try_recv().expect("a");
    sync_all(&mut g, &[(&a, 1)], &a, t0);
    let (b, _rx_b) = join_new(&mut g, &c, t0);
    let mut rx_a = waiting(g.join(request(&a, None, &["range"]), &c, t0));
    rx_a.try_recv().expect("a gen 2");
    sync_all(&mut g, &[(&a, 2), (&b, 2)], &a, t0);
    // b keeps heartbeating, a goes silent past its 10 s session.
    let t1 = t0 + Duration::from_secs(8);
    assert_eq!(g.heartbeat(&b, None, 2, t1), 0);
    g.tick(&c, t0 + Duration::from_secs(11));
    assert!(!g.members.contains_key(&a), "a expired");
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let mut rx_b = waiting(g.join(
        request(&b, None, &["range"]),
        &c,
        t0 + Duration::from_secs(11),
    ));
    let jb = rx_b.try_recv().expect("b alone");
    assert_eq!((jb.generation, jb.leader.as_str()), (3, b.as_str()));
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let c = config(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, mut rx) = join_new(&mut g, &c, t0);
    rx.try_recv().expect("a");
    sync_all(&mut g, &[(&a, 1)], &a, t0);
    let (_b, mut rx_b) = join_new(&mut g, &c, t0);
    // a heartbeats (so its session stays alive) but never rejoins.
    g.tick(&c, t0 + Duration::from_secs(5));
    assert!(rx_b.try_recv().is_err());
    g.tick(&c, t0 + Duration::from_secs(31));
    let jb = rx_b.try_recv().expect("completed by the timeout");
    assert_eq!(jb.members.len(), 1);
    assert!(!g.members.contains_key(&a));
}

#[test]
fn leaving_empties_the_group() {
    let c = config(0);
    let now = Instant::now();
    let mut g = Group::new("g", now);
    let (a, mut rx) = join_new(&mut g, &c, now);
    rx.try_recv().expect("a");
    sync_all(&mut g, &[(&a, 1)], &a, now);
    assert_eq!(g.leave(&a, None, &c, now), 0);
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.leave(&a, None, &c, now), UNKNOWN_MEMBER_ID);
}

#[test]
fn the_protocol_all_members_support_is_chosen() {
    let c = config(0);
    let now = Instant::now();
    let mut g = Group::new("g", now);
    let mut a_req = request("", None, &["range", "roundrobin"]);
    a_req.require_known_member_id = false;
    let mut rx_a = waiting(g.join(a_req, &c, now));
    let a = rx_a.try_recv().expect("a").member_id;
    sync_all(&mut g, &[(&a, 1)], &a, now);
    let mut b_req = request("", None, &["roundrobin"]);
    b_req.require_known_member_id = false;
    let _rx_b = waiting(g.join(b_req, &c, now));
    let mut rx_a = waiting(g.join(request(&a, None, &["range", "roundrobin"]), &c, now));
    let ja = rx_a.try_recv().expect("a gen 2");
    assert_eq!(ja.protocol_name.as_deref(), Some("roundrobin"));
    // A member sharing no protocol is refused.
    let mut c_req = request("", None, &["sticky"]);
    c_req.require_known_member_id = false;
    assert_eq!(
        ready(g.join(c_req, &c, now)).error,
        INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let c = config(0);
    let now = Instant::now();
    let mut g = Group::new("g", now);
    let mut rx_a = waiting(g.join(request("", Some("inst-a"), &["range"]), &c, now));
    let a = rx_a.try_recv().expect("a").member_id;
    let mut rx_b = waiting(g.join(request("", Some("inst-b"), &["range"]), &c, now));
    let mut rx_a = waiting(g.join(request(&a, Some("inst-a"), &["range"]), &c, now));
    let (ja, jb) = (rx_a.try_recv().expect("a"), rx_b.try_recv().expect("b"));
    let b = jb.member_id.clone();
    assert_eq!(ja.leader, a);
    sync_all(&mut g, &[(&a, ja.generation), (&b, jb.generation)], &a, now);
    let generation = g.generation;
    // inst-b restarts: new member id, same generation, same assignment, no rebalance.
    let back = ready(g.join(request("", Some("inst-b"), &["range"]), &c, now));
    assert_eq!(back.error, 0);
    assert_ne!(back.member_id, b);
    assert_eq!((back.generation, g.state), (generation, GroupState::Stable));
    assert_eq!(
        ready(g.sync(&back.member_id, Some("inst-b"), generation, vec![], now)).assignment,
        Bytes::from(format!("assign-{b}"))
    );
    assert_eq!(
        g.heartbeat(&b, Some("inst-b"), generation, now),
        FENCED_INSTANCE_ID
    );
    // The leader restarts too: still no rebalance; it is told to keep the assignment.
    let leader_back = ready(g.join(request("", Some("inst-a"), &["range"]), &c, now));
    assert_eq!((leader_back.error, leader_back.generation), (0, generation));
    assert!(leader_back.skip_assignment);
    assert_eq!(leader_back.leader, leader_back.member_id);
    assert_eq!(leader_back.members.len(), 2);
    assert_eq!(g.state, GroupState::Stable);
    let kept = ready(g.sync(
        &leader_back.member_id,
        Some("inst-a"),
        generation,
        vec![],
        now,
    ));
    assert_eq!(kept.assignment, Bytes::from(format!("assign-{a}")));
}

#[test]
fn offsets_of_a_group_empty_past_retention_expire() {
    use super::offsets::{CommittedOffset, OffsetRecord};
    use super::GroupCoordinator;
    let mut c = config(0);
    c.offsets_retention = Duration::from_secs(3600);
    let coordinator = GroupCoordinator::new(c.clone());
    let t0 = Instant::now();
    let commit = |group: &str, ts: i64| OffsetRecord {
        group: group.into(),
        topic: "t".into(),
        partition: 0,
        value: Some(CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: ts,
        }),
    };
    let hour_ms = 3_600_000;
    let now_ms = 10 * hour_ms;
    // "idle": empty and committed long ago; "fresh": committed a minute ago; "busy": has a member.
    coordinator.apply_offsets(
        vec![
            commit("idle", now_ms - 2 * hour_ms),
            commit("fresh", now_ms - 60_000),
            commit("busy", now_ms - 2 * hour_ms),
        ],
        t0,
    );
    {
        let mut groups = coordinator.lock();
        let busy = GroupCoordinator::entry(&mut groups, "busy", t0);
        let member = JoinRequest {
            require_known_member_id: false,
            ..request("", None, &["range"])
        };
        let joined = waiting(busy.group.join(member, &c, t0))
            .try_recv()
            .expect("joined at once");
        assert_eq!(joined.error, 0);
        assert_eq!(busy.group.state, GroupState::CompletingRebalance);
    }
    assert!(
        coordinator
            .expired_offsets(t0 + Duration::from_secs(60), now_ms)
            .is_empty(),
        "not empty for an hour yet"
    );
    let expired = coordinator.expired_offsets(t0 + Duration::from_secs(7200), now_ms);
    let groups: Vec<&str> = expired.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(groups, ["idle"]);
    assert!(expired[0].value.is_none(), "expiry writes tombstones");
    coordinator.apply_offsets(expired, t0);
    assert!(
        !coordinator.lock().contains_key("idle"),
        "the empty group is forgotten with its offsets"
    );
}
