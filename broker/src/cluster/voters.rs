//! `controller.quorum.voters`, in Kafka's format: `id@host:port` separated by commas.

use std::collections::BTreeMap;

use super::NodeId;

/// Why a voters list is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VotersError {
    /// The list has no voter.
    #[error("controller.quorum.voters is empty")]
    Empty,
    /// One entry is not `id@host:port`.
    #[error("controller.quorum.voters entry {entry:?} is invalid: {reason}")]
    Entry {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries name the same node id.
    #[error("controller.quorum.voters names node {0} twice")]
    Duplicate(NodeId),
}

/// Parses `0@host:port,1@host:port,...` into controller addresses by node id.
pub fn parse_voters(text: &str) -> Result<BTreeMap<NodeId, String>, VotersError> {
    let mut voters = BTreeMap::new();
    for raw in text.split(',') {
        let entry = raw.trim();
        if entry.is_empty() && text.trim().is_empty() {
            return Err(VotersError::Empty);
        }
        let bad = |reason| VotersError::Entry {
            entry: entry.to_string(),
            reason,
        };
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| bad("expected id@host:port"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| bad("the node id must be a number from 0"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected id@host:port"))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        port.parse::<u16>()
            .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(VotersError::Duplicate(id));
        }
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_format_parses_and_mistakes_are_named() {
        let voters = parse_voters("0@broker-0.svc:9093, 1@127.0.0.2:9093,2@[::1]:9093");
        assert_eq!(
            voters,
            Ok(BTreeMap::from([
                (0, "broker-0.svc:9093".to_string()),
                (1, "127.0.0.2:9093".to_string()),
                (2, "[::1]:9093".to_string()),
            ]))
        );
        assert_eq!(parse_voters(" "), Err(VotersError::Empty));
        assert_eq!(parse_voters("0@a:1,0@b:2"), Err(VotersError::Duplicate(0)));
        for (bad, reason) in [
            ("0@a:1,", "expected id@host:port"),
            ("x@a:1", "the node id must be a number from 0"),
            ("-1@a:1", "the node id must be a number from 0"),
            ("0@a", "expected id@host:port"),
            ("0@:1", "the host is empty"),
            ("0@a:70000", "the port must be a number from 0 to 65535"),
        ] {
            match parse_voters(bad) {
                Err(VotersError::Entry { reason: r, .. }) => assert_eq!(r, reason, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
