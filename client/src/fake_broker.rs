//! A fake broker for one connection on 127.0.0.1:0: the test scripts what it reads and
//! writes, and asserts the bytes it receives.

use std::future::Future;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, HeaderVersion, Request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A fake broker serving one connection with a script.
pub struct FakeBroker {
    /// `127.0.0.1:<port>`.
    pub address: String,
    task: JoinHandle<()>,
}

impl FakeBroker {
    /// Listens on a free port and runs `script` on the first connection accepted.
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: FnOnce(Peer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            script(Peer { socket }).await;
        });
        FakeBroker { address, task }
    }

    /// Waits for the script to end; its assertion failures fail the test here.
    pub async fn finish(self) {
        self.task.await.unwrap();
    }
}

/// One request as the fake broker read it.
pub struct Received {
    /// The whole frame, size prefix included.
    pub frame: Bytes,
    /// The decoded header.
    pub header: RequestHeader,
    /// The bytes after the header.
    pub body: Bytes,
}

impl Received {
    /// The body decoded as `R` at the header's version.
    pub fn decode<R: Request>(&self) -> R {
        assert_eq!(self.header.request_api_key, R::KEY, "another API");
        R::decode(&mut self.body.clone(), self.header.request_api_version).unwrap()
    }
}

/// The broker's side of the connection.
pub struct Peer {
    socket: TcpStream,
}

impl Peer {
    /// The next request, or `None` when the client closed the connection.
    pub async fn request(&mut self) -> Option<Received> {
        let size = self.socket.read_i32().await.ok()?;
        let mut frame = BytesMut::new();
        frame.put_i32(size);
        frame.resize(4 + usize::try_from(size).unwrap(), 0);
        self.socket.read_exact(&mut frame[4..]).await.unwrap();
        let frame = frame.freeze();
        let mut rest = frame.slice(4..);
        let header = decode_request_header_from_buffer(&mut rest).unwrap();
        Some(Received {
            frame,
            header,
            body: rest,
        })
    }

    /// Answers `to` with `response` (header and body at the request's version).
    pub async fn respond<R: Request>(&mut self, to: &Received, response: &R::Response) {
        let frame = response_frame::<R>(to, response, 0);
        self.write(&frame).await;
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }
}

/// A response frame answering `to`, with `padding` zero bytes after the body.
pub fn response_frame<R: Request>(to: &Received, response: &R::Response, padding: usize) -> Bytes {
    let version = to.header.request_api_version;
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(to.header.correlation_id)
        .encode(&mut body, R::Response::header_version(version))
        .unwrap();
    response.encode(&mut body, version).unwrap();
    body.put_bytes(0, padding);
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(body.len()).unwrap());
    frame.extend_from_slice(&body);
    frame.freeze()
}
