//! `spec.config` judged by the broker's own rules before anything rolls out.
//!
//! The broker reads `broker.toml` by turning each key into its flag (`num.partitions` →
//! `--num-partitions`) and parsing it with its `BrokerConfig` (types and ranges), then
//! checks the combination with `BrokerConfig::validate` (topic-config defaults such as
//! `log.retention.ms`, session timeouts, request budgets). A setting that breaks a rule
//! stops the broker at start, after a rolling restart has already begun. Here the same
//! `runnel_broker::config` code judges the settings first, so the rules have one source;
//! only the key-to-flag spelling (`.` and `_` read as `-`) is repeated, as it is for
//! the reserved keys.
//!
//! The rules are those of the broker version this operator was built with; a cluster
//! running another broker image may differ.
//!
//! No environment is read: the broker's `RUNNEL_*` variables are ignored here (they are
//! the operator's process environment, not the broker pod's).

use std::collections::BTreeMap;

use clap::{Command, CommandFactory, FromArgMatches};
use runnel_broker::config::BrokerConfig;

use crate::Error;

/// The broker's flags, without their environment variables.
fn broker_command() -> Command {
    BrokerConfig::command().mut_args(|arg| arg.env(None))
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_reason(error: &clap::Error) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_string()
}

fn invalid(reason: String) -> Error {
    Error::InvalidSpec {
        field: "spec.config",
        reason,
    }
}

/// Checks `config` (keys by Kafka's names, values as the ConfigMap writes them) as the
/// broker will when it starts: each key must name a broker setting, each value must
/// parse, and the combination, with the `operator_flags` the pods also get (the
/// metadata quorum's: `default.replication.factor` above 1 needs them), must pass the
/// broker's validation.
pub fn check(
    config: &BTreeMap<String, String>,
    operator_flags: &[(&str, String)],
) -> Result<(), Error> {
    let mut command = broker_command();
    let mut args = vec!["runnel-broker".to_string()];
    for (key, value) in config {
        let flag = key.replace(['.', '_'], "-");
        let known = command
            .get_arguments()
            .any(|arg| arg.get_long() == Some(flag.as_str()) && !arg.is_hide_set());
        if !known {
            return Err(invalid(format!("{key} is not a broker setting")));
        }
        let arg = format!("--{flag}={value}");
        broker_command()
            .try_get_matches_from(["runnel-broker", arg.as_str()])
            .map_err(|e| invalid(format!("{key} = {value:?}: {}", clap_reason(&e))))?;
        args.push(arg);
    }
    args.extend(
        operator_flags
            .iter()
            .map(|(flag, value)| format!("{flag}={value}")),
    );
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(|e| invalid(clap_reason(&e)))?;
    let broker = BrokerConfig::from_arg_matches(&matches).map_err(|e| invalid(clap_reason(&e)))?;
    broker.validate().map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(pairs: &[(&str, &str)]) -> Result<(), String> {
        let config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check(&config, &quorum()).map_err(|e| e.to_string())
    }

    /// The quorum flags a three-broker `demo` passes.
    fn quorum() -> Vec<(&'static str, String)> {
        use crate::resources::quorum::Voters;
        use crate::resources::statefulset::quorum_flags;
        quorum_flags(&crate::resources::test_cluster::demo(), Voters::initial(3))
    }

    #[test]
    fn settings_the_broker_accepts_pass() {
        assert_eq!(checked(&[]), Ok(()));
        assert_eq!(
            checked(&[
                ("num.partitions", "3"),
                ("log.retention.ms", "604800000"),
                ("auto.create.topics.enable", "false"),
                ("log_cleanup_policy", "compact"),
            ]),
            Ok(())
        );
    }

    #[test]
    fn values_the_broker_refuses_name_the_key_and_the_rule() {
        assert_eq!(
            checked(&[("num.partitions", "abc")]),
            Err(
                "spec field spec.config is invalid: num.partitions = \"abc\": invalid value \
                 'abc' for '--num-partitions <NUM_PARTITIONS>': invalid digit found in string"
                    .into()
            )
        );
        let out_of_range = checked(&[("num.partitions", "0")]).unwrap_err();
        assert!(
            out_of_range.contains("num.partitions = \"0\""),
            "{out_of_range}"
        );
        assert!(out_of_range.contains("1..=100000"), "{out_of_range}");
        let boolean = checked(&[("auto.create.topics.enable", "maybe")]).unwrap_err();
        assert!(boolean.contains("auto.create.topics.enable"), "{boolean}");
    }

    #[test]
    fn unknown_keys_are_refused_as_the_broker_refuses_them() {
        let unknown = checked(&[("num.partitons", "3")]).unwrap_err();
        assert!(
            unknown.ends_with("num.partitons is not a broker setting"),
            "{unknown}"
        );
        // A hidden test aid is not a setting either.
        assert!(checked(&[("debug.recovery.delay.ms", "5")]).is_err());
    }

    #[test]
    fn replication_factors_above_one_are_judged_with_the_quorum_flags() {
        assert_eq!(checked(&[("default.replication.factor", "3")]), Ok(()));
        let alone = BTreeMap::from([("default.replication.factor".into(), "3".into())]);
        let error = check(&alone, &[]).unwrap_err().to_string();
        assert!(error.contains("this broker runs alone"), "{error}");
        assert!(checked(&[("default.replication.factor", "0")]).is_err());
    }

    #[test]
    fn the_broker_validation_judges_the_combination() {
        let policy = checked(&[("log.cleanup.policy", "shred")]).unwrap_err();
        assert!(policy.contains("log.cleanup.policy"), "{policy}");
        let timeouts = checked(&[
            ("group.min.session.timeout.ms", "9000"),
            ("group.max.session.timeout.ms", "8000"),
        ])
        .unwrap_err();
        assert!(
            timeouts.contains("must not exceed group.max.session.timeout.ms"),
            "{timeouts}"
        );
    }
}
