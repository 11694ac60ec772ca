//! Reconcile scenarios of the ConsumerGroup controller against the scripted API server
//! and the fake cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::{lag, reconcile};
use crate::crd::ConsumerGroup;
use crate::fixtures::ApiServerVerifier;
use crate::kafka::fake::FakeKafka;
use crate::kafka::{GroupDescription, GroupMemberDescription, TopicPartition};
use crate::Context;

const GROUPS: &str = "/apis/runnel.dev/v1alpha1/namespaces/streaming/consumergroups";
const CLUSTER: &str = "/apis/runnel.dev/v1alpha1/namespaces/streaming/kafkaclusters/demo";

fn group_json(reset: Option<Value>) -> Value {
    let mut spec = json!({"clusterRef": {"name": "demo"}, "groupId": "billing"});
    if let Some(reset) = reset {
        spec["offsetReset"] = reset;
    }
    json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": "billing", "namespace": "streaming", "generation": 2}, "spec": spec})
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// A cluster with topic `orders` (2 partitions, ends 8 and 10, starts 2 and 0) and
/// group `billing` committed at 5 and 10, in `state` with `members` members.
fn cluster(state: &str, members: usize) -> FakeKafka {
    let fake = FakeKafka::default();
    fake.with_topic("orders", 2, &[]);
    fake.with_state(|s| {
        s.log_end = BTreeMap::from([
            (TopicPartition::new("orders", 0), 8),
            (TopicPartition::new("orders", 1), 10),
        ]);
        s.log_start = BTreeMap::from([(TopicPartition::new("orders", 0), 2)]);
        s.committed.insert(
            "billing".into(),
            BTreeMap::from([
                (TopicPartition::new("orders", 0), 5),
                (TopicPartition::new("orders", 1), 10),
            ]),
        );
        s.groups.insert(
            "billing".into(),
            GroupDescription {
                group_id: "billing".into(),
                state: state.into(),
                members: (0..members)
                    .map(|i| GroupMemberDescription {
                        member_id: format!("m-{i}"),
                        client_id: "app".into(),
                        client_host: "/10.0.0.1".into(),
                    })
                    .collect(),
            },
        );
    });
    fake
}

/// One pass: GET the cluster, then the status apply (checked by `check`).
async fn pass(
    object: &Value,
    fake: &FakeKafka,
    check: impl FnOnce(&Value) + Send + 'static,
) -> Action {
    let (ctx, server) = Context::test_with_admin(Arc::new(fake.clone()));
    let stored = object.clone();
    let scenario = server.run(|mut server: ApiServerVerifier| async move {
        server.expect(Method::GET, CLUSTER).await.respond(
            StatusCode::OK,
            &json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "KafkaCluster",
                "metadata": {"name": "demo", "namespace": "streaming"}, "spec": {},
                "status": {"bootstrapServers": "demo-bootstrap.streaming.svc:9092"}}),
        );
        let patch = server
            .expect_apply(&format!("{GROUPS}/billing/status"))
            .await;
        assert_eq!(patch.body["kind"], "ConsumerGroup");
        check(&patch.body["status"]);
        let mut answer = stored;
        answer["status"] = patch.body["status"].clone();
        patch.respond(StatusCode::OK, &answer);
    });
    let object: ConsumerGroup = serde_json::from_value(object.clone()).unwrap();
    let result = reconcile(Arc::new(object), ctx).await;
    scenario.finish().await;
    result.unwrap()
}

#[tokio::test]
async fn status_shows_state_members_and_lag() {
    let fake = cluster("Stable", 1);
    let action = pass(&group_json(None), &fake, |status| {
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["state"], "Stable");
        assert_eq!(status["memberCount"], 1);
        assert_eq!(
            status["members"],
            json!([{"memberId": "m-0", "clientId": "app", "clientHost": "/10.0.0.1"}])
        );
        assert_eq!(
            status["lag"],
            json!([
                {"topic": "orders", "partition": 0, "committedOffset": 5, "highWatermark": 8, "lag": 3},
                {"topic": "orders", "partition": 1, "committedOffset": 10, "highWatermark": 10, "lag": 0}
            ])
        );
        assert_eq!(status["totalLag"], 3);
        assert_eq!(condition(status, "Ready")["status"], "True");
        assert_eq!(condition(status, "OffsetReset"), &Value::Null);
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    assert_eq!(
        fake.take_calls(),
        [
            "connect demo-bootstrap.streaming.svc:9092",
            "DescribeGroups billing",
            "OffsetFetch billing",
            "Metadata Some([\"orders\"])",
            "ListOffsets Latest [\"orders-0\", \"orders-1\"]",
        ]
    );
}

#[tokio::test]
async fn a_reset_waits_while_the_group_has_members() {
    let fake = cluster("Stable", 2);
    let reset = json!({"requestId": "r1", "strategy": "Earliest"});
    pass(&group_json(Some(reset)), &fake, |status| {
        let waiting = condition(status, "OffsetReset");
        assert_eq!(waiting["status"], "False");
        assert_eq!(waiting["reason"], "WaitingForEmptyGroup");
        assert_eq!(
            waiting["message"],
            "reset r1 waits until group billing is empty: it has 2 members (state Stable)"
        );
        assert_eq!(status.get("lastAppliedResetRequestId"), None);
    })
    .await;
    let calls = fake.take_calls();
    assert!(
        calls.iter().all(|c| !c.starts_with("OffsetCommit")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_reset_is_applied_once_when_the_group_is_empty() {
    let fake = cluster("Empty", 0);
    let reset = json!({"requestId": "r1", "strategy": "Earliest"});
    let object = group_json(Some(reset));
    let applied = Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = Arc::clone(&applied);
    pass(&object, &fake, move |status| {
        assert_eq!(status["lastAppliedResetRequestId"], "r1");
        assert_eq!(condition(status, "OffsetReset")["reason"], "Applied");
        assert_eq!(
            condition(status, "OffsetReset")["message"],
            "reset r1 (Earliest) moved 2 partitions"
        );
        assert_eq!(status["totalLag"], 6 + 10, "lag after the reset");
        *keep.lock().unwrap() = status.clone();
    })
    .await;
    let calls = fake.take_calls();
    assert_eq!(
        calls[1..6],
        [
            "DescribeGroups billing".to_string(),
            "OffsetFetch billing".into(),
            "Metadata Some([\"orders\"])".into(),
            "ListOffsets Earliest [\"orders-0\", \"orders-1\"]".into(),
            "OffsetCommit billing [\"orders-0=2\", \"orders-1=0\"]".into(),
        ]
    );

    // The next pass sees the recorded id and commits nothing, even after consumers moved on.
    fake.with_state(|s| {
        s.committed
            .get_mut("billing")
            .unwrap()
            .insert(TopicPartition::new("orders", 0), 7);
    });
    let mut object = object;
    object["status"] = applied.lock().unwrap().clone();
    pass(&object, &fake, |status| {
        assert_eq!(status["lastAppliedResetRequestId"], "r1");
        assert_eq!(status["lag"][0]["committedOffset"], 7);
    })
    .await;
    let calls = fake.take_calls();
    assert!(
        calls.iter().all(|c| !c.starts_with("OffsetCommit")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn lag_never_goes_below_zero() {
    let committed = BTreeMap::from([(TopicPartition::new("t", 0), 12)]);
    let ends = BTreeMap::from([(TopicPartition::new("t", 0), 10)]);
    assert_eq!(lag(&committed, &ends)[0].lag, 0);
}

/// `billing` with the status a pass over [`cluster`]`("Stable", 1)` writes.
fn observed_group() -> Value {
    let mut object = group_json(None);
    object["status"] = json!({"observedGeneration": 2, "state": "Stable", "memberCount": 1,
        "members": [{"memberId": "m-0", "clientId": "app", "clientHost": "/10.0.0.1"}],
        "lag": [{"topic": "orders", "partition": 0, "committedOffset": 5, "highWatermark": 8, "lag": 3}],
        "totalLag": 3, "lastAppliedResetRequestId": "r0"});
    object
}

#[tokio::test]
async fn an_unreachable_cluster_is_said_in_status_and_backs_off() {
    let fake = cluster("Stable", 1);
    fake.with_state(|s| s.unreachable = true);
    let (ctx, server) = Context::test_with_admin(Arc::new(fake.clone()));
    let object = observed_group();
    let stored = object.clone();
    let scenario = server.run(|mut server: ApiServerVerifier| async move {
        server.expect(Method::GET, CLUSTER).await.respond(
            StatusCode::OK,
            &json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "KafkaCluster",
                "metadata": {"name": "demo", "namespace": "streaming"}, "spec": {}}),
        );
        let patch = server
            .expect_apply(&format!("{GROUPS}/billing/status"))
            .await;
        let status = &patch.body["status"];
        let ready = condition(status, "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "KafkaUnavailable");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .ends_with("connection refused"),
            "{ready}"
        );
        assert_eq!(status["totalLag"], 3, "as last observed");
        let mut answer = stored;
        answer["status"] = status.clone();
        patch.respond(StatusCode::OK, &answer);
    });
    let object: ConsumerGroup = serde_json::from_value(object).unwrap();
    let error = reconcile(Arc::new(object), ctx).await.unwrap_err();
    scenario.finish().await;
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn a_group_whose_cluster_is_gone_keeps_no_lag() {
    let (ctx, server) = Context::test();
    let object = observed_group();
    let stored = object.clone();
    let scenario = server.run(|mut server: ApiServerVerifier| async move {
        server
            .expect(Method::GET, CLUSTER)
            .await
            .respond_not_found();
        let patch = server
            .expect_apply(&format!("{GROUPS}/billing/status"))
            .await;
        let status = &patch.body["status"];
        assert_eq!(condition(status, "Ready")["reason"], "ClusterNotFound");
        for gone in ["state", "members", "lag"] {
            assert_eq!(status.get(gone), None, "{gone}: {status}");
        }
        assert_eq!(status["memberCount"], 0);
        assert_eq!(status["totalLag"], 0);
        assert_eq!(
            status["lastAppliedResetRequestId"], "r0",
            "kept: it was applied"
        );
        let mut answer = stored;
        answer["status"] = status.clone();
        patch.respond(StatusCode::OK, &answer);
    });
    let object: ConsumerGroup = serde_json::from_value(object).unwrap();
    let action = reconcile(Arc::new(object), ctx).await.unwrap();
    scenario.finish().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}
