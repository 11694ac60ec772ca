//! One TCP connection to a broker: framed, correlated, bounded calls under timeouts,
//! the broker's ApiVersions asked once, and a split into a writer and a reader for
//! pipelining.
//!
//! Kafka answers the requests of one connection in the order they were sent, so a
//! connection numbers its requests (correlation ids 0, 1, 2, ... wrapping to 0 after
//! `i32::MAX`) and every response must carry the id of the oldest request awaited.
//! After a timeout, a socket error, an oversized frame or a correlation mismatch the
//! stream is mid-frame or out of step: that half refuses further use
//! ([`ClientError::Broken`]). So does a call, send or receive whose future was dropped
//! before it finished (cancelled by `select!` or an outer timeout). A response that was
//! read whole but did not decode leaves the connection usable.

use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tracing::{debug, trace};

use crate::config::ClientConfig;
use crate::error::{Api, ClientError, FrameError};
use crate::frame::{decode_response, encode_request, read_frame};
use crate::versions::ServedVersions;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// A connection to one broker. Calls are sequential (`&mut self`); for several requests
/// in flight, [`Connection::into_split`].
#[derive(Debug)]
pub struct Connection {
    writer: RequestWriter,
    reader: ResponseReader,
    config: ClientConfig,
    served: Option<ServedVersions>,
}

impl Connection {
    /// Connects to `address` (`host:port`) within `config.connect_timeout`, with
    /// Nagle's algorithm off. Sends nothing: ApiVersions is asked at the first
    /// [`Connection::version`] or [`Connection::api_versions`].
    pub async fn connect(address: &str, config: &ClientConfig) -> Result<Self, ClientError> {
        let connect_error = |source| ClientError::Connect {
            address: address.to_string(),
            source,
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::ConnectTimeout {
                address: address.to_string(),
                timeout: config.connect_timeout,
            })?
            .map_err(connect_error)?;
        // Requests are written whole; waiting to coalesce them only adds latency.
        stream.set_nodelay(true).map_err(connect_error)?;
        debug!(address, client_id = %config.client_id, "connected to a Kafka broker");
        let address: Arc<str> = Arc::from(address);
        let (read, write) = stream.into_split();
        Ok(Connection {
            writer: RequestWriter {
                half: write,
                address: Arc::clone(&address),
                client_id: StrBytes::from_string(config.client_id.clone()),
                next_correlation_id: 0,
                timeout: config.request_timeout,
                broken: false,
            },
            reader: ResponseReader {
                half: read,
                address,
                max_response_bytes: config.max_response_bytes,
                timeout: config.request_timeout,
                broken: false,
            },
            config: config.clone(),
            served: None,
        })
    }

    /// The address this connection was made to.
    pub fn address(&self) -> &str {
        &self.writer.address
    }

    /// Sends `request` at `version` and returns its decoded response, all within the
    /// request timeout.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        if self.writer.broken || self.reader.broken {
            return Err(self.writer.broken_error());
        }
        let timeout = self.writer.timeout;
        let (writer, reader) = (&mut self.writer, &mut self.reader);
        let exchange = async {
            let pending = writer.write(request, version).await?;
            reader.read(pending).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                self.writer.broken = true;
                self.reader.broken = true;
                Err(timeout_error::<R>(&self.writer.address, timeout))
            }
        }
    }

    /// What the broker serves, asked once per connection: ApiVersions v3, or v0 when the
    /// broker refuses v3 (it then answers in the v0 format, which may not decode as v3).
    pub async fn api_versions(&mut self) -> Result<&ServedVersions, ClientError> {
        let served = match self.served.take() {
            Some(served) => served,
            None => self.ask_api_versions().await?,
        };
        Ok(self.served.insert(served))
    }

    /// The version to send `R` at: the highest that the broker serves (ApiVersions,
    /// asked once per connection), the codec knows and `supported` holds — the versions
    /// the caller builds requests for.
    pub async fn version<R: Request>(
        &mut self,
        supported: RangeInclusive<i16>,
    ) -> Result<i16, ClientError> {
        self.api_versions().await?.version::<R>(supported)
    }

    /// Splits the connection for pipelining: requests on one task, responses on another.
    pub fn into_split(self) -> (RequestWriter, ResponseReader) {
        (self.writer, self.reader)
    }

    async fn ask_api_versions(&mut self) -> Result<ServedVersions, ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_string(self.config.software_name.clone()))
            .with_client_software_version(StrBytes::from_string(
                self.config.software_version.clone(),
            ));
        let response = match self.call(&request, 3).await {
            Ok(response) if response.error_code != UNSUPPORTED_VERSION => response,
            Ok(_)
            | Err(ClientError::Call {
                source: FrameError::Decode(_),
                ..
            }) => self.call(&ApiVersionsRequest::default(), 0).await?,
            Err(other) => return Err(other),
        };
        if response.error_code != 0 {
            return Err(ClientError::ApiVersions {
                address: self.address().to_string(),
                code: response.error_code,
            });
        }
        Ok(ServedVersions::from_response(self.address(), &response))
    }
}

/// The sending half of a connection: encodes, numbers and writes requests.
#[derive(Debug)]
pub struct RequestWriter {
    half: OwnedWriteHalf,
    address: Arc<str>,
    client_id: StrBytes,
    next_correlation_id: i32,
    timeout: Duration,
    broken: bool,
}

impl RequestWriter {
    /// Writes `request` at `version` within the request timeout; its response is read
    /// with [`ResponseReader::receive`], in the order requests were sent.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<Pending<R>, ClientError> {
        match tokio::time::timeout(self.timeout, self.write(request, version)).await {
            Ok(result) => result,
            Err(_) => {
                self.broken = true;
                Err(timeout_error::<R>(&self.address, self.timeout))
            }
        }
    }

    /// Writes a request the broker does not answer (Produce with acks=0).
    pub async fn send_unanswered<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.send(request, version).await.map(|_unanswered| ())
    }

    async fn write<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<Pending<R>, ClientError> {
        if self.broken {
            return Err(self.broken_error());
        }
        let correlation_id = self.next_correlation_id;
        // Nothing was written when encoding fails: the connection stays usable.
        let frame = encode_request(request, version, correlation_id, &self.client_id)
            .map_err(|source| call_error::<R>(&self.address, version, source))?;
        self.next_correlation_id = correlation_id.checked_add(1).unwrap_or(0);
        // Broken until the frame is out whole: a write dropped midway (a timeout, a
        // cancelled task) leaves part of a frame on the wire.
        self.broken = true;
        if let Err(source) = self.half.write_all(&frame).await {
            return Err(call_error::<R>(
                &self.address,
                version,
                FrameError::from_io(source),
            ));
        }
        self.broken = false;
        trace!(api = %Api::of::<R>(), version, correlation_id, bytes = frame.len(), "request sent");
        Ok(Pending {
            correlation_id,
            version,
            _response: PhantomData,
        })
    }

    fn broken_error(&self) -> ClientError {
        ClientError::Broken {
            address: self.address.to_string(),
        }
    }
}

/// The receiving half of a connection: reads responses in request order.
#[derive(Debug)]
pub struct ResponseReader {
    half: OwnedReadHalf,
    address: Arc<str>,
    max_response_bytes: u32,
    timeout: Duration,
    broken: bool,
}

impl ResponseReader {
    /// Reads the response to `pending`, which must be the oldest request awaited, within
    /// the request timeout.
    pub async fn receive<R: Request>(
        &mut self,
        pending: Pending<R>,
    ) -> Result<R::Response, ClientError> {
        match tokio::time::timeout(self.timeout, self.read(pending)).await {
            Ok(result) => result,
            Err(_) => {
                self.broken = true;
                Err(timeout_error::<R>(&self.address, self.timeout))
            }
        }
    }

    async fn read<R: Request>(&mut self, pending: Pending<R>) -> Result<R::Response, ClientError> {
        if self.broken {
            return Err(ClientError::Broken {
                address: self.address.to_string(),
            });
        }
        // Broken until a whole frame is read: a read dropped midway leaves the stream
        // inside a frame.
        self.broken = true;
        let decoded = match read_frame(&mut self.half, self.max_response_bytes).await {
            Ok(body) => decode_response::<R>(body, pending.version, pending.correlation_id),
            Err(error) => Err(error),
        };
        self.broken = decoded
            .as_ref()
            .is_err_and(|error| !error.leaves_stream_usable());
        decoded.map_err(|source| call_error::<R>(&self.address, pending.version, source))
    }
}

/// A request written and not yet answered: the ticket for its response.
#[must_use = "its response is read with ResponseReader::receive"]
pub struct Pending<R> {
    correlation_id: i32,
    version: i16,
    _response: PhantomData<fn() -> R>,
}

impl<R> Pending<R> {
    /// The request's correlation id.
    pub fn correlation_id(&self) -> i32 {
        self.correlation_id
    }

    /// The version the request was sent at.
    pub fn version(&self) -> i16 {
        self.version
    }
}

impl<R: Request> fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("api", &Api::of::<R>())
            .field("version", &self.version)
            .field("correlation_id", &self.correlation_id)
            .finish()
    }
}

fn call_error<R: Request>(address: &str, version: i16, source: FrameError) -> ClientError {
    ClientError::Call {
        api: Api::of::<R>(),
        version,
        address: address.to_string(),
        source,
    }
}

fn timeout_error<R: Request>(address: &str, timeout: Duration) -> ClientError {
    ClientError::Timeout {
        api: Api::of::<R>(),
        address: address.to_string(),
        timeout,
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
