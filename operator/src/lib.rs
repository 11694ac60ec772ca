//! runnel-operator: the Kubernetes operator for Runnel.
//!
//! | module | what it holds |
//! |---|---|
//! | [`crd`] | the custom resource types (`KafkaCluster`, `Topic`, `ConsumerGroup`) |
//! | [`resources`] | pure builders: `&KafkaCluster` → the Kubernetes objects it needs |
//! | [`controller`] | reconcile + `error_policy`, one file per controller |
//! | [`kafka`] | a small Kafka admin client and the [`kafka::KafkaAdmin`] trait controllers use |
//! | [`context`] | [`Context`], the controllers' only door to the world |
//! | [`error`] | [`Error`], the one error type of this library |

pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod kafka;
pub mod resources;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod test_broker;

pub use context::Context;
pub use error::Error;
