//! [`Context`]: everything a reconcile may touch outside its arguments.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::broker_admin::{BrokerAdmin, GrpcBrokerAdmin};
use crate::crd::KafkaCluster;
use crate::kafka::{AdminFactory, KafkaAdmin, TcpAdminFactory};
use crate::metrics::Metrics;
use crate::resources::names;
use crate::Error;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "runnel-operator";

/// Shared state of the controllers: the API client, the Kafka admin factory, the clock
/// and retry bookkeeping.
///
/// Cloned behind an `Arc` into every reconcile; the failure map is behind a std `Mutex`
/// held only for a lookup, never across an `.await`.
pub struct Context {
    /// Client of the Kubernetes API.
    pub client: Client,
    /// Makes Kafka admin clients; tests swap in a fake.
    pub admin: Arc<dyn AdminFactory>,
    /// The brokers' gRPC admin service (restart gating); tests swap in a fake.
    pub broker_admin: Arc<dyn BrokerAdmin>,
    /// Source of `lastTransitionTime`s; tests pin it.
    pub clock: fn() -> Time,
    /// Where the clusters' work in hand (moves, rolls) is exported; `None`: nowhere.
    pub metrics: Option<Arc<Metrics>>,
    /// Publishes Events (`events.k8s.io/v1`) on reconciled objects; see
    /// [`Context::publish_warning`].
    recorder: Recorder,
    /// Consecutive failures per object key (`namespace/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context using the wall clock.
    pub fn new(client: Client) -> Self {
        Self::with_clock(client, wall_clock)
    }

    /// A context with a given clock (tests pin time with it).
    pub fn with_clock(client: Client, clock: fn() -> Time) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter(None)),
            client,
            admin: Arc::new(TcpAdminFactory::default()),
            broker_admin: Arc::new(GrpcBrokerAdmin),
            clock,
            metrics: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// This context exporting the clusters' work in hand to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// This context with Events reported by `instance` (the pod's leader-election
    /// identity), so two replicas' Events can be told apart.
    pub fn with_reporting_instance(mut self, instance: String) -> Self {
        self.recorder = Recorder::new(self.client.clone(), reporter(Some(instance)));
        self
    }

    /// Publishes a Warning Event on `object` for `error`, which a spec edit must fix:
    /// reason = [`Error::label`], note = the error and its causes.
    ///
    /// The same reason on the same object within kube's 6-minute window becomes one
    /// Event with a growing series count (a PATCH), not a new Event per retry. A failed
    /// publish is logged and otherwise ignored: Events are advisory.
    pub async fn publish_warning<K: Resource<DynamicType = ()>>(&self, object: &K, error: &Error) {
        self.publish_warning_note(object, error.label(), error.report())
            .await;
    }

    /// Publishes a Warning Event on `object` with `reason` (CamelCase, as the condition
    /// that says the same) and `note`: for a problem found by a successful pass (a
    /// `Degraded` or `Ready=False` condition only an edit can clear). Aggregated and
    /// advisory like [`Context::publish_warning`].
    pub async fn publish_warning_note<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        note: String,
    ) {
        let mut regarding = object.object_ref(&());
        // The series key includes the reference: without the resourceVersion, repeats
        // aggregate across status updates of the object.
        regarding.resource_version = None;
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(truncated(note, EVENT_NOTE_MAX_BYTES)),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(publish_error) = self.recorder.publish(&event, &regarding).await {
            tracing::warn!(
                kind = %K::kind(&()),
                name = regarding.name.as_deref().unwrap_or_default(),
                namespace = regarding.namespace.as_deref().unwrap_or_default(),
                reason,
                error = %publish_error,
                "could not publish an Event"
            );
        }
    }

    /// This context with another Kafka admin factory.
    pub fn with_admin(mut self, admin: Arc<dyn AdminFactory>) -> Self {
        self.admin = admin;
        self
    }

    /// This context with another broker admin client.
    pub fn with_broker_admin(mut self, broker_admin: Arc<dyn BrokerAdmin>) -> Self {
        self.broker_admin = broker_admin;
        self
    }

    /// Where the `KafkaCluster` `cluster` in `namespace` is reachable, with the object
    /// itself (its spec bounds what may be done to it), or why it is not.
    ///
    /// The address is the cluster's `status.bootstrapServers`, else its bootstrap
    /// Service (`<cluster>-bootstrap.<namespace>.svc:<port>`).
    pub async fn cluster_address(
        &self,
        namespace: &str,
        cluster: &str,
    ) -> Result<ClusterAddress, Error> {
        let api: Api<KafkaCluster> = Api::namespaced(self.client.clone(), namespace);
        let found = api
            .get_opt(cluster)
            .await
            .map_err(Error::kube(format!("get KafkaCluster {cluster}")))?;
        Ok(match found {
            None => ClusterAddress::Missing,
            Some(kc) if kc.metadata.deletion_timestamp.is_some() => ClusterAddress::Deleting,
            Some(kc) => ClusterAddress::Bootstrap {
                address: kc
                    .status
                    .as_ref()
                    .and_then(|s| s.bootstrap_servers.clone())
                    .filter(|b| !b.is_empty())
                    .unwrap_or_else(|| names::bootstrap_servers(&kc)),
                cluster: Box::new(kc),
            },
        })
    }

    /// An admin client connected to `bootstrap`.
    pub async fn kafka_admin(&self, bootstrap: &str) -> Result<Arc<dyn KafkaAdmin>, Error> {
        self.admin
            .connect(bootstrap)
            .await
            .map_err(Error::kafka(format!("connect to {bootstrap}")))
    }

    /// Records one more failure of `key` and returns how long to wait before the retry:
    /// 5 s doubling per consecutive failure, capped at 5 minutes.
    pub fn record_failure(&self, key: &str) -> Duration {
        let attempt = match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(key.to_string()).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            // A poisoned map only loses backoff history; retry at the cap.
            Err(_) => u32::MAX,
        };
        backoff(attempt)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn record_success(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

/// What became of the `KafkaCluster` a resource refers to.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterAddress {
    /// No such `KafkaCluster`.
    Missing,
    /// The `KafkaCluster` is being deleted.
    Deleting,
    /// It exists; its brokers are reached through `address`.
    Bootstrap {
        /// The bootstrap address.
        address: String,
        /// The `KafkaCluster` as it was read.
        cluster: Box<KafkaCluster>,
    },
}

/// Delay before retry number `attempt` (1-based): 5 s, 10 s, 20 s, ... at most 300 s.
pub fn backoff(attempt: u32) -> Duration {
    const BASE_SECS: u64 = 5;
    const MAX_SECS: u64 = 300;
    let exponent = attempt.saturating_sub(1).min(16);
    Duration::from_secs(BASE_SECS.saturating_mul(1 << exponent).min(MAX_SECS))
}

/// The API server's limit on an Event's note.
const EVENT_NOTE_MAX_BYTES: usize = 1024;

fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: FIELD_MANAGER.to_string(),
        instance,
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn wall_clock() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let secs: Vec<u64> = [1, 2, 3, 4, 6, 7, 100, u32::MAX]
            .iter()
            .map(|a| backoff(*a).as_secs())
            .collect();
        assert_eq!(secs, [5, 10, 20, 40, 160, 300, 300, 300]);
    }

    #[test]
    fn event_notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short".into(), 1024), "short");
        let long = "é".repeat(600); // 1200 bytes
        let cut = truncated(long, EVENT_NOTE_MAX_BYTES);
        assert_eq!(cut.len(), 1024);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncated("aé".into(), 2), "a");
    }
}
