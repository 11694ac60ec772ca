//! The `runnel-failover` binary: times leader failover under acks=all, driven by a script
//! over standard input (see `runnel_bench::failover`).

use anyhow::Context as _;
use clap::Parser;
use runnel_bench::failover::{self, FailoverConfig};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = FailoverConfig::parse();
    let filter =
        EnvFilter::try_from_env("RUNNEL_BENCH_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = runtime
        .block_on(failover::run(&config))
        .with_context(|| format!("the failover run against {} failed", config.bootstrap))?;
    if config.json {
        println!(
            "{}",
            report.to_json().context("cannot write the JSON report")?
        );
    } else {
        print!("{}", report.to_text());
    }
    // The control channel's reader may still block on stdin: do not wait for it.
    runtime.shutdown_background();
    Ok(())
}
