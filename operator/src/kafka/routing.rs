//! Where a group call goes, as Kafka's own admin client decides: to the group's
//! coordinator, found with FindCoordinator on the bootstrap connection.
//!
//! [`Routes`] is the state a [`TcpAdminClient`] keeps for routing: one connection per
//! broker (node id and address) besides the bootstrap one, the coordinator of each group
//! asked about, and which node the bootstrap connection reaches once that is known. A
//! node whose address is the bootstrap address, or the only broker of the cluster, is
//! served on the bootstrap connection: a single broker gets no second connection.
//!
//! A group call is tried at most [`ATTEMPTS`] times. NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE and COORDINATOR_LOAD_IN_PROGRESS (from FindCoordinator or
//! from the coordinator), or a failed connection to the coordinator, drop the cached
//! coordinator (and that connection) and ask again after a short backoff; the last
//! attempt's error is returned with the broker's code kept.
//!
//! | API | versions implemented |
//! |---|---|
//! | FindCoordinator | 0–6 (v0–3 one key, v4+ `coordinator_keys`) |
//! | Metadata (which brokers exist) | 4–12 |

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest};
use kafka_protocol::protocol::Request;
use kafka_protocol::ResponseError;
use runnel_client::Connection;
use tokio::sync::Mutex;
use tracing::debug;

use super::client::text;
use super::error::check;
use super::{KafkaError, TcpAdminClient};

/// How many times a group call is tried, lookups included.
pub(super) const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; it doubles for each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// FindCoordinator's `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

/// A connection shared by the calls routed to one broker; calls on it are serialized.
pub(super) type Shared = Arc<Mutex<Connection>>;

/// One broker: its node id and `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Node {
    /// The broker (node) id.
    pub id: i32,
    /// `host:port` as the cluster advertises it.
    pub address: String,
}

impl Node {
    /// A node from the `host` and `port` fields of a Kafka answer.
    pub fn new(id: i32, host: &str, port: i32) -> Self {
        // An IPv6 literal needs brackets before its port.
        let address = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Self { id, address }
    }
}

/// The routing state of one client. The maps are behind std mutexes held for no
/// `.await`; each connection has its own tokio mutex.
#[derive(Debug, Default)]
pub(super) struct Routes {
    /// The node the bootstrap connection reaches, once known.
    bootstrap_node: StdMutex<Option<i32>>,
    /// Whether the brokers were listed once to find the bootstrap node.
    probed: StdMutex<bool>,
    /// Connections other than the bootstrap one, by node id, with the address dialled.
    connections: StdMutex<BTreeMap<i32, (String, Shared)>>,
    /// The coordinator of each group asked about.
    coordinators: StdMutex<BTreeMap<String, Node>>,
}

/// How an attempt of a routed call ended when it did not succeed.
pub(super) enum Failure {
    /// Worth another attempt after a new lookup.
    Retry(KafkaError),
    /// Final: another attempt would meet the same answer.
    Fatal(KafkaError),
}

/// Whether `code` says the group's coordinator moved or is not ready.
pub(super) fn is_coordinator_error(code: i16) -> bool {
    [
        ResponseError::NotCoordinator.code(),
        ResponseError::CoordinatorNotAvailable.code(),
        ResponseError::CoordinatorLoadInProgress.code(),
    ]
    .contains(&code)
}

/// The wait before attempt `attempt + 1` (1-based): 100 ms, 200 ms, ... at most 1 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(4))
        .min(Duration::from_secs(1))
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short sections leaves consistent data: every
    // section is a single insert, remove or read.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TcpAdminClient {
    /// Sends the request `build` makes on `connection` at the highest version that the
    /// broker advertises, the codec knows and `implemented` holds.
    pub(super) async fn call_on<R: Request>(
        connection: &Shared,
        implemented: RangeInclusive<i16>,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(R::Response, i16), KafkaError> {
        let mut connection = connection.lock().await;
        let version = connection.version::<R>(implemented).await?;
        let request = build(version);
        let response = connection.call(&request, version).await?;
        Ok((response, version))
    }

    /// Sends a group request to `group`'s coordinator and returns its answer.
    /// `coordinator_code` reads the answer's error code about coordination (0 when
    /// none); a coordinator error, or a failed connection, starts another attempt.
    pub(super) async fn group_call<R: Request>(
        &self,
        api: &'static str,
        group: &str,
        implemented: RangeInclusive<i16>,
        build: impl Fn(i16) -> R,
        coordinator_code: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, KafkaError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let attempted = self
                .group_attempt(api, group, implemented.clone(), &build, &coordinator_code)
                .await;
            let error = match attempted {
                Ok(response) => return Ok(response),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) => error,
            };
            if attempt >= ATTEMPTS {
                return Err(error);
            }
            debug!(api, group, attempt, %error, "group call retried");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    async fn group_attempt<R: Request>(
        &self,
        api: &'static str,
        group: &str,
        implemented: RangeInclusive<i16>,
        build: &impl Fn(i16) -> R,
        coordinator_code: &impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, Failure> {
        let node = self.coordinator(group).await?;
        let forget = || {
            lock(&self.routes.coordinators).remove(group);
        };
        let connection = self.connection(&node).await.map_err(|error| {
            forget();
            self.drop_connection(&node);
            retry_if_connection(error)
        })?;
        match Self::call_on(&connection, implemented, build).await {
            Ok((response, _)) => {
                let code = coordinator_code(&response);
                if is_coordinator_error(code) {
                    forget();
                    return Err(Failure::Retry(KafkaError::Broker {
                        api,
                        resource: group.to_string(),
                        code,
                        message: None,
                    }));
                }
                Ok(response)
            }
            Err(error) => {
                if error.is_connection_error() {
                    forget();
                    self.drop_connection(&node);
                }
                Err(retry_if_connection(error))
            }
        }
    }

    /// The coordinator of `group`: cached, else asked with FindCoordinator.
    async fn coordinator(&self, group: &str) -> Result<Node, Failure> {
        if let Some(node) = lock(&self.routes.coordinators).get(group) {
            return Ok(node.clone());
        }
        let node = self.find_coordinator(group).await?;
        debug!(group, node = node.id, address = %node.address, "found the coordinator");
        lock(&self.routes.coordinators).insert(group.to_string(), node.clone());
        Ok(node)
    }

    async fn find_coordinator(&self, group: &str) -> Result<Node, Failure> {
        let (response, version) = Self::call_on(&self.bootstrap, 0..=6, |version| {
            let request = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_GROUP);
            if version >= 4 {
                request.with_coordinator_keys(vec![text(group)])
            } else {
                request.with_key(text(group))
            }
        })
        .await
        .map_err(retry_if_connection)?;
        let (code, message, node) = if version >= 4 {
            let found = response
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| {
                    Failure::Fatal(KafkaError::MissingInResponse {
                        api: "FindCoordinator",
                        resource: group.to_string(),
                    })
                })?;
            let node = Node::new(found.node_id.0, found.host.as_str(), found.port);
            (found.error_code, found.error_message.clone(), node)
        } else {
            let node = Node::new(response.node_id.0, response.host.as_str(), response.port);
            (response.error_code, response.error_message.clone(), node)
        };
        check(
            "FindCoordinator",
            || group.to_string(),
            code,
            message.as_ref(),
        )
        .map_err(|error| {
            if is_coordinator_error(code) {
                Failure::Retry(error)
            } else {
                Failure::Fatal(error)
            }
        })?;
        if node.id < 0 {
            return Err(Failure::Retry(KafkaError::Broker {
                api: "FindCoordinator",
                resource: group.to_string(),
                code: ResponseError::CoordinatorNotAvailable.code(),
                message: Some("the answer names no broker".to_string()),
            }));
        }
        Ok(node)
    }

    /// The connection to `node`: the bootstrap one when it reaches that node, else one
    /// made on first use and kept.
    pub(super) async fn connection(&self, node: &Node) -> Result<Shared, KafkaError> {
        if self.reaches_bootstrap(node).await? {
            return Ok(Arc::clone(&self.bootstrap));
        }
        if let Some((address, connection)) = lock(&self.routes.connections).get(&node.id) {
            if *address == node.address {
                return Ok(Arc::clone(connection));
            }
        }
        let mut connection = Connection::connect(&node.address, &self.config).await?;
        connection.api_versions().await?;
        debug!(node = node.id, address = %node.address, "connected to a broker");
        let shared = Arc::new(Mutex::new(connection));
        lock(&self.routes.connections).insert(node.id, (node.address.clone(), Arc::clone(&shared)));
        Ok(shared)
    }

    /// Forgets the connection to `node` (never the bootstrap one).
    pub(super) fn drop_connection(&self, node: &Node) {
        let mut connections = lock(&self.routes.connections);
        if connections
            .get(&node.id)
            .is_some_and(|(address, _)| *address == node.address)
        {
            connections.remove(&node.id);
        }
    }

    /// Whether the bootstrap connection reaches `node`: its address is the bootstrap
    /// address, or the cluster's brokers (listed once if need be) are that node alone.
    async fn reaches_bootstrap(&self, node: &Node) -> Result<bool, KafkaError> {
        if node.address == self.address {
            self.learn_bootstrap_node(&[node.id]);
            return Ok(true);
        }
        if lock(&self.routes.bootstrap_node).is_none() && !*lock(&self.routes.probed) {
            let (response, _) = Self::call_on(&self.bootstrap, 4..=12, |_| {
                MetadataRequest::default()
                    .with_topics(Some(Vec::new()))
                    .with_allow_auto_topic_creation(false)
            })
            .await?;
            let ids: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
            self.learn_bootstrap_node(&ids);
        }
        Ok(*lock(&self.routes.bootstrap_node) == Some(node.id))
    }

    /// Records what a broker list tells about the bootstrap connection: with one broker
    /// alone, it is the one the connection reaches.
    pub(super) fn learn_bootstrap_node(&self, brokers: &[i32]) {
        *lock(&self.routes.probed) = true;
        if let [only] = brokers {
            *lock(&self.routes.bootstrap_node) = Some(*only);
        }
    }
}

/// A failed connection is worth a new lookup; anything else is final.
pub(super) fn retry_if_connection(error: KafkaError) -> Failure {
    if error.is_connection_error() {
        Failure::Retry(error)
    } else {
        Failure::Fatal(error)
    }
}
