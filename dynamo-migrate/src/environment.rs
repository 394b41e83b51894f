//! `environments.toml`: one table per environment, read into typed config.
//!
//! Credentials never live here: they come from aws-config's standard chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::client::{Target, is_local_endpoint};
use crate::names::{DEFAULT_LEDGER_TABLE, TableNames};

/// One environment: where its tables live and how carefully to treat it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(skip)]
    pub name: String,
    pub region: String,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub account_id: Option<String>,
    #[serde(default)]
    pub table_prefix: String,
    #[serde(default)]
    pub protected: bool,
    /// A DynamoDB Local or test endpoint instead of AWS.
    pub endpoint: Option<String>,
    /// An STS endpoint instead of AWS's, for test environments (a server that answers
    /// `GetCallerIdentity`).
    pub sts_endpoint: Option<String>,
    pub ledger_table: Option<String>,
}

impl Environment {
    /// True when DynamoDB is on this machine's loopback (DynamoDB Local, or a test stand-in).
    pub fn is_local(&self) -> bool {
        self.endpoint.as_deref().is_some_and(is_local_endpoint)
    }

    /// True when writes must first prove that the credentials belong to `account_id`: every
    /// environment that names an account (all real ones must).
    pub fn guarded(&self) -> bool {
        self.account_id.is_some()
    }

    pub fn names(&self) -> TableNames {
        TableNames::with_ledger(self.table_prefix.clone(), self.ledger_table.as_deref().unwrap_or(DEFAULT_LEDGER_TABLE))
    }

    pub fn target(&self) -> Target {
        Target {
            region: self.region.clone(),
            profile: self.profile.clone(),
            role_arn: self.role_arn.clone(),
            endpoint: self.endpoint.clone(),
            sts_endpoint: self.sts_endpoint.clone(),
            // DynamoDB Local takes any key; an environment with an account uses the real chain.
            test_credentials: self.is_local() && !self.guarded(),
        }
    }
}

/// Why the environments file cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: environment {env} has no account_id; every environment that is not on a local endpoint needs the AWS account id its credentials must belong to"
    )]
    MissingAccount { path: PathBuf, env: String },
    #[error("{path}: environment {env}: account_id {account} must be 12 digits")]
    BadAccount { path: PathBuf, env: String, account: String },
    #[error("unknown environment {env}; {path} defines: {}", .known.join(", "))]
    Unknown { env: String, path: PathBuf, known: Vec<String> },
}

/// All environments of a workspace.
#[derive(Debug, Clone)]
pub struct Environments {
    pub path: PathBuf,
    pub environments: BTreeMap<String, Environment>,
}

impl Environments {
    pub fn load(path: &Path) -> Result<Environments, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Environments::parse(path, &text)
    }

    /// Parses the file's text; errors give the file, line and key (toml's messages carry both).
    pub fn parse(path: &Path, text: &str) -> Result<Environments, ConfigError> {
        let mut environments: BTreeMap<String, Environment> = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        for (name, env) in &mut environments {
            env.name = name.clone();
            match &env.account_id {
                None if !env.is_local() => {
                    return Err(ConfigError::MissingAccount { path: path.to_owned(), env: name.clone() });
                }
                Some(account) if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(ConfigError::BadAccount {
                        path: path.to_owned(),
                        env: name.clone(),
                        account: account.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(Environments { path: path.to_owned(), environments })
    }

    pub fn get(&self, name: &str) -> Result<&Environment, ConfigError> {
        self.environments.get(name).ok_or_else(|| ConfigError::Unknown {
            env: name.to_owned(),
            path: self.path.clone(),
            known: self.environments.keys().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Environments, ConfigError> {
        Environments::parse(Path::new("environments.toml"), text)
    }

    #[test]
    fn environments_are_read_with_defaults() {
        let envs = parse(
            r#"
            [local]
            region = "us-east-1"
            endpoint = "http://127.0.0.1:8000"
            table_prefix = "dev_"

            [prod]
            region = "eu-west-1"
            account_id = "123456789012"
            protected = true
            "#,
        )
        .unwrap();
        let local = envs.get("local").unwrap();
        assert!(local.is_local());
        assert_eq!(local.names().physical("customers"), "dev_customers");
        assert_eq!(local.names().ledger(), "dev_dynamo_migrate_ledger");
        let prod = envs.get("prod").unwrap();
        assert!(prod.protected && !prod.is_local() && prod.guarded());
        assert!(!local.guarded() && local.target().test_credentials);
    }

    #[test]
    fn an_unknown_environment_lists_the_known_ones() {
        let envs = parse(
            "[local]\nregion = \"us-east-1\"\nendpoint = \"http://localhost:8000\"\n[staging]\nregion = \"x\"\naccount_id = \"111111111111\"\n",
        )
        .unwrap();
        assert_eq!(
            envs.get("nosuch").unwrap_err().to_string(),
            "unknown environment nosuch; environments.toml defines: local, staging"
        );
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let message = parse("[prod]\nregion = \"eu-west-1\"\naccount_id = 1234\n").unwrap_err().to_string();
        assert!(message.starts_with("environments.toml: TOML parse error at line 3"), "{message}");
        let message = parse("[prod]\nregion = \"eu-west-1\"\nregoin = \"x\"\n").unwrap_err().to_string();
        assert!(message.contains("line 3") && message.contains("unknown field `regoin`"), "{message}");
    }

    #[test]
    fn a_real_account_needs_a_twelve_digit_account_id() {
        let message = parse("[prod]\nregion = \"eu-west-1\"\n").unwrap_err().to_string();
        assert_eq!(
            message,
            "environments.toml: environment prod has no account_id; every environment that is not on a local endpoint needs the AWS account id its credentials must belong to"
        );
        let message = parse("[prod]\nregion = \"eu-west-1\"\naccount_id = \"12345\"\n").unwrap_err().to_string();
        assert_eq!(message, "environments.toml: environment prod: account_id 12345 must be 12 digits");
    }
}
