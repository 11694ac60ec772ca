//! runnel-operator: the Kubernetes operator for Runnel.
//!
//! | module | what it holds |
//! |---|---|
//! | [`crd`] | the custom resource types (`KafkaCluster`, `Topic`, `ConsumerGroup`) |
//! | [`resources`] | pure builders: `&KafkaCluster` → the Kubernetes objects it needs |
//! | [`controller`] | reconcile + `error_policy`, one file per controller |
//! | [`context`] | [`Context`], the controllers' only door to the world |
//! | [`error`] | [`Error`], the one error type of this library |

pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod resources;

#[cfg(test)]
mod fixtures;

pub use context::Context;
pub use error::Error;
