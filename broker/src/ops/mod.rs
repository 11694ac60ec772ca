//! Operability: the broker's lifecycle status, the gRPC health and admin services
//! (`--health-listen`), and Prometheus metrics over HTTP (`--metrics-listen`).

pub mod grpc;
pub mod metrics;
pub mod status;

/// Types generated from `proto/runnel/admin/v1/admin.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("runnel.admin.v1");
}
