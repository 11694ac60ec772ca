//! Why a call failed: [`FrameError`] for one frame (no address, as the codec layer sees
//! it) and [`ClientError`] for a call on a connection (with the address and the API).

use std::fmt;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Request;

/// A source error of the codec, which reports `anyhow` errors.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A Kafka API by its key, printed by its name (`Metadata`, `Produce`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Api(pub i16);

impl Api {
    /// The API of request type `R`.
    pub fn of<R: Request>() -> Self {
        Api(R::KEY)
    }

    /// The codec's key, when this is a key the codec knows.
    pub fn key(self) -> Option<ApiKey> {
        ApiKey::try_from(self.0).ok()
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key() {
            // The codec's key names are Kafka's API names.
            Some(key) => write!(f, "{key:?}"),
            None => write!(f, "API key {}", self.0),
        }
    }
}

/// Why one request or response frame could not be written, read or understood.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection (end of stream before or inside a frame).
    #[error("the peer closed the connection")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("the socket failed")]
    Io(#[source] std::io::Error),
    /// A response's size prefix is negative or above the maximum; nothing was allocated.
    #[error("the response announced {size} bytes, outside 0..={max}")]
    Size {
        /// The size read from the wire.
        size: i32,
        /// The largest size accepted.
        max: u32,
    },
    /// The request could not be encoded at this version, or does not fit a frame.
    #[error("the request could not be encoded")]
    Encode(#[source] CodecError),
    /// The response's header or body could not be decoded at this version.
    #[error("the response could not be decoded")]
    Decode(#[source] CodecError),
    /// The response answers another request than the one expected.
    #[error("the response carried correlation id {got} where {expected} was due")]
    CorrelationMismatch {
        /// The id of the request awaited.
        expected: i32,
        /// The id in the response.
        got: i32,
    },
}

impl FrameError {
    pub(crate) fn from_io(source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
            _ => FrameError::Io(source),
        }
    }

    /// Whether the stream is still at a frame boundary after this error, so later
    /// responses can still be read: true only when a whole frame was read (or nothing
    /// was written) and merely not understood.
    pub fn leaves_stream_usable(&self) -> bool {
        matches!(self, FrameError::Encode(_) | FrameError::Decode(_))
    }
}

/// Why a call on a [`Connection`](crate::Connection) failed. Every variant names the
/// broker's address; those about one request name its API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection could be made to the address.
    #[error("connecting to {address} failed")]
    Connect {
        /// The `host:port` dialled.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection was not established within the connect timeout.
    #[error("connecting to {address} timed out after {}ms", timeout.as_millis())]
    ConnectTimeout {
        /// The `host:port` dialled.
        address: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// Writing the request or reading its response failed.
    #[error("{api} v{version} to {address} failed")]
    Call {
        /// The API called.
        api: Api,
        /// The version sent.
        version: i16,
        /// The broker's address.
        address: String,
        /// What went wrong with the frame.
        #[source]
        source: FrameError,
    },
    /// The request was not written, or its response not read, within the request
    /// timeout; the connection is unusable afterwards.
    #[error("{api} to {address} timed out after {}ms", timeout.as_millis())]
    Timeout {
        /// The API called.
        api: Api,
        /// The broker's address.
        address: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// An earlier failure left the stream mid-frame or out of step.
    #[error("the connection to {address} broke earlier and cannot be reused")]
    Broken {
        /// The broker's address.
        address: String,
    },
    /// The broker and the client share no version of an API.
    #[error("{}", unsupported_text(*api, address, *broker, *client))]
    UnsupportedVersion {
        /// The API.
        api: Api,
        /// The broker's address.
        address: String,
        /// The broker's advertised range, `None` when it does not list the API.
        broker: Option<(i16, i16)>,
        /// The range this client implements (its own range within the codec's).
        client: (i16, i16),
    },
    /// The broker answered ApiVersions with an error code.
    #[error("{address} answered ApiVersions with Kafka error code {code}")]
    ApiVersions {
        /// The broker's address.
        address: String,
        /// The Kafka error code.
        code: i16,
    },
}

fn unsupported_text(
    api: Api,
    address: &str,
    broker: Option<(i16, i16)>,
    (client_min, client_max): (i16, i16),
) -> String {
    let served = match broker {
        Some((min, max)) => format!("serves {api} v{min}..={max}"),
        None => format!("does not serve {api}"),
    };
    format!("{address} {served}; this client speaks v{client_min}..={client_max}")
}

impl ClientError {
    /// The frame error inside a failed call, if that is what this is.
    pub fn frame_error(&self) -> Option<&FrameError> {
        match self {
            ClientError::Call { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the connection to the broker was lost or never made (refused, closed,
    /// reset, timed out): a new connection may succeed.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectTimeout { .. }
            | ClientError::Timeout { .. }
            | ClientError::Broken { .. } => true,
            ClientError::Call { source, .. } => {
                matches!(source, FrameError::Closed | FrameError::Io(_))
            }
            ClientError::UnsupportedVersion { .. } | ClientError::ApiVersions { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn apis_print_their_kafka_names() {
        assert_eq!(Api::of::<MetadataRequest>().to_string(), "Metadata");
        assert_eq!(Api(0).to_string(), "Produce");
        assert_eq!(Api(9999).to_string(), "API key 9999");
    }

    #[test]
    fn errors_read_as_sentences_naming_address_and_api() {
        let error = ClientError::Call {
            api: Api(3),
            version: 12,
            address: "10.0.0.1:9092".into(),
            source: FrameError::Size {
                size: -1,
                max: 1024,
            },
        };
        assert_eq!(error.to_string(), "Metadata v12 to 10.0.0.1:9092 failed");
        assert_eq!(
            error.frame_error().map(ToString::to_string).as_deref(),
            Some("the response announced -1 bytes, outside 0..=1024")
        );
        let unsupported = ClientError::UnsupportedVersion {
            api: Api(1),
            address: "b:9092".into(),
            broker: Some((0, 3)),
            client: (4, 12),
        };
        assert_eq!(
            unsupported.to_string(),
            "b:9092 serves Fetch v0..=3; this client speaks v4..=12"
        );
        let missing = ClientError::UnsupportedVersion {
            api: Api(19),
            address: "b:9092".into(),
            broker: None,
            client: (2, 7),
        };
        assert_eq!(
            missing.to_string(),
            "b:9092 does not serve CreateTopics; this client speaks v2..=7"
        );
    }
}
