//! runnel-operator: the Kubernetes operator for Runnel.
//!
//! | module | what it holds |
//! |---|---|
//! | [`crd`] | the custom resource types (`KafkaCluster`, `Topic`, `ConsumerGroup`) |
//! | [`resources`] | pure builders: `&KafkaCluster` → the Kubernetes objects it needs |
//! | [`controller`] | reconcile + `error_policy`, one file per controller |
//! | [`broker_admin`] | the brokers' gRPC admin service (restart gating) |
//! | [`kafka`] | a small Kafka admin client and the [`kafka::KafkaAdmin`] trait controllers use |
//! | [`context`] | [`Context`], the controllers' only door to the world |
//! | [`error`] | [`Error`], the one error type of this library |
//! | [`cli`] | the command-line flags of `runnel-operator` |
//! | [`leader`] | leader election over a `coordination.k8s.io/v1` Lease |
//! | [`metrics`] | Prometheus metrics: reconciles, errors, durations, leadership, moves, rolls |
//! | [`placement`] | the pure planner of partition replica placement (rebalance, drain, replication factor) |
//! | [`http`] | the HTTP endpoint: `/metrics`, `/healthz`, `/readyz` |

pub mod broker_admin;
pub mod cli;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod kafka;
pub mod leader;
pub mod metrics;
pub mod placement;
pub mod resources;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod test_broker;

pub use context::Context;
pub use error::Error;
