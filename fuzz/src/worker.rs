//! The fuzzing loop of one process: generate the frame of each iteration, hand it to the
//! broker, count the outcome. The data dir is recreated at every multiple of
//! `reset_every` (an epoch), which keeps disk use bounded and gives the supervisor a
//! point to replay a crash from.
//!
//! What a worker prints on `out`, one line each, flushed at once:
//!
//! | line                      | when                                                   |
//! |---------------------------|--------------------------------------------------------|
//! | `checkpoint <i>`          | a fresh broker opens at iteration `i`                  |
//! | `frame <i>`               | before iteration `i` is generated (trace mode only)    |
//! | `progress <i>`            | every [`PROGRESS_EVERY`] iterations                    |
//! | `stats ...`               | an epoch's outcomes, when it ends (see [`crate::stats`]) |
//! | `done <next> <millis>`    | at the end: the first iteration not run, wall time     |

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::corpus::{frame_label, CorpusFrame};
use crate::harness::Harness;
use crate::mutate;
use crate::stats::Stats;

/// Iterations between `progress` lines.
pub const PROGRESS_EVERY: u64 = 2048;

/// Iterations between ticks of the group timers.
const TICK_EVERY: u64 = 64;

/// What one worker runs.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// The run's seed.
    pub seed: u64,
    /// First iteration.
    pub start: u64,
    /// First iteration not to run.
    pub end: u64,
    /// Stop after this much wall time, if set.
    pub time_limit: Option<Duration>,
    /// Iterations per epoch (a fresh data dir).
    pub reset_every: u64,
    /// Where data dirs are made.
    pub data_root: PathBuf,
    /// Print each frame before handling it.
    pub trace: bool,
}

/// What a finished worker saw.
#[derive(Debug)]
pub struct Report {
    /// Outcomes per API.
    pub stats: Stats,
    /// The first iteration not run.
    pub next: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs iterations `start..end` (or until the time limit) on a runtime of its own, then
/// requires the last broker to still answer ApiVersions. A [`crate::check::Violation`]
/// ends the run with an error naming the iteration.
pub fn run(
    args: &WorkerArgs,
    corpus: &[CorpusFrame],
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    anyhow::ensure!(!corpus.is_empty(), "the corpus is empty");
    anyhow::ensure!(args.reset_every > 0, "reset_every must be positive");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(fuzz(args, corpus, out))
}

async fn fuzz(
    args: &WorkerArgs,
    corpus: &[CorpusFrame],
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut epoch = Stats::default();
    let mut harness: Option<Harness> = None;
    let mut i = args.start;
    while i < args.end {
        if i.is_multiple_of(256) && args.time_limit.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
        if harness.is_none() || i.is_multiple_of(args.reset_every) {
            if let Some(old) = harness.take() {
                old.close().await.context("closing a broker")?;
                out.write_all(epoch.to_lines().as_bytes())?;
                stats.merge(&std::mem::take(&mut epoch));
            }
            std::fs::create_dir_all(&args.data_root)?;
            harness = Some(Harness::open(&args.data_root).await?);
            line(out, &format!("checkpoint {i}"))?;
        }
        let Some(h) = harness.as_ref() else {
            unreachable!("opened above");
        };
        if args.trace {
            line(out, &format!("frame {i}"))?;
        }
        let generated = mutate::generate(corpus, args.seed, i);
        if i.is_multiple_of(TICK_EVERY) {
            h.tick();
        }
        let label = frame_label(&generated.bytes);
        let outcome = h.handle(generated.bytes.clone()).await.map_err(|v| {
            anyhow::anyhow!(
                "iteration {i} ({label}, from {}, {:?}): {v}; frame {}",
                corpus[generated.source].name,
                generated.ops,
                hex(&generated.bytes)
            )
        })?;
        epoch.record(label, outcome);
        i += 1;
        if i.is_multiple_of(PROGRESS_EVERY) {
            line(out, &format!("progress {i}"))?;
        }
    }
    if let Some(h) = harness {
        h.probe()
            .await
            .context("ApiVersions after the last frame")?;
        h.close().await.context("closing the last broker")?;
    }
    let elapsed = started.elapsed();
    out.write_all(epoch.to_lines().as_bytes())?;
    stats.merge(&epoch);
    line(out, &format!("done {i} {}", elapsed.as_millis()))?;
    Ok(Report {
        stats,
        next: i,
        elapsed,
    })
}

fn line(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    writeln!(out, "{text}")?;
    out.flush()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Bytes from lower- or upper-case hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The frames of a `*.frames` file: each behind its 4-byte size prefix, as on the wire.
/// `None` when a prefix is negative or runs past the end.
pub fn split_frames(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let size = i32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
        let end = 4 + usize::try_from(size).ok()?;
        frames.push(bytes.get(4..end)?.to_vec());
        bytes = &bytes[end..];
    }
    Some(frames)
}

/// Runs frames on a fresh broker and probes ApiVersions after it: the replay of a
/// saved crash or regression file.
pub fn replay(frames: &[Vec<u8>], data_root: &std::path::Path) -> anyhow::Result<Stats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(async {
        std::fs::create_dir_all(data_root)?;
        let h = Harness::open(data_root).await?;
        let mut stats = Stats::default();
        for (n, frame) in frames.iter().enumerate() {
            let label = frame_label(frame);
            let outcome = h
                .handle(bytes::Bytes::copy_from_slice(frame))
                .await
                .map_err(|v| anyhow::anyhow!("frame {n} ({label}): {v}"))?;
            stats.record(label, outcome);
        }
        h.probe().await.context("ApiVersions after the frames")?;
        h.close().await?;
        Ok(stats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001ABff"), Some(bytes.to_vec()));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn frames_files_split_on_their_size_prefixes() {
        let file = [0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert_eq!(split_frames(&file), Some(vec![vec![7, 8], vec![], vec![9]]));
        assert_eq!(split_frames(&[0, 0, 0, 3, 1]), None);
        assert_eq!(split_frames(&[0xff, 0, 0, 0]), None);
        assert_eq!(split_frames(&[0, 0]), None);
    }
}
