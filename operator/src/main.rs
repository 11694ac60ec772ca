//! `runnel-operator`: runs the Runnel controllers against the cluster it finds
//! (in-cluster service account, else the local kubeconfig). Flags: see [`Args`]
//! (`--help`); `--version` answers without touching Kubernetes.
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`); `--log-json` (or
//! `RUNNEL_LOG_JSON=1`) switches to JSON lines.
//!
//! The one shutdown path: SIGTERM or ctrl-c cancels `shutdown`; the controllers finish
//! their running reconciles, the leader Lease is released, the HTTP endpoint stops. A
//! leader that loses its Lease exits non-zero at once, so Kubernetes restarts it as a
//! follower.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use clap::Parser;
use kube::api::{Api, ListParams};
use runnel_operator::cli::Args;
use runnel_operator::controller::{self, consumergroup, kafkacluster, topic, RunOptions};
use runnel_operator::crd::KafkaCluster;
use runnel_operator::leader::{self, LeaderElector};
use runnel_operator::metrics::Metrics;
use runnel_operator::{http, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--version` and `--help` print and exit here, before any I/O.
    let args = Args::parse();
    init_logging(args.log_json);

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let metrics = Arc::new(Metrics::new(&controller::CONTROLLERS).context("registering metrics")?);
    let ready = Arc::new(AtomicBool::new(false));
    let endpoint = match args.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-listen={addr}"))?;
            let bound = listener.local_addr().unwrap_or(addr);
            info!(addr = %bound, "serving /metrics, /healthz and /readyz");
            let router = http::router(Arc::clone(&metrics), Arc::clone(&ready));
            Some(tokio::spawn(http::serve(
                listener,
                router,
                shutdown.clone(),
            )))
        }
        None => None,
    };

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let namespaces = args.namespaces();
    check_crds(&client, &namespaces).await?;
    ready.store(true, Ordering::Release);

    let identity = leader::holder_identity(
        std::env::var("POD_NAME").ok().as_deref(),
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .as_deref(),
    );
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %identity,
        namespaces = ?namespaces,
        "runnel-operator starting"
    );
    let ctx = Arc::new(
        Context::new(client.clone())
            .with_reporting_instance(identity.clone())
            .with_metrics(Arc::clone(&metrics)),
    );
    let options = RunOptions {
        namespaces,
        metrics: Arc::clone(&metrics),
        shutdown: shutdown.clone(),
    };

    let outcome = if args.leader_elect {
        let namespace = args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let elector = LeaderElector::new(client, &namespace, &args.leader_election_lease, identity);
        info!(lease = %args.leader_election_lease, %namespace, "waiting for the leader lease");
        let acquired = tokio::select! {
            () = elector.acquire() => true,
            () = shutdown.cancelled() => false,
        };
        if acquired {
            metrics.leader.set(1);
            let lost = tokio::select! {
                () = run_controllers(&ctx, &options) => None,
                lost = elector.hold() => Some(lost),
            };
            metrics.leader.set(0);
            match lost {
                None => {
                    match elector.release().await {
                        Ok(true) => info!("released the leader lease"),
                        Ok(false) => {}
                        Err(e) => warn!(error = %e.report(), "could not release the leader lease"),
                    }
                    Ok(())
                }
                Some(lost) => Err(anyhow!(lost).context(
                    "lost the leader lease; exiting so that Kubernetes restarts this replica",
                )),
            }
        } else {
            Ok(())
        }
    } else {
        metrics.leader.set(1);
        run_controllers(&ctx, &options).await;
        Ok(())
    };

    shutdown.cancel();
    if let Some(endpoint) = endpoint {
        match endpoint.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "the HTTP endpoint failed"),
            Err(e) => warn!(error = %e, "the HTTP endpoint task failed"),
        }
    }
    info!("runnel-operator stopped");
    outcome
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Fails early, with a hint, when the CRDs are not installed or not readable in the
/// watched scope.
async fn check_crds(client: &kube::Client, namespaces: &[String]) -> anyhow::Result<()> {
    let apis: Vec<Api<KafkaCluster>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    for api in apis {
        api.list(&ListParams::default().limit(1))
            .await
            .context("listing KafkaClusters failed; are the CRDs in crds/ installed?")?;
    }
    Ok(())
}

/// Runs the three controllers until `options.shutdown` is cancelled.
async fn run_controllers(ctx: &Arc<Context>, options: &RunOptions) {
    info!("starting the controllers");
    tokio::join!(
        kafkacluster::run(Arc::clone(ctx), options),
        topic::run(Arc::clone(ctx), options),
        consumergroup::run(Arc::clone(ctx), options),
    );
}

/// Cancels `shutdown` on SIGTERM (what Kubernetes sends) or ctrl-c.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only ctrl-c stops the operator");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        Ok(()) = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("shutdown requested");
    shutdown.cancel();
}
