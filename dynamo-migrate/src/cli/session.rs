//! What every environment command starts with: the environment, a client, and the account guard.

use std::path::PathBuf;

use anyhow::anyhow;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use clap::Args;

use super::{Failure, usage};
use crate::Project;
use crate::client::{connect, connect_streams};
use crate::environment::{Environment, Environments};
use crate::guard::{check_account, confirm};
use crate::names::TableNames;

/// The environment a command works on.
#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    /// The environment, as named in the environments file.
    #[arg(long)]
    pub env: String,
    /// The environments file.
    #[arg(long, default_value = "environments.toml")]
    pub environments: PathBuf,
}

/// An environment, connected and checked.
#[derive(Debug)]
pub struct Session {
    pub env: Environment,
    pub client: Client,
    /// The DynamoDB Streams client, for rebuilds' replays.
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub names: TableNames,
    /// Who the credentials are (the caller's ARN), or `local` for DynamoDB Local.
    pub caller: String,
}

impl EnvArgs {
    /// Loads the environment (checked against the tables `project`'s migrations create), checks the credentials' account (for every environment that names
    /// one), asks for confirmation when `writes` and the environment is protected, and checks
    /// that DynamoDB answers. Every refusal is a usage error (exit 2) before anything is written.
    pub async fn open(&self, project: Option<&Project>, writes: bool, yes: bool) -> Result<Session, Failure> {
        let environments = Environments::load(&self.environments).map_err(usage)?;
        if let Some(project) = project {
            let tables: Vec<(String, u32)> = project
                .migrations
                .iter()
                .flat_map(|m| &m.steps)
                .filter_map(|s| s.sets_version().map(|(t, v)| (t.to_owned(), v)))
                .collect();
            environments.check_tables(&tables).map_err(usage)?;
        }
        let env = environments.get(&self.env).map_err(usage)?.clone();
        let identity = check_account(&env).await.map_err(usage)?;
        if writes {
            confirm(&env, yes).map_err(usage)?;
        }
        let client = connect(&env.target()).await;
        // One cheap read, so that an endpoint that does not answer is a clear error up front.
        if let Err(e) = client.list_tables().limit(1).send().await {
            let reason = match &e {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "cannot reach DynamoDB",
                _ => "DynamoDB refused the first request",
            };
            let endpoint = env.endpoint.clone().unwrap_or_else(|| format!("AWS in {}", env.region));
            return Err(usage(anyhow!(
                "environment {}: {reason} at {endpoint}: {}",
                env.name,
                crate::error::SdkFailure::of(&e)
            )));
        }
        let streams = connect_streams(&env.target()).await;
        Ok(Session {
            names: env.names(),
            caller: identity.map_or_else(|| "local".to_owned(), |i| i.arn),
            env,
            client,
            streams,
        })
    }
}

/// Turns true at the first Ctrl-C (after printing `what`), so that work stops at its next
/// checkpoint; a second Ctrl-C ends the process at once.
pub(crate) fn cancel_on_ctrl_c(what: &'static str) -> tokio::sync::watch::Receiver<bool> {
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("Ctrl-C: {what} (Ctrl-C again to abort)");
            let _ = cancel.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    cancelled
}

/// The migration lock as a command takes it: this caller as owner, the lease and the longest
/// wait for another run (their bounds are the options' own, see `LEASE_SECS` and `WAIT_SECS`),
/// and the environment's name for the commands its errors name; whom it waits for goes to stderr.
pub(crate) fn lock_options(session: &Session, lease_s: u64, wait_s: u64) -> crate::lock::LockOptions {
    crate::lock::LockOptions {
        lease: std::time::Duration::from_secs(lease_s),
        wait: std::time::Duration::from_secs(wait_s),
        env: Some(session.env.name.clone()),
        announce: true,
        ..crate::lock::LockOptions::new(&session.caller)
    }
}

/// The values `--lock-lease` takes, in seconds: at least `lock::MIN_LEASE` (a heartbeat every
/// third of it must get through in a quarter of it), at most an hour (a dead run's lock stays
/// that long).
pub(crate) const LEASE_SECS: std::ops::RangeInclusive<u64> = 3..=3600;
const _: () = assert!(*LEASE_SECS.start() == crate::lock::MIN_LEASE.as_secs());

/// The values `--lock-wait` takes, in seconds: none (give up at once) to a day.
pub(crate) const WAIT_SECS: std::ops::RangeInclusive<u64> = 0..=86_400;
