//! [`KafkaError`]: why a call of the admin client failed.

use kafka_protocol::ResponseError;
use runnel_client::ClientError;

/// Why a Kafka admin call failed.
///
/// Broker answers keep their Kafka error code ([`KafkaError::Broker`]), so a caller can
/// tell "the topic does not exist" from "the config is invalid" without parsing text.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The connection failed: refused, timed out, a frame out of bounds or out of step,
    /// or no common version of the API.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker answered with a Kafka error code.
    #[error("{api} for {resource} failed: {} (Kafka error {code}){}", ResponseError::try_from_code(*code).map(|e| e.to_string()).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// The Kafka API called.
        api: &'static str,
        /// What the error is about (topic, group, `topic/partition`).
        resource: String,
        /// The Kafka error code.
        code: i16,
        /// The broker's message, when it sent one.
        message: Option<String>,
    },
    /// The broker's answer lacks an entry it must have (a topic or partition asked for).
    #[error("{api} response has no entry for {resource}")]
    MissingInResponse {
        /// The Kafka API called.
        api: &'static str,
        /// The topic, group or partition asked for.
        resource: String,
    },
}

impl KafkaError {
    /// The Kafka error the broker answered with, if that is what this is.
    pub fn response_error(&self) -> Option<ResponseError> {
        match self {
            Self::Broker { code, .. } => ResponseError::try_from_code(*code),
            _ => None,
        }
    }

    /// Whether the broker refused the request's content (bad config, partitions,
    /// replication factor): only a spec change can fix it.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self.response_error(),
            Some(
                ResponseError::InvalidConfig
                    | ResponseError::InvalidPartitions
                    | ResponseError::InvalidReplicationFactor
                    | ResponseError::InvalidReplicaAssignment
                    | ResponseError::InvalidTopicException
                    | ResponseError::PolicyViolation
                    | ResponseError::InvalidRequest
                    | ResponseError::UnsupportedVersion
            )
        )
    }

    /// Whether the connection failed rather than the broker answering: refused, timed
    /// out, closed or out of step. The broker may be gone or moved; asking the cluster
    /// again where to go can help. A response that did not decode, or an API version
    /// both sides lack, is not one.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Self::Client(error) => match error {
                ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Timeout { .. }
                | ClientError::Broken { .. } => true,
                ClientError::Call { source, .. } => !source.leaves_stream_usable(),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether this is the broker saying the topic or partition does not exist.
    pub fn is_unknown_topic(&self) -> bool {
        matches!(
            self.response_error(),
            Some(ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId)
        )
    }
}

/// `Ok(())` for code 0, else [`KafkaError::Broker`].
pub(crate) fn check(
    api: &'static str,
    resource: impl FnOnce() -> String,
    code: i16,
    message: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<(), KafkaError> {
    if code == 0 {
        return Ok(());
    }
    Err(KafkaError::Broker {
        api,
        resource: resource(),
        code,
        message: message.map(|m| m.as_str().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_keep_their_code_and_read_as_a_sentence() {
        let error = KafkaError::Broker {
            api: "CreateTopics",
            resource: "orders".into(),
            code: 40,
            message: Some("retention.ms must be a number".into()),
        };
        assert_eq!(
            error.to_string(),
            "CreateTopics for orders failed: InvalidConfig (Kafka error 40): retention.ms must be a number"
        );
        assert_eq!(error.response_error(), Some(ResponseError::InvalidConfig));
        assert!(error.is_invalid_request());
        assert!(!error.is_unknown_topic());
    }
}
