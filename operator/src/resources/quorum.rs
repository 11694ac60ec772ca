//! The brokers' metadata quorum as the operator sets it up: which brokers vote, where
//! they reach each other, and the cluster id they share.
//!
//! - **Voters** are the ordinals `0..n`, `n = min(replicas, 3)` when the cluster is
//!   created, and fixed from then on: a broker keeps its Raft membership on its volume,
//!   and this broker version changes the voter set only to bring back a voter that lost
//!   its volume. Scaling up adds non-voters (they follow the log as learners); a
//!   scale-down that would remove a voter is refused. The operator reads the set back
//!   from the StatefulSet it made (`--controller-quorum-voters`), so a changed
//!   `spec.replicas` never changes it.
//! - **Cluster id**: `spec.clusterId` when given, else derived from the KafkaCluster's
//!   uid (its 16 bytes in URL-safe base64 without padding, 22 characters, the shape of
//!   Kafka's ids). The uid is fixed for the object's lifetime and needs no bookkeeping;
//!   a recreated object has a new uid, so retained volumes of the old one are refused by
//!   the brokers (their `meta.properties` names the old id) unless `spec.clusterId`
//!   names the old id again.
//! - **Controller listener**: every broker serves the quorum on [`CONTROLLER_PORT`]
//!   (Kafka's convention), reached at its per-pod DNS name.

use std::ops::Range;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;

use super::names;
use crate::crd::{KafkaCluster, ListenersSpec};
use crate::Error;

/// Port of the metadata quorum's gRPC service on every broker (`--controller-listen`).
pub const CONTROLLER_PORT: i32 = 9093;
/// Most voters a cluster gets: ordinals 0, 1 and 2 (a majority survives one loss).
pub const MAX_VOTERS: i32 = 3;
/// The broker flag naming the voters.
pub const VOTERS_FLAG: &str = "--controller-quorum-voters";

/// The voters of a cluster's metadata quorum: node ids (= ordinals) `0..count`, at least
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Voters(i32);

impl Voters {
    /// The voters of a cluster created with `replicas` brokers: all of them, at most
    /// [`MAX_VOTERS`].
    pub fn initial(replicas: i32) -> Voters {
        Voters(replicas.clamp(1, MAX_VOTERS))
    }

    /// The voters of `kc`, fixed when it was created: those the existing StatefulSet
    /// passes, else those the last status recorded (a StatefulSet deleted by hand), else
    /// those of a cluster created now.
    pub fn of(kc: &KafkaCluster, existing: Option<&StatefulSet>) -> Voters {
        existing
            .and_then(Voters::in_statefulset)
            .or_else(|| {
                let recorded = &kc.status.as_ref()?.quorum_voters;
                Voters::from_ids(recorded.iter().copied())
            })
            .unwrap_or_else(|| Voters::initial(kc.spec.replicas))
    }

    /// The voters a StatefulSet's broker container passes, when it passes any in the
    /// shape this module writes (ids `0..n`).
    pub fn in_statefulset(sts: &StatefulSet) -> Option<Voters> {
        let args = sts
            .spec
            .template
            .spec
            .as_ref()?
            .containers
            .first()?
            .args
            .as_ref()?;
        let position = args.iter().position(|a| a == VOTERS_FLAG)?;
        let value = args.get(position + 1)?;
        Voters::from_ids(
            value
                .split(',')
                .map(|entry| entry.split_once('@').and_then(|(id, _)| id.parse().ok()))
                .collect::<Option<Vec<i32>>>()?,
        )
    }

    /// `ids` as voters when they are exactly `0..n` for some `n ≥ 1`.
    fn from_ids(ids: impl IntoIterator<Item = i32>) -> Option<Voters> {
        let ids: Vec<i32> = ids.into_iter().collect();
        let count = i32::try_from(ids.len()).ok()?;
        (count >= 1 && ids.iter().copied().eq(0..count)).then_some(Voters(count))
    }

    /// How many voters there are.
    pub fn count(self) -> i32 {
        self.0
    }

    /// Their node ids.
    pub fn ids(self) -> Range<i32> {
        0..self.0
    }

    /// The `--controller-quorum-voters` value for `kc`:
    /// `0@<pod-0>.<headless>.<ns>.svc:9093,...`.
    pub fn flag(self, kc: &KafkaCluster) -> String {
        self.ids()
            .map(|id| format!("{id}@{}:{CONTROLLER_PORT}", names::broker_host(kc, id)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The cluster id every broker of `kc` is started with: `spec.clusterId`, else derived
/// from the uid; `None` for an object never stored (no uid) or a uid that is not a UUID
/// (the brokers then agree on one of their own).
pub fn cluster_id(kc: &KafkaCluster) -> Option<String> {
    if let Some(id) = &kc.spec.cluster_id {
        return Some(id.clone());
    }
    let uid = uuid::Uuid::parse_str(&kc.uid()?).ok()?;
    Some(base64_url(uid.as_bytes()))
}

/// `bytes` in URL-safe base64 without padding (RFC 4648 §5).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // 3 bytes give 4 characters; 1 byte gives 2, 2 bytes give 3.
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

/// Refuses listener ports that collide with each other or with [`CONTROLLER_PORT`]: a
/// broker cannot bind two listeners to one port.
pub fn validate_listeners(listeners: &ListenersSpec) -> Result<(), Error> {
    let ports = [
        ("kafkaPort", listeners.kafka_port),
        ("healthPort", listeners.health_port),
        ("metricsPort", listeners.metrics_port),
        ("the controller port", CONTROLLER_PORT),
    ];
    for (i, (name, port)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports[i + 1..].iter().find(|(_, p)| p == port) {
            return Err(Error::InvalidSpec {
                field: "spec.listeners",
                reason: format!("{name} and {other} are both {port}: every listener needs its own port (the metadata quorum uses {CONTROLLER_PORT})"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster::demo;

    #[test]
    fn voters_are_the_first_three_ordinals_or_all_if_fewer() {
        assert_eq!(Voters::initial(1).ids(), 0..1);
        assert_eq!(Voters::initial(2).ids(), 0..2);
        assert_eq!(Voters::initial(3).ids(), 0..3);
        assert_eq!(Voters::initial(7).ids(), 0..3);
        assert_eq!(
            Voters::initial(0).ids(),
            0..1,
            "never empty (the CRD refuses 0)"
        );
        assert_eq!(
            Voters::initial(3).flag(&demo()),
            "0@demo-0.demo-brokers.streaming.svc:9093,\
             1@demo-1.demo-brokers.streaming.svc:9093,\
             2@demo-2.demo-brokers.streaming.svc:9093"
        );
    }

    #[test]
    fn the_voter_set_is_read_back_not_recomputed() {
        let sts = |replicas: i32| {
            let mut kc = demo();
            kc.spec.replicas = replicas;
            crate::resources::statefulset::desired_statefulset(&kc, Voters::initial(replicas))
        };
        // Created with one broker, now asked for five: still one voter.
        let mut kc = demo();
        kc.spec.replicas = 5;
        assert_eq!(Voters::of(&kc, Some(&sts(1))), Voters(1));
        assert_eq!(Voters::of(&kc, Some(&sts(3))), Voters(3));
        // No StatefulSet: the last status, else a new cluster's.
        assert_eq!(Voters::of(&kc, None), Voters(3));
        kc.status = Some(crate::crd::KafkaClusterStatus {
            quorum_voters: vec![0, 1],
            ..Default::default()
        });
        assert_eq!(Voters::of(&kc, None), Voters(2));
        // A StatefulSet without the flag (made before the quorum) says nothing.
        let mut bare = sts(3);
        let args = bare.spec.template.spec.as_mut().unwrap().containers[0]
            .args
            .as_mut()
            .unwrap();
        args.retain(|a| !a.starts_with(VOTERS_FLAG) && !a.contains('@'));
        assert_eq!(Voters::in_statefulset(&bare), None);
        assert_eq!(Voters::from_ids([1, 2]), None, "not 0..n");
        assert_eq!(Voters::from_ids([]), None);
    }

    #[test]
    fn cluster_id_comes_from_the_spec_or_the_uid() {
        let mut kc = demo();
        // demo's uid 0b6e5b8e-5f3c-4b8e-9d6c-1d2f3a4b5c6d as URL-safe base64.
        let derived = cluster_id(&kc).unwrap();
        assert_eq!(derived, "C25bjl88S46dbB0vOktcbQ");
        assert_eq!(derived.len(), 22);
        kc.metadata.uid = Some("0b6e5b8e-5f3c-4b8e-9d6c-1d2f3a4b5cff".into());
        assert_eq!(cluster_id(&kc).unwrap(), "C25bjl88S46dbB0vOktc_w");
        kc.spec.cluster_id = Some("kept-from-before".into());
        assert_eq!(cluster_id(&kc).unwrap(), "kept-from-before");
        let mut unstored = demo();
        unstored.metadata.uid = None;
        assert_eq!(cluster_id(&unstored), None);
    }

    #[test]
    fn base64_url_pads_nothing() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn listener_ports_may_not_collide_with_each_other_or_the_quorum() {
        assert!(validate_listeners(&ListenersSpec::default()).is_ok());
        let quorum = ListenersSpec {
            metrics_port: 9093,
            ..ListenersSpec::default()
        };
        let error = validate_listeners(&quorum).unwrap_err().to_string();
        assert!(
            error.contains("metricsPort and the controller port are both 9093"),
            "{error}"
        );
        let twice = ListenersSpec {
            health_port: 9092,
            ..ListenersSpec::default()
        };
        let error = validate_listeners(&twice).unwrap_err().to_string();
        assert!(
            error.contains("kafkaPort and healthPort are both 9092"),
            "{error}"
        );
    }
}
