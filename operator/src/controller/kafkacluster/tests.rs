//! Reconcile scenarios against the scripted API server: each asserts the exact sequence
//! of requests (method, path) and the parts of each body that carry the decision. The
//! metadata quorum's scenarios (voters, their scale-down refusal, the cluster's view in
//! status) are in `tests/quorum.rs`.

mod quorum;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use kube::runtime::controller::Action;

use super::{error_policy, reconcile};
use crate::broker_admin::FakeBrokerAdmin;
use crate::controller::observed;
use crate::crd::{KafkaCluster, KafkaClusterStatus};
use crate::fixtures::{ApiServerVerifier, TEST_NOW_SECONDS};
use crate::kafka::fake::FakeKafka;
use crate::metrics::Metrics;
use crate::resources::quorum::Voters;
use crate::resources::statefulset;
use crate::resources::test_cluster::demo;
use crate::{Context, Error};

const NS: &str = "/api/v1/namespaces/streaming";
const APPS: &str = "/apis/apps/v1/namespaces/streaming";
const STATUS_PATH: &str =
    "/apis/runnel.dev/v1alpha1/namespaces/streaming/kafkaclusters/demo/status";
const UID: &str = "0b6e5b8e-5f3c-4b8e-9d6c-1d2f3a4b5c6d";

fn owner_uid(body: &Value) -> &Value {
    &body["metadata"]["ownerReferences"][0]["uid"]
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Answers a status apply with the stored object, as the API server does.
fn respond_stored_cluster(patch: crate::fixtures::Exchange) {
    let stored = json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": "demo", "namespace": "streaming", "uid": UID, "generation": 1},
        "spec": {}, "status": patch.body["status"].clone()});
    patch.respond(StatusCode::OK, &stored);
}

/// A broker pod made from the current revision (`demo-1`).
fn pod(name: &str, phase: &str, ready: bool) -> Value {
    pod_of("demo-1", name, phase, ready)
}

/// A broker pod made from StatefulSet revision `revision`.
fn pod_of(revision: &str, name: &str, phase: &str, ready: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": "streaming", "uid": format!("uid-{name}"),
            "labels": {"controller-revision-hash": revision}},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// The StatefulSet status the mock server reports after the apply.
fn sts_status(replicas: i32, ready: i32) -> Value {
    sts_status_at("demo-1", replicas, ready)
}

/// Like [`sts_status`], with pods to be made from revision `update`.
fn sts_status_at(update: &str, replicas: i32, ready: i32) -> Value {
    json!({"status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas,
        "currentRevision": "demo-1", "updateRevision": update, "observedGeneration": 1},
        "metadata": {"name": "demo", "namespace": "streaming", "generation": 1}})
}

/// The requests of a pass that gets as far as the pod list: GET sts, the five applies
/// (checked), the pod list. `spec_replicas` is the cluster's `spec.replicas`,
/// `existing_replicas` what the GET finds (`None`: 404).
async fn children_pass(
    server: &mut ApiServerVerifier,
    spec_replicas: i32,
    existing_replicas: Option<i32>,
    applied_replicas: i32,
    ready: i32,
    pods: Vec<Value>,
) {
    let sts_reply = sts_status(applied_replicas, ready);
    children_pass_with(
        server,
        spec_replicas,
        existing_replicas,
        applied_replicas,
        sts_reply,
        pods,
    )
    .await;
}

/// [`children_pass`] with the StatefulSet status the apply answers given.
async fn children_pass_with(
    server: &mut ApiServerVerifier,
    spec_replicas: i32,
    existing_replicas: Option<i32>,
    applied_replicas: i32,
    sts_reply: Value,
    pods: Vec<Value>,
) {
    children_applies(
        server,
        spec_replicas,
        existing_replicas,
        applied_replicas,
        sts_reply,
    )
    .await;
    pods_list(server, pods).await;
}

/// The first part of a pass: GET sts and the five applies (checked), up to the PDB.
/// The GET finds a StatefulSet of `existing_replicas` that names no voters (`None`: 404).
async fn children_applies(
    server: &mut ApiServerVerifier,
    spec_replicas: i32,
    existing_replicas: Option<i32>,
    applied_replicas: i32,
    sts_reply: Value,
) {
    let existing = existing_replicas.map(|replicas| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "demo", "namespace": "streaming"},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}})
    });
    children_applies_over(server, spec_replicas, existing, applied_replicas, sts_reply).await;
}

/// A StatefulSet of `replicas` brokers as the operator made it for a cluster created
/// with `created` brokers (so with `min(created, 3)` voters).
fn existing_sts(replicas: i32, created: i32) -> Value {
    let mut kc = demo();
    kc.spec.replicas = replicas;
    let mut sts = serde_json::to_value(statefulset::desired_statefulset(
        &kc,
        Voters::initial(created),
    ))
    .unwrap();
    sts["apiVersion"] = json!("apps/v1");
    sts["kind"] = json!("StatefulSet");
    sts
}

/// The `--controller-quorum-voters` value of an applied StatefulSet.
fn voters_arg(sts: &Value) -> String {
    let args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let at = args
        .iter()
        .position(|a| a == "--controller-quorum-voters")
        .unwrap();
    args[at + 1].as_str().unwrap().to_string()
}

/// [`children_applies`] where the GET finds `existing` (`None`: 404).
async fn children_applies_over(
    server: &mut ApiServerVerifier,
    spec_replicas: i32,
    existing: Option<Value>,
    applied_replicas: i32,
    sts_reply: Value,
) -> Value {
    let get = server
        .expect(Method::GET, &format!("{APPS}/statefulsets/demo"))
        .await;
    match existing {
        None => get.respond_not_found(),
        Some(sts) => get.respond(StatusCode::OK, &sts),
    }

    let cm = server
        .expect_apply(&format!("{NS}/configmaps/demo-config"))
        .await;
    assert_eq!(cm.body["kind"], "ConfigMap");
    assert_eq!(owner_uid(&cm.body), UID);
    assert_eq!(
        cm.body["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    assert!(cm.body["data"]["broker.toml"]
        .as_str()
        .unwrap()
        .starts_with("# Generated by runnel-operator"));
    cm.respond_echo(json!({}));

    let headless = server
        .expect_apply(&format!("{NS}/services/demo-brokers"))
        .await;
    assert_eq!(headless.body["spec"]["clusterIP"], "None");
    assert_eq!(headless.body["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(owner_uid(&headless.body), UID);
    headless.respond_echo(json!({}));

    let bootstrap = server
        .expect_apply(&format!("{NS}/services/demo-bootstrap"))
        .await;
    assert_eq!(bootstrap.body["spec"]["ports"][0]["port"], 9092);
    assert_eq!(
        bootstrap.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "runnel-operator"
    );
    bootstrap.respond_echo(json!({}));

    let sts = server
        .expect_apply(&format!("{APPS}/statefulsets/demo"))
        .await;
    assert_eq!(sts.body["spec"]["replicas"], applied_replicas);
    assert_eq!(sts.body["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(sts.body["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts.body["spec"]["serviceName"], "demo-brokers");
    assert_eq!(owner_uid(&sts.body), UID);
    let applied_sts = sts.body.clone();
    sts.respond_echo(sts_reply);

    let pdb = server
        .expect_apply("/apis/policy/v1/namespaces/streaming/poddisruptionbudgets/demo")
        .await;
    // One broker at a time; none when the spec asks for one.
    let max_unavailable = if spec_replicas > 1 { 1 } else { 0 };
    assert_eq!(pdb.body["spec"]["maxUnavailable"], max_unavailable);
    pdb.respond_echo(json!({}));
    applied_sts
}

/// The pod list of a pass, answered with `pods`.
async fn pods_list(server: &mut ApiServerVerifier, pods: Vec<Value>) {
    let list = server.expect(Method::GET, &format!("{NS}/pods")).await;
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Fcomponent%3Dbroker"),
        "{}",
        list.query
    );
    assert!(
        list.query.contains("app.kubernetes.io%2Finstance%3Ddemo"),
        "{}",
        list.query
    );
    list.respond(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}),
    );
}

#[tokio::test]
async fn new_cluster_applies_children_and_reports_progress() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let pods = vec![
            pod("demo-0", "Running", true),
            pod("demo-1", "Running", false),
        ];
        children_pass(&mut server, 3, None, 3, 1, pods).await;

        let patch = server.expect_apply(STATUS_PATH).await;
        assert_eq!(patch.body["apiVersion"], "runnel.dev/v1alpha1");
        assert_eq!(patch.body["kind"], "KafkaCluster");
        let status = &patch.body["status"];
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["readyBrokers"], 1);
        assert_eq!(
            status["bootstrapServers"],
            "demo-bootstrap.streaming.svc:9092"
        );
        assert_eq!(
            status["brokers"],
            json!([{"id": 0, "pod": "demo-0", "state": "Ready"},
                {"id": 1, "pod": "demo-1", "state": "Starting", "neverReady": true},
                {"id": 2, "pod": "demo-2", "state": "Missing", "neverReady": true}])
        );
        assert_eq!(condition(status, "Ready")["status"], "False");
        assert_eq!(condition(status, "Ready")["reason"], "BrokersNotReady");
        assert_eq!(condition(status, "Ready")["message"], "1/3 brokers ready");
        assert_eq!(condition(status, "Progressing")["reason"], "RollingOut");
        assert_eq!(condition(status, "Degraded")["status"], "False");
        assert_eq!(
            condition(status, "Ready")["lastTransitionTime"],
            "2023-11-14T22:13:20Z"
        );
        // One cluster id per KafkaCluster (from its uid); ordinals 0..2 vote. No broker
        // answered DescribeCluster (this context's Kafka refuses): no controller, no `live`.
        assert_eq!(status["clusterId"], "C25bjl88S46dbB0vOktcbQ");
        assert_eq!(status["quorumVoters"], json!([0, 1, 2]));
        assert_eq!(status.get("controllerId"), None);
        respond_stored_cluster(patch);
    });

    let result = reconcile(Arc::new(demo()), ctx).await;
    scenario.finish().await;
    assert_eq!(
        result.unwrap(),
        // No broker answered DescribeCluster here: asked again soon.
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
}

/// The status a settled 3-broker `demo` has, with transition times long past.
fn settled_status() -> KafkaClusterStatus {
    let since = TEST_NOW_SECONDS - 3600;
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": 1,
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::from_second(since).unwrap().to_string()})
    };
    serde_json::from_value(json!({
        "conditions": [
            condition("Degraded", "False", "AsExpected", ""),
            condition("Progressing", "False", "Stable", "every broker runs the current pod template"),
            condition("Ready", "True", "AllBrokersReady", "3/3 brokers ready"),
        ],
        "observedGeneration": 1,
        "readyBrokers": 3,
        "bootstrapServers": "demo-bootstrap.streaming.svc:9092",
        "brokers": [{"id": 0, "pod": "demo-0", "state": "Ready"}, {"id": 1, "pod": "demo-1", "state": "Ready"},
            {"id": 2, "pod": "demo-2", "state": "Ready"}],
        "clusterId": "C25bjl88S46dbB0vOktcbQ",
        "quorumVoters": [0, 1, 2],
    }))
    .unwrap()
}

#[tokio::test]
async fn settled_cluster_reapplies_children_but_leaves_status_alone() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let pods = (0..3)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect();
        children_pass(&mut server, 3, Some(3), 3, 3, pods).await;
        // No status patch: the computed status equals the stored one.
    });

    let mut kc = demo();
    kc.status = Some(settled_status());
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert_eq!(
        result.unwrap(),
        // No broker answered DescribeCluster here: asked again soon.
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_service_monitor_without_its_crd_is_reported_once_not_retried() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let pods = (0..3)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect();
        children_applies(&mut server, 3, Some(3), 3, sts_status(3, 3)).await;
        // What kube-apiserver answers for a group it does not serve: plain text.
        server
            .expect_apply(
                "/apis/monitoring.coreos.com/v1/namespaces/streaming/servicemonitors/demo",
            )
            .await
            .respond_text(StatusCode::NOT_FOUND, "404 page not found\n");
        pods_list(&mut server, pods).await;

        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        let degraded = condition(status, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "ServiceMonitorUnavailable");
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .contains("monitoring.coreos.com/v1"),
            "{degraded}"
        );
        assert_eq!(
            condition(status, "Ready")["status"],
            "True",
            "the brokers serve"
        );
        respond_stored_cluster(patch);

        let event = expect_warning(&mut server).await;
        assert_eq!(event["reason"], "ServiceMonitorUnavailable");
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("Prometheus Operator"),
            "{event}"
        );
    });

    let mut kc = demo();
    kc.spec.metrics.service_monitor.enabled = true;
    kc.status = Some(settled_status());
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
}

/// A context whose Kafka admin calls reach `kafka`.
fn context_with_kafka(kafka: &FakeKafka) -> (Arc<Context>, ApiServerVerifier) {
    Context::test_with_admin(Arc::new(kafka.clone()))
}

#[tokio::test]
async fn a_scale_down_below_a_replication_factor_is_refused() {
    // Replication factor 3: one broker cannot hold the partitions' replicas.
    let kafka = FakeKafka::default();
    kafka.with_topic("orders", 4, &[]).with_state(|s| {
        s.topics.get_mut("orders").unwrap().replication_factor = 3;
    });
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = (0..3)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect();
        children_pass(&mut server, 1, Some(3), 3, 3, pods).await;

        let patch = server.expect_apply(STATUS_PATH).await;
        let degraded = condition(&patch.body["status"], "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "ScaleDownImpossible");
        assert_eq!(
            degraded["message"],
            "keeping 3 brokers, not 1: partition orders-0 has 3 replicas but only 1 brokers \
             would remain; lower that replication factor (or delete the topic) first"
        );
        let ready = condition(&patch.body["status"], "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ScaleDownBlocked");
        assert_eq!(
            ready["message"],
            "3/3 brokers ready; the scale-down to 1 is held"
        );
        respond_stored_cluster(patch);

        let event = expect_warning(&mut server).await;
        assert_eq!(event["reason"], "ScaleDownImpossible");
    });

    let mut kc = demo();
    kc.spec.replicas = 1;
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    let calls = kafka.take_calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("AlterPartitionReassignments")),
        "nothing moves: {calls:?}"
    );
}

#[tokio::test]
async fn a_scale_down_drains_the_brokers_that_go_before_the_statefulset_shrinks() {
    // Five brokers (voters 0..2), replication factor 2 spread over all five; going to 3
    // moves the replicas of brokers 3 and 4 first.
    let kafka = FakeKafka::default();
    kafka.with_topic("orders", 5, &[]).with_state(|s| {
        s.topics.get_mut("orders").unwrap().replication_factor = 2;
        for p in 0..5 {
            let tp = crate::kafka::TopicPartition::new("orders", p);
            s.assignments.insert(tp.clone(), vec![p, (p + 1) % 5]);
            s.sizes.insert(tp, 1000);
        }
        s.cluster = Some(crate::kafka::ClusterDescription {
            cluster_id: "c".into(),
            controller_id: Some(0),
            brokers: (0..5)
                .map(|id| crate::kafka::ClusterBroker {
                    id,
                    fenced: false,
                    rack: None,
                })
                .collect(),
        });
    });
    let five_pods = || -> Vec<Value> {
        (0..5)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect()
    };
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(move |mut server| async move {
        let existing = Some(existing_sts(5, 5));
        children_applies_over(&mut server, 3, existing, 5, sts_status(5, 5)).await;
        pods_list(&mut server, five_pods()).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        let degraded = condition(status, "Degraded");
        assert_eq!(degraded["status"], "False", "{degraded}");
        let ready = condition(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("Draining"))
        );
        let rebalancing = condition(status, "Rebalancing");
        assert_eq!(
            (&rebalancing["status"], &rebalancing["reason"]),
            (&json!("True"), &json!("Draining"))
        );
        let rebalance = &status["rebalance"];
        assert_eq!(rebalance["drainingBrokers"], json!([3, 4]), "{rebalance}");
        assert!(
            rebalance["partitionsMoving"].as_i64().unwrap() >= 3,
            "{rebalance}"
        );
        assert!(
            rebalance["bytesLeft"].as_i64().unwrap() >= 4000,
            "{rebalance}"
        );
        respond_stored_cluster(patch);
    });
    let mut kc = demo();
    kc.status = Some(settled_status());
    let result = reconcile(Arc::new(kc.clone()), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(kafka
        .take_calls()
        .iter()
        .any(|c| c.starts_with("AlterPartitionReassignments")));
    let placement = kafka.finish_moves().placement();
    assert!(
        placement
            .values()
            .all(|r| r.len() == 2 && r.iter().all(|b| *b < 3)),
        "{placement:?}"
    );

    // Drained: the next pass shrinks the StatefulSet to 3.
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(move |mut server| async move {
        let existing = Some(existing_sts(5, 5));
        children_applies_over(&mut server, 3, existing, 3, sts_status(3, 3)).await;
        pods_list(&mut server, five_pods()).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        let degraded = condition(&patch.body["status"], "Degraded");
        assert_eq!(degraded["status"], "False", "{degraded}");
        respond_stored_cluster(patch);
    });
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn after_a_scale_up_partitions_move_to_the_new_brokers_a_batch_at_a_time() {
    // Six partitions, replication factor 2, all on brokers 0..2; brokers 3 and 4 joined.
    let kafka = FakeKafka::default();
    kafka.with_topic("orders", 6, &[]).with_state(|s| {
        s.topics.get_mut("orders").unwrap().replication_factor = 2;
        for p in 0..6 {
            let tp = crate::kafka::TopicPartition::new("orders", p);
            s.assignments.insert(tp.clone(), vec![p % 3, (p + 1) % 3]);
            s.sizes.insert(tp, 500);
        }
        s.cluster = Some(crate::kafka::ClusterDescription {
            cluster_id: "c".into(),
            controller_id: Some(0),
            brokers: (0..5)
                .map(|id| crate::kafka::ClusterBroker {
                    id,
                    fenced: false,
                    rack: None,
                })
                .collect(),
        });
    });
    let metrics = Arc::new(Metrics::new(&[super::CONTROLLER]).unwrap());
    let five_pods = || -> Vec<Value> {
        (0..5)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect()
    };
    let pass = |kafka: &FakeKafka, check: fn(&Value)| {
        let (ctx, server) =
            Context::test_with_metrics(Arc::new(kafka.clone()), Arc::clone(&metrics));
        let scenario = server.run(move |mut server| async move {
            let existing = Some(existing_sts(5, 3));
            children_applies_over(&mut server, 5, existing, 5, sts_status(5, 5)).await;
            pods_list(&mut server, five_pods()).await;
            let patch = server.expect_apply(STATUS_PATH).await;
            check(&patch.body["status"]);
            respond_stored_cluster(patch);
        });
        let mut kc = demo();
        kc.spec.replicas = 5;
        kc.status = Some(settled_status());
        async move {
            let result = reconcile(Arc::new(kc), ctx).await;
            scenario.finish().await;
            result
        }
    };

    let result = pass(&kafka, |status| {
        let rebalancing = condition(status, "Rebalancing");
        assert_eq!(
            (&rebalancing["status"], &rebalancing["reason"]),
            (&json!("True"), &json!("Balancing"))
        );
        // 12 replicas over 5 brokers: the new ones get 2 each, 4 copies of 500 bytes,
        // within one batch (at most four partitions).
        assert_eq!(status["rebalance"]["bytesLeft"], 2000, "{status}");
        assert_eq!(status["rebalance"]["partitionsPending"], 0, "{status}");
        assert_eq!(status["rebalance"].get("drainingBrokers"), None);
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(3)));
    let calls = kafka.take_calls();
    let moves: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("AlterPartitionReassignments"))
        .collect();
    assert_eq!(moves.len(), 1, "{calls:?}");
    assert!(
        calls.contains(&"DescribeLogDirs demo-4.demo-brokers.streaming.svc:9092".to_string()),
        "sizes come from every broker: {calls:?}"
    );
    let text = metrics.render();
    assert!(
        text.contains("runnel_operator_partition_reassignments_started_total 3"),
        "{text}"
    );

    // In flight: nothing more is submitted until the batch is done.
    pass(&kafka, |status| {
        assert_eq!(status["rebalance"]["partitionsMoving"], 3, "{status}");
    })
    .await
    .unwrap();
    assert!(!kafka
        .take_calls()
        .iter()
        .any(|c| c.starts_with("AlterPartitionReassignments")));

    // Done: balanced, nothing more moves.
    kafka.finish_moves();
    pass(&kafka, |status| {
        let rebalancing = condition(status, "Rebalancing");
        assert_eq!(rebalancing["reason"], "Balanced", "{status}");
        assert_eq!(status.get("rebalance"), None);
    })
    .await
    .unwrap();
    // The four copies of 500 bytes, counted once the moves are gone.
    let text = metrics.render();
    assert!(
        text.contains("runnel_operator_partition_reassignment_bytes_moved_total{kafkacluster=\"demo\",namespace=\"streaming\"} 2000"),
        "{text}"
    );
    let placement = kafka.placement();
    for broker in 0..5 {
        let held = placement.values().filter(|r| r.contains(&broker)).count();
        assert!((2..=3).contains(&held), "broker {broker}: {placement:?}");
        let leads = placement.values().filter(|r| r[0] == broker).count();
        assert!(
            (1..=2).contains(&leads),
            "broker {broker} leads {leads}: {placement:?}"
        );
    }
}

/// `demo` scaled up from 1 to 3 whose new brokers never ran (`neverReady` as given; no
/// pod), now asked to go back to 1, with no broker reachable but demo-0.
fn undone_scale_up(never_ready: bool) -> KafkaCluster {
    let mut kc = demo();
    kc.spec.replicas = 1;
    let mut status = serde_json::to_value(settled_status()).unwrap();
    status["brokers"] = json!([
        {"id": 0, "pod": "demo-0", "state": "Ready"},
        {"id": 1, "pod": "demo-1", "state": "Missing", "neverReady": never_ready},
        {"id": 2, "pod": "demo-2", "state": "Missing", "neverReady": never_ready},
    ]);
    // Created with one broker: one voter.
    status["quorumVoters"] = json!([0]);
    kc.status = Some(serde_json::from_value(status).unwrap());
    kc
}

#[tokio::test]
async fn a_scale_up_whose_brokers_never_ran_can_be_undone() {
    let kafka = FakeKafka::default();
    kafka.with_state(|s| s.unreachable = true);
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = vec![pod("demo-0", "Running", true)];
        children_pass(&mut server, 1, Some(3), 1, 1, pods).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        assert_eq!(condition(status, "Degraded")["status"], "False");
        assert_eq!(condition(status, "Ready")["status"], "True");
        assert_eq!(
            status["brokers"],
            json!([{"id": 0, "pod": "demo-0", "state": "Ready"}])
        );
        respond_stored_cluster(patch);
    });
    let result = reconcile(Arc::new(undone_scale_up(true)), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        kafka.take_calls(),
        [
            "connect demo-bootstrap.streaming.svc:9092",
            "connect demo-bootstrap.streaming.svc:9092"
        ],
        "asked first: a cluster that answers is judged by what its brokers hold"
    );
}

#[tokio::test]
async fn a_broker_not_known_to_have_never_run_still_holds_the_scale_down() {
    let kafka = FakeKafka::default();
    kafka.with_state(|s| s.unreachable = true);
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = vec![pod("demo-0", "Running", true)];
        // The StatefulSet is kept at 3 though only one pod exists.
        children_pass_with(&mut server, 1, Some(3), 3, sts_status(1, 1), pods).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        let brokers = &patch.body["status"]["brokers"];
        assert_eq!(
            brokers.as_array().unwrap().len(),
            3,
            "kept ids stay listed: {brokers}"
        );
        assert_eq!(brokers[1].get("neverReady"), None, "may have run");
        let degraded = condition(&patch.body["status"], "Degraded");
        assert_eq!(degraded["reason"], "ScaleDownBlocked");
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .contains("which brokers hold replicas cannot be asked"),
            "{degraded}"
        );
        respond_stored_cluster(patch);
        expect_warning(&mut server).await;
    });
    // Brokers that have run (or entries from before the operator kept track): they may
    // hold data.
    let result = reconcile(Arc::new(undone_scale_up(false)), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn scale_down_goes_ahead_when_the_brokers_that_go_hold_nothing() {
    // Replication factor 1 on broker 0 only: brokers 1 and 2 hold nothing.
    let kafka = FakeKafka::default();
    kafka.with_topic("orders", 4, &[]);
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = vec![pod("demo-0", "Running", true)];
        children_pass(&mut server, 1, Some(3), 1, 1, pods).await;

        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        assert_eq!(condition(status, "Degraded")["status"], "False");
        assert_eq!(condition(status, "Ready")["status"], "True");
        respond_stored_cluster(patch);
    });

    let mut kc = demo();
    kc.spec.replicas = 1;
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
}

/// Runs `reconcile` for `kc` as the controller does, through `observed` (which
/// publishes the Warning Event of an error retrying cannot fix).
async fn observed_reconcile(kc: KafkaCluster, ctx: Arc<Context>) -> Result<Action, Error> {
    let metrics = Arc::new(Metrics::new(&[super::CONTROLLER]).unwrap());
    observed(super::CONTROLLER, metrics, reconcile, Arc::new(kc), ctx).await
}

/// Expects the Warning Event `observed` publishes on `demo`; returns its body.
async fn expect_warning(server: &mut ApiServerVerifier) -> Value {
    let event = server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/streaming/events",
        )
        .await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["regarding"]["name"], "demo");
    let body = event.body.clone();
    event.respond_echo(json!({}));
    body
}

#[tokio::test]
async fn reserved_config_is_refused_without_touching_children() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        let degraded = condition(status, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "InvalidSpec");
        assert!(
            degraded["message"].as_str().unwrap().contains("node.id"),
            "{degraded}"
        );
        assert_eq!(condition(status, "Progressing")["status"], "False");
        let ready = condition(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("InvalidSpec"))
        );
        assert_eq!(status["observedGeneration"], 1);
        respond_stored_cluster(patch);

        let event = expect_warning(&mut server).await;
        assert_eq!(event["reason"], "invalid_spec");
        assert!(
            event["note"].as_str().unwrap().contains("node.id"),
            "{event}"
        );
    });

    let mut kc: KafkaCluster = demo();
    kc.spec.config.insert("node.id".into(), "7".into());
    let error = observed_reconcile(kc, ctx).await.unwrap_err();
    scenario.finish().await;
    assert!(matches!(error, Error::InvalidSpec { .. }), "{error:?}");
}

#[tokio::test]
async fn max_partitions_moving_out_of_bounds_is_refused_without_touching_children() {
    // Past the schema (a CRD applied without validation): the operator refuses it too.
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let patch = server.expect_apply(STATUS_PATH).await;
        let degraded = condition(&patch.body["status"], "Degraded");
        assert_eq!(
            (&degraded["status"], &degraded["reason"]),
            (&json!("True"), &json!("InvalidSpec"))
        );
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .contains("spec.rebalance.maxPartitionsMoving"),
            "{degraded}"
        );
        respond_stored_cluster(patch);
        expect_warning(&mut server).await;
    });
    let mut kc: KafkaCluster = demo();
    kc.spec.rebalance.max_partitions_moving = 0;
    let error = observed_reconcile(kc, ctx).await.unwrap_err();
    scenario.finish().await;
    assert!(matches!(error, Error::InvalidSpec { .. }), "{error:?}");
}

/// What kube-apiserver answers to a StatefulSet update that touches a field other than
/// replicas, template, updateStrategy, ... (here: a volume claim template's size).
fn statefulset_update_forbidden() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "StatefulSet.apps \"demo\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        "reason": "Invalid", "details": {"name": "demo", "group": "apps", "kind": "StatefulSet",
            "causes": [{"reason": "FieldValueForbidden", "field": "spec"}]},
        "code": 422})
}

#[tokio::test]
async fn a_child_the_api_server_refuses_is_a_spec_error_not_a_retry_loop() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let get = server
            .expect(Method::GET, &format!("{APPS}/statefulsets/demo"))
            .await;
        get.respond(
            StatusCode::OK,
            &json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "demo", "namespace": "streaming"},
                "spec": {"replicas": 3, "selector": {}, "template": {}}}),
        );
        for path in [
            format!("{NS}/configmaps/demo-config"),
            format!("{NS}/services/demo-brokers"),
            format!("{NS}/services/demo-bootstrap"),
        ] {
            server.expect_apply(&path).await.respond_echo(json!({}));
        }
        server
            .expect_apply(&format!("{APPS}/statefulsets/demo"))
            .await
            .respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                &statefulset_update_forbidden(),
            );

        // No PDB, no pods, no restart: the pass ends with the refusal in status.
        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        let degraded = condition(status, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "RefusedByAPIServer");
        let message = degraded["message"].as_str().unwrap();
        assert_eq!(
            message,
            "the Kubernetes API call to apply StatefulSet demo failed: StatefulSet.apps \"demo\" \
             is invalid: spec: Forbidden: updates to statefulset spec for fields other than \
             'replicas', 'ordinals', 'template', 'updateStrategy', \
             'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden \
             (422 Invalid)",
            "each part once, no Debug dump"
        );
        assert_eq!(condition(status, "Progressing")["status"], "False");
        assert_eq!(condition(status, "Ready")["status"], "False", "was True");
        assert_eq!(status["observedGeneration"], 1);
        respond_stored_cluster(patch);

        let event = expect_warning(&mut server).await;
        assert_eq!(event["reason"], "kube_refused");
        assert!(
            event["note"].as_str().unwrap().contains("Forbidden"),
            "{event}"
        );
    });

    let mut kc = demo();
    kc.status = Some(settled_status());
    let kc = Arc::new(kc);
    let error = observed_reconcile((*kc).clone(), ctx.clone())
        .await
        .unwrap_err();
    scenario.finish().await;
    assert!(!error.is_transient(), "{error:?}");
    assert_eq!(error.label(), "kube_refused");
    assert_eq!(
        error_policy(kc, &error, ctx),
        Action::requeue(Duration::from_secs(300)),
        "waits for an edit (or the slow resync), no backoff loop"
    );
}

#[tokio::test]
async fn api_errors_surface_and_back_off() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let get = server.expect(Method::GET, &format!("{APPS}/statefulsets/demo")).await;
        get.respond(StatusCode::INTERNAL_SERVER_ERROR, &json!({"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "message": "etcd is sad", "reason": "InternalError", "code": 500}));
    });

    let kc = Arc::new(demo());
    let error = reconcile(kc.clone(), ctx.clone()).await.unwrap_err();
    scenario.finish().await;
    assert!(matches!(error, Error::Kube { .. }), "{error:?}");
    assert!(error.report().contains("etcd is sad"), "{}", error.report());

    let delays: Vec<_> = (0..3)
        .map(|_| error_policy(kc.clone(), &error, ctx.clone()))
        .collect();
    let expected: Vec<_> = [5, 10, 20]
        .map(|s| kube::runtime::controller::Action::requeue(Duration::from_secs(s)))
        .into();
    assert_eq!(delays, expected, "transient errors back off and grow");

    let invalid = Error::InvalidSpec {
        field: "spec.config",
        reason: "no".into(),
    };
    assert_eq!(
        error_policy(kc, &invalid, ctx),
        kube::runtime::controller::Action::requeue(Duration::from_secs(300)),
        "an invalid spec waits for an edit"
    );
}

/// One pass of a 3-broker cluster whose StatefulSet moved to revision `demo-2`: pods as
/// given by `(revision, phase, ready)`; checks the Progressing condition of the status
/// patch and, when `deleted` names a pod, that exactly it is deleted (uid precondition)
/// before the status.
async fn restart_pass(
    ctx: Arc<Context>,
    server: ApiServerVerifier,
    pods: [(&'static str, &'static str, bool); 3],
    deleted: Option<&'static str>,
    progressing: (&'static str, &'static str),
) {
    let scenario = server.run(move |mut server| async move {
        let ready = pods.iter().filter(|p| p.2).count() as i32;
        let pods = pods
            .iter()
            .enumerate()
            .map(|(i, (rev, phase, ready))| pod_of(rev, &format!("demo-{i}"), phase, *ready))
            .collect();
        children_pass_with(
            &mut server,
            3,
            Some(3),
            3,
            sts_status_at("demo-2", 3, ready),
            pods,
        )
        .await;
        if let Some(pod) = deleted {
            let delete = server
                .expect(Method::DELETE, &format!("{NS}/pods/{pod}"))
                .await;
            assert_eq!(delete.body["preconditions"]["uid"], format!("uid-{pod}"));
            delete.respond(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod, "namespace": "streaming",
                        "deletionTimestamp": "2023-11-14T22:13:20Z"}}),
            );
        }
        let patch = server.expect_apply(STATUS_PATH).await;
        let condition = condition(&patch.body["status"], "Progressing").clone();
        assert_eq!(
            (condition["reason"].as_str(), condition["message"].as_str()),
            (Some(progressing.0), Some(progressing.1)),
        );
        assert_eq!(condition["status"], "True");
        respond_stored_cluster(patch);
    });
    let result = reconcile(Arc::new(demo()), ctx).await;
    scenario.finish().await;
    assert_eq!(
        result.unwrap(),
        kube::runtime::controller::Action::requeue(Duration::from_secs(10))
    );
}

#[tokio::test]
async fn rolling_restart_goes_one_broker_at_a_time_gated_by_the_brokers() {
    let brokers = FakeBrokerAdmin::default();
    let address = |id: i32| format!("demo-{id}.demo-brokers.streaming.svc:9095");
    let test = || {
        let (ctx, server) = Context::test();
        let ctx = Arc::new(
            Arc::into_inner(ctx)
                .unwrap()
                .with_broker_admin(Arc::new(brokers.clone())),
        );
        (ctx, server)
    };
    const OLD: &str = "demo-1";
    const NEW: &str = "demo-2";
    let running = ("Running", true);

    // Everyone is on the old template and healthy: the highest ordinal goes first, once
    // the others have caught up and it says a restart is safe.
    let (ctx, server) = test();
    let all_old = [(OLD, running.0, running.1); 3];
    restart_pass(
        ctx,
        server,
        all_old,
        Some("demo-2"),
        (
            "Restarting",
            "restarting demo-2; 3 brokers run an older pod template",
        ),
    )
    .await;
    assert_eq!(
        brokers.take_calls(),
        [
            format!("CaughtUp {}", address(0)),
            format!("CaughtUp {}", address(1)),
            format!("CanRestart {}", address(2))
        ]
    );

    // demo-2 is back on the new template but not ready: nobody else goes, nobody is asked.
    let (ctx, server) = test();
    let rejoining = [
        (OLD, "Running", true),
        (OLD, "Running", true),
        (NEW, "Running", false),
    ];
    restart_pass(ctx, server, rejoining, None, ("RestartWaiting",
        "2 brokers run an older pod template; the restart waits: demo-2 has restarted and is not ready yet")).await;
    assert!(brokers.take_calls().is_empty());

    // Ready, but still catching up: wait.
    brokers.lag(&address(2), &["orders-0"]);
    let (ctx, server) = test();
    let caught_up_pending = [
        (OLD, "Running", true),
        (OLD, "Running", true),
        (NEW, "Running", true),
    ];
    restart_pass(ctx, server, caught_up_pending, None, ("RestartWaiting",
        "2 brokers run an older pod template; the restart waits: demo-2 has not caught up: orders-0")).await;
    brokers.take_calls();

    // Caught up, but stopping demo-1 would take a partition below min.insync.replicas.
    brokers.heal().refuse_restart(
        &address(1),
        &["orders-1 would keep 1 of min.insync.replicas 2"],
    );
    let (ctx, server) = test();
    restart_pass(ctx, server, caught_up_pending, None, ("RestartWaiting",
        "2 brokers run an older pod template; the restart waits: restarting demo-1 now is unsafe: \
         orders-1 would keep 1 of min.insync.replicas 2")).await;
    brokers.take_calls();

    // Safe now: demo-1 goes.
    brokers.heal();
    let (ctx, server) = test();
    restart_pass(
        ctx,
        server,
        caught_up_pending,
        Some("demo-1"),
        (
            "Restarting",
            "restarting demo-1; 2 brokers run an older pod template",
        ),
    )
    .await;
    assert_eq!(
        brokers.take_calls(),
        [
            format!("CaughtUp {}", address(0)),
            format!("CaughtUp {}", address(2)),
            format!("CanRestart {}", address(1))
        ]
    );
}

#[tokio::test]
async fn a_stale_broker_that_is_not_ready_restarts_first_without_asking() {
    let brokers = FakeBrokerAdmin::default();
    let (ctx, server) = Context::test();
    let ctx = Arc::new(
        Arc::into_inner(ctx)
            .unwrap()
            .with_broker_admin(Arc::new(brokers.clone())),
    );
    let pods = [
        ("demo-1", "Running", true),
        ("demo-1", "Running", false),
        ("demo-1", "Running", true),
    ];
    restart_pass(
        ctx,
        server,
        pods,
        Some("demo-1"),
        (
            "Restarting",
            "restarting demo-1; 3 brokers run an older pod template",
        ),
    )
    .await;
    assert!(
        brokers.take_calls().is_empty(),
        "an unready broker is not asked"
    );
}

#[test]
fn the_metric_series_of_a_deleted_cluster_go_once_the_watch_has_listed_the_rest() {
    use kube::runtime::{reflector, watcher};

    let metrics = Metrics::new(&[super::CONTROLLER]).unwrap();
    let work = crate::metrics::ClusterWork::default();
    for (namespace, name) in [
        ("streaming", "demo"),
        ("streaming", "gone"),
        ("other", "gone"),
    ] {
        metrics.cluster_work(namespace, name, work.clone());
    }
    let series = |namespace: &str, name: &str| {
        let labels = format!("{{kafkacluster=\"{name}\",namespace=\"{namespace}\"}}");
        metrics
            .render()
            .lines()
            .filter(|l| l.contains(&labels))
            .count()
    };
    let (store, mut writer) = reflector::store::<KafkaCluster>();

    // Not listed yet: an empty store says nothing about what exists.
    super::forget_deleted(&metrics, Some("streaming"), &store);
    assert_eq!(series("streaming", "demo"), 4);
    assert_eq!(series("streaming", "gone"), 4);

    for event in [
        watcher::Event::Init,
        watcher::Event::InitApply(demo()),
        watcher::Event::InitDone,
    ] {
        writer.apply_watcher_event(&event);
    }
    super::forget_deleted(&metrics, Some("streaming"), &store);
    assert_eq!(series("streaming", "demo"), 4, "still listed");
    assert_eq!(series("streaming", "gone"), 0, "no longer listed");
    assert_eq!(series("other", "gone"), 4, "another scope's cluster");

    // Deleted while watched; over all namespaces, the other namespace's too.
    writer.apply_watcher_event(&watcher::Event::Delete(demo()));
    super::forget_deleted(&metrics, None, &store);
    assert_eq!(series("streaming", "demo"), 0);
    assert_eq!(series("other", "gone"), 0);
}
