//! `runnel-fuzz`: see the crate docs and fuzz/README.md.
//!
//! | command         | what it does                                                     |
//! |-----------------|------------------------------------------------------------------|
//! | `run`           | fuzz under a supervisor that pins crashes to frames (`make fuzz`) |
//! | `worker`        | the fuzzing loop in this process (what `run` starts)             |
//! | `replay FILE..` | each file's frame on a fresh broker, then ApiVersions            |
//! | `derive-corpus` | captured client frames → fuzz/corpus (scripts/capture-corpus.sh) |

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use runnel_fuzz::supervisor::{self, RunArgs};
use runnel_fuzz::worker::{self, WorkerArgs};
use runnel_fuzz::{corpus, derive};

/// Every allocation counts against a byte limit; one past it fails, and a failed
/// allocation aborts the process — so a decoder that reserves from a hostile count is
/// caught, where the machine's 24 GiB would let it pass.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Exit status of a worker whose broker broke the protocol (see `check`).
const VIOLATION_EXIT: i32 = 3;

#[derive(Parser)]
#[command(
    name = "runnel-fuzz",
    about = "Mutation fuzzer over the broker's request path"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fuzz under a supervisor: crashes are pinned to frames and saved.
    Run(RunOpts),
    /// The fuzzing loop itself, in this process.
    #[command(hide = true)]
    Worker(WorkerOpts),
    /// Replays frames (files without a size prefix) on a fresh broker.
    Replay(ReplayOpts),
    /// Names, selects and completes captured frames into a corpus directory.
    DeriveCorpus {
        /// The capture directory: one subdirectory of `*.bin` frames per client.
        #[arg(long)]
        captured: PathBuf,
        /// The corpus directory to write.
        #[arg(long, default_value_os_t = corpus::default_dir())]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// The corpus directory.
    #[arg(long, default_value_os_t = corpus::default_dir())]
    corpus: PathBuf,
    /// Iterations per epoch: the broker's data dir is recreated this often.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    reset_every: u64,
    /// Where data dirs are made (tmpfs keeps fsyncs cheap).
    #[arg(long, default_value_os_t = runnel_fuzz::harness::default_data_root())]
    data_root: PathBuf,
    /// The allocator cap of the process that runs the broker, in MiB.
    #[arg(long, default_value_t = 1024)]
    alloc_limit_mib: u64,
}

#[derive(Args)]
struct RunOpts {
    /// Frames to run.
    #[arg(long, conflicts_with = "seconds")]
    iterations: Option<u64>,
    /// Seconds to run (the default is 60 when neither is given).
    #[arg(long)]
    seconds: Option<f64>,
    /// The seed (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where crashing frames are saved.
    #[arg(long, default_value_os_t = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes"))]
    crashes: PathBuf,
    /// A worker that prints nothing for this many seconds is taken for hung.
    #[arg(long, default_value_t = 120)]
    stall_seconds: u64,
    /// Stop after this many distinct crashes (kind and broker function).
    #[arg(long, default_value_t = 20)]
    max_crashes: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct WorkerOpts {
    #[arg(long)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    start: u64,
    #[arg(long)]
    end: u64,
    #[arg(long)]
    seconds: Option<f64>,
    #[arg(long)]
    trace: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ReplayOpts {
    /// Frame files: `*.bin` one frame without its size prefix, `*.frames` several frames
    /// each with its size prefix (as on the wire). All are replayed in order on one broker.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where the data dir is made.
    #[arg(long, default_value_os_t = runnel_fuzz::harness::default_data_root())]
    data_root: PathBuf,
    /// The allocator cap, in MiB.
    #[arg(long, default_value_t = 1024)]
    alloc_limit_mib: u64,
}

fn cap_allocations(mib: u64) -> anyhow::Result<()> {
    let bytes = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    ALLOCATOR
        .set_limit(bytes)
        .map_err(|()| anyhow::anyhow!("more than {mib} MiB is allocated already"))
}

/// A panic anywhere — in a handler, on a blocking thread — is a finding: say where, and
/// abort so the supervisor sees the process die.
fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        eprintln!("runnel-fuzz: {info}\n{backtrace}");
        std::process::abort();
    }));
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(opts) => {
            let seed = opts.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs())
            });
            let seconds = match (opts.iterations, opts.seconds) {
                (None, None) => Some(60.0),
                (_, s) => s,
            };
            let frames = corpus::load(&opts.common.corpus)?;
            let args = RunArgs {
                seed,
                iterations: opts.iterations,
                seconds,
                corpus: opts.common.corpus,
                reset_every: opts.common.reset_every,
                data_root: opts.common.data_root,
                crashes: opts.crashes,
                alloc_limit_mib: opts.common.alloc_limit_mib,
                stall: Duration::from_secs(opts.stall_seconds),
                max_crashes: opts.max_crashes,
            };
            println!(
                "runnel-fuzz: seed {seed}, corpus of {} frames, allocator cap {} MiB",
                frames.len(),
                args.alloc_limit_mib
            );
            let exe = std::env::current_exe().context("locating runnel-fuzz")?;
            let started = std::time::Instant::now();
            let summary = supervisor::run(&args, &exe, &frames)?;
            let elapsed = started.elapsed();
            print!("{}", summary.stats.report(elapsed));
            println!(
                "frames processed: {} ({:.0} frames/s; {} in epochs that crashed, not in the table)",
                summary.frames(),
                summary.frames() as f64 / elapsed.as_secs_f64().max(1e-9),
                summary.frames_in_crashed_epochs
            );
            println!(
                "crashes: {} ({} distinct)",
                summary.crashes.len(),
                summary.signatures().len()
            );
            for (signature, n) in summary.signatures() {
                println!("  {n} x {signature}");
            }
            for c in summary.crashes.iter().filter(|c| c.saved.is_some()) {
                println!("  {}", c.summary);
                if let Some(p) = &c.saved {
                    println!("    saved: {}", p.display());
                }
            }
            if !summary.crashes.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Worker(opts) => {
            abort_on_panic();
            cap_allocations(opts.common.alloc_limit_mib)?;
            let frames = corpus::load(&opts.common.corpus)?;
            let args = WorkerArgs {
                seed: opts.seed,
                start: opts.start,
                end: opts.end,
                time_limit: opts.seconds.map(Duration::from_secs_f64),
                reset_every: opts.common.reset_every,
                data_root: opts.common.data_root,
                trace: opts.trace,
            };
            let mut out = std::io::stdout().lock();
            if let Err(e) = worker::run(&args, &frames, &mut out) {
                eprintln!("runnel-fuzz: violation: {e:#}");
                std::process::exit(VIOLATION_EXIT);
            }
            Ok(())
        }
        Cmd::Replay(opts) => {
            abort_on_panic();
            cap_allocations(opts.alloc_limit_mib)?;
            let mut frames = Vec::with_capacity(opts.files.len());
            for f in &opts.files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                if f.extension().is_some_and(|x| x == "frames") {
                    frames.extend(
                        worker::split_frames(&bytes).with_context(|| {
                            format!("{}: not size-prefixed frames", f.display())
                        })?,
                    );
                } else {
                    frames.push(bytes);
                }
            }
            match worker::replay(&frames, &opts.data_root) {
                Ok(stats) => {
                    for (api, c) in &stats.per_api {
                        println!(
                            "{api}: answered {}, closed {}, no response {}, timed out {}",
                            c.answered, c.closed, c.no_response, c.timed_out
                        );
                    }
                    println!("ApiVersions answered afterwards");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("runnel-fuzz: violation: {e:#}");
                    std::process::exit(VIOLATION_EXIT);
                }
            }
        }
        Cmd::DeriveCorpus { captured, out } => {
            let manifest = derive::derive(&captured, &out)?;
            println!(
                "{} frames written to {}",
                manifest.lines().count().saturating_sub(1),
                out.display()
            );
            Ok(())
        }
    }
}
