//! [`Connection`] over real TCP against a scripted fake broker: the bytes it writes, the
//! responses it accepts and refuses, version negotiation, timeouts and pipelining.

use std::time::Duration;

use crate::fake_broker::{response_frame, FakeBroker};
use crate::{Api, ClientConfig, ClientError, Connection, FrameError};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, FetchRequest,
    MetadataRequest, MetadataResponse, ProduceRequest,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::new("tester")
    }
}

fn metadata_with_broker(host: &'static str) -> MetadataResponse {
    MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(7))
        .with_host(StrBytes::from_static_str(host))
        .with_port(9092)])
}

fn api_versions(ranges: &[(i16, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(*key)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_call_writes_one_framed_request_and_decodes_its_answer() {
    let fake = FakeBroker::start(|mut peer| async move {
        let first = peer.request().await.unwrap();
        assert_eq!(
            &first.frame[..],
            &[
                0, 0, 0, 21, // size of the rest
                0, 3, 0, 4, // Metadata v4
                0, 0, 0, 0, // correlation id 0
                0, 6, b't', b'e', b's', b't', b'e', b'r', // client id
                0xff, 0xff, 0xff, 0xff, // topics: null (every topic)
                0,    // allow_auto_topic_creation: false
            ]
        );
        peer.respond::<MetadataRequest>(&first, &metadata_with_broker("b0"))
            .await;
        let second = peer.request().await.unwrap();
        assert_eq!(second.header.correlation_id, 1);
        peer.respond::<MetadataRequest>(&second, &metadata_with_broker("b1"))
            .await;
        assert!(peer.request().await.is_none(), "nothing more was sent");
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let answer = connection.call(&request, 4).await.unwrap();
    assert_eq!(answer.brokers[0].host.as_str(), "b0");
    assert_eq!(answer.brokers[0].node_id, BrokerId(7));
    let answer = connection.call(&request, 4).await.unwrap();
    assert_eq!(answer.brokers[0].host.as_str(), "b1");
    drop(connection);
    fake.finish().await;
}

/// Serves one Metadata v4 request with a frame `padding` bytes longer than needed.
async fn padded_answer(max: u32, padding: usize) -> Result<MetadataResponse, ClientError> {
    let fake = FakeBroker::start(move |mut peer| async move {
        let request = peer.request().await.unwrap();
        let frame =
            response_frame::<MetadataRequest>(&request, &metadata_with_broker("b"), padding);
        peer.write(&frame).await;
        // A refused frame is not read on: the client sends nothing more and hangs up.
        assert!(peer.request().await.is_none());
    })
    .await;
    let config = ClientConfig {
        max_response_bytes: max,
        ..config()
    };
    let mut connection = Connection::connect(&fake.address, &config).await.unwrap();
    let result = connection.call(&MetadataRequest::default(), 4).await;
    if result.is_err() {
        let again = connection.call(&MetadataRequest::default(), 4).await;
        assert!(
            matches!(again, Err(ClientError::Broken { .. })),
            "{again:?}"
        );
    }
    drop(connection);
    fake.finish().await;
    result
}

#[tokio::test]
async fn response_frames_are_bounded_by_the_configured_maximum() {
    // The answer's header (a correlation id) and body, before padding.
    let unpadded = 4 + metadata_with_broker("b").compute_size(4).unwrap();
    let max = 1000u32;
    let padding = usize::try_from(max).unwrap() - unpadded;
    let at_max = padded_answer(max, padding).await.unwrap();
    assert_eq!(at_max.brokers[0].host.as_str(), "b");
    padded_answer(max, padding - 1).await.unwrap();
    let error = padded_answer(max, padding + 1).await.unwrap_err();
    assert!(
        matches!(
            &error,
            ClientError::Call {
                api: Api(3),
                version: 4,
                source: FrameError::Size { size: 1001, max: 1000 },
                address,
            } if address.starts_with("127.0.0.1:")
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_negative_size_is_refused_before_reading_on() {
    let fake = FakeBroker::start(|mut peer| async move {
        peer.request().await.unwrap();
        peer.write(&(-1i32).to_be_bytes()).await;
        peer.write(&[0; 64]).await;
        assert!(peer.request().await.is_none());
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let error = connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap_err();
    assert!(
        matches!(error.frame_error(), Some(FrameError::Size { size: -1, .. })),
        "{error}"
    );
    drop(connection);
    fake.finish().await;
}

#[tokio::test]
async fn a_response_to_another_request_is_refused_and_breaks_the_connection() {
    let fake = FakeBroker::start(|mut peer| async move {
        let mut request = peer.request().await.unwrap();
        request.header.correlation_id += 1;
        peer.respond::<MetadataRequest>(&request, &MetadataResponse::default())
            .await;
        assert!(peer.request().await.is_none());
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let error = connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.frame_error(),
            Some(FrameError::CorrelationMismatch {
                expected: 0,
                got: 1
            })
        ),
        "{error}"
    );
    let again = connection.call(&MetadataRequest::default(), 4).await;
    assert!(
        matches!(again, Err(ClientError::Broken { .. })),
        "{again:?}"
    );
    drop(connection);
    fake.finish().await;
}

#[tokio::test]
async fn a_response_that_does_not_decode_leaves_the_connection_usable() {
    let fake = FakeBroker::start(|mut peer| async move {
        let first = peer.request().await.unwrap();
        // The right correlation id, then a body cut short.
        let mut frame = BytesMut::new();
        frame.put_i32(6);
        frame.put_i32(first.header.correlation_id);
        frame.put_i16(0);
        peer.write(&frame).await;
        let second = peer.request().await.unwrap();
        peer.respond::<MetadataRequest>(&second, &metadata_with_broker("b"))
            .await;
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let error = connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap_err();
    assert!(
        matches!(error.frame_error(), Some(FrameError::Decode(_))),
        "{error}"
    );
    let answer = connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap();
    assert_eq!(answer.brokers.len(), 1);
    fake.finish().await;
}

#[tokio::test]
async fn a_request_that_does_not_encode_sends_nothing() {
    let fake = FakeBroker::start(|mut peer| async move {
        let request = peer.request().await.unwrap();
        assert_eq!(
            request.header.correlation_id, 0,
            "the failed request used no id"
        );
        assert_eq!(request.header.request_api_version, 4);
        peer.respond::<MetadataRequest>(&request, &MetadataResponse::default())
            .await;
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let beyond = MetadataRequest::VERSIONS.max + 1;
    let error = connection
        .call(&MetadataRequest::default(), beyond)
        .await
        .unwrap_err();
    assert!(
        matches!(error.frame_error(), Some(FrameError::Encode(_))),
        "{error}"
    );
    connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap();
    fake.finish().await;
}

#[tokio::test]
async fn a_silent_broker_times_out_and_the_connection_is_not_reused() {
    let fake = FakeBroker::start(|mut peer| async move {
        peer.request().await.unwrap();
        assert!(peer.request().await.is_none(), "no second request");
    })
    .await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(100),
        ..config()
    };
    let mut connection = Connection::connect(&fake.address, &config).await.unwrap();
    let error = connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Timeout { api: Api(3), timeout, .. } if *timeout == Duration::from_millis(100)),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!("Metadata to {} timed out after 100ms", fake.address)
    );
    assert!(error.is_connection_lost());
    let again = connection.call(&MetadataRequest::default(), 4).await;
    assert!(
        matches!(again, Err(ClientError::Broken { .. })),
        "{again:?}"
    );
    drop(connection);
    fake.finish().await;
}

#[tokio::test]
async fn a_call_dropped_midway_leaves_the_connection_refusing_calls() {
    let fake = FakeBroker::start(|mut peer| async move {
        let request = peer.request().await.unwrap();
        // Half a response: the size prefix and part of the header.
        let frame = response_frame::<MetadataRequest>(&request, &MetadataResponse::default(), 0);
        peer.write(&frame[..6]).await;
        assert!(peer.request().await.is_none(), "no second request");
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        connection.call(&MetadataRequest::default(), 4),
    )
    .await;
    assert!(dropped.is_err(), "the outer timeout cancelled the call");
    let again = connection.call(&MetadataRequest::default(), 4).await;
    assert!(
        matches!(again, Err(ClientError::Broken { .. })),
        "{again:?}"
    );
    drop(connection);
    fake.finish().await;
}

#[tokio::test]
async fn a_closed_connection_is_reported_as_closed() {
    let fake = FakeBroker::start(|mut peer| async move {
        peer.request().await.unwrap();
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let error = connection
        .call(&MetadataRequest::default(), 4)
        .await
        .unwrap_err();
    assert!(
        matches!(error.frame_error(), Some(FrameError::Closed)),
        "{error}"
    );
    assert!(error.is_connection_lost());
    fake.finish().await;
}

#[tokio::test]
async fn a_refused_connection_names_the_address() {
    let port = crate::test_util::free_port().unwrap();
    let address = format!("127.0.0.1:{port}");
    let error = Connection::connect(&address, &config()).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Connect { address: a, source } if *a == address
            && source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{error}"
    );
    assert_eq!(error.to_string(), format!("connecting to {address} failed"));
}

#[tokio::test]
async fn versions_are_negotiated_once_and_clamped_to_the_client() {
    let fake = FakeBroker::start(|mut peer| async move {
        let request = peer.request().await.unwrap();
        assert_eq!(request.header.request_api_key, 18);
        assert_eq!(request.header.request_api_version, 3);
        let asked: ApiVersionsRequest = request.decode();
        assert_eq!(asked.client_software_name.as_str(), "tester");
        assert_eq!(
            asked.client_software_version.as_str(),
            env!("CARGO_PKG_VERSION")
        );
        // Metadata 0..=20, Fetch 0..=3, no CreateTopics; Produce 3..=13.
        let served = api_versions(&[(3, 0, 20), (1, 0, 3), (0, 3, 13)]);
        peer.respond::<ApiVersionsRequest>(&request, &served).await;
        assert!(peer.request().await.is_none(), "ApiVersions was asked once");
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    assert_eq!(
        connection.version::<MetadataRequest>(4..=12).await.unwrap(),
        12
    );
    assert_eq!(
        connection.version::<ProduceRequest>(3..=20).await.unwrap(),
        13
    );
    let error = connection
        .version::<FetchRequest>(4..=12)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::UnsupportedVersion {
                api: Api(1),
                broker: Some((0, 3)),
                client: (4, 12),
                ..
            }
        ),
        "{error}"
    );
    let error = connection
        .version::<CreateTopicsRequest>(2..=7)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::UnsupportedVersion { broker: None, .. }),
        "{error}"
    );
    let served = connection.api_versions().await.unwrap();
    assert_eq!(served.range(Api(3)), Some((0, 20)));
    assert_eq!(served.address(), fake.address);
    drop(connection);
    fake.finish().await;
}

#[tokio::test]
async fn a_broker_without_api_versions_v3_is_asked_at_v0() {
    let fake = FakeBroker::start(|mut peer| async move {
        let first = peer.request().await.unwrap();
        assert_eq!(first.header.request_api_version, 3);
        // What Kafka does: UNSUPPORTED_VERSION in the v0 format, whatever was asked.
        let mut body = BytesMut::new();
        body.put_i32(first.header.correlation_id);
        body.put_i16(35);
        body.put_i32(1); // one range: ApiVersions 0..=2
        body.put_i16(18);
        body.put_i16(0);
        body.put_i16(2);
        let mut frame = BytesMut::new();
        frame.put_i32(i32::try_from(body.len()).unwrap());
        frame.extend_from_slice(&body);
        peer.write(&frame).await;
        let second = peer.request().await.unwrap();
        assert_eq!(second.header.request_api_version, 0);
        assert_eq!(second.header.correlation_id, 1);
        let served = api_versions(&[(18, 0, 2), (3, 0, 8)]);
        peer.respond::<ApiVersionsRequest>(&second, &served).await;
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    assert_eq!(
        connection.version::<MetadataRequest>(4..=12).await.unwrap(),
        8
    );
    fake.finish().await;
}

#[tokio::test]
async fn an_api_versions_error_code_is_reported() {
    let fake = FakeBroker::start(|mut peer| async move {
        let request = peer.request().await.unwrap();
        let refused = ApiVersionsResponse::default().with_error_code(42);
        peer.respond::<ApiVersionsRequest>(&request, &refused).await;
    })
    .await;
    let mut connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let error = connection
        .version::<MetadataRequest>(4..=12)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::ApiVersions { code: 42, .. }),
        "{error}"
    );
    fake.finish().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let fake = FakeBroker::start(|mut peer| async move {
        // Three requests in flight before any answer; the second is unanswered.
        let mut requests = Vec::new();
        for _ in 0..4 {
            requests.push(peer.request().await.unwrap());
        }
        let ids: Vec<i32> = requests.iter().map(|r| r.header.correlation_id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(requests[1].header.request_api_key, 0, "the Produce");
        for (request, host) in [
            (&requests[0], "a"),
            (&requests[2], "c"),
            (&requests[3], "d"),
        ] {
            peer.respond::<MetadataRequest>(request, &metadata_with_broker(host))
                .await;
        }
    })
    .await;
    let connection = Connection::connect(&fake.address, &config()).await.unwrap();
    let (mut writer, mut reader) = connection.into_split();
    let request = MetadataRequest::default();
    let a = writer.send(&request, 4).await.unwrap();
    writer
        .send_unanswered(&ProduceRequest::default().with_acks(0), 3)
        .await
        .unwrap();
    let c = writer.send(&request, 4).await.unwrap();
    let d = writer.send(&request, 4).await.unwrap();
    assert_eq!((a.correlation_id(), c.correlation_id()), (0, 2));
    let answer = reader.receive(a).await.unwrap();
    assert_eq!(answer.brokers[0].host.as_str(), "a");
    // Awaiting the fourth while the third is due: out of step.
    let error = reader.receive(d).await.unwrap_err();
    assert!(
        matches!(
            error.frame_error(),
            Some(FrameError::CorrelationMismatch {
                expected: 3,
                got: 2
            })
        ),
        "{error}"
    );
    let again = reader.receive(c).await;
    assert!(
        matches!(again, Err(ClientError::Broken { .. })),
        "{again:?}"
    );
    fake.finish().await;
}
