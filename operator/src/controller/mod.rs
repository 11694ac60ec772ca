//! Controllers, one file per custom resource: `reconcile`, `error_policy` and `run`.
//!
//! Only [`kafkacluster`] exists so far. The `Topic` and `ConsumerGroup` controllers need
//! the broker's admin API (Kafka admin protocol and the gRPC admin service); they will
//! follow the same shape, with `reconcile` wrapped in `kube::runtime::finalizer` because
//! deleting a `Topic` deletes the topic on the cluster (unless `deletionPolicy: Retain`).

pub mod kafkacluster;
