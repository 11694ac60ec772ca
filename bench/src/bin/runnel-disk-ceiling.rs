//! The `runnel-disk-ceiling` binary: a write + fdatasync loop that measures the disk's
//! ceiling for durable appends (see `runnel_bench::disk_ceiling`).

use anyhow::Context as _;
use clap::Parser;
use runnel_bench::disk_ceiling::{self, DiskCeilingConfig};

fn main() -> anyhow::Result<()> {
    let config = DiskCeilingConfig::parse();
    let report = disk_ceiling::run(&config)
        .with_context(|| format!("the disk-ceiling loop in {} failed", config.dir.display()))?;
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
