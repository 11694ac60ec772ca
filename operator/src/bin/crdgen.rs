//! Writes the CRDs of every Runnel custom resource as YAML, one file per CRD.
//!
//! Usage: `crdgen [OUTPUT_DIR]` (default: the workspace's `crds/`). The operator's tests
//! fail when the committed files differ from what this writes.

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, crd) in runnel_operator::crd::all() {
        let path = dir.join(file);
        let yaml =
            runnel_operator::crd::to_yaml(&crd).with_context(|| format!("rendering {file}"))?;
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
