//! The brokers' own gRPC admin service (`runnel.admin.v1.BrokerAdmin`, served on each
//! broker's health port): the rolling restart asks a broker whether stopping it now is
//! safe for the data (no partition it hosts would fall below `min.insync.replicas`), and
//! the others whether they have caught up since they started (back in the ISR of every
//! partition they host). The brokers answer both from the real ISR.
//!
//! [`BrokerAdmin`] is the seam: [`GrpcBrokerAdmin`] calls real brokers, tests use
//! [`FakeBrokerAdmin`].

#[cfg(test)]
use std::collections::BTreeMap;
#[cfg(test)]
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

/// The generated client and messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("runnel.admin.v1");
}

/// How long connecting to a broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A broker's answer to "may I stop you now?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartCheck {
    /// Stopping it keeps every partition at or above `min.insync.replicas`.
    pub safe: bool,
    /// Why not, one sentence per partition.
    pub reasons: Vec<String>,
}

/// A broker's answer to "have you caught up since you started?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// Every replica it hosts has caught up with its leader.
    pub caught_up: bool,
    /// Partitions still behind, as `topic-partition`.
    pub lagging: Vec<String>,
}

/// Why a broker admin call failed (always transient: the broker may be starting).
#[derive(Debug, thiserror::Error)]
pub enum BrokerAdminError {
    /// The address is not a valid URI authority.
    #[error("invalid broker admin address {address}: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// The parser's complaint.
        reason: String,
    },
    /// No connection could be made.
    #[error("connecting to {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The call failed or timed out.
    #[error("{call} on {address}: {status}")]
    Call {
        /// The RPC name.
        call: &'static str,
        /// The address.
        address: String,
        /// The gRPC status.
        status: tonic::Status,
    },
}

/// The admin calls the rolling restart makes; `address` is `host:port` of a broker's
/// health/admin listener.
#[async_trait]
pub trait BrokerAdmin: Send + Sync {
    /// `CanRestart` on the broker at `address`.
    async fn can_restart(&self, address: &str) -> Result<RestartCheck, BrokerAdminError>;
    /// `CaughtUp` on the broker at `address`.
    async fn caught_up(&self, address: &str) -> Result<CatchUp, BrokerAdminError>;
}

/// [`BrokerAdmin`] over real gRPC connections (plaintext HTTP/2), one per call: calls
/// are a few per restart step, so no pool is kept.
#[derive(Clone, Debug, Default)]
pub struct GrpcBrokerAdmin;

impl GrpcBrokerAdmin {
    async fn client(
        address: &str,
    ) -> Result<
        proto::broker_admin_client::BrokerAdminClient<tonic::transport::Channel>,
        BrokerAdminError,
    > {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| BrokerAdminError::Address {
                address: address.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| BrokerAdminError::Connect {
                address: address.to_string(),
                source,
            })?;
        Ok(proto::broker_admin_client::BrokerAdminClient::new(channel))
    }
}

#[async_trait]
impl BrokerAdmin for GrpcBrokerAdmin {
    async fn can_restart(&self, address: &str) -> Result<RestartCheck, BrokerAdminError> {
        let reply = Self::client(address)
            .await?
            .can_restart(proto::CanRestartRequest {})
            .await
            .map_err(|status| BrokerAdminError::Call {
                call: "CanRestart",
                address: address.to_string(),
                status,
            })?
            .into_inner();
        Ok(RestartCheck {
            safe: reply.safe,
            reasons: reply.reasons,
        })
    }

    async fn caught_up(&self, address: &str) -> Result<CatchUp, BrokerAdminError> {
        let reply = Self::client(address)
            .await?
            .caught_up(proto::CaughtUpRequest {})
            .await
            .map_err(|status| BrokerAdminError::Call {
                call: "CaughtUp",
                address: address.to_string(),
                status,
            })?
            .into_inner();
        Ok(CatchUp {
            caught_up: reply.caught_up,
            lagging: reply.lagging_partitions,
        })
    }
}

/// Scripted brokers for tests: answers per address (safe and caught up unless told
/// otherwise; an address marked down fails to connect), and a log of the calls made.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct FakeBrokerAdmin {
    unsafe_reasons: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    lagging: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

#[cfg(test)]
impl FakeBrokerAdmin {
    /// The broker at `address` refuses a restart, for `reasons`.
    pub fn refuse_restart(&self, address: &str, reasons: &[&str]) -> &Self {
        lock(&self.unsafe_reasons).insert(
            address.to_string(),
            reasons.iter().map(|r| (*r).to_string()).collect(),
        );
        self
    }

    /// The broker at `address` has not caught up on `partitions`.
    pub fn lag(&self, address: &str, partitions: &[&str]) -> &Self {
        lock(&self.lagging).insert(
            address.to_string(),
            partitions.iter().map(|p| (*p).to_string()).collect(),
        );
        self
    }

    /// Forgets every scripted refusal and lag.
    pub fn heal(&self) -> &Self {
        lock(&self.unsafe_reasons).clear();
        lock(&self.lagging).clear();
        self
    }

    /// The calls made so far (`CanRestart <address>`, `CaughtUp <address>`), cleared.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.calls))
    }
}

#[cfg(test)]
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[async_trait]
impl BrokerAdmin for FakeBrokerAdmin {
    async fn can_restart(&self, address: &str) -> Result<RestartCheck, BrokerAdminError> {
        lock(&self.calls).push(format!("CanRestart {address}"));
        let reasons = lock(&self.unsafe_reasons)
            .get(address)
            .cloned()
            .unwrap_or_default();
        Ok(RestartCheck {
            safe: reasons.is_empty(),
            reasons,
        })
    }

    async fn caught_up(&self, address: &str) -> Result<CatchUp, BrokerAdminError> {
        lock(&self.calls).push(format!("CaughtUp {address}"));
        let lagging = lock(&self.lagging)
            .get(address)
            .cloned()
            .unwrap_or_default();
        Ok(CatchUp {
            caught_up: lagging.is_empty(),
            lagging,
        })
    }
}
