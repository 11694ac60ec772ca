//! The disk's own ceiling for durable appends: a loop of write + fdatasync of a fixed
//! number of bytes in one file, as fast as the filesystem allows. Comparing a broker's
//! acks=all produce run with this loop, on the same filesystem and with the broker's own
//! bytes per fsync round, says how much of the disk the broker leaves unused.
//!
//! With `--files N` each round spreads its bytes over N files, each written and
//! fdatasynced by a thread of its own at the same time, and the round ends when the last
//! is done: the shape of a broker's round over N partitions, each a segment file of its
//! own (Kafka's layout). One file is the disk's best case; N files say what the disk
//! gives a round of that shape.
//!
//! Two layouts:
//!
//! | mode          | each round                                        | like                          |
//! |---------------|---------------------------------------------------|-------------------------------|
//! | `overwrite`   | writes the next slice of a file filled beforehand (wrapping at its end), then fdatasync: data only, the file never grows | a broker's preallocated segment (the default) |
//! | `append`      | appends to a growing file, then fdatasync: data and the new size | a segment without preallocation |
//!
//! The loop runs on the calling thread (it is blocking I/O and nothing else); the file is
//! removed when the run ends, also on error.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::config::seconds;
use crate::error::BenchError;
use crate::payload::XorShift;
use crate::report::{Percentiles, MB};
use crate::stats::{latency_histogram, record_latency};

/// The largest round (64 MiB) and the largest file (4 GiB) the loop writes.
pub const MAX_ROUND_BYTES: u64 = 64 << 20;
/// The largest `--file-bytes`.
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// The largest `--files`.
pub const MAX_FILES: u64 = 64;

/// Settings of one disk-ceiling run.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "runnel-disk-ceiling",
    version,
    about = "Write + fdatasync loop: the disk's ceiling for durable appends (MB/s, p50/p99 per round)"
)]
pub struct DiskCeilingConfig {
    /// Directory to write in (use the broker's data directory's filesystem).
    #[arg(long)]
    pub dir: PathBuf,

    /// Bytes written before each fdatasync (a broker's bytes per fsync round).
    #[arg(long)]
    pub round_bytes: u64,

    /// Seconds of measured rounds after the warmup.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Seconds of rounds left out of the figures at the start.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Where each round's bytes go.
    #[arg(long, value_enum, default_value_t = DiskMode::Overwrite)]
    pub mode: DiskMode,

    /// With `--mode overwrite`: bytes of each file filled (and synced) before the loop.
    #[arg(long, default_value_t = 64 << 20)]
    pub file_bytes: u64,

    /// Files each round's bytes are spread over, written and fdatasynced in parallel
    /// (1 to `MAX_FILES`).
    #[arg(long, default_value_t = 1)]
    pub files: u64,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Where each round's bytes go (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskMode {
    /// Overwrite a file filled beforehand, wrapping at its end.
    Overwrite,
    /// Append to a growing file.
    Append,
}

/// What the loop measured.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// The directory written in.
    pub dir: PathBuf,
    /// The layout.
    pub mode: DiskMode,
    /// Files each round is spread over.
    pub files: u64,
    /// Bytes per round.
    pub round_bytes: u64,
    /// Measured rounds (after the warmup).
    pub rounds: u64,
    /// Measured bytes.
    pub bytes: u64,
    /// From the end of the warmup to the end of the last round.
    pub seconds: f64,
    /// `bytes / MB / seconds`.
    pub mb_per_sec: f64,
    /// `rounds / seconds`.
    pub rounds_per_sec: f64,
    /// Write + fdatasync time per measured round.
    pub latency_ms: Option<Percentiles>,
}

impl DiskReport {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// A few lines for a terminal.
    pub fn to_text(&self) -> String {
        let latency = self.latency_ms.map_or("no rounds".to_string(), |l| {
            format!(
                "p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                l.p50, l.p99, l.max
            )
        });
        format!(
            "disk ceiling in {} ({:?}, {} bytes per round over {} file(s))\n  {:.1} MB/s  {:.0} rounds/s  ({} rounds in {:.1} s)\n  round: {latency}\n",
            self.dir.display(),
            self.mode,
            self.round_bytes,
            self.files,
            self.mb_per_sec,
            self.rounds_per_sec,
            self.rounds,
            self.seconds,
        )
    }
}

/// Removes the loop's file when dropped.
struct TempFile {
    file: File,
    path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn disk_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BenchError + 'a {
    move |source| BenchError::Disk {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks the settings and runs the loop; blocks for `--warmup` + `--duration` seconds.
pub fn run(config: &DiskCeilingConfig) -> Result<DiskReport, BenchError> {
    let invalid = |flag, reason: String| Err(BenchError::InvalidSetting { flag, reason });
    if !(1..=MAX_ROUND_BYTES).contains(&config.round_bytes) {
        return invalid(
            "--round-bytes",
            format!(
                "{} is not between 1 and {MAX_ROUND_BYTES}",
                config.round_bytes
            ),
        );
    }
    if !(1..=MAX_FILES.min(config.round_bytes)).contains(&config.files) {
        return invalid(
            "--files",
            format!(
                "{} is not between 1 and {} (and at most --round-bytes)",
                config.files, MAX_FILES
            ),
        );
    }
    // Each file's share of a round; the first also takes the remainder.
    let share = config.round_bytes / config.files;
    let first_share = share + config.round_bytes % config.files;
    if !(first_share..=MAX_FILE_BYTES).contains(&config.file_bytes) {
        return invalid(
            "--file-bytes",
            format!(
                "{} is not between a file's share of --round-bytes ({first_share}) and {MAX_FILE_BYTES}",
                config.file_bytes
            ),
        );
    }
    let duration = seconds("--duration", config.duration)?;
    let warmup = seconds("--warmup", config.warmup)?;
    let too_large = |_| BenchError::InvalidSetting {
        flag: "--round-bytes",
        reason: "it does not fit in memory on this platform".to_string(),
    };
    let first_len = usize::try_from(first_share).map_err(too_large)?;
    let mut rng = XorShift::from_entropy();
    // Letters, not zeros: a virtual disk may store runs of zeros as holes.
    let buffer: Vec<u8> = (0..first_len).map(|_| b'A' + rng.below(26)).collect();
    let file_bytes = match config.mode {
        DiskMode::Overwrite => config.file_bytes,
        DiskMode::Append => u64::MAX,
    };
    let mut slots = Vec::new();
    for i in 0..config.files {
        let path = config.dir.join(format!(
            "runnel-disk-ceiling-{}-{i}.tmp",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(disk_error("create", &path))?;
        let temp = TempFile { file, path };
        if config.mode == DiskMode::Overwrite {
            fill(&temp, &buffer, config.file_bytes)?;
        }
        let len = if i == 0 { first_share } else { share };
        slots.push(Slot {
            temp,
            position: 0,
            len: usize::try_from(len).map_err(too_large)?,
            file_bytes,
        });
    }
    let Some((first, others)) = slots.split_first_mut() else {
        return invalid("--files", "no file to write".to_string());
    };
    let buffer = &buffer;
    std::thread::scope(|scope| {
        // One long-lived thread per further file: a round is a message to each.
        let mut workers = Vec::with_capacity(others.len());
        for slot in others {
            let (go, rounds) = std::sync::mpsc::channel::<()>();
            let (done, dones) = std::sync::mpsc::channel();
            scope.spawn(move || {
                while rounds.recv().is_ok() {
                    if done.send(slot.round(buffer)).is_err() {
                        break;
                    }
                }
            });
            workers.push((go, dones));
        }
        let mut latency = latency_histogram();
        let mut rounds = 0u64;
        let started = Instant::now();
        let measure_from = started + warmup;
        let end = measure_from + duration;
        let mut last_end = measure_from;
        loop {
            let begun = Instant::now();
            if begun >= end {
                break;
            }
            for (go, _) in &workers {
                go.send(()).map_err(|_| worker_gone(&first.temp.path))?;
            }
            let mut result = first.round(buffer);
            for (_, dones) in &workers {
                let done = dones.recv().map_err(|_| worker_gone(&first.temp.path))?;
                result = result.and(done);
            }
            result?;
            let finished = Instant::now();
            if begun >= measure_from {
                rounds += 1;
                last_end = finished;
                let micros = finished.duration_since(begun).as_micros();
                record_latency(&mut latency, u64::try_from(micros).unwrap_or(u64::MAX));
            }
        }
        // Dropping the senders ends the workers.
        drop(workers);
        Ok(summarize(
            config,
            rounds,
            last_end.duration_since(measure_from),
            &latency,
        ))
    })
}

/// A worker thread that ended before the loop did (it panicked).
fn worker_gone(path: &Path) -> BenchError {
    BenchError::Disk {
        op: "run the writer of",
        path: path.to_path_buf(),
        source: std::io::Error::other("a writer thread stopped"),
    }
}

/// One file of the loop and where its next round goes.
struct Slot {
    temp: TempFile,
    position: u64,
    /// Bytes of each round in this file.
    len: usize,
    /// Where writing wraps to the start (`u64::MAX` when appending).
    file_bytes: u64,
}

impl Slot {
    /// Writes this file's share of a round at the next position and fdatasyncs it.
    fn round(&mut self, buffer: &[u8]) -> Result<(), BenchError> {
        let len = self.len as u64;
        if self.position + len > self.file_bytes {
            self.position = 0;
        }
        self.temp
            .file
            .write_all_at(&buffer[..self.len], self.position)
            .map_err(disk_error("write", &self.temp.path))?;
        self.temp
            .file
            .sync_data()
            .map_err(disk_error("fdatasync", &self.temp.path))?;
        self.position += len;
        Ok(())
    }
}

/// Fills the file to `bytes` with `pattern` and syncs it, so rounds overwrite allocated
/// blocks.
fn fill(temp: &TempFile, pattern: &[u8], bytes: u64) -> Result<(), BenchError> {
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, &temp.file);
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(pattern.len(), |l| l.min(pattern.len()));
        writer
            .write_all(&pattern[..n])
            .map_err(disk_error("fill", &temp.path))?;
        left -= n as u64;
    }
    writer.flush().map_err(disk_error("fill", &temp.path))?;
    drop(writer);
    temp.file
        .sync_all()
        .map_err(disk_error("fsync", &temp.path))
}

/// The report of `rounds` rounds over `elapsed` with their latencies.
fn summarize(
    config: &DiskCeilingConfig,
    rounds: u64,
    elapsed: Duration,
    latency: &hdrhistogram::Histogram<u64>,
) -> DiskReport {
    let seconds = elapsed.as_secs_f64();
    let bytes = rounds * config.round_bytes;
    let per_sec = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
    DiskReport {
        dir: config.dir.clone(),
        mode: config.mode,
        files: config.files,
        round_bytes: config.round_bytes,
        rounds,
        bytes,
        seconds,
        mb_per_sec: per_sec(bytes as f64 / MB),
        rounds_per_sec: per_sec(rounds as f64),
        latency_ms: Percentiles::from_micros(latency),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, args: &[&str]) -> DiskCeilingConfig {
        let dir = dir.to_str().unwrap();
        let base = ["runnel-disk-ceiling", "--dir", dir];
        DiskCeilingConfig::try_parse_from(base.iter().chain(args)).unwrap()
    }

    fn refused(config: &DiskCeilingConfig) -> &'static str {
        match run(config) {
            Err(BenchError::InvalidSetting { flag, .. }) => flag,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn round_and_file_sizes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let max = MAX_ROUND_BYTES.to_string();
        let above = (MAX_ROUND_BYTES + 1).to_string();
        assert_eq!(
            refused(&config(dir.path(), &["--round-bytes", "0"])),
            "--round-bytes"
        );
        assert_eq!(
            refused(&config(dir.path(), &["--round-bytes", &above])),
            "--round-bytes"
        );
        // A round larger than the file it overwrites.
        let small_file = config(dir.path(), &["--round-bytes", &max, "--file-bytes", "4096"]);
        assert_eq!(refused(&small_file), "--file-bytes");
        let endless = config(dir.path(), &["--round-bytes", "4096", "--duration", "inf"]);
        assert_eq!(refused(&endless), "--duration");
        // Nothing was left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn both_modes_measure_rounds_and_remove_their_file() {
        let dir = tempfile::tempdir().unwrap();
        for mode in ["overwrite", "append"] {
            let args = [
                "--round-bytes",
                "8192",
                "--file-bytes",
                "32768",
                "--duration",
                "0.2",
                "--warmup",
                "0",
                "--mode",
                mode,
            ];
            let report = run(&config(dir.path(), &args)).unwrap();
            assert!(report.rounds > 0, "{mode}: no rounds");
            assert_eq!(report.bytes, report.rounds * 8192);
            assert!(report.mb_per_sec > 0.0);
            let latency = report.latency_ms.unwrap();
            assert_eq!(latency.count, report.rounds);
            assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{mode}");
        }
    }

    #[test]
    fn a_round_over_several_files_writes_each_its_share() {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "--round-bytes",
            "10000",
            "--files",
            "3",
            "--file-bytes",
            "40000",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ];
        let report = run(&config(dir.path(), &args)).unwrap();
        assert!(report.rounds > 0);
        assert_eq!((report.files, report.bytes), (3, report.rounds * 10000));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // More files than bytes, no file, and a file too small for its share.
        let many = ["--round-bytes", "10", "--files", "11"];
        assert_eq!(refused(&config(dir.path(), &many)), "--files");
        let none = ["--round-bytes", "10", "--files", "0"];
        assert_eq!(refused(&config(dir.path(), &none)), "--files");
        let small = [
            "--round-bytes",
            "9000",
            "--files",
            "2",
            "--file-bytes",
            "4000",
        ];
        assert_eq!(refused(&config(dir.path(), &small)), "--file-bytes");
    }

    #[test]
    fn a_slot_writes_its_share_at_the_next_position_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut slot = Slot {
            temp: TempFile {
                file,
                path: path.clone(),
            },
            position: 0,
            len: 3,
            file_bytes: 7,
        };
        slot.round(b"abcdef").unwrap();
        slot.round(b"xyzdef").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcxyz");
        // The next share would pass the file's end: it goes to the start.
        slot.round(b"123").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"123xyz");
        drop(slot);
        assert!(!path.exists());
    }

    #[test]
    fn an_empty_run_reports_zero_rates() {
        let dir = tempfile::tempdir().unwrap();
        let report = summarize(
            &config(dir.path(), &["--round-bytes", "4096"]),
            0,
            Duration::ZERO,
            &latency_histogram(),
        );
        assert_eq!((report.mb_per_sec, report.rounds_per_sec), (0.0, 0.0));
        assert!(report.latency_ms.is_none());
        assert!(report.to_text().contains("no rounds"));
    }
}
