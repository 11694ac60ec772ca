//! `meta.properties` in the data directory: which cluster and which node the data belongs
//! to, in Kafka's format (`key=value` lines). Written once the cluster id is known;
//! checked at every start, so a volume attached to the wrong broker or cluster is refused
//! before anything is written to it.

use std::path::{Path, PathBuf};

use runnel_storage::{write_atomic, Durability};

/// The file's name, as Kafka's.
pub const META_PROPERTIES: &str = "meta.properties";
/// Largest `meta.properties` read.
const MAX_LEN: u64 = 64 * 1024;

/// Why a data directory may not be used by this broker.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The directory was written by a broker with another node id.
    #[error("{path} belongs to node {found}, not to this broker's node.id {configured}", path = path.display())]
    NodeId {
        /// The file.
        path: PathBuf,
        /// The node id in it.
        found: i32,
        /// This broker's.
        configured: i32,
    },
    /// The directory belongs to another cluster.
    #[error("{path} belongs to cluster {found:?}, not to {expected:?}{why}", path = path.display())]
    ClusterId {
        /// The file.
        path: PathBuf,
        /// The cluster id in it.
        found: String,
        /// The one expected.
        expected: String,
        /// Where the expected id comes from.
        why: &'static str,
    },
    /// The file cannot be read or written, or is not Kafka's format.
    #[error("{path}: {reason}", path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What `meta.properties` says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Properties {
    cluster_id: Option<String>,
    node_id: Option<i32>,
}

fn read(path: &Path) -> Result<Option<Properties>, IdentityError> {
    let bad = |reason: String| IdentityError::File {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
        Ok(m) if m.len() > MAX_LEN => return Err(bad(format!("larger than {MAX_LEN} bytes"))),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut props = Properties::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(format!("line {line:?} is not key=value")));
        };
        match key.trim() {
            "cluster.id" => props.cluster_id = Some(value.trim().to_string()),
            "node.id" => {
                let id = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("node.id {value:?} is not a number")))?;
                props.node_id = Some(id);
            }
            _ => {}
        }
    }
    Ok(Some(props))
}

/// Checks that `data_dir` belongs to node `node_id` of cluster `cluster_id` (the cluster's
/// id as its metadata says) and, if `configured` is given, that this is the cluster
/// meant; then records both in `meta.properties` if it does not say so yet.
pub fn check_and_record(
    data_dir: &Path,
    node_id: i32,
    configured: Option<&str>,
    cluster_id: &str,
) -> Result<(), IdentityError> {
    let path = data_dir.join(META_PROPERTIES);
    let found = read(&path)?;
    if let Some(expected) = configured {
        let mismatch = |found: &str, why| IdentityError::ClusterId {
            path: path.clone(),
            found: found.to_string(),
            expected: expected.to_string(),
            why,
        };
        if let Some(found) = found.as_ref().and_then(|p| p.cluster_id.as_deref()) {
            if found != expected {
                return Err(mismatch(found, " (--cluster-id)"));
            }
        }
        if !cluster_id.is_empty() && cluster_id != expected {
            return Err(IdentityError::ClusterId {
                path: path.clone(),
                found: cluster_id.to_string(),
                expected: expected.to_string(),
                why: " (--cluster-id; the found id is what the cluster's metadata says)",
            });
        }
    }
    if let Some(props) = &found {
        if let Some(found) = props.node_id {
            if found != node_id {
                return Err(IdentityError::NodeId {
                    path,
                    found,
                    configured: node_id,
                });
            }
        }
        if let Some(found) = props.cluster_id.as_deref() {
            if !cluster_id.is_empty() && found != cluster_id {
                return Err(IdentityError::ClusterId {
                    path,
                    found: found.to_string(),
                    expected: cluster_id.to_string(),
                    why: " (the cluster's metadata)",
                });
            }
        }
    }
    let complete = found
        .as_ref()
        .is_some_and(|p| p.node_id.is_some() && p.cluster_id.is_some());
    if complete || cluster_id.is_empty() {
        return Ok(());
    }
    let text = format!(
        "#Written by runnel-broker\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n"
    );
    write_atomic(
        data_dir,
        META_PROPERTIES,
        text.as_bytes(),
        Durability::Durable,
    )
    .map_err(|e| IdentityError::File {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_claimed_once_and_then_refused_to_others() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        check_and_record(dir.path(), 1, None, "")?;
        assert!(!dir.path().join(META_PROPERTIES).exists());
        check_and_record(dir.path(), 1, Some("c1"), "c1")?;
        let text = std::fs::read_to_string(dir.path().join(META_PROPERTIES))?;
        assert!(
            text.contains("cluster.id=c1\n") && text.contains("node.id=1\n"),
            "{text}"
        );
        check_and_record(dir.path(), 1, None, "c1")?;

        let other_node = check_and_record(dir.path(), 2, None, "c1");
        assert!(
            matches!(
                other_node,
                Err(IdentityError::NodeId {
                    found: 1,
                    configured: 2,
                    ..
                })
            ),
            "{other_node:?}"
        );
        let other_cluster = check_and_record(dir.path(), 1, Some("c2"), "");
        assert!(
            matches!(&other_cluster, Err(IdentityError::ClusterId { found, .. }) if found == "c1"),
            "{other_cluster:?}"
        );
        let other_metadata = check_and_record(dir.path(), 1, None, "c3");
        assert!(
            matches!(other_metadata, Err(IdentityError::ClusterId { .. })),
            "{other_metadata:?}"
        );
        let message = other_cluster
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        assert!(
            message.contains("belongs to cluster \"c1\", not to \"c2\""),
            "{message}"
        );

        std::fs::write(dir.path().join(META_PROPERTIES), "node.id=x\n")?;
        assert!(matches!(
            check_and_record(dir.path(), 1, None, "c1"),
            Err(IdentityError::File { .. })
        ));
        Ok(())
    }
}
