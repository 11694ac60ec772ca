//! The bench's one error type. Errors during setup end the run; errors during the
//! load phase are counted in the report (see `stats::ErrorCounts`) and end only the
//! connection they happened on.

use std::net::SocketAddr;

use kafka_protocol::messages::ApiKey;

/// An error source from the codec crate, which reports `anyhow` errors.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to a broker or setting up a run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag's value cannot be used.
    #[error("{flag} is invalid: {reason}")]
    InvalidSetting {
        /// The flag, e.g. `--record-size`.
        flag: &'static str,
        /// Why, in a sentence.
        reason: String,
    },
    /// A HOST:PORT did not resolve.
    #[error("cannot resolve {address}")]
    Resolve {
        /// The address as given.
        address: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// A leader's advertised address is not where the bench may connect.
    #[error("leader {node_id} advertises {address}, which is not the bootstrap host {bootstrap} (pass --allow-other-hosts to connect anyway)")]
    HostNotAllowed {
        /// The broker's node id.
        node_id: i32,
        /// Its advertised HOST:PORT.
        address: String,
        /// The bootstrap IP.
        bootstrap: SocketAddr,
    },
    /// Connecting, reading or writing failed.
    #[error("connection to {address} failed")]
    Io {
        /// The peer.
        address: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The broker closed the connection.
    #[error("{address} closed the connection")]
    Closed {
        /// The peer.
        address: SocketAddr,
    },
    /// No answer within the request timeout.
    #[error("no {api:?} response from {address} within {millis} ms")]
    Timeout {
        /// The request's API.
        api: ApiKey,
        /// The peer.
        address: SocketAddr,
        /// The limit that passed.
        millis: u64,
    },
    /// A response frame is longer than the bench accepts, or negative.
    #[error("{address} sent a {size}-byte frame; the limit is {max}")]
    FrameSize {
        /// The peer.
        address: SocketAddr,
        /// The frame size read from the wire.
        size: i64,
        /// The largest accepted.
        max: usize,
    },
    /// A request could not be encoded.
    #[error("cannot encode {api:?} v{version}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version used.
        version: i16,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// A response could not be decoded.
    #[error("cannot decode {api:?} v{version} response from {address}")]
    Decode {
        /// The response's API.
        api: ApiKey,
        /// The version used.
        version: i16,
        /// The peer.
        address: SocketAddr,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// A response answered another request.
    #[error("{address} answered correlation id {got} where {expected} was due")]
    CorrelationMismatch {
        /// The peer.
        address: SocketAddr,
        /// The id of the oldest request in flight.
        expected: i32,
        /// The id in the response.
        got: i32,
    },
    /// Broker and bench share no version of an API the bench needs.
    #[error("the broker serves {api:?} v{broker_min}..={broker_max}; the bench speaks v{client_min}..={client_max}")]
    NoCommonVersion {
        /// The API.
        api: ApiKey,
        /// Lowest version the broker serves (or -1 if it does not list the API).
        broker_min: i16,
        /// Highest version the broker serves.
        broker_max: i16,
        /// Lowest version the bench speaks.
        client_min: i16,
        /// Highest version the bench speaks.
        client_max: i16,
    },
    /// A request failed with a Kafka error code.
    #[error("{api:?} failed with Kafka error code {code} ({name})")]
    Kafka {
        /// The request's API.
        api: ApiKey,
        /// The Kafka error code.
        code: i16,
        /// The error's name.
        name: String,
    },
    /// The topic does not exist and was not to be created.
    #[error("topic {topic} does not exist (pass --create-topic to create it)")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// Some partitions had no leader within the wait.
    #[error("partition {partition} of {topic} has no leader")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition without a leader.
        partition: i32,
    },
    /// The whole run's `--timeout` passed during setup.
    #[error("the run did not get past setup within --timeout ({seconds} s)")]
    RunTimeout {
        /// The limit.
        seconds: f64,
    },
    /// Metadata named a leader that is not among its brokers.
    #[error("leader {node_id} is not among the brokers in Metadata")]
    UnknownBroker {
        /// The missing node id.
        node_id: i32,
    },
}

impl BenchError {
    /// Wraps a codec encode error.
    pub fn encode(api: ApiKey, version: i16, source: anyhow::Error) -> Self {
        BenchError::Encode {
            api,
            version,
            source: source.into(),
        }
    }

    /// Wraps a codec decode error.
    pub fn decode(api: ApiKey, version: i16, address: SocketAddr, source: anyhow::Error) -> Self {
        BenchError::Decode {
            api,
            version,
            address,
            source: source.into(),
        }
    }

    /// The error from a Kafka error code, or `None` for code 0.
    pub fn from_code(api: ApiKey, code: i16) -> Option<Self> {
        (code != 0).then(|| BenchError::Kafka {
            api,
            code,
            name: error_name(code),
        })
    }

    /// A short label to count this error under in the report.
    pub fn label(&self) -> String {
        match self {
            BenchError::Kafka { api, name, .. } => format!("{api:?}: {name}"),
            BenchError::Timeout { api, .. } => format!("{api:?}: request timed out"),
            BenchError::Io { .. } | BenchError::Closed { .. } => "connection lost".to_string(),
            other => other.to_string(),
        }
    }
}

/// The Kafka name of an error code, e.g. `NotLeaderOrFollower`.
pub fn error_name(code: i16) -> String {
    use kafka_protocol::error::ParseResponseErrorCode;
    match code.err() {
        Some(error) => format!("{error:?}"),
        None => "None".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_become_named_errors() {
        assert!(BenchError::from_code(ApiKey::Produce, 0).is_none());
        let error = BenchError::from_code(ApiKey::Produce, 6).unwrap();
        assert_eq!(error.label(), "Produce: NotLeaderOrFollower");
        assert_eq!(
            error.to_string(),
            "Produce failed with Kafka error code 6 (NotLeaderOrFollower)"
        );
    }
}
