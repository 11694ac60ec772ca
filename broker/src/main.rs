//! The `runnel-broker` binary: parse flags, set up logging, serve until SIGTERM/SIGINT.

use anyhow::Context as _;
use runnel_broker::config_file::{self, ConfigError};
use runnel_broker::{Broker, Stopped};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match config_file::load(std::env::args_os().collect()) {
        Ok(config) => config,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("runnel-broker: {e}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_env("RUNNEL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    let shutdown = CancellationToken::new();
    let broker = Broker::bind(config, shutdown.clone())
        .await
        .context("runnel-broker could not start")?;
    tokio::spawn(wait_for_signal(shutdown));
    match broker.run().await {
        Stopped::Requested => Ok(()),
        // Kafka halts when its last log directory fails; a supervisor restarts us.
        Stopped::LogDirFailed(e) => Err(e).context("runnel-broker stopped"),
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signal received");
    shutdown.cancel();
}
