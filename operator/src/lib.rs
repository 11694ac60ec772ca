//! runnel-operator: the Kubernetes operator for Runnel.
//!
//! The controllers for `KafkaCluster`, `Topic` and `ConsumerGroup` land with their own
//! issue; until then this crate only reserves its place in the workspace.
