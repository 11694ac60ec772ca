//! The supervisor: runs the fuzzing loop in child processes (`runnel-fuzz worker`) under
//! the allocator cap, and when one dies — an abort on a failed allocation, a panic, a
//! broken answer, or silence for `stall` — pins the death to a frame:
//!
//! 1. re-run the dead worker's epoch from its last `checkpoint` with the same seed, in
//!    trace mode (`frame <i>` before each frame), until it dies again: the last frame
//!    announced is the crashing one, regenerated here from `(seed, i)`;
//! 2. replay that frame alone on a fresh broker: does it crash without the frames before?
//! 3. save `<ApiName>-v<version>-seed<seed>-i<iteration>.bin` (the frame, no size prefix)
//!    and a `.txt` beside it with the story — the worker's stderr, which holds the
//!    Rust backtrace of the panic or of the failed allocation — in the crashes directory;
//! 4. go on fuzzing from the iteration after it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::corpus::{frame_api, CorpusFrame};
use crate::mutate;
use crate::stats::Stats;
use crate::worker::hex;

/// What a supervised run does.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The seed.
    pub seed: u64,
    /// Iterations to run, if bounded by count.
    pub iterations: Option<u64>,
    /// Wall time to run, if bounded by time.
    pub seconds: Option<f64>,
    /// The corpus directory.
    pub corpus: PathBuf,
    /// Iterations per epoch.
    pub reset_every: u64,
    /// Where workers make their data dirs.
    pub data_root: PathBuf,
    /// Where crashes are saved.
    pub crashes: PathBuf,
    /// The workers' allocator cap.
    pub alloc_limit_mib: u64,
    /// A worker silent this long is taken for hung.
    pub stall: Duration,
    /// Stop after this many distinct crashes (by [`signature`]).
    pub max_crashes: usize,
}

/// One crash, pinned (or not) to a frame.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The crashing iteration, when the trace reproduced it.
    pub iteration: Option<u64>,
    /// The epoch it happened in starts here.
    pub checkpoint: u64,
    /// Files saved for it.
    pub saved: Option<PathBuf>,
    /// The first line that says what went wrong.
    pub summary: String,
    /// What kind of death, and where in the broker: crashes with one signature are
    /// one bug (see [`signature`]).
    pub signature: String,
}

/// Crashes saved per signature; later ones are counted, not saved.
const SAVED_PER_SIGNATURE: usize = 3;

/// A supervised run's result.
#[derive(Debug, Default)]
pub struct Summary {
    /// Outcomes of frames in epochs that finished.
    pub stats: Stats,
    /// Frames handled in epochs that crashed (their outcomes are not in `stats`).
    pub frames_in_crashed_epochs: u64,
    /// The crashes.
    pub crashes: Vec<Crash>,
}

impl Summary {
    /// The distinct signatures, with how often each occurred, most frequent first.
    pub fn signatures(&self) -> Vec<(String, usize)> {
        let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for c in &self.crashes {
            *counts.entry(c.signature.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v
    }

    /// Every frame handled, crashed epochs included.
    pub fn frames(&self) -> u64 {
        self.stats.frames() + self.frames_in_crashed_epochs
    }
}

/// How often a long run reports its progress.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// How a child ended.
struct Ended {
    status: Option<ExitStatus>,
    stalled: bool,
    checkpoint: Option<u64>,
    last_frame: Option<u64>,
    next: Option<u64>,
    stats: Stats,
    stderr: String,
}

/// Runs workers from iteration 0 until the iterations or the time are used up.
pub fn run(args: &RunArgs, exe: &Path, corpus: &[CorpusFrame]) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(&args.crashes)?;
    // This run's data dirs, apart from any other run's: a dead worker leaves its epoch's
    // dir behind, and it is removed here.
    let mut args = args.clone();
    args.data_root = args.data_root.join(format!("run-{}", std::process::id()));
    let args = &args;
    let started = Instant::now();
    let end = args.iterations.unwrap_or(u64::MAX);
    let deadline = args.seconds.map(Duration::from_secs_f64);
    let mut summary = Summary::default();
    let mut start = 0;
    // A bug that crashes often would otherwise end the run early: distinct ones count.
    while start < end
        && summary.signatures().len() < args.max_crashes
        && summary.crashes.len() < args.max_crashes.saturating_mul(100)
    {
        let left = match deadline {
            Some(d) if started.elapsed() >= d => break,
            Some(d) => Some(d - started.elapsed()),
            None => None,
        };
        let ended = supervise(args, exe, start, end, left, false)?;
        let _ = std::fs::remove_dir_all(&args.data_root);
        summary.stats.merge(&ended.stats);
        if ended.status.is_some_and(|s| s.success()) {
            start = ended.next.unwrap_or(end);
            if ended.next.is_none() || left.is_some() {
                break;
            }
            continue;
        }
        let checkpoint = ended.checkpoint.unwrap_or(start);
        let seen = summary
            .crashes
            .iter()
            .filter(|c| c.signature == signature(&ended.stderr, ended.stalled))
            .count();
        let crash = pin(
            args,
            exe,
            corpus,
            checkpoint,
            end,
            &ended,
            seen < SAVED_PER_SIGNATURE,
        )?;
        let _ = std::fs::remove_dir_all(&args.data_root);
        let crashed_at = crash.iteration;
        summary.frames_in_crashed_epochs += crashed_at.map_or(0, |i| i + 1 - checkpoint);
        eprintln!("runnel-fuzz: crash: {}", crash.summary);
        if let Some(p) = &crash.saved {
            eprintln!("runnel-fuzz: saved {}", p.display());
        }
        summary.crashes.push(crash);
        // Go on after the crashing frame, or after the epoch when it was not pinned.
        start = match crashed_at {
            Some(i) => i + 1,
            None => (checkpoint / args.reset_every + 1) * args.reset_every,
        };
    }
    Ok(summary)
}

/// Replays the dead worker's epoch in trace mode and saves what it finds.
fn pin(
    args: &RunArgs,
    exe: &Path,
    corpus: &[CorpusFrame],
    checkpoint: u64,
    end: u64,
    first: &Ended,
    save: bool,
) -> anyhow::Result<Crash> {
    let epoch_end = ((checkpoint / args.reset_every + 1) * args.reset_every).min(end);
    let trace = supervise(args, exe, checkpoint, epoch_end, None, true)?;
    let failed = trace.stalled || !trace.status.is_some_and(|s| s.success());
    let (Some(i), true) = (trace.last_frame, failed) else {
        return Ok(Crash {
            iteration: None,
            checkpoint,
            saved: None,
            summary: format!(
                "not reproduced from checkpoint {checkpoint}: {}",
                first_line(&first.stderr, first.stalled)
            ),
            signature: signature(&first.stderr, first.stalled),
        });
    };
    let frame = mutate::generate(corpus, args.seed, i).bytes;
    let summary_line = first_line(&trace.stderr, trace.stalled);
    if !save {
        return Ok(Crash {
            iteration: Some(i),
            checkpoint,
            saved: None,
            summary: format!("iteration {i}: {summary_line} (seen before: not saved)"),
            signature: signature(&first.stderr, first.stalled),
        });
    }
    let (label, version) = frame_api(&frame).map_or_else(
        || ("Unknown".to_string(), 0),
        |(k, v)| (format!("{k:?}"), v),
    );
    let stem = format!("{label}-v{version}-seed{}-i{i}", args.seed);
    let bin = args.crashes.join(format!("{stem}.bin"));
    std::fs::write(&bin, &frame)?;
    let mut replay = Command::new(exe);
    replay
        .args(["replay", "--alloc-limit-mib"])
        .arg(args.alloc_limit_mib.to_string())
        .arg("--data-root")
        .arg(&args.data_root)
        .arg(&bin);
    // A replay that fails, or hangs as long as a stalled worker, crashes alone.
    let alone = !succeeds_within(&mut replay, args.stall).unwrap_or(true);
    let summary = format!(
        "{label} v{version} at iteration {i} (seed {}): {summary_line}",
        args.seed
    );
    let reproduce = if alone {
        format!("runnel-fuzz replay {}", bin.display())
    } else {
        format!(
            "runnel-fuzz {}",
            worker_args(args, checkpoint, i + 1, None, true).join(" ")
        )
    };
    let text = format!(
        "{summary}\n\napi: {label} v{version}\niteration: {i}\nseed: {}\nepoch from iteration: {checkpoint}\n\
         crashes alone on a fresh broker: {}\nreproduce: {reproduce}\nframe (hex, no size prefix): {}\n\n\
         --- worker stderr (trace run; RUST_BACKTRACE=1 gives the backtrace) ---\n{}\n",
        args.seed,
        if alone { "yes" } else { "no, it needs the frames before it" },
        hex(&frame),
        if trace.stalled {
            "none: the worker hung rather than crashed".to_string()
        } else {
            head(&trace.stderr, 16_000)
        },
    );
    std::fs::write(args.crashes.join(format!("{stem}.txt")), text)?;
    Ok(Crash {
        iteration: Some(i),
        checkpoint,
        saved: Some(bin),
        summary,
        signature: signature(&first.stderr, first.stalled),
    })
}

fn worker_args(
    args: &RunArgs,
    start: u64,
    end: u64,
    seconds: Option<Duration>,
    trace: bool,
) -> Vec<String> {
    let mut v = vec![
        "worker".to_string(),
        "--seed".into(),
        args.seed.to_string(),
        "--start".into(),
        start.to_string(),
        "--end".into(),
        end.to_string(),
        "--reset-every".into(),
        args.reset_every.to_string(),
        "--corpus".into(),
        args.corpus.display().to_string(),
        "--data-root".into(),
        args.data_root.display().to_string(),
        "--alloc-limit-mib".into(),
        args.alloc_limit_mib.to_string(),
    ];
    if let Some(s) = seconds {
        v.extend(["--seconds".into(), format!("{:.3}", s.as_secs_f64())]);
    }
    if trace {
        v.push("--trace".into());
    }
    v
}

/// Runs one worker, reading its lines; kills it after `stall` without one.
fn supervise(
    args: &RunArgs,
    exe: &Path,
    start: u64,
    end: u64,
    seconds: Option<Duration>,
    trace: bool,
) -> anyhow::Result<Ended> {
    let stderr_path = args
        .crashes
        .join(format!(".worker-{}.stderr", std::process::id()));
    let stderr_file = std::fs::File::create(&stderr_path)?;
    let mut child = Command::new(exe)
        .args(worker_args(args, start, end, seconds, trace))
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .context("starting a worker")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let worker_started = Instant::now();
    let mut last_report = Instant::now();
    let mut ended = Ended {
        status: None,
        stalled: false,
        checkpoint: None,
        last_frame: None,
        next: None,
        stats: Stats::default(),
        stderr: String::new(),
    };
    loop {
        match rx.recv_timeout(args.stall) {
            Ok(line) => {
                let mut parts = line.splitn(3, ' ');
                let (word, n) = (parts.next(), parts.next().and_then(|n| n.parse().ok()));
                match word {
                    Some("checkpoint") => {
                        ended.checkpoint = n;
                        // A new epoch: the finished one's stats were printed just before.
                    }
                    Some("frame") => ended.last_frame = n,
                    Some("done") => ended.next = n,
                    Some("progress") if !trace => {
                        // A long run says how far it got, once a minute, on stderr.
                        if let (Some(n), true) = (n, last_report.elapsed() >= REPORT_EVERY) {
                            let rate = n.saturating_sub(start) as f64
                                / worker_started.elapsed().as_secs_f64().max(1e-9);
                            eprintln!("runnel-fuzz: iteration {n} ({rate:.0} frames/s)");
                            last_report = Instant::now();
                        }
                    }
                    Some("stats") => {
                        ended.stats.parse_line(&line);
                    }
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                ended.stalled = true;
                let _ = child.kill();
                break;
            }
        }
    }
    ended.status = Some(child.wait()?);
    let _ = reader.join();
    ended.stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    Ok(ended)
}

/// Whether `command` exits successfully within `limit` (it is killed after that).
fn succeeds_within(command: &mut Command, limit: Duration) -> std::io::Result<bool> {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What kind of death and the first broker function on its backtrace, e.g.
/// `allocation failure in runnel_broker::groups::assignment::subscribed_topics`.
pub fn signature(stderr: &str, stalled: bool) -> String {
    if stalled {
        return "hang".to_string();
    }
    let kind = if stderr.contains("memory allocation of") {
        "allocation failure"
    } else if stderr.contains("panicked at") {
        "panic"
    } else if stderr.contains("violation:") {
        "broken answer"
    } else {
        "death"
    };
    let place = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("at "))
        .find_map(|l| {
            let function = l.split_once(": ")?.1;
            function.starts_with("runnel_broker::").then_some(function)
        });
    match place {
        Some(f) => format!("{kind} in {f}"),
        None => kind.to_string(),
    }
}

fn first_line(stderr: &str, stalled: bool) -> String {
    if stalled {
        return "the worker stopped making progress (a hang)".to_string();
    }
    stderr
        .lines()
        .find(|l| {
            l.contains("memory allocation")
                || l.contains("panicked")
                || l.contains("violation")
                || l.contains("Error")
        })
        .unwrap_or_else(|| stderr.lines().last().unwrap_or("the worker died silently"))
        .to_string()
}

fn head(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_name_the_kind_and_the_broker_function() {
        let oom = "memory allocation of 68719476704 bytes failed\nstack backtrace:\n   0: std::alloc::rust_oom\n             at /rustc/x/alloc.rs:1:1\n  12: runnel_broker::groups::assignment::subscribed_topics\n             at ./broker/src/groups/assignment.rs:16:5\n";
        assert_eq!(
            signature(oom, false),
            "allocation failure in runnel_broker::groups::assignment::subscribed_topics"
        );
        assert_eq!(
            signature("runnel-fuzz: violation: iteration 3", false),
            "broken answer"
        );
        assert_eq!(signature("", true), "hang");
    }
}
