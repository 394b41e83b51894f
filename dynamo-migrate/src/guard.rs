//! The account guard: nothing is written to an environment before STS says the credentials
//! belong to its account, and a protected environment is confirmed by name.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::error::SdkFailure;
use serde::Serialize;
use thiserror::Error;

use crate::client::connect_sts;
use crate::environment::Environment;

/// Whose credentials these are, as STS says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
}

/// Why an environment may not be written to (or read, for a wrong account).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GuardError {
    #[error(
        "environment {env}: cannot tell whose credentials these are, so nothing is done: {detail}; set up credentials for account {account} (a profile, an SSO login, a role, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    )]
    NoIdentity { env: String, account: String, detail: String },
    #[error(
        "environment {env} is account {expected}, but the credentials belong to account {actual} ({arn}); nothing was done: use credentials of account {expected}"
    )]
    WrongAccount { env: String, expected: String, actual: String, arn: String },
    #[error(
        "environment {env} ({}region {region}) is protected: pass --yes, or run in a terminal and type the environment's name to confirm",
        .account.as_ref().map(|a| format!("account {a}, ")).unwrap_or_default()
    )]
    NeedsConfirmation { env: String, account: Option<String>, region: String },
    #[error("environment {env} was not confirmed (typed {typed:?} instead of {env:?}); nothing was done")]
    NotConfirmed { env: String, typed: String },
}

/// Asks STS whose the credentials are and checks them against the environment's account.
/// `Ok(None)` for an environment without an account (DynamoDB Local).
pub async fn check_account(env: &Environment) -> Result<Option<CallerIdentity>, GuardError> {
    let Some(expected) = &env.account_id else { return Ok(None) };
    let sts = connect_sts(&env.target()).await;
    let identity = sts.get_caller_identity().send().await.map_err(|e| GuardError::NoIdentity {
        env: env.name.clone(),
        account: expected.clone(),
        detail: SdkFailure::of(&e).to_string(),
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
