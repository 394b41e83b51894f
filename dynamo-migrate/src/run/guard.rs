//! The account guard: nothing is written to an environment before STS says the credentials
//! belong to its account, and a protected environment is confirmed by name.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::error::{COMMAND_PLACEHOLDER, ENVIRONMENT_PLACEHOLDER, SdkFailure};
use serde::Serialize;
use thiserror::Error;

use crate::client::connect_sts;
use crate::environment::Environment;

/// Whose credentials these are, as STS says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallerIdentity {
    /// The 12-digit account the credentials belong to.
    pub account: String,
    /// The caller's ARN (a user, or an assumed role's session); the ledger records it as who
    /// applied each migration.
    pub arn: String,
}

/// Why an environment may not be written to (or read, for a wrong account).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GuardError {
    /// STS refused to say whose the credentials are (none found, expired, invalid).
    #[error(
        "environment {env}: cannot tell whose credentials these are, so nothing is done: {detail}; set up credentials for account {account} ({}), then run `cargo xtask {COMMAND_PLACEHOLDER} --env {ENVIRONMENT_PLACEHOLDER}`",
        match .profile {
            Some(p) => format!("profile {p}: `aws sso login --profile {p}` or `aws configure --profile {p}`"),
            None => "a profile, an SSO login, a role, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".to_owned(),
        }
    )]
    NoIdentity {
        /// The environment's name.
        env: String,
        /// The account the environment names.
        account: String,
        /// The environment's profile, if it names one.
        profile: Option<String>,
        /// What STS or the credential chain said.
        detail: String,
    },
    /// The environment names a profile that neither AWS configuration file defines.
    #[error(
        "environment {env}: profile {profile} is in neither {files}, so its credentials cannot be had and nothing is done; add it (`aws configure --profile {profile}`, or `aws configure sso --profile {profile}`), or name an existing profile in [{env}] of the environments file, then run `cargo xtask {COMMAND_PLACEHOLDER} --env {ENVIRONMENT_PLACEHOLDER}`"
    )]
    UnknownProfile {
        /// The environment's name.
        env: String,
        /// The profile it names.
        profile: String,
        /// The configuration and credentials files looked in.
        files: String,
    },
    /// STS could not be reached (no connection, a time-out).
    #[error(
        "environment {env}: cannot reach STS at {sts} to ask whose credentials these are, so nothing is done: {detail}; check this machine's network{}, then run `cargo xtask {COMMAND_PLACEHOLDER} --env {ENVIRONMENT_PLACEHOLDER}`",
        if .sts.starts_with("AWS") { "" } else { " and the sts_endpoint of the environment" }
    )]
    StsUnreachable {
        /// The environment's name.
        env: String,
        /// The environment's `sts_endpoint`, or AWS STS in its region.
        sts: String,
        /// What failed on the way.
        detail: String,
    },
    /// The credentials belong to another account than the environment's: nothing is done,
    /// reads included.
    #[error(
        "environment {env} is account {expected}, but the credentials belong to account {actual} ({arn}); nothing was done: use credentials of account {expected}"
    )]
    WrongAccount {
        /// The environment's name.
        env: String,
        /// The account the environment names.
        expected: String,
        /// The account the credentials belong to.
        actual: String,
        /// The caller's ARN.
        arn: String,
    },
    /// A protected environment without `--yes`, and no terminal to type its name in.
    #[error(
        "environment {env} ({}region {region}) is protected: pass --yes, or run in a terminal and type the environment's name to confirm",
        .account.as_ref().map(|a| format!("account {a}, ")).unwrap_or_default()
    )]
    NeedsConfirmation {
        /// The environment's name.
        env: String,
        /// Its account, if it names one.
        account: Option<String>,
        /// Its region.
        region: String,
    },
    /// What was typed at the prompt is not the environment's name.
    #[error("environment {env} was not confirmed (typed {typed:?} instead of {env:?}); nothing was done")]
    NotConfirmed {
        /// The environment's name.
        env: String,
        /// What was typed, trimmed.
        typed: String,
    },
}

/// Asks STS whose the credentials are and checks them against the environment's account.
/// `Ok(None)` for an environment without an account (DynamoDB Local).
pub async fn check_account(env: &Environment) -> Result<Option<CallerIdentity>, GuardError> {
    let Some(expected) = &env.account_id else { return Ok(None) };
    let sts = connect_sts(&env.target()).await;
    let identity = sts.get_caller_identity().send().await.map_err(|e| {
        let detail = SdkFailure::of(&e).to_string();
        let unreachable = match &e {
            aws_sdk_sts::error::SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
            aws_sdk_sts::error::SdkError::TimeoutError(_) => true,
            _ => false,
        };
        if unreachable {
            let sts = env.sts_endpoint.clone().unwrap_or_else(|| format!("AWS STS in {}", env.region));
            return GuardError::StsUnreachable { env: env.name.clone(), sts, detail };
        }
        if let Some(profile) = &env.profile
            && let Some(files) = profile_files_without(profile)
        {
            return GuardError::UnknownProfile { env: env.name.clone(), profile: profile.clone(), files };
        }
        GuardError::NoIdentity {
            env: env.name.clone(),
            account: expected.clone(),
            profile: env.profile.clone(),
            detail,
        }
    })?;
    let account = identity.account().unwrap_or_default().to_owned();
    let arn = identity.arn().unwrap_or_default().to_owned();
    if &account != expected {
        return Err(GuardError::WrongAccount {
            env: env.name.clone(),
            expected: expected.clone(),
            actual: account,
            arn,
        });
    }
    Ok(Some(CallerIdentity { account, arn }))
}

/// The AWS configuration files the SDK reads (`AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE`,
/// else `~/.aws/config` and `~/.aws/credentials`), named, when none defines `profile`; `None` when
/// one does.
fn profile_files_without(profile: &str) -> Option<String> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable).map(std::path::PathBuf::from).unwrap_or_else(|| home.join(".aws").join(default))
    };
    let (config, credentials) = (file("AWS_CONFIG_FILE", "config"), file("AWS_SHARED_CREDENTIALS_FILE", "credentials"));
    // The config file names a profile `[profile name]` (`[default]` for the default one), the
    // credentials file `[name]`.
    let defines = |path: &std::path::Path, headers: &[String]| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|line| {
                let line = line.trim();
                let section = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(str::trim);
                section
                    .is_some_and(|s| headers.iter().any(|h| s.split_whitespace().collect::<Vec<_>>().join(" ") == *h))
            })
        })
    };
    let mut config_headers = vec![format!("profile {profile}")];
    if profile == "default" {
        config_headers.push("default".to_owned());
    }
    let in_config = defines(&config, &config_headers);
    let in_credentials = defines(&credentials, &[profile.to_owned()]);
    (!in_config && !in_credentials).then(|| format!("{} nor {}", config.display(), credentials.display()))
}

/// For a protected environment: `--yes`, or the environment's name typed at a prompt on a
/// terminal. Without a terminal and without `--yes`, refuses.
pub fn confirm(env: &Environment, yes: bool) -> Result<(), GuardError> {
    if !env.protected || yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(GuardError::NeedsConfirmation {
            env: env.name.clone(),
            account: env.account_id.clone(),
            region: env.region.clone(),
        });
    }
    let account = env.account_id.as_ref().map(|a| format!("account {a}, ")).unwrap_or_default();
    eprint!("environment {} ({account}region {}) is protected. Type its name to go on: ", env.name, env.region);
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    let _ = std::io::stdin().lock().read_line(&mut typed);
    let typed = typed.trim().to_owned();
    if typed == env.name { Ok(()) } else { Err(GuardError::NotConfirmed { env: env.name.clone(), typed }) }
}
