//! Every crash the fuzzer found is a file in fuzz/regressions (a frame without its size
//! prefix); each is replayed by the `runnel-fuzz replay` binary, allocator cap included,
//! on a fresh broker that must then still answer ApiVersions.

use std::path::Path;
use std::process::Command;

#[test]
fn every_regression_frame_is_survived() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression frames in {}",
        dir.display()
    );
    let root = tempfile::tempdir().expect("temp dir");
    for file in files {
        let out = Command::new(env!("CARGO_BIN_EXE_runnel-fuzz"))
            .arg("replay")
            .arg("--data-root")
            .arg(root.path())
            .arg(&file)
            .output()
            .expect("runnel-fuzz runs");
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
