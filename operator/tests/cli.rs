//! The built `runnel-operator` binary: `--version` and a refused flag answer without a
//! Kubernetes API around (what scripts/static-check.sh relies on).

use std::process::{Command, Output};

fn operator(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_runnel-operator"))
        .args(args)
        .env_clear()
        .env("KUBECONFIG", "/nonexistent")
        .output()
}

#[test]
fn version_prints_the_name_and_version_and_exits_zero() -> anyhow::Result<()> {
    let out = operator(&["--version"])?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout)?,
        format!("runnel-operator {}\n", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}

#[test]
fn an_unknown_flag_is_a_usage_error() -> anyhow::Result<()> {
    let out = operator(&["--no-such-flag"])?;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    Ok(())
}
