//! One TCP connection to a broker: framed, correlated, bounded request/response calls.
//!
//! Wire framing (every Kafka request and response):
//!
//! | bytes | field                                  |
//! |-------|----------------------------------------|
//! | 0..4  | size: i32, big-endian, bytes following |
//! | 4..   | header + body                          |
//!
//! A response's size is checked (not negative, at most [`ConnectionConfig::max_response_bytes`])
//! before its buffer is allocated. Every call runs under [`ConnectionConfig::call_timeout`];
//! a call that times out or fails on the socket leaves the stream mid-frame, so the
//! connection refuses further calls ([`KafkaError::Broken`]).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::KafkaError;

/// Limits of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Limit for one request/response round trip.
    pub call_timeout: Duration,
    /// Largest response accepted; a larger size prefix fails the call before allocation.
    pub max_response_bytes: u32,
    /// The `client.id` sent in every request header.
    pub client_id: String,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
            client_id: "runnel-operator".to_string(),
        }
    }
}

/// A connection to one broker. Calls are sequential (`&mut self`).
pub struct Connection {
    stream: TcpStream,
    address: String,
    config: ConnectionConfig,
    next_correlation_id: i32,
    broken: bool,
}

impl Connection {
    /// Connects to `address` (`host:port`) within the configured timeout.
    pub async fn connect(address: &str, config: ConnectionConfig) -> Result<Self, KafkaError> {
        let connect_error = |source| KafkaError::Connect {
            address: address.to_string(),
            source,
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| {
                connect_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {}ms",
                        config.connect_timeout.as_millis()
                    ),
                ))
            })?
            .map_err(connect_error)?;
        // Latency matters more than packet count for small admin calls.
        stream.set_nodelay(true).map_err(connect_error)?;
        Ok(Self {
            stream,
            address: address.to_string(),
            config,
            next_correlation_id: 0,
            broken: false,
        })
    }

    /// The address this connection was made to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` at `version` and returns the decoded response.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let api = api_name(R::KEY);
        if self.broken {
            return Err(KafkaError::Broken {
                address: self.address.clone(),
            });
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(request, version, correlation_id, &self.config.client_id)?;

        let timeout = self.config.call_timeout;
        let max = self.config.max_response_bytes;
        let stream = &mut self.stream;
        let round_trip = async move {
            stream.write_all(&frame).await?;
            read_frame(stream, max).await
        };
        let outcome = tokio::time::timeout(timeout, round_trip).await;
        let body = match outcome {
            Ok(Ok(Ok(body))) => body,
            Ok(Ok(Err(size))) => {
                self.broken = true;
                return Err(KafkaError::FrameSize {
                    api,
                    address: self.address.clone(),
                    size,
                    max: self.config.max_response_bytes,
                });
            }
            Ok(Err(source)) => {
                self.broken = true;
                return Err(KafkaError::Io {
                    api,
                    address: self.address.clone(),
                    source,
                });
            }
            Err(_) => {
                self.broken = true;
                return Err(KafkaError::Timeout {
                    api,
                    address: self.address.clone(),
                    timeout,
                });
            }
        };
        decode_response::<R>(body, version, correlation_id)
    }
}

/// The name of an API key for errors and logs.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::CreatePartitions) => "CreatePartitions",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::IncrementalAlterConfigs) => "IncrementalAlterConfigs",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::Produce) => "Produce",
        _ => "Kafka request",
    }
}

/// The bytes of one request frame: size prefix, header, body.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes, KafkaError> {
    let codec_error = |reason: anyhow::Error| KafkaError::Codec {
        api: api_name(R::KEY),
        version,
        direction: "encoded",
        reason: reason.to_string(),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(codec_error)?;
    request.encode(&mut buf, version).map_err(codec_error)?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| KafkaError::Codec {
        api: api_name(R::KEY),
        version,
        direction: "encoded",
        reason: format!("{} bytes do not fit a frame", buf.len()),
    })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame body (header + body) and checks its correlation id.
pub fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, KafkaError> {
    let api = api_name(R::KEY);
    let codec_error = |reason: anyhow::Error| KafkaError::Codec {
        api,
        version,
        direction: "decoded",
        reason: reason.to_string(),
    };
    let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
        .map_err(codec_error)?;
    if header.correlation_id != correlation_id {
        return Err(KafkaError::CorrelationMismatch {
            api,
            expected: correlation_id,
            got: header.correlation_id,
        });
    }
    R::Response::decode(&mut body, version).map_err(codec_error)
}

/// Validates a size prefix: `Ok(len)` when `0 <= size <= max`, else `Err(size)`.
pub fn checked_frame_len(size: i32, max: u32) -> Result<usize, i32> {
    match u32::try_from(size) {
        Ok(len) if len <= max => usize::try_from(len).map_err(|_| size),
        _ => Err(size),
    }
}

/// Reads one frame; the inner `Err` is a size prefix out of bounds.
async fn read_frame(
    stream: &mut TcpStream,
    max: u32,
) -> Result<Result<Bytes, i32>, std::io::Error> {
    let size = stream.read_i32().await?;
    let len = match checked_frame_len(size, max) {
        Ok(len) => len,
        Err(size) => return Ok(Err(size)),
    };
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Ok(Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, MetadataResponse};
    use tokio::net::TcpListener;

    #[test]
    fn frame_length_is_bounded_before_allocation() {
        let max = 1024;
        assert_eq!(checked_frame_len(1023, max), Ok(1023));
        assert_eq!(checked_frame_len(1024, max), Ok(1024));
        assert_eq!(checked_frame_len(1025, max), Err(1025));
        assert_eq!(checked_frame_len(-1, max), Err(-1));
        assert_eq!(checked_frame_len(i32::MIN, max), Err(i32::MIN));
        assert_eq!(checked_frame_len(0, max), Ok(0));
    }

    #[test]
    fn request_frames_carry_their_size_and_header() {
        let frame = encode_request(&ApiVersionsRequest::default(), 0, 7, "me").unwrap();
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(usize::try_from(size).unwrap(), frame.len() - 4);
        // api key 18 (ApiVersions), version 0, correlation id 7, client id "me".
        assert_eq!(&frame[4..16], &[0, 18, 0, 0, 0, 0, 0, 7, 0, 2, b'm', b'e']);
    }

    /// A server that answers every request with `reply(correlation_id)`.
    async fn fake_server(reply: impl Fn(i32) -> Vec<u8> + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            loop {
                let Ok(size) = socket.read_i32().await else {
                    return;
                };
                let mut request = vec![0u8; usize::try_from(size).unwrap()];
                socket.read_exact(&mut request).await.unwrap();
                let correlation_id =
                    i32::from_be_bytes([request[4], request[5], request[6], request[7]]);
                if socket.write_all(&reply(correlation_id)).await.is_err() {
                    return;
                }
            }
        });
        address
    }

    #[tokio::test]
    async fn an_oversized_response_fails_the_call_and_breaks_the_connection() {
        let address = fake_server(|_| (64 * 1024 * 1024i32).to_be_bytes().to_vec()).await;
        let mut connection = Connection::connect(&address, ConnectionConfig::default())
            .await
            .unwrap();
        let error = connection
            .call(&MetadataRequest::default(), 4)
            .await
            .unwrap_err();
        assert!(
            matches!(error, KafkaError::FrameSize { size, .. } if size == 64 * 1024 * 1024),
            "{error}"
        );
        let again = connection
            .call(&MetadataRequest::default(), 4)
            .await
            .unwrap_err();
        assert!(matches!(again, KafkaError::Broken { .. }), "{again}");
    }

    #[tokio::test]
    async fn a_silent_broker_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let _keep = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let config = ConnectionConfig {
            call_timeout: Duration::from_millis(100),
            ..ConnectionConfig::default()
        };
        let mut connection = Connection::connect(&address, config).await.unwrap();
        let error = connection
            .call(&MetadataRequest::default(), 4)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                KafkaError::Timeout {
                    api: "Metadata",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_response_to_another_request_is_refused() {
        let address = fake_server(|correlation_id| {
            let mut body = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(correlation_id + 1)
                .encode(&mut body, 0)
                .unwrap();
            MetadataResponse::default().encode(&mut body, 4).unwrap();
            let mut frame = i32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            frame
        })
        .await;
        let mut connection = Connection::connect(&address, ConnectionConfig::default())
            .await
            .unwrap();
        let error = connection
            .call(&MetadataRequest::default(), 4)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                KafkaError::CorrelationMismatch {
                    expected: 0,
                    got: 1,
                    ..
                }
            ),
            "{error}"
        );
    }
}
