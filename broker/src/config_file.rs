//! Loading the configuration from its four sources, weakest first: built-in defaults, the
//! TOML file named by `--config` / `RUNNEL_CONFIG`, `RUNNEL_*` environment variables, and
//! flags. File keys are Kafka's names (`num.partitions`) or the flag names
//! (`num-partitions`); a key, value or rule violation refuses to start with a message
//! naming all three.

use std::ffi::OsString;
use std::path::Path;

use clap::{CommandFactory, Parser};

use crate::config::BrokerConfig;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags or environment variables, or `--help`/`--version` (clap prints those).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong, as a sentence.
        reason: String,
    },
    /// The combined settings break a rule.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] crate::config::InvalidSetting),
}

/// Loads and validates the configuration for the command line `args` (program name first).
pub fn load(args: Vec<OsString>) -> Result<BrokerConfig, ConfigError> {
    let first = BrokerConfig::try_parse_from(&args)?;
    let config = match &first.config {
        None => first,
        Some(path) => {
            let injected = file_args(path, &args)?;
            let mut merged = Vec::with_capacity(args.len() + injected.len());
            merged.extend(args.first().cloned());
            merged.extend(injected);
            merged.extend(args.iter().skip(1).cloned());
            BrokerConfig::try_parse_from(merged)?
        }
    };
    config.validate()?;
    Ok(config)
}

/// The file's settings as `--flag=value` arguments, leaving out those that a flag or an
/// environment variable sets.
fn file_args(path: &Path, args: &[OsString]) -> Result<Vec<OsString>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot be read: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(format!("is not valid TOML: {}", e.message())))?;
    let command = BrokerConfig::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = key.replace(['.', '_'], "-");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()) && !a.is_hide_set())
        else {
            return Err(file_error(format!("unknown setting {key:?}")));
        };
        if flag == "config" {
            return Err(file_error(
                "a config file cannot name another config file".to_string(),
            ));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(file_error(format!(
                    "{key} = {other}: expected a string, integer or boolean"
                )))
            }
        };
        let on_command_line = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == format!("--{flag}") || a.starts_with(&format!("--{flag}=")))
        });
        let in_environment = arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue;
        }
        let as_flag = OsString::from(format!("--{flag}={value}"));
        if let Err(e) =
            BrokerConfig::try_parse_from([OsString::from("runnel-broker"), as_flag.clone()])
        {
            let detail = e.to_string();
            let detail = detail
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            return Err(file_error(format!(
                "{key} = {value:?} is invalid: {detail}"
            )));
        }
        out.push(as_flag);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("runnel-broker")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn file_settings_apply_under_flags() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, "\"num.partitions\" = 6\n\"auto.create.topics.enable\" = false\nlisten = \"127.0.0.1:9999\"\n")?;
        let p = path.to_string_lossy().to_string();
        let config = load(args(&["--config", &p, "--listen", "127.0.0.1:7777"]))?;
        assert_eq!(config.num_partitions, 6);
        assert!(!config.auto_create_topics_enable);
        assert_eq!(config.listen.port(), 7777, "the flag wins over the file");
        Ok(())
    }

    #[test]
    fn bad_settings_name_key_value_and_rule() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("broker.toml");
        let p = path.to_string_lossy().to_string();
        std::fs::write(&path, "\"num.partitions\" = 0\n")?;
        let err = load(args(&["--config", &p]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("num.partitions") && err.contains("\"0\"") && err.contains("1..=100000"),
            "{err}"
        );
        std::fs::write(&path, "\"no.such.setting\" = 1\n")?;
        let err = load(args(&["--config", &p]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown setting \"no.such.setting\""), "{err}");
        std::fs::write(&path, "\"log.retention.ms\" = -5\n")?;
        let err = load(args(&["--config", &p]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("log.retention.ms") && err.contains("-5") && err.contains("from -1"),
            "{err}"
        );
        let err = load(args(&["--log-cleanup-policy", "sometimes"]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("log.cleanup.policy")
                && err.contains("sometimes")
                && err.contains("one of"),
            "{err}"
        );
        Ok(())
    }
}
