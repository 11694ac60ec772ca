//! The `runnel-bench` binary: parse flags, run the bench, print the summary.

use anyhow::Context as _;
use clap::Parser;
use runnel_bench::{metadata, run, BenchConfig};
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
    let failed = || format!("the bench against {} failed", config.bootstrap);
    let (json, text) = if config.metadata.is_some() {
        let report = runtime
            .block_on(metadata::run(&config))
            .with_context(failed)?;
        (config.json.then(|| report.to_json()), report.to_text())
    } else {
        let report = runtime.block_on(run(&config)).with_context(failed)?;
        (config.json.then(|| report.to_json()), report.to_text())
    };
    match json {
        Some(json) => println!("{}", json.context("cannot write the JSON report")?),
        None => print!("{text}"),
    }
    Ok(())
}
