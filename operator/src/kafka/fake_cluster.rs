//! Scripted fake brokers on 127.0.0.1:0 for the routing tests. Each one answers
//! ApiVersions itself (with the ranges it was given) and every other request with its
//! script, on any number of connections, and records what it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, HeaderVersion, Request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The ranges a fake broker advertises unless told otherwise: what Runnel's broker serves.
const SERVED: [(ApiKey, i16, i16); 6] = [
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
];

/// One request as the fake broker read it.
pub struct Received {
    /// The decoded header.
    pub header: RequestHeader,
    /// The bytes after the header.
    body: Bytes,
}

impl Received {
    /// The body decoded as `R` at the header's version.
    pub fn decode<R: Request>(&self) -> R {
        assert_eq!(self.header.request_api_key, R::KEY, "another API");
        R::decode(&mut self.body.clone(), self.header.request_api_version).unwrap()
    }

    /// The API of this request.
    pub fn api(&self) -> ApiKey {
        ApiKey::try_from(self.header.request_api_key).unwrap()
    }

    /// A response frame answering this request with `response`.
    pub fn answer<R: Request>(&self, response: &R::Response) -> Option<Bytes> {
        let version = self.header.request_api_version;
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(self.header.correlation_id)
            .encode(&mut body, R::Response::header_version(version))
            .unwrap();
        response.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(i32::try_from(body.len()).unwrap());
        frame.extend_from_slice(&body);
        Some(frame.freeze())
    }
}

/// What a script does with a request: the response frame, or `None` to close the
/// connection unanswered.
pub type Script = dyn Fn(&Received) -> Option<Bytes> + Send + Sync;

/// A fake broker: bound at once, serving once given its script.
pub struct FakeNode {
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// The port alone.
    pub port: i32,
    listener: Option<TcpListener>,
    served: Vec<(ApiKey, i16, i16)>,
    sent: Arc<Mutex<Vec<ApiKey>>>,
    connections: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Binds a free port; nothing is accepted before [`FakeNode::serve`].
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Self {
            address: format!("127.0.0.1:{port}"),
            port: i32::from(port),
            listener: Some(listener),
            served: SERVED.to_vec(),
            sent: Arc::default(),
            connections: Arc::default(),
            task: None,
        }
    }

    /// Advertises `min..=max` of `api` instead of the default range.
    pub fn advertise(&mut self, api: ApiKey, min: i16, max: i16) {
        self.served.retain(|(key, ..)| *key != api);
        self.served.push((api, min, max));
    }

    /// Accepts connections and answers their requests with `script`.
    pub fn serve(&mut self, script: impl Fn(&Received) -> Option<Bytes> + Send + Sync + 'static) {
        let listener = self.listener.take().unwrap();
        let script: Arc<Script> = Arc::new(script);
        let (served, sent, connections) = (
            self.served.clone(),
            Arc::clone(&self.sent),
            Arc::clone(&self.connections),
        );
        self.task = Some(tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (script, served, sent) =
                    (Arc::clone(&script), served.clone(), Arc::clone(&sent));
                tokio::spawn(connection(socket, script, served, sent));
            }
        }));
    }

    /// The APIs sent to this broker so far, in order, ApiVersions left out.
    pub fn sent(&self) -> Vec<ApiKey> {
        self.sent.lock().unwrap().clone()
    }

    /// How many connections were made to this broker.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn connection(
    mut socket: TcpStream,
    script: Arc<Script>,
    served: Vec<(ApiKey, i16, i16)>,
    sent: Arc<Mutex<Vec<ApiKey>>>,
) {
    while let Ok(size) = socket.read_i32().await {
        let mut frame = vec![0; usize::try_from(size).unwrap()];
        socket.read_exact(&mut frame).await.unwrap();
        let mut rest = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut rest).unwrap();
        let received = Received {
            header,
            body: rest.copy_to_bytes(rest.remaining()),
        };
        let answer = if received.api() == ApiKey::ApiVersions {
            received.answer::<ApiVersionsRequest>(&api_versions(&served))
        } else {
            sent.lock().unwrap().push(received.api());
            script(&received)
        };
        match answer {
            Some(frame) => socket.write_all(&frame).await.unwrap(),
            None => return,
        }
    }
}

fn api_versions(served: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        served
            .iter()
            .map(|(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}
