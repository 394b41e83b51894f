//! The engine's errors, one enum per concern, each naming the table, index or migration.

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId;
use thiserror::Error;

use crate::planner::PlanError;
use crate::sequence::SequenceErrors;

/// Stands for the environment's name in the commands that messages suggest
/// (`cargo xtask recover --env <environment> …`); the command line puts the name in.
pub const ENVIRONMENT_PLACEHOLDER: &str = "<environment>";

/// Stands for the command that was run (`status`, `migrate`, …) in the commands that messages
/// suggest (`cargo xtask <command> --env prod`); the command line puts the name in.
pub const COMMAND_PLACEHOLDER: &str = "<command>";

/// What went wrong while talking to DynamoDB or applying migrations.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A DynamoDB call failed; `action` says which call on which table, `failure` what AWS said.
    #[error("{action}: {failure}")]
    Aws { action: String, failure: SdkFailure },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("the ledger refuses to run: {0}")]
    Sequence(SequenceErrors),
    #[error(
        "nothing was applied: {} problem(s) in the migrations to apply: {}; fix them, then check with `cargo xtask verify`",
        .problems.len(),
        .problems.join("; ")
    )]
    Invalid { problems: Vec<String> },
    #[error(
        "the live tables differ from what the applied migrations produced, so nothing was applied: {}. See `cargo xtask status --env <environment>`, put the difference right, or apply anyway with `cargo xtask migrate --env <environment> --allow-drift`",
        .drifts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Drift { drifts: Vec<crate::drift::TableDrift> },
    #[error(transparent)]
    Recovery(#[from] crate::sequence::RecoveryError),
    #[error(
        "timed out after {waited_s} s waiting for table {table} to become ACTIVE with every index ACTIVE (last seen: {state})"
    )]
    WaitTimeout { table: String, waited_s: u64, state: String },
    #[error("table {table}: DynamoDB describes it in a way the model cannot hold: {reason}")]
    Unreadable { table: String, reason: String },
    #[error("ledger table {table}: record {id} cannot be read: {reason}")]
    LedgerRecord { table: String, id: String, reason: String },
    #[error(
        "migration {version} ({name}) is being recorded by another run: its ledger record changed under us; see `cargo xtask status --env <environment>`"
    )]
    LedgerConflict { version: u32, name: String },
    /// The message holds the cause's, so the cause is not a `source` (printed once, not twice).
    #[error("migration {version} ({name}), {step}: {cause:#}")]
    Step { version: u32, name: String, step: String, cause: Box<Error> },
    #[error("the migration lock in {table} is held by {holder}; waited {waited_s} s: {advice}")]
    LockHeld { table: String, waited_s: u64, holder: String, advice: String },
    #[error(
        "ledger table {table}: this run no longer holds the migration lock (it was taken over, or force-unlocked), so it stops without recording more of migration {version}"
    )]
    LockLost { table: String, version: u32 },
    /// The run lost its lock, and stopped before sending anything more (see `lock`).
    #[error(
        "this run lost the migration lock in {table}: {loss}; so it stopped before its next write, and wrote nothing after that. See where it stopped with `cargo xtask status --env {env}`, then go on with `cargo xtask {command} --env {env}`"
    )]
    RunLostLock { table: String, loss: crate::lock::LockLoss, env: String, command: String },
    #[error(
        "ledger table {table}: the record of migration {version} is no longer in the state this run expects (another run or a recover changed it); see `cargo xtask status --env <environment>`"
    )]
    NotDirty { table: String, version: u32 },
    /// A worker cannot work the open pass with its own build.
    #[error(
        "{reason}: build the worker from the same commit as the run (`cargo xtask build-runner`), then start it again"
    )]
    WorkerMismatch { reason: String },
    /// The run that opened the pass a worker works no longer owns its migration.
    #[error(
        "the run that opened migration {version}'s pass no longer owns it (it lost the migration lock in {table}, or ended): this worker stopped at its next page and wrote nothing after it"
    )]
    WorkerFenced { table: String, version: u32 },
    /// A checkpoint item changed under this run's write: another worker of the run holds it.
    #[error("ledger table {table}: checkpoint {id} is held by another worker of this run")]
    CheckpointTaken { table: String, id: String },
    #[error("interrupted by Ctrl-C before {before}; run again to resume")]
    Interrupted { before: String },
    #[error("{0:#}")]
    Data(anyhow::Error),
    #[error(transparent)]
    Pass(#[from] crate::data::DataError),
    #[error(
        "data step {step} is not idempotent: run a second time over its own output it would write {written} item(s) and delete {deleted}; a step in place must leave what it already changed alone (after a crash, the page in flight is done again)"
    )]
    NotIdempotent { step: String, written: u64, deleted: u64 },
    #[error(
        "table {table} was last written to at {since} ({quiet_s} s ago), within the quiet window of {window_s} s, so it is not deleted: the application may still write to it. Deploy the code that uses {new} everywhere, then run `cargo xtask sync --env <environment> --until-quiet {window_s}` and `cargo xtask migrate --env <environment>` again"
    )]
    NotQuiet { table: String, new: String, since: String, quiet_s: u64, window_s: u64 },
    /// The convergence check found the new table not the transform of the old one.
    #[error("{new} is not the transform of {old}, so {refused}: {summary}. {what_now}")]
    NotConverged {
        old: String,
        new: String,
        /// What was not done on its word.
        refused: String,
        summary: String,
        what_now: String,
        /// Whether running again later may succeed (before a delete: the application may be
        /// writing the new version), rather than the step having failed.
        resumable: bool,
    },
    #[error(transparent)]
    Replay(Box<crate::data::ReplayError>),
    /// A call AWS would refuse now (see `rules`), found before the run wrote anything.
    #[error("{0} Nothing was applied.")]
    Refused(crate::rules::Refusal),
    #[error("rebuild of table {table}: {reason}")]
    Rebuild { table: String, reason: String },
    #[error("building a DynamoDB request: {0}")]
    Build(aws_sdk_dynamodb::error::BuildError),
    /// A table that was to be read is not there.
    #[error("table {table} does not exist, so {what}")]
    NoSuchTable { table: String, what: String },
}

impl Error {
    /// True when the error is a data step stopped by Ctrl-C at a checkpoint.
    pub fn is_interrupted(&self) -> bool {
        use crate::data::DataError;
        match self {
            Error::Pass(DataError::Interrupted { .. }) | Error::Interrupted { .. } => true,
            Error::Replay(e) => matches!(**e, crate::data::ReplayError::Interrupted { .. }),
            Error::Data(e) => matches!(e.downcast_ref::<DataError>(), Some(DataError::Interrupted { .. })),
            Error::Step { cause, .. } => cause.is_interrupted(),
            _ => false,
        }
    }

    /// True when the run's lock is lost: the ledger refused a fenced write, or a fenced client
    /// refused to send a request (see `lock`).
    pub fn is_lock_lost(&self) -> bool {
        match self {
            Error::LockLost { .. } | Error::RunLostLock { .. } => true,
            Error::Step { cause, .. } => cause.is_lock_lost(),
            other => crate::lock::is_fenced(other),
        }
    }

    /// True when a cut-over was refused because the old table is still written to.
    pub fn is_not_quiet(&self) -> bool {
        match self {
            Error::NotQuiet { .. } | Error::NotConverged { resumable: true, .. } => true,
            Error::Step { cause, .. } => cause.is_not_quiet(),
            _ => false,
        }
    }

    /// Wraps an SDK error with the action that failed.
    pub(crate) fn aws<E, R>(action: impl Into<String>) -> impl FnOnce(SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: std::fmt::Debug,
    {
        move |err| Error::Aws { action: action.into(), failure: SdkFailure::of(&err) }
    }

    /// What AWS said, when this is (or wraps) a failed call.
    pub fn sdk_failure(&self) -> Option<&SdkFailure> {
        match self {
            Error::Aws { failure, .. } => Some(failure),
            Error::Step { cause, .. } => cause.sdk_failure(),
            _ => None,
        }
    }
}

// By hand rather than `#[from]`, which would make the inner error a `source` as well: its
// message is already in this one's, and a chain printed with `{:#}` would say it twice.
impl From<SequenceErrors> for Error {
    fn from(e: SequenceErrors) -> Self {
        Error::Sequence(e)
    }
}

impl From<aws_sdk_dynamodb::error::BuildError> for Error {
    fn from(e: aws_sdk_dynamodb::error::BuildError) -> Self {
        Error::Build(e)
    }
}

impl From<crate::data::ReplayError> for Error {
    fn from(e: crate::data::ReplayError) -> Self {
        Error::Replay(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed AWS call in a few words: the service's error code, its message and the request id
/// (what AWS support asks for), or, when no answer came, what failed on the way. The SDK's own
/// `Debug` output (kilobytes of request and response) stays out of messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SdkFailure {
    /// The service's error code (`ValidationException`), when DynamoDB answered.
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

impl SdkFailure {
    pub fn of<E, R>(err: &SdkError<E, R>) -> SdkFailure
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: std::fmt::Debug,
    {
        match err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                SdkFailure {
                    code: e.code().map(str::to_owned),
                    message: e.message().map_or_else(|| error_chain(e), str::to_owned),
                    request_id: e.meta().request_id().map(str::to_owned),
                }
            }
            // No answer from DynamoDB (no connection, a time-out, an unreadable response).
            _ => SdkFailure { code: None, message: error_chain(err), request_id: None },
        }
    }
}

impl std::fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// An error and its sources' messages, `: `-separated, each said once.
pub fn error_chain(err: &dyn StdError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn StdError> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
