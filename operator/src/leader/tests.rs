//! The claim rules as pure functions, then each Lease request against the scripted API
//! server.

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::*;
use crate::fixtures::TEST_NOW_SECONDS;
use crate::Context;

const ME: &str = "runnel-7d9f_a1";
const OTHER: &str = "runnel-5c2e_b2";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/runnel-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/runnel-system/leases/runnel";

fn now() -> Timestamp {
    Timestamp::from_second(TEST_NOW_SECONDS).unwrap()
}

fn ago(secs: i64) -> MicroTime {
    MicroTime(now() - SignedDuration::from_secs(secs))
}

/// A stored Lease (resourceVersion 41, 3 transitions) held by `holder`, acquired a minute
/// ago and renewed `renewed_ago` seconds ago.
fn lease(holder: Option<&str>, renewed_ago: i64) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("runnel".into()),
            namespace: Some("runnel-system".into()),
            resource_version: Some("41".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_string),
            acquire_time: Some(ago(60)),
            renew_time: Some(ago(renewed_ago)),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }),
    }
}

fn written(claim: Claim) -> LeaseSpec {
    match claim {
        Claim::Write(lease) => {
            assert_eq!(lease.metadata.resource_version.as_deref(), Some("41"));
            lease.spec.unwrap()
        }
        held => panic!("expected a write, got {held:?}"),
    }
}

#[test]
fn a_live_lease_of_another_holder_is_refused() {
    assert_eq!(
        claim(&lease(Some(OTHER), 5), ME, now()),
        Claim::Held {
            holder: OTHER.into(),
            until: now() + SignedDuration::from_secs(10)
        }
    );
    // One second before expiry it is still live.
    assert!(matches!(
        claim(&lease(Some(OTHER), 14), ME, now()),
        Claim::Held { .. }
    ));
}

#[test]
fn an_expired_lease_is_taken_over_with_one_more_transition() {
    // renewTime + 15 s == now: expired.
    for renewed_ago in [15, 300] {
        let spec = written(claim(&lease(Some(OTHER), renewed_ago), ME, now()));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(MicroTime(now())));
        assert_eq!(spec.renew_time, Some(MicroTime(now())));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(4));
    }
}

#[test]
fn a_released_lease_is_free() {
    let spec = written(claim(&lease(None, 1), ME, now()));
    assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    assert_eq!(spec.lease_transitions, Some(4));

    let empty_holder = lease(Some(""), 1);
    assert_eq!(
        written(claim(&empty_holder, ME, now()))
            .holder_identity
            .as_deref(),
        Some(ME)
    );
}

#[test]
fn a_holder_without_renew_time_or_duration_has_expired() {
    let mut stale = lease(Some(OTHER), 0);
    if let Some(spec) = stale.spec.as_mut() {
        spec.renew_time = None;
        spec.acquire_time = None;
    }
    assert_eq!(expires_at(&stale), None);
    assert_eq!(
        written(claim(&stale, ME, now())).holder_identity.as_deref(),
        Some(ME)
    );
}

#[test]
fn the_holder_renews_keeping_acquire_time_and_transitions() {
    let spec = written(claim(&lease(Some(ME), 5), ME, now()));
    assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    assert_eq!(spec.acquire_time, Some(ago(60)));
    assert_eq!(spec.renew_time, Some(MicroTime(now())));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[test]
fn a_new_lease_starts_at_zero_transitions() {
    let new = Lease {
        metadata: ObjectMeta {
            name: Some("runnel".into()),
            namespace: Some("runnel-system".into()),
            ..ObjectMeta::default()
        },
        spec: None,
    };
    let Claim::Write(lease) = claim(&new, ME, now()) else {
        panic!("a missing lease is free");
    };
    assert_eq!(lease.metadata.resource_version, None);
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    assert_eq!(spec.lease_transitions, Some(0));
}

#[test]
fn only_the_holder_releases() {
    let gone = released(&lease(Some(ME), 5), ME).unwrap();
    assert_eq!(gone.metadata.resource_version.as_deref(), Some("41"));
    let spec = gone.spec.unwrap();
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(spec.lease_transitions, Some(3));
    assert_eq!(released(&lease(Some(OTHER), 5), ME), None);
    assert_eq!(released(&lease(None, 5), ME), None);
}

#[test]
fn identity_is_the_pod_name_with_a_random_suffix() {
    let a = holder_identity(Some("runnel-7d9f"), Some("host"));
    let b = holder_identity(Some("runnel-7d9f"), Some("host"));
    assert!(a.starts_with("runnel-7d9f_"), "{a}");
    assert_ne!(a, b, "two processes of one pod are two holders");
    assert!(holder_identity(None, Some("host")).starts_with("host_"));
    assert!(holder_identity(Some(""), None).starts_with("runnel-operator_"));
}

fn lease_json(holder: &str, renew_time: Timestamp) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "runnel", "namespace": "runnel-system", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3,
            "acquireTime": "2023-11-14T22:00:00.000000Z", "renewTime": MicroTime(renew_time)}})
}

fn elector(ctx: &Context) -> LeaderElector {
    LeaderElector::new(ctx.client.clone(), "runnel-system", "runnel", ME.into())
}

#[tokio::test]
async fn acquiring_an_expired_lease_replaces_it_under_the_read_resource_version() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let stale = now() - SignedDuration::from_secs(40);
        server
            .expect(Method::GET, LEASE)
            .await
            .respond(StatusCode::OK, &lease_json(OTHER, stale));
        let put = server.expect(Method::PUT, LEASE).await;
        assert_eq!(put.body["metadata"]["resourceVersion"], "41");
        assert_eq!(put.body["spec"]["holderIdentity"], ME);
        assert_eq!(put.body["spec"]["leaseTransitions"], 4);
        assert_eq!(put.body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(
            put.body["spec"]["renewTime"],
            json!(MicroTime(now())),
            "renewed now"
        );
        assert_eq!(
            put.body["spec"]["acquireTime"],
            put.body["spec"]["renewTime"]
        );
        put.respond_echo(json!({}));
    });

    let attempt = elector(&ctx).try_acquire_or_renew(now()).await;
    scenario.finish().await;
    assert_eq!(attempt.unwrap(), Attempt::Leading);
}

#[tokio::test]
async fn a_missing_lease_is_created() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        server.expect(Method::GET, LEASE).await.respond_not_found();
        let post = server.expect(Method::POST, LEASES).await;
        assert_eq!(post.body["metadata"]["name"], "runnel");
        assert_eq!(post.body["metadata"].get("resourceVersion"), None);
        assert_eq!(post.body["spec"]["holderIdentity"], ME);
        assert_eq!(post.body["spec"]["leaseTransitions"], 0);
        post.respond_echo(json!({}));
    });

    let attempt = elector(&ctx).try_acquire_or_renew(now()).await;
    scenario.finish().await;
    assert_eq!(attempt.unwrap(), Attempt::Leading);
}

#[tokio::test]
async fn a_lease_held_by_a_live_holder_is_only_read() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let fresh = now() - SignedDuration::from_secs(3);
        server
            .expect(Method::GET, LEASE)
            .await
            .respond(StatusCode::OK, &lease_json(OTHER, fresh));
        // No PUT: a request here would fail the attempt (the script has ended).
    });

    let attempt = elector(&ctx).try_acquire_or_renew(now()).await;
    scenario.finish().await;
    assert_eq!(
        attempt.unwrap(),
        Attempt::Following {
            holder: OTHER.into()
        }
    );
}

#[tokio::test]
async fn losing_the_write_race_is_a_conflict_not_an_error() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let stale = now() - SignedDuration::from_secs(40);
        server
            .expect(Method::GET, LEASE)
            .await
            .respond(StatusCode::OK, &lease_json(OTHER, stale));
        server.expect(Method::PUT, LEASE).await.respond(
            StatusCode::CONFLICT,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the object has been modified", "reason": "Conflict", "code": 409}),
        );
    });

    let attempt = elector(&ctx).try_acquire_or_renew(now()).await;
    scenario.finish().await;
    assert_eq!(attempt.unwrap(), Attempt::Raced);
}

#[tokio::test]
async fn release_clears_the_holder() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        server
            .expect(Method::GET, LEASE)
            .await
            .respond(StatusCode::OK, &lease_json(ME, now()));
        let put = server.expect(Method::PUT, LEASE).await;
        assert_eq!(put.body["metadata"]["resourceVersion"], "41");
        assert_eq!(put.body["spec"].get("holderIdentity"), None);
        assert_eq!(put.body["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(put.body["spec"]["leaseTransitions"], 3);
        put.respond_echo(json!({}));
    });

    let released = elector(&ctx).release().await;
    scenario.finish().await;
    assert!(released.unwrap());
}
