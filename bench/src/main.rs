//! The `runnel-bench` binary: parse flags, run the bench, print the summary.

use anyhow::Context as _;
use clap::Parser;
use runnel_bench::{run, BenchConfig};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = BenchConfig::parse();
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
        .block_on(run(&config))
        .with_context(|| format!("the bench against {} failed", config.bootstrap))?;
    if config.json {
        println!(
            "{}",
            report.to_json().context("cannot write the JSON report")?
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
