//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's semantics, so
//! that two replicas can run and only one reconciles.
//!
//! A candidate reads the Lease and [`claim`]s it when it is free (no holder) or expired
//! (`renewTime + leaseDurationSeconds` is past), renews it while it holds it, and writes
//! with the `resourceVersion` it read: of two candidates racing for the same Lease only
//! one write succeeds, the other gets `409 Conflict` and stays a follower. A new holder of
//! an existing Lease increments `leaseTransitions`.
//!
//! | phase | what the [`LeaderElector`] does |
//! |---|---|
//! | [`acquire`](LeaderElector::acquire) | one attempt every [`RETRY_PERIOD`] until this replica holds the Lease |
//! | [`hold`](LeaderElector::hold) | renews every [`RENEW_PERIOD`]; returns when another holder took the Lease or no renewal succeeded for [`RENEW_DEADLINE`] |
//! | [`release`](LeaderElector::release) | clears `holderIdentity` at shutdown, so a successor need not wait for expiry |
//!
//! [`RENEW_DEADLINE`] is shorter than [`LEASE_DURATION`]: a leader that cannot renew gives
//! up (the process exits) before any other candidate may take the Lease over.
//! Expiry is judged by the holder's `renewTime` against the local clock, so clocks must
//! agree within a few seconds (as they must for client-go).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::Error;

/// How long a holder's claim lasts after its last renewal (`leaseDurationSeconds`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// How long the leader keeps leading without a successful renewal.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a follower tries to acquire, and a leader retries a failed renewal.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// `leaseDurationSeconds` left on a released Lease.
const RELEASED_DURATION_SECS: i32 = 1;

/// What a candidate makes of the Lease it read.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Write this Lease (create it when none was read, else replace the one read: the
    /// metadata, and so the `resourceVersion`, are the ones read).
    Write(Box<Lease>),
    /// Another holder's claim is live until `until`: wait.
    Held {
        /// `holderIdentity` of the Lease.
        holder: String,
        /// When the claim runs out unless renewed.
        until: Timestamp,
    },
}

/// The holder of `lease`: `None` when it has none (never held, or released).
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref())
        .filter(|holder| !holder.is_empty())
}

/// When the holder's claim runs out: `renewTime` (else `acquireTime`) plus
/// `leaseDurationSeconds`. `None` when the Lease carries neither time nor duration, which
/// counts as expired.
pub fn expires_at(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds?));
    renewed.0.checked_add(duration).ok()
}

/// What `identity` may do with `current` at `now`: renew it when it holds it, take it
/// over when it is free or expired, else wait for its holder.
///
/// `current` is the Lease read, or, when none exists, a Lease with only a name and a
/// namespace (no `resourceVersion`): that one is written with `leaseTransitions: 0`.
pub fn claim(current: &Lease, identity: &str, now: Timestamp) -> Claim {
    let previous = current.spec.clone().unwrap_or_default();
    let duration_secs = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX);
    let spec = if holder(current) == Some(identity) {
        LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration_secs),
            ..previous
        }
    } else {
        let live_until = expires_at(current).filter(|until| *until > now);
        if let (Some(holder), Some(until)) = (holder(current), live_until) {
            return Claim::Held {
                holder: holder.to_string(),
                until,
            };
        }
        // Free or expired: take it over.
        let existed = current.metadata.resource_version.is_some();
        let transitions = previous.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(identity.to_string()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration_secs),
            lease_transitions: Some(if existed {
                transitions.saturating_add(1)
            } else {
                transitions
            }),
            ..previous
        }
    };
    Claim::Write(Box::new(Lease {
        metadata: current.metadata.clone(),
        spec: Some(spec),
    }))
}

/// `current` given up by `identity`: no holder and a 1 s duration (what client-go
/// writes), transitions kept. `None` when `identity` does not hold it.
pub fn released(current: &Lease, identity: &str) -> Option<Lease> {
    if holder(current) != Some(identity) {
        return None;
    }
    let spec = current.spec.clone().unwrap_or_default();
    Some(Lease {
        metadata: current.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(RELEASED_DURATION_SECS),
            ..spec
        }),
    })
}

/// This replica's `holderIdentity`: the pod name (else the host name, else
/// `runnel-operator`) and a random suffix, so a restarted pod is a new holder.
pub fn holder_identity(pod_name: Option<&str>, hostname: Option<&str>) -> String {
    let base = [pod_name, hostname]
        .into_iter()
        .flatten()
        .find(|name| !name.is_empty())
        .unwrap_or("runnel-operator");
    format!("{base}_{}", uuid::Uuid::new_v4().simple())
}

/// How one attempt to acquire or renew ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease (acquired or renewed).
    Leading,
    /// Another holder's claim is live.
    Following {
        /// `holderIdentity` of the Lease.
        holder: String,
    },
    /// Another writer changed the Lease between the read and the write (`409`).
    Raced,
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipLost {
    /// The Lease names another holder.
    #[error("the Lease is held by {holder} now")]
    TakenOver {
        /// The new holder.
        holder: String,
    },
    /// No renewal succeeded within [`RENEW_DEADLINE`].
    #[error("the Lease could not be renewed for {}s", RENEW_DEADLINE.as_secs())]
    RenewDeadline,
}

/// A candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
}

impl LeaderElector {
    /// A candidate `identity` for the Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity,
        }
    }

    /// This candidate's `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One attempt (client-go's `tryAcquireOrRenew`): read the Lease, [`claim`] it, and
    /// write it (create or replace under the read `resourceVersion`) when allowed.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<Attempt, Error> {
        let found = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube(format!("get Lease {}", self.name)))?;
        let exists = found.is_some();
        let current = found.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let lease = match claim(&current, &self.identity, now) {
            Claim::Held { holder, until } => {
                debug!(lease = %self.name, %holder, %until, "the leader lease is held");
                return Ok(Attempt::Following { holder });
            }
            Claim::Write(lease) => *lease,
        };
        let params = PostParams::default();
        let written = if exists {
            self.api.replace(&self.name, &params, &lease).await
        } else {
            self.api.create(&params, &lease).await
        };
        match written {
            Ok(_) => Ok(Attempt::Leading),
            // Conflict (replace) or AlreadyExists (create): another writer was first.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Raced),
            Err(source) => Err(Error::Kube {
                action: format!("write Lease {}", self.name),
                source,
            }),
        }
    }

    /// Returns once this replica holds the Lease, trying every [`RETRY_PERIOD`].
    pub async fn acquire(&self) {
        loop {
            match self.attempt().await {
                Some(Attempt::Leading) => {
                    info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
                    return;
                }
                Some(Attempt::Following { .. } | Attempt::Raced) | None => {}
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renews the Lease every [`RENEW_PERIOD`] (a failed renewal is retried every
    /// [`RETRY_PERIOD`]) and returns only when leadership is lost.
    pub async fn hold(&self) -> LeadershipLost {
        let mut renewed = Instant::now();
        let mut pause = RENEW_PERIOD;
        loop {
            tokio::time::sleep(pause).await;
            let budget = RENEW_DEADLINE.saturating_sub(renewed.elapsed());
            let attempt = tokio::time::timeout(budget, self.attempt())
                .await
                .ok()
                .flatten();
            match attempt {
                Some(Attempt::Leading) => {
                    renewed = Instant::now();
                    pause = RENEW_PERIOD;
                }
                Some(Attempt::Following { holder }) => {
                    return LeadershipLost::TakenOver { holder };
                }
                Some(Attempt::Raced) | None => pause = RETRY_PERIOD,
            }
            if renewed.elapsed() >= RENEW_DEADLINE {
                return LeadershipLost::RenewDeadline;
            }
        }
    }

    /// Gives the Lease up if this replica holds it; `Ok(true)` when it was released.
    pub async fn release(&self) -> Result<bool, Error> {
        let Some(current) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube(format!("get Lease {}", self.name)))?
        else {
            return Ok(false);
        };
        let Some(lease) = released(&current, &self.identity) else {
            return Ok(false);
        };
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(Error::Kube {
                action: format!("release Lease {}", self.name),
                source,
            }),
        }
    }

    /// One attempt at the wall clock, bounded by [`RENEW_DEADLINE`]; `None` when it
    /// failed (logged) or timed out.
    async fn attempt(&self) -> Option<Attempt> {
        let attempt =
            tokio::time::timeout(RENEW_DEADLINE, self.try_acquire_or_renew(Timestamp::now())).await;
        match attempt {
            Ok(Ok(attempt)) => Some(attempt),
            Ok(Err(error)) => {
                warn!(lease = %self.name, error = %error.report(), label = error.label(), "leader lease attempt failed");
                None
            }
            Err(_) => {
                warn!(lease = %self.name, "leader lease attempt timed out");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
