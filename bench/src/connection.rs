//! Kafka framing over one TCP connection: a 4-byte big-endian size, then the request or
//! response header and body. A connection can be used call-by-call, or split into a
//! writer and a reader for pipelined requests (Kafka answers in request order on one
//! connection, so the reader matches responses to a FIFO of correlation ids).
//!
//! | bytes | request frame                         | response frame             |
//! |-------|---------------------------------------|----------------------------|
//! | 0..4  | size of the rest: i32                 | size of the rest: i32      |
//! | 4..   | RequestHeader (v1 or v2), then body   | ResponseHeader, then body  |

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::error::BenchError;

/// The largest response frame accepted (the largest Fetch response plus slack).
pub const MAX_RESPONSE_BYTES: usize = (crate::config::MAX_FETCH_BYTES as usize) + (4 << 20);

fn api_key<R: Request>() -> ApiKey {
    // Every request type of the codec has a known key; ApiVersions is a harmless fallback.
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// One open connection to a broker, used call by call.
#[derive(Debug)]
pub struct Connection {
    writer: FrameWriter,
    reader: FrameReader,
}

impl Connection {
    /// Connects to `address` within `timeout`, with Nagle's algorithm off.
    pub async fn connect(
        address: SocketAddr,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, BenchError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(BenchError::Io { address, source }),
            Err(_) => {
                return Err(BenchError::Io {
                    address,
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|source| BenchError::Io { address, source })?;
        let (read, write) = stream.into_split();
        Ok(Connection {
            writer: FrameWriter {
                half: write,
                address,
                client_id: StrBytes::from_string(client_id.to_string()),
                next_correlation_id: 1,
            },
            reader: FrameReader {
                half: read,
                address,
                timeout,
            },
        })
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.writer.address
    }

    /// Sends one request and waits for its response.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, BenchError> {
        let correlation_id = self.writer.send(request, version).await?;
        self.reader.receive::<R>(correlation_id, version).await
    }

    /// Splits the connection for pipelining: requests on one task, responses on another.
    pub fn into_split(self) -> (FrameWriter, FrameReader) {
        (self.writer, self.reader)
    }
}

/// The sending half: encodes and writes request frames, numbering them.
#[derive(Debug)]
pub struct FrameWriter {
    half: OwnedWriteHalf,
    address: SocketAddr,
    client_id: StrBytes,
    next_correlation_id: i32,
}

impl FrameWriter {
    /// Encodes `request` at `version`, writes it, and returns its correlation id.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32, BenchError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let frame = encode_request(request, version, correlation_id, &self.client_id)?;
        self.half
            .write_all(&frame)
            .await
            .map_err(|source| BenchError::Io {
                address: self.address,
                source,
            })?;
        Ok(correlation_id)
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub async fn send_only<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), BenchError> {
        self.send(request, version).await.map(drop)
    }
}

/// Encodes a request frame, size prefix included.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes, BenchError> {
    let api = api_key::<R>();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    header
        .encode(&mut frame, api.request_header_version(version))
        .map_err(|e| BenchError::encode(api, version, e))?;
    request
        .encode(&mut frame, version)
        .map_err(|e| BenchError::encode(api, version, e))?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| BenchError::InvalidSetting {
        flag: "--batch-size",
        reason: "a request would exceed 2 GiB".to_string(),
    })?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// The receiving half: reads response frames in order.
#[derive(Debug)]
pub struct FrameReader {
    half: OwnedReadHalf,
    address: SocketAddr,
    timeout: Duration,
}

impl FrameReader {
    /// Reads the response to the request numbered `correlation_id`, within the timeout.
    pub async fn receive<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Result<R::Response, BenchError> {
        let api = api_key::<R>();
        let mut body = match tokio::time::timeout(self.timeout, self.read_frame()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(BenchError::Timeout {
                    api,
                    address: self.address,
                    millis: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        };
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| BenchError::decode(api, version, self.address, e))?;
        if header.correlation_id != correlation_id {
            return Err(BenchError::CorrelationMismatch {
                address: self.address,
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| BenchError::decode(api, version, self.address, e))
    }

    async fn read_frame(&mut self) -> Result<Bytes, BenchError> {
        let address = self.address;
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                BenchError::Closed { address }
            } else {
                BenchError::Io { address, source }
            }
        };
        let mut size = [0u8; 4];
        self.half.read_exact(&mut size).await.map_err(io)?;
        let size = i32::from_be_bytes(size);
        let len = checked_frame_len(size).ok_or(BenchError::FrameSize {
            address,
            size: i64::from(size),
            max: MAX_RESPONSE_BYTES,
        })?;
        let mut body = BytesMut::zeroed(len);
        self.half.read_exact(&mut body).await.map_err(io)?;
        Ok(body.freeze())
    }
}

/// The body length of a frame whose size field reads `size`, if it is within bounds.
pub fn checked_frame_len(size: i32) -> Option<usize> {
    usize::try_from(size)
        .ok()
        .filter(|len| (4..=MAX_RESPONSE_BYTES).contains(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;

    #[test]
    fn frame_length_bounds() {
        let max = i32::try_from(MAX_RESPONSE_BYTES).unwrap();
        assert_eq!(checked_frame_len(max - 1), Some(MAX_RESPONSE_BYTES - 1));
        assert_eq!(checked_frame_len(max), Some(MAX_RESPONSE_BYTES));
        assert_eq!(checked_frame_len(max + 1), None);
        assert_eq!(checked_frame_len(-1), None);
        // Smaller than a correlation id: no valid response.
        assert_eq!(checked_frame_len(3), None);
    }

    #[test]
    fn request_frame_carries_its_size_and_header() {
        let client = StrBytes::from_static_str("b");
        let frame = encode_request(&ApiVersionsRequest::default(), 0, 7, &client).unwrap();
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(usize::try_from(size).unwrap(), frame.len() - 4);
        // api key 18, version 0, correlation id 7
        assert_eq!(&frame[4..12], &[0, 18, 0, 0, 0, 0, 0, 7]);
    }
}
