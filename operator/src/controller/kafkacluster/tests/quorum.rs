//! The metadata quorum in a reconcile pass: every broker gets the quorum flags, the
//! voters are fixed at creation (growing keeps them, a scale-down that would remove one
//! is refused with a condition and a Warning Event), and status shows the controller and
//! which brokers are live, from DescribeCluster.

use super::*;
use crate::kafka::{ClusterBroker, ClusterDescription};

#[tokio::test]
async fn new_cluster_brokers_get_the_quorum_flags() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let applied = children_applies_over(&mut server, 3, None, 3, sts_status(3, 0)).await;
        assert_eq!(
            voters_arg(&applied),
            "0@demo-0.demo-brokers.streaming.svc:9093,1@demo-1.demo-brokers.streaming.svc:9093,\
             2@demo-2.demo-brokers.streaming.svc:9093"
        );
        let args = &applied["spec"]["template"]["spec"]["containers"][0]["args"];
        let args: Vec<&str> = args
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--cluster-id", "C25bjl88S46dbB0vOktcbQ"]),
            "{args:?}"
        );
        assert!(
            args.windows(2)
                .any(|w| w == ["--controller-listen", "0.0.0.0:9093"]),
            "{args:?}"
        );
        pods_list(&mut server, vec![]).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        assert_eq!(patch.body["status"]["quorumVoters"], json!([0, 1, 2]));
        respond_stored_cluster(patch);
    });
    let result = reconcile(Arc::new(demo()), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn growing_a_cluster_keeps_its_voters() {
    // Created with one broker, now five: broker 0 stays the only voter, the rest join as
    // non-voters; Kafka is not asked while no broker is ready.
    let kafka = FakeKafka::default();
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let applied = children_applies_over(
            &mut server,
            5,
            Some(existing_sts(1, 1)),
            5,
            sts_status(5, 0),
        )
        .await;
        assert_eq!(
            voters_arg(&applied),
            "0@demo-0.demo-brokers.streaming.svc:9093"
        );
        pods_list(&mut server, vec![]).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        assert_eq!(patch.body["status"]["quorumVoters"], json!([0]));
        respond_stored_cluster(patch);
    });
    let mut kc = demo();
    kc.spec.replicas = 5;
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(kafka.take_calls().is_empty());
}

#[tokio::test]
async fn a_scale_down_that_would_remove_a_voter_is_refused() {
    let kafka = FakeKafka::default();
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = (0..3)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect();
        // Held at 3, the voters unchanged.
        let applied = children_applies_over(
            &mut server,
            2,
            Some(existing_sts(3, 3)),
            3,
            sts_status(3, 3),
        )
        .await;
        assert_eq!(voters_arg(&applied).matches('@').count(), 3);
        pods_list(&mut server, pods).await;

        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        let degraded = condition(status, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "ScaleDownRemovesVoters");
        assert_eq!(
            degraded["message"],
            "keeping 3 brokers, not 2: demo-2 would leave the metadata quorum, whose voters \
             (0, 1, 2) are fixed when the cluster is created; only brokers from 3 on can be removed"
        );
        let ready = condition(status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("ScaleDownBlocked"))
        );
        respond_stored_cluster(patch);

        let event = expect_warning(&mut server).await;
        assert_eq!(event["reason"], "ScaleDownRemovesVoters");
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("demo-2 would leave"),
            "{event}"
        );
    });
    let mut kc = demo();
    kc.spec.replicas = 2;
    kc.status = Some(settled_status());
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        kafka.take_calls(),
        [
            "connect demo-bootstrap.streaming.svc:9092",
            "DescribeCluster",
            "Metadata None"
        ],
        "no broker is asked what it holds before the voters decide (the last Metadata \
         is the rebalance's look, which finds no topic)"
    );
}

#[tokio::test]
async fn non_voters_may_go_when_they_hold_nothing_and_are_then_unregistered() {
    // Five brokers, voters 0..2: going to 3 removes only non-voters, which hold nothing.
    // The cluster still lists 3 and 4 (fenced, their pods gone): they are unregistered;
    // 4 is refused once (not fenced yet) and stays listed for the next pass.
    let kafka = FakeKafka::default();
    kafka.with_state(|s| {
        s.cluster = Some(ClusterDescription {
            cluster_id: "c".into(),
            controller_id: Some(0),
            brokers: [(0, false), (1, false), (2, false), (3, true), (4, false)]
                .map(|(id, fenced)| ClusterBroker {
                    id,
                    fenced,
                    rack: None,
                })
                .into(),
        });
        s.unregister_refused.insert(4, 3);
    });
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = (0..3)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect();
        children_applies_over(
            &mut server,
            3,
            Some(existing_sts(5, 5)),
            3,
            sts_status(3, 3),
        )
        .await;
        pods_list(&mut server, pods).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        assert_eq!(
            condition(&patch.body["status"], "Degraded")["status"],
            "False"
        );
        respond_stored_cluster(patch);
    });
    let result = reconcile(Arc::new(demo()), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        kafka.take_calls(),
        [
            "connect demo-bootstrap.streaming.svc:9092",
            "Metadata None",
            "ListPartitionReassignments",
            "connect demo-bootstrap.streaming.svc:9092",
            "DescribeCluster",
            "Metadata None",
            "UnregisterBroker 3",
            "UnregisterBroker 4"
        ]
    );
    assert_eq!(kafka.unregistered(), [3]);
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(3)),
        "broker 4 is asked again soon"
    );
}

#[tokio::test]
async fn status_shows_the_controller_and_which_brokers_are_live() {
    let kafka = FakeKafka::default();
    kafka.with_state(|s| {
        s.cluster = Some(ClusterDescription {
            cluster_id: "C25bjl88S46dbB0vOktcbQ".into(),
            controller_id: Some(1),
            // Broker 2 is registered but fenced (a DescribeCluster v2 answer).
            brokers: [(0, false), (1, false), (2, true)]
                .map(|(id, fenced)| ClusterBroker {
                    id,
                    fenced,
                    rack: None,
                })
                .into(),
        });
    });
    let (ctx, server) = context_with_kafka(&kafka);
    let scenario = server.run(|mut server| async move {
        let pods = (0..3)
            .map(|i| pod(&format!("demo-{i}"), "Running", true))
            .collect();
        children_pass(&mut server, 3, Some(3), 3, 3, pods).await;
        let patch = server.expect_apply(STATUS_PATH).await;
        let status = &patch.body["status"];
        assert_eq!(status["controllerId"], 1);
        let live: Vec<_> = status["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["id"].clone(), b["live"].clone()))
            .collect();
        assert_eq!(
            live,
            [
                (json!(0), json!(true)),
                (json!(1), json!(true)),
                (json!(2), json!(false))
            ]
        );
        respond_stored_cluster(patch);
    });
    let mut kc = demo();
    kc.status = Some(settled_status());
    let result = reconcile(Arc::new(kc), ctx).await;
    scenario.finish().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        kafka.take_calls(),
        [
            "connect demo-bootstrap.streaming.svc:9092",
            "DescribeCluster",
            "Metadata None"
        ]
    );
}

#[tokio::test]
async fn listener_ports_that_collide_with_the_quorum_are_refused() {
    let (ctx, server) = Context::test();
    let scenario = server.run(|mut server| async move {
        let patch = server.expect_apply(STATUS_PATH).await;
        let degraded = condition(&patch.body["status"], "Degraded");
        assert_eq!(degraded["reason"], "InvalidSpec");
        assert!(
            degraded["message"].as_str().unwrap().contains("9093"),
            "{degraded}"
        );
        respond_stored_cluster(patch);
    });
    let mut kc = demo();
    kc.spec.listeners.metrics_port = 9093;
    let error = reconcile(Arc::new(kc), ctx).await.unwrap_err();
    scenario.finish().await;
    assert!(
        matches!(
            error,
            Error::InvalidSpec {
                field: "spec.listeners",
                ..
            }
        ),
        "{error:?}"
    );
}
