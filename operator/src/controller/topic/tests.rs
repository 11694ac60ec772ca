//! Reconcile scenarios of the Topic controller: the scripted API server checks each
//! Kubernetes request (method, path, body) and the fake cluster records each Kafka call.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::{reconcile, FINALIZER};
use crate::crd::Topic;
use crate::fixtures::{ApiServerVerifier, Exchange};
use crate::kafka::fake::FakeKafka;
use crate::Context;

const TOPICS: &str = "/apis/runnel.dev/v1alpha1/namespaces/streaming/topics";
const CLUSTER: &str = "/apis/runnel.dev/v1alpha1/namespaces/streaming/kafkaclusters/demo";
const BOOTSTRAP: &str = "demo-bootstrap.streaming.svc:9092";

/// `orders` on cluster `demo`: 3 partitions, `retention.ms=1000`, finalizer present.
fn topic_json() -> Value {
    json!({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": "streaming", "uid": "u-orders", "generation": 1,
            "creationTimestamp": "2023-11-14T00:00:00Z", "finalizers": [FINALIZER]},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 3, "config": {"retention.ms": "1000"}}
    })
}

fn topic(value: &Value) -> Topic {
    serde_json::from_value(value.clone()).unwrap()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

async fn expect_topic_list(server: &mut ApiServerVerifier, items: Vec<Value>) {
    server.expect(Method::GET, TOPICS).await.respond(
        StatusCode::OK,
        &json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "TopicList", "metadata": {}, "items": items}),
    );
}

async fn expect_cluster(server: &mut ApiServerVerifier, exists: bool) {
    if exists {
        expect_cluster_with(server, json!({})).await;
    } else {
        server
            .expect(Method::GET, CLUSTER)
            .await
            .respond_not_found();
    }
}

/// Answers the GET of the `KafkaCluster` with one of spec `spec`.
async fn expect_cluster_with(server: &mut ApiServerVerifier, spec: Value) {
    server.expect(Method::GET, CLUSTER).await.respond(
        StatusCode::OK,
        &json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "KafkaCluster",
            "metadata": {"name": "demo", "namespace": "streaming"}, "spec": spec,
            "status": {"bootstrapServers": BOOTSTRAP}}),
    );
}

/// Takes the status apply, checks its envelope and answers with the stored object.
async fn expect_status(server: &mut ApiServerVerifier, object: &Value) -> Value {
    let patch: Exchange = server
        .expect_apply(&format!("{TOPICS}/orders/status"))
        .await;
    assert_eq!(patch.body["apiVersion"], "runnel.dev/v1alpha1");
    assert_eq!(patch.body["kind"], "Topic");
    let status = patch.body["status"].clone();
    let mut stored = object.clone();
    stored["status"] = status.clone();
    patch.respond(StatusCode::OK, &stored);
    status
}

/// Takes the Warning Event on `orders` and checks its reason; returns its note.
async fn expect_warning(server: &mut ApiServerVerifier, reason: &str) -> String {
    let post = server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/streaming/events",
        )
        .await;
    assert_eq!(post.body["type"], "Warning");
    assert_eq!(post.body["reason"], reason);
    assert_eq!(post.body["regarding"]["kind"], "Topic");
    assert_eq!(post.body["regarding"]["name"], "orders");
    let note = post.body["note"].as_str().unwrap_or_default().to_string();
    post.respond_echo(json!({}));
    note
}

/// Takes the JSON patch that removes the finalizer.
async fn expect_finalizer_removed(server: &mut ApiServerVerifier, object: &Value) {
    let patch = server
        .expect(Method::PATCH, &format!("{TOPICS}/orders"))
        .await;
    assert_eq!(
        patch.body,
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}])
    );
    patch.respond(StatusCode::OK, object);
}

async fn run(
    object: &Value,
    fake: &FakeKafka,
    script: impl FnOnce(ApiServerVerifier) -> futures::future::BoxFuture<'static, ()>,
) -> Action {
    let (ctx, server): (Arc<Context>, _) = Context::test_with_admin(Arc::new(fake.clone()));
    let scenario = server.run(script);
    let result = reconcile(Arc::new(topic(object)), ctx).await;
    scenario.finish().await;
    result.unwrap()
}

#[tokio::test]
async fn a_new_topic_gets_the_finalizer_first() {
    let mut object = topic_json();
    object["metadata"]["finalizers"] = json!(null);
    let fake = FakeKafka::default();
    let stored = object.clone();
    let action = run(&object, &fake, |mut server| {
        Box::pin(async move {
            let patch = server
                .expect(Method::PATCH, &format!("{TOPICS}/orders"))
                .await;
            assert_eq!(
                patch.body,
                json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
            );
            patch.respond(StatusCode::OK, &stored);
        })
    })
    .await;
    assert_eq!(action, Action::await_change());
    assert!(
        fake.take_calls().is_empty(),
        "no Kafka call before the finalizer is on"
    );
}

#[tokio::test]
async fn a_missing_topic_is_created_and_reported() {
    let object = topic_json();
    let fake = FakeKafka::default();
    let stored = object.clone();
    let action = run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            assert_eq!(status["observedGeneration"], 1);
            assert_eq!(status["partitions"], 3);
            assert_eq!(status["replicationFactor"], 1);
            assert_eq!(status["topicId"], "id-orders");
            assert_eq!(status["config"], json!({"retention.ms": "1000"}));
            assert_eq!(condition(&status, "Ready")["status"], "True");
            assert_eq!(condition(&status, "Ready")["reason"], "InSync");
            assert_eq!(condition(&status, "ResourceConflict")["status"], "False");
        })
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(120)));
    assert_eq!(
        fake.take_calls(),
        [
            format!("connect {BOOTSTRAP}"),
            "Metadata Some([\"orders\"])".into(),
            "CreateTopics orders partitions=3 rf=None config={\"retention.ms\": \"1000\"}".into(),
            "Metadata Some([\"orders\"])".into(),
            "DescribeConfigs orders".into(),
        ]
    );
}

/// A topic this object manages (status.topicId set) with the given cluster state.
fn managed_topic(partitions: i32) -> Value {
    let mut object = topic_json();
    object["spec"]["partitions"] = json!(partitions);
    object["status"] = json!({"topicId": "id-orders", "observedGeneration": 1});
    object
}

#[tokio::test]
async fn partitions_grow_and_config_drift_is_reverted() {
    let object = managed_topic(6);
    let fake = FakeKafka::default();
    fake.with_topic(
        "orders",
        3,
        &[("retention.ms", "5"), ("segment.bytes", "1024")],
    );
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            assert_eq!(status["partitions"], 6);
            assert_eq!(status["config"], json!({"retention.ms": "1000"}));
            assert_eq!(condition(&status, "Ready")["reason"], "InSync");
        })
    })
    .await;
    let calls = fake.take_calls();
    assert_eq!(
        calls[3..5],
        [
            "CreatePartitions orders 6".to_string(),
            "IncrementalAlterConfigs orders [\"set retention.ms=1000\", \"delete segment.bytes\"]"
                .into(),
        ],
        "{calls:?}"
    );
    let on_cluster = fake.topic("orders").unwrap();
    assert_eq!(on_cluster.partitions, 6);
    assert_eq!(on_cluster.overrides.len(), 1);
}

#[tokio::test]
async fn a_smaller_spec_never_shrinks_the_topic() {
    let object = managed_topic(2);
    let fake = FakeKafka::default();
    fake.with_topic("orders", 4, &[("retention.ms", "1000")]);
    let stored = object.clone();
    let action = run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            assert_eq!(status["partitions"], 4);
            assert_eq!(condition(&status, "Ready")["status"], "False");
            assert_eq!(condition(&status, "Ready")["reason"], "PartitionsNotShrunk");
            expect_warning(&mut server, "PartitionsNotShrunk").await;
        })
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let calls = fake.take_calls();
    assert!(
        calls.iter().all(|c| !c.starts_with("CreatePartitions")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_steady_topic_costs_no_status_write() {
    let fake = FakeKafka::default();
    fake.with_topic("orders", 3, &[("retention.ms", "1000")]);
    // First pass from an empty status, to learn the settled status.
    let object = managed_topic(3);
    let stored = object.clone();
    let settled = Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = Arc::clone(&settled);
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            *keep.lock().unwrap() = expect_status(&mut server, &stored).await;
        })
    })
    .await;
    let mut object = object;
    object["status"] = settled.lock().unwrap().clone();
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored]).await;
            expect_cluster(&mut server, true).await;
        })
    })
    .await;
    let calls = fake.take_calls();
    assert!(
        calls.iter().all(|c| c.starts_with("Metadata")
            || c.starts_with("Describe")
            || c.starts_with("connect")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn the_younger_of_two_claimants_gets_a_conflict_and_touches_nothing() {
    let object = topic_json();
    let mut older = topic_json();
    older["metadata"]["name"] = json!("orders-legacy");
    older["metadata"]["creationTimestamp"] = json!("2023-01-01T00:00:00Z");
    older["spec"]["topicName"] = json!("orders");
    let fake = FakeKafka::default();
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![older, stored.clone()]).await;
            let status = expect_status(&mut server, &stored).await;
            let conflict = condition(&status, "ResourceConflict");
            assert_eq!(conflict["status"], "True");
            assert_eq!(conflict["reason"], "OlderTopicOwnsName");
            assert!(conflict["message"]
                .as_str()
                .unwrap()
                .contains("orders-legacy"));
            assert_eq!(condition(&status, "Ready")["reason"], "ResourceConflict");
            assert_eq!(status.get("topicId"), None);
            let note = expect_warning(&mut server, "ResourceConflict").await;
            assert!(note.contains("orders-legacy"), "{note}");
        })
    })
    .await;
    assert!(fake.take_calls().is_empty());
}

#[tokio::test]
async fn a_differing_preexisting_topic_is_not_adopted() {
    let object = topic_json();
    let fake = FakeKafka::default();
    fake.with_topic("orders", 5, &[]);
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            let ready = condition(&status, "Ready");
            assert_eq!(ready["reason"], "AdoptionRefused");
            assert_eq!(
                ready["message"],
                "topic orders existed before this object and differs from it: it has 5 partitions, \
                 the spec asks for 3; config retention.ms is not set, the spec asks for \"1000\""
            );
            assert_eq!(status["partitions"], 5, "status shows what the cluster has");
            assert_eq!(status.get("topicId"), None, "not managed");
            let note = expect_warning(&mut server, "AdoptionRefused").await;
            assert!(note.contains("it has 5 partitions"), "{note}");
        })
    })
    .await;
    assert_eq!(
        fake.take_calls().len(),
        3,
        "connect, Metadata, DescribeConfigs only"
    );
    assert_eq!(fake.topic("orders").unwrap().partitions, 5);
}

fn deleting(mut object: Value, policy: &str) -> Value {
    object["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:00:00Z");
    object["spec"]["deletionPolicy"] = json!(policy);
    object["status"] = json!({"topicId": "id-orders"});
    object
}

#[tokio::test]
async fn deleting_with_retain_keeps_the_topic_and_releases_the_finalizer() {
    let object = deleting(topic_json(), "Retain");
    let fake = FakeKafka::default();
    fake.with_topic("orders", 3, &[]);
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move { expect_finalizer_removed(&mut server, &stored).await })
    })
    .await;
    assert!(fake.take_calls().is_empty());
    assert!(fake.topic("orders").is_some());
}

#[tokio::test]
async fn deleting_with_delete_deletes_the_topic_then_releases_the_finalizer() {
    let object = deleting(topic_json(), "Delete");
    let fake = FakeKafka::default();
    fake.with_topic("orders", 3, &[]);
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            expect_finalizer_removed(&mut server, &stored).await;
        })
    })
    .await;
    assert_eq!(
        fake.take_calls(),
        [
            format!("connect {BOOTSTRAP}"),
            "Metadata Some([\"orders\"])".into(),
            "DeleteTopics orders".into()
        ]
    );
    assert!(fake.topic("orders").is_none());
}

#[tokio::test]
async fn the_finalizer_is_released_when_the_cluster_is_gone() {
    let object = deleting(topic_json(), "Delete");
    let fake = FakeKafka::default();
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, false).await;
            expect_finalizer_removed(&mut server, &stored).await;
        })
    })
    .await;
    assert!(fake.take_calls().is_empty(), "nothing to connect to");
}

#[tokio::test]
async fn a_rejected_config_becomes_a_condition_not_an_error() {
    let mut object = topic_json();
    object["spec"]["config"] = json!({"invalid.config": "1"});
    let fake = FakeKafka::default();
    let stored = object.clone();
    let action = run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            let ready = condition(&status, "Ready");
            assert_eq!(ready["reason"], "KafkaRejected");
            assert!(ready["message"]
                .as_str()
                .unwrap()
                .contains("InvalidConfig (Kafka error 40)"));
            let note = expect_warning(&mut server, "KafkaRejected").await;
            assert!(note.contains("InvalidConfig"), "{note}");
        })
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn an_unreachable_cluster_is_said_in_status_and_backs_off() {
    let mut object = managed_topic(3);
    object["status"]["partitions"] = json!(3);
    let fake = FakeKafka::default();
    fake.with_state(|s| s.unreachable = true);
    let (ctx, server) = Context::test_with_admin(Arc::new(fake.clone()));
    let stored = object.clone();
    let scenario = server.run(|mut server| async move {
        expect_topic_list(&mut server, vec![stored.clone()]).await;
        expect_cluster(&mut server, true).await;
        let status = expect_status(&mut server, &stored).await;
        let ready = condition(&status, "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "KafkaUnavailable");
        assert_eq!(
            ready["message"],
            format!(
                "the topic could not be observed: the Kafka call to connect to {BOOTSTRAP} \
                 failed: connecting to {BOOTSTRAP} failed: connection refused"
            )
        );
        assert_eq!(
            status["topicId"], "id-orders",
            "kept: the finalizer needs it"
        );
        assert_eq!(status["partitions"], 3, "as last observed");
    });
    let error = reconcile(Arc::new(topic(&object)), ctx).await.unwrap_err();
    scenario.finish().await;
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(error.label(), "kafka");
}

#[tokio::test]
async fn a_changed_replication_factor_moves_partitions_until_done() {
    // `orders` has replication factor 1 on brokers 0, 1, 2; the spec asks for 2.
    let mut object = managed_topic(3);
    object["spec"]["replicationFactor"] = json!(2);
    let fake = FakeKafka::default();
    fake.with_topic("orders", 3, &[("retention.ms", "1000")])
        .with_state(|s| {
            for p in 0..3 {
                s.assignments
                    .insert(crate::kafka::TopicPartition::new("orders", p), vec![p]);
            }
        });
    let stored = object.clone();
    let action = run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            let ready = condition(&status, "Ready");
            assert_eq!(
                (&ready["status"], &ready["reason"]),
                (&json!("False"), &json!("Reassigning"))
            );
            assert_eq!(condition(&status, "Reassigning")["status"], "True");
            assert_eq!(status["reassigningPartitions"], 3);
        })
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(3)));
    let calls = fake.take_calls();
    let moves: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("AlterPartitionReassignments"))
        .collect();
    assert_eq!(moves.len(), 1, "{calls:?}");
    for (p, placement) in fake.finish_moves().placement().values().enumerate() {
        assert_eq!(placement.len(), 2, "{placement:?}");
        assert_eq!(
            placement[0],
            i32::try_from(p).unwrap(),
            "the leader stays first"
        );
    }

    // Done: Ready again, the Reassigning condition turns False.
    let mut object = object.clone();
    object["status"] = json!({"topicId": "id-orders", "observedGeneration": 1,
        "reassigningPartitions": 3,
        "conditions": [{"type": "Reassigning", "status": "True", "reason": "ReplicationFactorChange",
            "message": "", "lastTransitionTime": "2023-11-14T00:00:00Z"}]});
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            assert_eq!(condition(&status, "Ready")["reason"], "InSync");
            assert_eq!(condition(&status, "Reassigning")["status"], "False");
            assert_eq!(status["replicationFactor"], 2);
            assert_eq!(status.get("reassigningPartitions"), None);
        })
    })
    .await;
}

#[tokio::test]
async fn a_replication_factor_change_moves_as_many_partitions_as_the_cluster_allows() {
    // Five partitions at replication factor 1, asked for 2, on a cluster that moves two
    // partitions at a time.
    let mut object = managed_topic(5);
    object["spec"]["replicationFactor"] = json!(2);
    let fake = FakeKafka::default();
    fake.with_topic("orders", 5, &[("retention.ms", "1000")])
        .with_state(|s| {
            for p in 0..5 {
                s.assignments
                    .insert(crate::kafka::TopicPartition::new("orders", p), vec![p % 3]);
            }
        });
    let moving = |fake: &FakeKafka| {
        let mut moving = 0;
        fake.with_state(|s| moving = s.moving.len());
        moving
    };
    for expected in [2, 2, 1] {
        let stored = object.clone();
        run(&object, &fake, |mut server| {
            Box::pin(async move {
                expect_topic_list(&mut server, vec![stored.clone()]).await;
                expect_cluster_with(
                    &mut server,
                    json!({"rebalance": {"maxPartitionsMoving": 2}}),
                )
                .await;
                let status = expect_status(&mut server, &stored).await;
                assert_eq!(condition(&status, "Ready")["reason"], "Reassigning");
            })
        })
        .await;
        assert_eq!(moving(&fake), expected, "{:?}", fake.take_calls());
        fake.finish_moves();
    }
    assert!(fake.placement().values().all(|r| r.len() == 2));
}

#[tokio::test]
async fn a_new_replica_goes_where_the_brokers_report_fewest_bytes() {
    // `orders-0` on broker 0. Brokers 0 and 1 hold 1 GB each, broker 2 three empty
    // partitions: by replica counts broker 1 is emptiest, by bytes broker 2.
    let mut object = managed_topic(1);
    object["spec"]["replicationFactor"] = json!(2);
    let fake = FakeKafka::default();
    fake.with_topic("orders", 1, &[("retention.ms", "1000")])
        .with_topic("big", 2, &[])
        .with_topic("small", 3, &[])
        .with_state(|s| {
            let tp = crate::kafka::TopicPartition::new;
            s.assignments.insert(tp("orders", 0), vec![0]);
            for p in 0..2 {
                s.assignments.insert(tp("big", p), vec![p]);
                s.sizes.insert(tp("big", p), 1 << 30);
            }
            for p in 0..3 {
                s.assignments.insert(tp("small", p), vec![2]);
            }
        });
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            expect_status(&mut server, &stored).await;
        })
    })
    .await;
    let calls = fake.take_calls();
    for broker in 0..3 {
        let asked = format!("DescribeLogDirs demo-{broker}.demo-brokers.streaming.svc:9092");
        assert!(calls.contains(&asked), "{asked} missing from {calls:?}");
    }
    let placement = fake.finish_moves().placement();
    assert_eq!(
        placement[&crate::kafka::TopicPartition::new("orders", 0)],
        [0, 2]
    );
}

#[tokio::test]
async fn a_replication_factor_above_the_live_brokers_is_refused() {
    let mut object = managed_topic(3);
    object["spec"]["replicationFactor"] = json!(5);
    let fake = FakeKafka::default();
    fake.with_topic("orders", 3, &[("retention.ms", "1000")]);
    let stored = object.clone();
    run(&object, &fake, |mut server| {
        Box::pin(async move {
            expect_topic_list(&mut server, vec![stored.clone()]).await;
            expect_cluster(&mut server, true).await;
            let status = expect_status(&mut server, &stored).await;
            let ready = condition(&status, "Ready");
            assert_eq!(ready["reason"], "ReplicationFactorImpossible");
            assert!(
                ready["message"]
                    .as_str()
                    .unwrap()
                    .contains("only 3 brokers"),
                "{ready}"
            );
            expect_warning(&mut server, "ReplicationFactorImpossible").await;
        })
    })
    .await;
    assert!(fake
        .take_calls()
        .iter()
        .all(|c| !c.starts_with("AlterPartitionReassignments")));
}
