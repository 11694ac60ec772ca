//! Every crash the fuzzer found is a file in fuzz/regressions: `*.bin` one frame without
//! its size prefix, `*.frames` a sequence of size-prefixed frames (a crash that needs the
//! frames before it, cut down to the ones that matter). Each is replayed by the
//! `runnel-fuzz replay` binary, allocator cap included, on a fresh broker that must then
//! still answer ApiVersions.
//!
//! fuzz/regressions/pending holds crashes found but not fixed yet: each must still crash
//! (so the reproduction stays true). The fix moves its file up into fuzz/regressions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn frames_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "bin" || x == "frames"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(file: &Path, root: &Path) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_runnel-fuzz"))
        .arg("replay")
        .arg("--data-root")
        .arg(root)
        .arg(file)
        .env("RUST_BACKTRACE", "0")
        .output()
}

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions")
}

#[test]
fn every_regression_frame_is_survived() {
    let files = frames_in(&regressions());
    assert!(
        !files.is_empty(),
        "no regression frames in fuzz/regressions"
    );
    let root = tempfile::tempdir().expect("temp dir");
    for file in files {
        let out = replay(&file, root.path()).expect("runnel-fuzz runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ApiVersions answered afterwards"),
            "{}: {}\n{stdout}\n{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn pending_crashes_still_crash() {
    let root = tempfile::tempdir().expect("temp dir");
    for file in frames_in(&regressions().join("pending")) {
        let out = replay(&file, root.path()).expect("runnel-fuzz runs");
        assert!(
            !out.status.success(),
            "{} no longer crashes the broker: move it to fuzz/regressions",
            file.display()
        );
    }
}
