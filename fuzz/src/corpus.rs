//! The corpus: request frames real clients sent, one file each.
//!
//! | part of the name | meaning                                                    |
//! |------------------|------------------------------------------------------------|
//! | `ApiName`        | the API, as `kafka_protocol::messages::ApiKey` spells it   |
//! | `v<version>`     | the request's API version                                  |
//! | `<n>`            | a counter among frames of the same API and version         |
//!
//! A file holds one frame **without** its 4-byte size prefix: request header and body,
//! exactly what `runnel_broker::dispatch::handle_frame` receives.

use std::path::Path;

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use runnel_broker::dispatch::served_versions;

/// One corpus frame.
#[derive(Debug, Clone)]
pub struct CorpusFrame {
    /// The file name it was loaded from.
    pub name: String,
    /// The API of its header.
    pub key: ApiKey,
    /// The API version of its header.
    pub version: i16,
    /// Header and body, no size prefix.
    pub bytes: Bytes,
}

/// The name Runnel uses for an API (Kafka's, as `ApiKey` spells it).
pub fn api_name(key: ApiKey) -> String {
    format!("{key:?}")
}

/// The API named in a frame's first two bytes, or `None` for an unknown key or a frame
/// shorter than that.
pub fn frame_api(frame: &[u8]) -> Option<(ApiKey, i16)> {
    let key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(frame.get(2..4)?.try_into().ok()?);
    Some((ApiKey::try_from(key).ok()?, version))
}

/// The label of a frame in statistics: its API's name when the API is served,
/// `unserved` for any other key, `short` for a frame without one.
pub fn frame_label(frame: &[u8]) -> String {
    match frame.get(0..2) {
        None => "short".to_string(),
        Some(k) => {
            let raw = i16::from_be_bytes([k[0], k[1]]);
            ApiKey::try_from(raw)
                .ok()
                .filter(|key| served_versions(*key).is_some())
                .map_or_else(|| "unserved".to_string(), api_name)
        }
    }
}

/// A corpus file name.
pub fn file_name(key: ApiKey, version: i16, n: usize) -> String {
    format!("{}-v{version}-{n}.bin", api_name(key))
}

/// Loads every `*.bin` of `dir`, sorted by name (so a seed means the same frames on every
/// machine). A file whose header does not match its name is an error.
pub fn load(dir: &Path) -> anyhow::Result<Vec<CorpusFrame>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the corpus directory {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    let mut frames = Vec::with_capacity(names.len());
    for name in names {
        let bytes = std::fs::read(dir.join(&name))
            .with_context(|| format!("cannot read {}", dir.join(&name).display()))?;
        let Some((key, version)) = frame_api(&bytes) else {
            bail!("{name}: not a request frame of a known API");
        };
        let expected = format!("{}-v{version}-", api_name(key));
        if !name.starts_with(&expected) {
            bail!("{name}: its header says {expected}*");
        }
        frames.push(CorpusFrame {
            name,
            key,
            version,
            bytes: Bytes::from(bytes),
        });
    }
    if frames.is_empty() {
        bail!("the corpus directory {} holds no .bin files", dir.display());
    }
    Ok(frames)
}

/// The corpus committed with the crate.
pub fn default_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers_agree() {
        assert_eq!(file_name(ApiKey::Metadata, 12, 3), "Metadata-v12-3.bin");
        assert_eq!(
            frame_api(&[0, 3, 0, 12, 0, 0, 0, 1]),
            Some((ApiKey::Metadata, 12))
        );
        assert_eq!(frame_api(&[0, 3, 0]), None);
        assert_eq!(frame_label(&[0x7f, 0x00]), "unserved");
        assert_eq!(frame_label(&[0, 3]), "Metadata");
        assert_eq!(frame_label(&[0]), "short");
    }

    #[test]
    fn the_committed_corpus_loads() {
        let frames = load(&default_dir()).expect("corpus");
        assert!(frames.len() > 100, "{} frames", frames.len());
    }
}
