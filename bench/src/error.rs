//! The bench's one error type. Errors during setup end the run; errors during the
//! load phase are counted in the report (see `stats::ErrorCounts`) and end only the
//! connection they happened on.

use std::net::SocketAddr;

use kafka_protocol::messages::ApiKey;
use runnel_client::{ClientError, CodecError};

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
    /// A call to a broker failed: connecting, a timeout, a frame out of bounds or out of
    /// step, a response that does not decode, or no common version of an API.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Records could not be encoded as a batch.
    #[error("cannot encode a record batch for {api:?} (batch format v{version})")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The record batch format version.
        version: i16,
        /// The codec's error.
        #[source]
        source: CodecError,
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
    /// A file operation of the disk-ceiling loop failed.
    #[error("cannot {op} {path}")]
    Disk {
        /// What was being done (`create`, `write`, `fdatasync`, ...).
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// None of the bootstrap brokers answered.
    #[error("no broker of {bootstrap} answered")]
    NoBroker {
        /// The bootstrap list as given.
        bootstrap: String,
    },
    /// The failover control channel (standard input and output) failed.
    #[error("the control channel failed")]
    Control(#[source] std::io::Error),
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
            BenchError::Client(ClientError::Timeout { api, .. }) => {
                format!("{api}: request timed out")
            }
            BenchError::Client(error) if error.is_connection_lost() => {
                "connection lost".to_string()
            }
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

    #[test]
    fn client_errors_are_counted_by_kind() {
        let timeout = BenchError::from(ClientError::Timeout {
            api: runnel_client::Api(ApiKey::Fetch as i16),
            address: "127.0.0.1:9092".into(),
            timeout: std::time::Duration::from_secs(30),
        });
        assert_eq!(timeout.label(), "Fetch: request timed out");
        let refused = BenchError::from(ClientError::Connect {
            address: "127.0.0.1:9092".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        });
        assert_eq!(refused.label(), "connection lost");
        let closed = BenchError::from(ClientError::Call {
            api: runnel_client::Api(ApiKey::Produce as i16),
            version: 9,
            address: "127.0.0.1:9092".into(),
            source: runnel_client::FrameError::Closed,
        });
        assert_eq!(closed.label(), "connection lost");
    }
}
