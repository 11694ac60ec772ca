//! The one error type of the operator library.

use kube::runtime::finalizer::Error as FinalizerError;

use crate::kafka::KafkaError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed: transient (retried with backoff) unless the
    /// API server refused the request itself (see [`Error::is_refused_by_api`]).
    #[error("the Kubernetes API call to {action} failed")]
    Kube {
        /// What the call was for, e.g. `apply StatefulSet demo`.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object without a namespace reached a namespaced controller.
    #[error("{kind} {name} has no namespace")]
    MissingNamespace {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
    },
    /// A desired object could not be turned into JSON.
    #[error("the desired {kind} could not be serialized")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A Kafka admin call failed; transient unless the broker refused the request's
    /// content (see [`KafkaError::is_invalid_request`]).
    #[error("the Kafka call to {action} failed")]
    Kafka {
        /// What the call was for, e.g. `create topic orders`.
        action: String,
        /// The admin client's error.
        #[source]
        source: KafkaError,
    },
    /// Adding or removing a finalizer failed, or the reconcile it wraps did.
    #[error("reconciling through the finalizer failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The spec asks for something the operator refuses; fixed only by editing it.
    #[error("spec field {field} is invalid: {reason}")]
    InvalidSpec {
        /// JSON path of the field, e.g. `spec.config`.
        field: &'static str,
        /// Why, as a sentence.
        reason: String,
    },
}

impl Error {
    /// Short label for metrics and logs (`kube`, `missing_namespace`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube { .. } if self.is_refused_by_api() => "kube_refused",
            Self::Kube { .. } => "kube",
            Self::MissingNamespace { .. } => "missing_namespace",
            Self::Serialize { .. } => "serialize",
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::Kafka { .. } => "kafka",
            Self::Finalizer(inner) => match inner.as_ref() {
                FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e.label(),
                _ => "finalizer",
            },
        }
    }

    /// Whether retrying without a spec change can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube { .. } => !self.is_refused_by_api(),
            Self::Kafka { source, .. } => !source.is_invalid_request(),
            Self::Finalizer(inner) => match inner.as_ref() {
                FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => {
                    e.is_transient()
                }
                _ => true,
            },
            Self::MissingNamespace { .. } | Self::Serialize { .. } | Self::InvalidSpec { .. } => {
                false
            }
        }
    }

    /// Whether the API server refused the request itself: `422 Invalid` (the object
    /// breaks a rule, e.g. a StatefulSet field that cannot change) or `403 Forbidden`
    /// (RBAC, a quota, an admission policy). Sending the same request again cannot
    /// succeed; the spec, or the cluster's policy, has to change.
    ///
    /// Not so for the 403 of a namespace being deleted (cause `NamespaceTerminating`): the
    /// objects go with the namespace, nothing in the spec is wrong, and the retry ends
    /// when the object is gone.
    pub fn is_refused_by_api(&self) -> bool {
        match self {
            Self::Kube {
                source: kube::Error::Api(status),
                ..
            } => matches!(status.code, 403 | 422) && !namespace_terminating(status),
            _ => false,
        }
    }

    /// This error and its sources, joined by `: ` (for a single log field, a condition
    /// message, an Event note), each part said once.
    ///
    /// Some sources print their own source in their text (`kube::Error` does, and its
    /// `Api` variant adds a Debug dump of the Status; kube's finalizer errors print the
    /// reconcile error they wrap): a part the text already holds is left out, an API
    /// server answer is written as its message and code, and the finalizer wrapping,
    /// which says nothing about the cause, is skipped.
    pub fn report(&self) -> String {
        if let Self::Finalizer(inner) = self {
            if let FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) =
                inner.as_ref()
            {
                return e.report();
            }
        }
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
                append_once(&mut text, &api_answer(status));
                break;
            }
            append_once(&mut text, &cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Wraps a client error with what the call was for.
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// Wraps an admin client error with what the call was for.
    pub(crate) fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }
}

/// Appends `: part` unless `text` already says it.
fn append_once(text: &mut String, part: &str) {
    if !text.contains(part) {
        text.push_str(": ");
        text.push_str(part);
    }
}

/// An API server's answer as a sentence: its message, then the HTTP code and the
/// Status reason (left out when kube made one up for a body that was not a Status).
fn api_answer(status: &kube::core::Status) -> String {
    let message = status.message.trim();
    let reason = status.reason.as_str();
    let known_reason = !reason.is_empty() && !reason.contains(char::is_whitespace);
    match (message.is_empty(), known_reason) {
        (true, true) => format!("{reason} ({})", status.code),
        (true, false) => format!("HTTP {}", status.code),
        (false, true) => format!("{message} ({} {reason})", status.code),
        (false, false) => format!("{message} (HTTP {})", status.code),
    }
}

/// Whether the API server refused a write because the namespace is being deleted.
fn namespace_terminating(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: kube::core::Status) -> Error {
        Error::Kube {
            action: "apply StatefulSet demo".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn a_terminating_namespace_is_not_a_spec_error() {
        let terminating: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "message": "statefulsets.apps \"demo\" is forbidden: unable to create new content \
                        in namespace team-a because it is being terminated",
            "reason": "Forbidden",
            "details": {"name": "demo", "group": "apps", "kind": "statefulsets",
                        "causes": [{"reason": "NamespaceTerminating",
                                    "message": "namespace team-a is being terminated",
                                    "field": "metadata.namespace"}]},
            "code": 403
        }))
        .unwrap_or_default();
        assert_eq!(terminating.code, 403);
        assert!(!api_error(terminating).is_refused_by_api());
        let rbac = kube::core::Status::failure("statefulsets.apps is forbidden", "Forbidden")
            .with_code(403);
        assert!(api_error(rbac).is_refused_by_api());
    }

    #[test]
    fn a_report_says_each_part_once() {
        let invalid = kube::core::Status::failure(
            "StatefulSet.apps \"demo\" is invalid: spec: Forbidden: updates are forbidden",
            "Invalid",
        )
        .with_code(422);
        assert_eq!(
            api_error(invalid).report(),
            "the Kubernetes API call to apply StatefulSet demo failed: StatefulSet.apps \"demo\" \
             is invalid: spec: Forbidden: updates are forbidden (422 Invalid)"
        );

        // What kube makes of a plain-text answer.
        let plain = kube::core::Status::failure("404 page not found", "Failed to parse error data")
            .with_code(404);
        assert_eq!(
            api_error(plain).report(),
            "the Kubernetes API call to apply StatefulSet demo failed: 404 page not found (HTTP 404)"
        );

        let kafka = Error::Kafka {
            action: "create topic orders".into(),
            source: crate::kafka::KafkaError::Broker {
                api: "CreateTopics",
                resource: "orders".into(),
                code: 38,
                message: Some("replication factor 3 is larger than 1 broker".into()),
            },
        };
        let plain_report = kafka.report();
        let wrapped = Error::Finalizer(Box::new(FinalizerError::ApplyFailed(kafka)));
        assert_eq!(wrapped.report(), plain_report, "the finalizer adds nothing");
        assert_eq!(
            plain_report,
            "the Kafka call to create topic orders failed: CreateTopics for orders failed: \
             InvalidReplicationFactor (Kafka error 38): replication factor 3 is larger than 1 broker"
        );
    }
}
