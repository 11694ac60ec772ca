//! Command-line flags of `runnel-operator`, each with a `RUNNEL_OPERATOR_*` environment
//! variable as fallback (the flag wins).
//!
//! The Helm chart (charts/runnel/templates/deployment.yaml) passes `--metrics-listen`,
//! `--leader-elect`, `--leader-election-lease`, `--leader-election-namespace` and
//! `--watch-namespaces`, and sets `RUNNEL_LOG_JSON`.

use std::net::SocketAddr;

use clap::builder::FalseyValueParser;
use clap::Parser;

/// Lease name when `--leader-election-lease` is not given.
pub const DEFAULT_LEASE: &str = "runnel-operator";

/// `--help`'s description: what the operator does, and what it cannot do yet.
const LONG_ABOUT: &str = "\
Runnel's Kubernetes operator: reconciles KafkaCluster, Topic and ConsumerGroup resources.

What it does today, plainly:
- The brokers of a KafkaCluster do not form one Kafka cluster yet: each keeps its own
  topics and groups, and Topic and ConsumerGroup calls reach whichever broker the
  bootstrap Service picks. Use one broker per KafkaCluster until they do.
- Rolling restarts go one broker at a time, the next only when the last one restarted is
  ready again. The brokers' CaughtUp and CanRestart answers are asked too, but without
  replication both are yes as soon as a broker runs.";

/// Settings of one operator process.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "runnel-operator",
    version,
    about = "Runnel's Kubernetes operator: reconciles KafkaCluster, Topic and ConsumerGroup resources",
    long_about = LONG_ABOUT
)]
pub struct Args {
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz; none when
    /// unset.
    #[arg(long, env = "RUNNEL_OPERATOR_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,

    /// Run the controllers only while holding the leader Lease, so several replicas can
    /// run.
    #[arg(long, env = "RUNNEL_OPERATOR_LEADER_ELECT", value_parser = FalseyValueParser::new())]
    pub leader_elect: bool,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "RUNNEL_OPERATOR_LEADER_ELECTION_LEASE",
        default_value = DEFAULT_LEASE,
        value_name = "NAME"
    )]
    pub leader_election_lease: String,

    /// Namespace of the leader Lease; the client's namespace (in a pod: its own) when
    /// unset.
    #[arg(
        long,
        env = "RUNNEL_OPERATOR_LEADER_ELECTION_NAMESPACE",
        value_name = "NAMESPACE"
    )]
    pub leader_election_namespace: Option<String>,

    /// Namespaces whose resources are reconciled, comma-separated; every namespace when
    /// empty or absent.
    #[arg(
        long,
        env = "RUNNEL_OPERATOR_WATCH_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS[,NS...]"
    )]
    pub watch_namespaces: Vec<String>,

    /// Log JSON lines instead of text (also `RUNNEL_LOG_JSON=1`).
    #[arg(long, env = "RUNNEL_LOG_JSON", value_parser = FalseyValueParser::new())]
    pub log_json: bool,
}

impl Args {
    /// The watched namespaces: trimmed, blanks dropped, each once in the given order.
    /// Empty means every namespace.
    pub fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = Vec::new();
        for namespace in self.watch_namespaces.iter().map(|n| n.trim()) {
            if !namespace.is_empty() && !namespaces.iter().any(|n| n == namespace) {
                namespaces.push(namespace.to_string());
            }
        }
        namespaces
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("runnel-operator").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn parses_the_flags_the_chart_passes() {
        let args = parse(&[
            "--metrics-listen=0.0.0.0:9100",
            "--leader-elect",
            "--leader-election-lease=runnel-operator-leader",
            "--leader-election-namespace=runnel-system",
            "--watch-namespaces=team-a,team-b, team-a,",
            "--log-json",
        ]);
        assert_eq!(args.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert!(args.leader_elect);
        assert_eq!(args.leader_election_lease, "runnel-operator-leader");
        assert_eq!(
            args.leader_election_namespace.as_deref(),
            Some("runnel-system")
        );
        assert_eq!(args.namespaces(), ["team-a", "team-b"]);
        assert!(args.log_json);
    }

    #[test]
    fn defaults_watch_everything_without_leader_election() {
        let args = parse(&[]);
        assert_eq!(args.metrics_listen, None);
        assert!(!args.leader_elect);
        assert_eq!(args.leader_election_lease, DEFAULT_LEASE);
        assert!(args.namespaces().is_empty());
        assert!(parse(&["--watch-namespaces="]).namespaces().is_empty());
    }

    #[test]
    fn version_and_bad_flags_are_refused_before_anything_runs() {
        let version = Args::try_parse_from(["runnel-operator", "--version"]).unwrap_err();
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
        assert_eq!(
            Args::command().render_version(),
            format!("runnel-operator {}\n", env!("CARGO_PKG_VERSION"))
        );
        let bad = Args::try_parse_from(["runnel-operator", "--metrics-listen=nowhere"]);
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn help_says_what_the_operator_cannot_do_yet() {
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("do not form one Kafka cluster yet"), "{help}");
        assert!(
            help.contains("both are yes as soon as a broker runs"),
            "{help}"
        );
    }

    #[test]
    fn clap_configuration_is_consistent() {
        Args::command().debug_assert();
    }
}
