//! What every environment command starts with: the environment, a client, and the account guard.

use std::path::PathBuf;

use anyhow::anyhow;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata as _, SdkError};
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
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub env: String,
    /// The environments file.
    #[arg(long, default_value = crate::environment::DEFAULT_FILE)]
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

impl Session {
    /// Where the environment's export rebuilds keep their files (`[<env>.exports]`), if it names
    /// a bucket.
    pub async fn export_place(&self) -> Option<crate::data::ExportPlace> {
        let exports = self.env.exports.as_ref()?;
        Some(crate::data::ExportPlace {
            s3: crate::client::connect_s3(&self.env.target(), exports.s3_endpoint.as_deref()).await,
            bucket: exports.bucket.clone(),
            prefix: exports.prefix_or_default(&self.env.table_prefix),
            kms_key: exports.kms_key.clone(),
            bucket_owner: exports.bucket_owner.clone(),
        })
    }
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
        if !env.target().test_credentials {
            warn_of_missing_aws_files();
        }
        let identity = check_account(&env).await.map_err(usage)?;
        if writes {
            confirm(&env, yes).map_err(usage)?;
        }
        let client = connect(&env.target()).await;
        // One cheap read, so that an endpoint that does not answer is a clear error up front.
        if let Err(e) = client.list_tables().limit(1).send().await {
            return Err(usage(unanswered(&env, &e)));
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

/// The versions of the code's migrations, as people read them: `1 to 6`, or `1, 2, 5`.
pub(crate) fn versions(project: &Project) -> String {
    let versions: Vec<u32> = project.migrations.iter().map(|m| m.version).collect();
    match (versions.first(), versions.last()) {
        (None, _) | (_, None) => "none".to_owned(),
        (Some(first), Some(last)) if versions.windows(2).all(|w| w[1] == w[0] + 1) && first != last => {
            format!("{first} to {last}")
        }
        _ => versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
    }
}

/// Refuses `--target` when it names no migration (a run up to a version that does not exist
/// would apply everything); `command` is the command line to suggest, up to `--target`.
pub(crate) fn check_target(project: &Project, target: Option<u32>, command: &str) -> Result<(), Failure> {
    let Some(target) = target else { return Ok(()) };
    if project.migrations.iter().any(|m| m.version == target) {
        return Ok(());
    }
    let suggestion = project.migrations.iter().map(|m| m.version).filter(|v| *v < target).max();
    let suggestion = suggestion.or_else(|| project.migrations.first().map(|m| m.version));
    Err(usage(anyhow!(
        "--target {target} names no migration: the migrations are {}{}",
        versions(project),
        match suggestion {
            Some(v) => format!("; to stop after migration {v}, run `{command} --target {v}`"),
            None => format!("; write one first (`cargo xtask new <name>`), then run `{command}`"),
        }
    )))
}

/// Refuses migrations that cannot run whatever the ledger holds, before anything is read or
/// written: a copied file that registers another migration's (said first: it would otherwise
/// read as a version used twice), versions used twice or listed out of order.
pub(crate) fn check_code(project: &Project) -> Result<(), Failure> {
    let problems = crate::migration::registration_problems(&project.migrations);
    if !problems.is_empty() {
        return Err(Failure::work(crate::Error::Invalid { problems }));
    }
    let known: Vec<_> = project.migrations.iter().map(crate::migration::Migration::info).collect();
    match crate::sequence::pending(&[], &known) {
        Ok(_) => Ok(()),
        Err(errors) => Err(Failure::work(crate::Error::Sequence(errors))),
    }
}

impl EnvArgs {
    /// How this environment is named on a command line: `--env dev`, and `--environments <file>`
    /// unless it is the default file.
    pub(crate) fn options(&self) -> String {
        let mut options = format!("--env {}", self.env);
        if self.environments != std::path::Path::new(crate::environment::DEFAULT_FILE) {
            options.push_str(&format!(" --environments {}", self.environments.display()));
        }
        options
    }
}

/// Why the first request to the environment's DynamoDB got no usable answer, and what to do.
fn unanswered<R: std::fmt::Debug>(
    env: &Environment,
    e: &SdkError<aws_sdk_dynamodb::operation::list_tables::ListTablesError, R>,
) -> anyhow::Error {
    let endpoint = env.endpoint.clone().unwrap_or_else(|| format!("AWS in {}", env.region));
    let failure = crate::error::SdkFailure::of(e);
    let again =
        format!("`cargo xtask {} --env {}`", crate::error::COMMAND_PLACEHOLDER, crate::error::ENVIRONMENT_PLACEHOLDER);
    let not_dynamodb = || {
        anyhow!(
            "environment {}: what answers at {endpoint} is not DynamoDB (its answer to ListTables cannot be read: {failure}); correct the endpoint of [{}] in the environments file, then run {again}",
            env.name,
            env.name
        )
    };
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) if env.is_local() => anyhow!(
            "environment {}: cannot reach DynamoDB at {endpoint}: {failure}; start DynamoDB Local there (`cargo xtask local --env {}`), or correct the endpoint of [{}] in the environments file, then run {again}",
            env.name,
            crate::error::ENVIRONMENT_PLACEHOLDER,
            env.name
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => anyhow!(
            "environment {}: cannot reach DynamoDB at {endpoint}: {failure}; check this machine's network (and the endpoint of [{}] in the environments file), then run {again}",
            env.name,
            env.name
        ),
        // Something answered, in a way no DynamoDB does (a web page, another service): DynamoDB
        // names every error it answers with.
        SdkError::ResponseError(_) => not_dynamodb(),
        SdkError::ServiceError(service) if service.err().code().is_none() => not_dynamodb(),
        _ => anyhow!("environment {}: DynamoDB refused the first request at {endpoint}: {failure}", env.name),
    }
}

/// The AWS SDK reads `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE` instead of the files
/// in `~/.aws`; one that names no file leaves its profiles out, which is said here, once, in
/// this tool's words (the SDK's own warning is filtered out).
fn warn_of_missing_aws_files() {
    for variable in ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
        if let Some(path) = std::env::var_os(variable)
            && !PathBuf::from(&path).exists()
        {
            eprintln!(
                "warning: {variable} names {}, which does not exist, so the AWS SDK reads no profile from it; unset {variable} or point it at your file",
                PathBuf::from(path).display()
            );
        }
    }
}

/// Turns true at the first Ctrl-C or SIGTERM (after printing `what`), so that work stops at its
/// next checkpoint; a second one ends the process at once (exit 130 or 143, as a shell counts
/// a death by that signal). A CI runner's cancel sends SIGTERM, a terminal's Ctrl-C SIGINT to the
/// whole process group; `cargo xtask` has become this process (see the xtask), so both reach it.
pub(crate) fn cancel_on_ctrl_c(what: &'static str) -> tokio::sync::watch::Receiver<bool> {
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let mut signals = Signals::new();
    tokio::spawn(async move {
        if let Some(first) = signals.next().await {
            let _ = STOPPED_BY.set(first.name);
            eprintln!("{}: {what} ({} again to abort)", first.name, first.name);
            let _ = cancel.send(true);
            if let Some(second) = signals.next().await {
                std::process::exit(128 + second.number);
            }
        }
    });
    cancelled
}

/// The signal that stopped the run, once one did: `Ctrl-C` or `SIGTERM`.
static STOPPED_BY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// What stopped this run at a checkpoint, for its last message.
pub(crate) fn stopped_by() -> &'static str {
    STOPPED_BY.get().copied().unwrap_or("Ctrl-C")
}

/// A stop signal: how people name it, and its number.
struct Stop {
    name: &'static str,
    number: i32,
}

/// SIGINT and, on Unix, SIGTERM, listened for from when this is made.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// The next stop signal; `None` when none can be listened for any more.
    async fn next(&mut self) -> Option<Stop> {
        let interrupt = async { tokio::signal::ctrl_c().await.ok().map(|()| Stop { name: "Ctrl-C", number: 2 }) };
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            return tokio::select! {
                stop = interrupt => stop,
                Some(()) = term.recv() => Some(Stop { name: "SIGTERM", number: 15 }),
            };
        }
        interrupt.await
    }
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
        wait_option: Some("--lock-wait"),
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
