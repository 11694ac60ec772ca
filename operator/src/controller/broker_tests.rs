//! The Kafka side of the Topic and ConsumerGroup controllers against a real
//! `runnel-broker` process: reconcile runs with the scripted API server for Kubernetes
//! and the real admin client for Kafka, and the outcome is checked on the broker with
//! the admin client. Needs `cargo build -p runnel-broker` first (see `test_broker`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_client::ClientConfig;
use serde_json::{json, Value};

use super::{consumergroup, topic};
use crate::crd::{ConsumerGroup, Topic};
use crate::fixtures::ApiServerVerifier;
use crate::kafka::{KafkaAdmin, NewTopic, TcpAdminFactory, TopicPartition};
use crate::test_broker::TestBroker;
use crate::Context;

const NS: &str = "/apis/runnel.dev/v1alpha1/namespaces/streaming";

fn cluster_answer(address: &str) -> Value {
    json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": "demo", "namespace": "streaming"}, "spec": {},
        "status": {"bootstrapServers": address}})
}

/// What a Topic pass ends with after the list and the cluster lookup.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// A status apply (its status is returned).
    Status,
    /// Nothing: the status did not change.
    Quiet,
    /// The finalizer's removal (a deleting object).
    FinalizerRemoved,
}

/// One Topic reconcile: list, cluster, then `ending`.
async fn topic_pass(broker: &TestBroker, object: &Value, ending: Ending) -> Value {
    let (ctx, server) = Context::test_with_admin(Arc::new(TcpAdminFactory::default()));
    let (stored, address) = (object.clone(), broker.address.clone());
    let seen = Arc::new(Mutex::new(Value::Null));
    let keep = Arc::clone(&seen);
    let scenario = server.run(|mut server: ApiServerVerifier| async move {
        server.expect(Method::GET, &format!("{NS}/topics")).await.respond(
            StatusCode::OK,
            &json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "TopicList", "metadata": {}, "items": [stored]}),
        );
        server
            .expect(Method::GET, &format!("{NS}/kafkaclusters/demo"))
            .await
            .respond(StatusCode::OK, &cluster_answer(&address));
        if ending == Ending::FinalizerRemoved {
            let patch = server
                .expect(Method::PATCH, &format!("{NS}/topics/orders"))
                .await;
            assert_eq!(patch.body[1]["op"], "remove");
            patch.respond(StatusCode::OK, &stored);
        } else if ending == Ending::Status {
            let patch = server.expect_apply(&format!("{NS}/topics/orders/status")).await;
            *keep.lock().unwrap() = patch.body["status"].clone();
            let mut answer = stored.clone();
            answer["status"] = patch.body["status"].clone();
            patch.respond(StatusCode::OK, &answer);
        }
    });
    let topic: Topic = serde_json::from_value(object.clone()).unwrap();
    let result = topic::reconcile(Arc::new(topic), ctx).await;
    if let Err(error) = &result {
        panic!("reconcile failed: {}", error.report());
    }
    scenario.finish().await;
    let status = seen.lock().unwrap().clone();
    status
}

async fn overrides(admin: &dyn KafkaAdmin, name: &str) -> BTreeMap<String, String> {
    topic::plan::overrides(&admin.describe_topic_config(name).await.unwrap())
}

async fn partitions(admin: &dyn KafkaAdmin, name: &str) -> Option<i32> {
    let names = [name.to_string()];
    let metadata = admin.metadata(Some(&names)).await.unwrap();
    metadata.first().map(|t| t.partition_count())
}

#[tokio::test]
async fn the_topic_controller_creates_grows_configures_and_deletes_a_real_topic() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    let mut object = json!({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": "streaming", "generation": 1,
            "finalizers": [topic::FINALIZER]},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 2, "config": {"retention.ms": "3600000"}}
    });

    let status = topic_pass(&broker, &object, Ending::Status).await;
    assert_eq!(status["partitions"], 2);
    assert!(
        status["topicId"].as_str().is_some_and(|id| id.len() == 36),
        "{status}"
    );
    assert_eq!(partitions(&admin, "orders").await, Some(2));
    assert_eq!(
        overrides(&admin, "orders").await,
        BTreeMap::from([("retention.ms".into(), "3600000".into())])
    );

    object["status"] = status;
    object["spec"]["partitions"] = json!(4);
    object["spec"]["config"] = json!({"cleanup.policy": "compact"});
    let status = topic_pass(&broker, &object, Ending::Status).await;
    assert_eq!(status["partitions"], 4);
    assert_eq!(status["config"], json!({"cleanup.policy": "compact"}));
    assert_eq!(partitions(&admin, "orders").await, Some(4));
    let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    assert_eq!(overrides(&admin, "orders").await, compact);

    // Drift behind the operator's back is reverted on the next pass.
    let drift = [
        crate::kafka::AlterConfigOp::Set {
            name: "cleanup.policy".into(),
            value: "delete".into(),
        },
        crate::kafka::AlterConfigOp::Set {
            name: "retention.ms".into(),
            value: "1000".into(),
        },
    ];
    admin.alter_topic_config("orders", &drift).await.unwrap();
    assert_ne!(overrides(&admin, "orders").await, compact);
    object["status"] = status;
    // The status already says what the reverted topic has: no status write.
    topic_pass(&broker, &object, Ending::Quiet).await;
    assert_eq!(overrides(&admin, "orders").await, compact);

    object["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:00:00Z");
    topic_pass(&broker, &object, Ending::FinalizerRemoved).await;
    assert_eq!(
        partitions(&admin, "orders").await,
        None,
        "the topic is gone"
    );
}

/// Appends `count` records to `topic`/0 with acks=1.
async fn produce(address: &str, topic: &str, count: i64) {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(Bytes::from(format!("record {i}"))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, &records, &options).unwrap();
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let mut connection = runnel_client::Connection::connect(address, &ClientConfig::default())
        .await
        .unwrap();
    let response = connection.call(&request, 7).await.unwrap();
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "produce failed");
}

/// One ConsumerGroup reconcile: cluster, then the status apply, whose status is returned.
async fn group_pass(broker: &TestBroker, object: &Value) -> Value {
    let (ctx, server) = Context::test_with_admin(Arc::new(TcpAdminFactory::default()));
    let (stored, address) = (object.clone(), broker.address.clone());
    let seen = Arc::new(Mutex::new(Value::Null));
    let keep = Arc::clone(&seen);
    let scenario = server.run(|mut server: ApiServerVerifier| async move {
        server
            .expect(Method::GET, &format!("{NS}/kafkaclusters/demo"))
            .await
            .respond(StatusCode::OK, &cluster_answer(&address));
        let patch = server
            .expect_apply(&format!("{NS}/consumergroups/billing/status"))
            .await;
        *keep.lock().unwrap() = patch.body["status"].clone();
        let mut answer = stored;
        answer["status"] = patch.body["status"].clone();
        patch.respond(StatusCode::OK, &answer);
    });
    let cg: ConsumerGroup = serde_json::from_value(object.clone()).unwrap();
    let result = consumergroup::reconcile(Arc::new(cg), ctx).await;
    if let Err(error) = &result {
        panic!("reconcile failed: {}", error.report());
    }
    scenario.finish().await;
    let status = seen.lock().unwrap().clone();
    status
}

#[tokio::test]
async fn the_group_controller_computes_real_lag_and_applies_real_resets() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    let events = NewTopic {
        name: "events".into(),
        partitions: 1,
        replication_factor: None,
        config: BTreeMap::new(),
    };
    admin.create_topic(&events).await.unwrap();
    produce(&broker.address, "events", 10).await;
    let p0 = TopicPartition::new("events", 0);
    admin
        .commit_offsets("billing", &BTreeMap::from([(p0.clone(), 4)]))
        .await
        .unwrap();

    let mut object = json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": "billing", "namespace": "streaming", "generation": 1},
        "spec": {"clusterRef": {"name": "demo"}, "groupId": "billing"}});
    let status = group_pass(&broker, &object).await;
    assert_eq!(
        status["lag"],
        json!([{"topic": "events", "partition": 0, "committedOffset": 4, "highWatermark": 10, "lag": 6}])
    );
    assert_eq!(status["totalLag"], 6);
    assert_eq!(status["memberCount"], 0);

    let resets = [
        (json!({"requestId": "r1", "strategy": "Earliest"}), 0, 10),
        (
            json!({"requestId": "r2", "strategy": "Explicit", "offsets": [{"topic": "events", "partition": 0, "offset": 7}]}),
            7,
            3,
        ),
        (json!({"requestId": "r3", "strategy": "Latest"}), 10, 0),
        (
            json!({"requestId": "r4", "strategy": "Timestamp", "timestampMs": 1_700_000_000_005i64}),
            5,
            5,
        ),
    ];
    for (reset, offset, lag) in resets {
        let id = reset["requestId"].clone();
        object["spec"]["offsetReset"] = reset;
        let status = group_pass(&broker, &object).await;
        assert_eq!(status["lastAppliedResetRequestId"], id);
        assert_eq!(status["totalLag"], lag, "{status}");
        let committed = admin.fetch_offsets("billing").await.unwrap();
        assert_eq!(committed.get(&p0), Some(&offset), "after reset {id}");
        object["status"] = status;
    }
}

#[tokio::test]
async fn the_restart_gate_asks_a_real_broker_over_grpc() {
    use crate::broker_admin::{BrokerAdmin, CatchUp, GrpcBrokerAdmin, RestartCheck};

    let broker = TestBroker::start().await;
    let grpc = GrpcBrokerAdmin;
    // The health listener comes up with the Kafka one, but wait for it boundedly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let check = loop {
        match grpc.can_restart(&broker.admin_address).await {
            Ok(check) => break check,
            Err(e) if std::time::Instant::now() > deadline => panic!("CanRestart: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    // One broker, replication factor 1: waiting cannot make a restart safer, so it is
    // allowed (the broker's rule) and nothing lags behind a leader.
    assert_eq!(
        check,
        RestartCheck {
            safe: true,
            reasons: vec![]
        }
    );
    assert_eq!(
        grpc.caught_up(&broker.admin_address).await.unwrap(),
        CatchUp {
            caught_up: true,
            lagging: vec![]
        }
    );
    let refused = grpc.caught_up("127.0.0.1:1").await.unwrap_err();
    assert!(refused.to_string().contains("127.0.0.1:1"), "{refused}");
}

#[tokio::test]
async fn a_broker_started_with_the_operators_quorum_flags_describes_its_cluster() {
    use crate::resources::quorum;
    use crate::resources::test_cluster::demo;

    // The cluster id the operator derives for `demo`, and a one-voter quorum on loopback
    // (the operator's voters are DNS names a test cannot resolve; their shape is checked
    // by the broker's own parser in `broker_settings`).
    let kc = demo();
    let cluster_id = quorum::cluster_id(&kc).unwrap();
    let controller = format!("127.0.0.1:{}", crate::test_broker::free_port());
    let broker = TestBroker::start_with(&[
        "--node-id".into(),
        "0".into(),
        "--cluster-id".into(),
        cluster_id.clone(),
        "--controller-listen".into(),
        controller.clone(),
        "--controller-quorum-voters".into(),
        format!("0@{controller}"),
    ])
    .await;
    let described = broker.admin().await.describe_cluster().await.unwrap();
    assert_eq!(described.cluster_id, cluster_id);
    assert_eq!(described.controller_id, Some(0));
    assert_eq!(
        described.brokers,
        [crate::kafka::ClusterBroker {
            id: 0,
            fenced: false,
            rack: None
        }]
    );
}
