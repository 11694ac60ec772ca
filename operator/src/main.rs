//! `runnel-operator`: runs the Runnel controllers against the cluster it finds
//! (in-cluster service account, else the local kubeconfig).
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`); `RUNNEL_LOG_JSON=1`
//! switches to JSON lines.

use std::sync::Arc;

use anyhow::Context as _;
use kube::api::{Api, ListParams};
use runnel_operator::controller::{consumergroup, kafkacluster, topic};
use runnel_operator::crd::KafkaCluster;
use runnel_operator::Context;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("RUNNEL_LOG_JSON").is_ok_and(|v| v == "1" || v == "true");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    Api::<KafkaCluster>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context("listing KafkaClusters failed; are the CRDs in crds/ installed?")?;

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "runnel-operator starting"
    );
    let ctx = Arc::new(Context::new(client));
    tokio::join!(
        kafkacluster::run(Arc::clone(&ctx)),
        topic::run(Arc::clone(&ctx)),
        consumergroup::run(ctx),
    );
    tracing::info!("runnel-operator stopped");
    Ok(())
}
