//! The engine's errors, one enum per concern, each naming the table, index or migration.

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use thiserror::Error;

use crate::planner::PlanError;
use crate::sequence::SequenceErrors;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong while talking to DynamoDB or applying migrations.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A DynamoDB call failed; `action` says which call on which table.
    #[error("{action}: {detail}")]
    Aws {
        action: String,
        detail: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("the ledger refuses to run: {0}")]
    Sequence(#[from] SequenceErrors),
    #[error(
        "timed out after {waited_s} s waiting for table {table} to become ACTIVE with every index ACTIVE (last seen: {state})"
    )]
    WaitTimeout { table: String, waited_s: u64, state: String },
    #[error("table {table}: DynamoDB describes it in a way the model cannot hold: {reason}")]
    Unreadable { table: String, reason: String },
    #[error("ledger table {table}: record {id} cannot be read: {reason}")]
    LedgerRecord { table: String, id: String, reason: String },
    #[error(
        "migration {version} ({name}) is being recorded by another run: its ledger record changed under us; run status to see the ledger"
    )]
    LedgerConflict { version: u32, name: String },
    #[error("migration {version} ({name}), {step}: {source:#}")]
    Step {
        version: u32,
        name: String,
        step: String,
        #[source]
        source: Box<Error>,
    },
    #[error(
        "the migration lock in {table} is held by {holder}; waited {waited_s} s. If that run is dead, its lease expires by itself; see unlock"
    )]
    LockHeld { table: String, waited_s: u64, holder: String },
    #[error(
        "ledger table {table}: this run no longer holds the migration lock (it was taken over, or force-unlocked), so it stops without recording more of migration {version}"
    )]
    LockLost { table: String, version: u32 },
    #[error("ledger table {table}: migration {version} has no running, failed or interrupted record to recover")]
    NotDirty { table: String, version: u32 },
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
    #[error(transparent)]
    Replay(Box<crate::data::ReplayError>),
    /// A call AWS would refuse now (see `rules`), found before the run wrote anything.
    #[error("{0} Nothing was applied.")]
    Refused(crate::rules::Refusal),
    #[error("rebuild of table {table}: {reason}")]
    Rebuild { table: String, reason: String },
    #[error("building a DynamoDB request: {0}")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
}

impl Error {
    /// True when the error is a data step stopped by Ctrl-C at a checkpoint.
    pub fn is_interrupted(&self) -> bool {
        use crate::data::DataError;
        match self {
            Error::Pass(DataError::Interrupted { .. }) | Error::Interrupted { .. } => true,
            Error::Replay(e) => matches!(**e, crate::data::ReplayError::Interrupted { .. }),
            Error::Data(e) => matches!(e.downcast_ref::<DataError>(), Some(DataError::Interrupted { .. })),
            Error::Step { source, .. } => source.is_interrupted(),
            _ => false,
        }
    }

    /// True when a cut-over was refused because the old table is still written to.
    pub fn is_not_quiet(&self) -> bool {
        match self {
            Error::NotQuiet { .. } => true,
            Error::Step { source, .. } => source.is_not_quiet(),
            _ => false,
        }
    }

    /// Wraps an SDK error with the action that failed, keeping the source and its full context.
    pub(crate) fn aws<E, R>(action: impl Into<String>) -> impl FnOnce(SdkError<E, R>) -> Error
    where
        E: StdError + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        move |err| Error::Aws {
            action: action.into(),
            detail: DisplayErrorContext(&err).to_string(),
            source: Box::new(err),
        }
    }
}

impl From<crate::data::ReplayError> for Error {
    fn from(e: crate::data::ReplayError) -> Self {
        Error::Replay(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
