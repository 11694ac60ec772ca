//! The reconcile wrapper [`observed`]: what it counts, and which errors become Events
//! (asserted as requests to the scripted API server).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::json;

use super::observed;
use crate::crd::KafkaCluster;
use crate::fixtures::ApiServerVerifier;
use crate::metrics::Metrics;
use crate::resources::test_cluster::demo;
use crate::{Context, Error};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/streaming/events";

fn invalid() -> Error {
    Error::InvalidSpec {
        field: "spec.config",
        reason: "node.id is managed by the operator".into(),
    }
}

fn transient() -> Error {
    let status = kube::core::Status::failure("etcd is sad", "InternalError").with_code(500);
    Error::Kube {
        action: "get StatefulSet demo".into(),
        source: kube::Error::Api(Box::new(status)),
    }
}

/// Runs `observed` for `demo` with a reconcile that returns `result`.
async fn observe(
    metrics: &Arc<Metrics>,
    ctx: &Arc<Context>,
    result: Result<Action, Error>,
) -> Result<Action, Error> {
    let mut cluster = demo();
    cluster.metadata.resource_version = Some("7".into());
    observed(
        "kafkacluster",
        Arc::clone(metrics),
        |_: Arc<KafkaCluster>, _| async move { result },
        Arc::new(cluster),
        Arc::clone(ctx),
    )
    .await
}

#[tokio::test]
async fn counts_successes_and_errors_and_only_a_spec_error_becomes_an_event() {
    let metrics = Arc::new(Metrics::new(&["kafkacluster"]).unwrap());
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server: ApiServerVerifier| async move {
        let post = server.expect(Method::POST, EVENTS).await;
        let event = post.body.clone();
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "invalid_spec");
        assert_eq!(event["action"], "Reconcile");
        assert_eq!(event["reportingController"], "runnel-operator");
        assert_eq!(
            event["note"],
            "spec field spec.config is invalid: node.id is managed by the operator"
        );
        assert_eq!(event["regarding"]["kind"], "KafkaCluster");
        assert_eq!(event["regarding"]["name"], "demo");
        assert_eq!(event["regarding"]["namespace"], "streaming");
        assert_eq!(event["regarding"].get("resourceVersion"), None);
        let name = event["metadata"]["name"].as_str().unwrap().to_string();
        post.respond_echo(json!({}));

        // The same failure again: one Event with a series, not a second Event.
        let patch = server
            .expect(Method::PATCH, &format!("{EVENTS}/{name}"))
            .await;
        assert_eq!(patch.body["series"]["count"], 2);
        patch.respond(StatusCode::OK, &event);
    });

    let requeue = Action::requeue(Duration::from_secs(30));
    assert_eq!(
        observe(&metrics, &ctx, Ok(requeue.clone())).await.unwrap(),
        requeue
    );
    let error = observe(&metrics, &ctx, Err(transient())).await.unwrap_err();
    assert_eq!(error.label(), "kube", "passed through unchanged");
    observe(&metrics, &ctx, Err(invalid())).await.unwrap_err();
    observe(&metrics, &ctx, Err(invalid())).await.unwrap_err();
    scenario.finish().await;

    assert_eq!(metrics.reconciles("kafkacluster"), 4);
    assert_eq!(metrics.reconcile_durations("kafkacluster"), 4);
    assert_eq!(metrics.reconcile_errors("kafkacluster", "kube"), 1);
    assert_eq!(metrics.reconcile_errors("kafkacluster", "invalid_spec"), 2);
}
