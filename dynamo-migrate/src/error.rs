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
    Aws {
        /// The call and its table, as a plan line says it (`UpdateTable prod_customers: …`).
        action: String,
        /// The service's error code, message and request id.
        failure: SdkFailure,
    },
    /// A schema step cannot be planned against the live table.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The ledger and the migrations in the code disagree (an applied migration changed or is
    /// missing, one is out of order or unfinished): nothing is applied.
    #[error("the ledger refuses to run: {0}")]
    Sequence(SequenceErrors),
    /// The pending migrations were validated and planned before the first write, and some fail:
    /// a registration that is not its own file, files and registrations that disagree, or a
    /// step that would fail against the live tables. Nothing was written.
    #[error(
        "nothing was applied: {} problem(s) in the migrations to apply: {}; fix them, then check with `cargo xtask verify`",
        .problems.len(),
        .problems.join("; ")
    )]
    Invalid {
        /// Each problem on a line, naming its migration and step.
        problems: Vec<String>,
    },
    /// The run checks drift ([`Migrator::with_drift_check`](crate::run::Migrator::with_drift_check))
    /// and the live tables differ from what the applied migrations produced: nothing is applied.
    #[error(
        "the live tables differ from what the applied migrations produced, so nothing was applied: {}. See `cargo xtask status --env <environment>`, put the difference right, or apply anyway with `cargo xtask migrate --env <environment> --allow-drift`",
        .drifts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Drift {
        /// The tables that differ, are missing, or were not expected.
        drifts: Vec<crate::drift::TableDrift>,
    },
    /// `recover` was asked for something the migration's record does not allow.
    #[error(transparent)]
    Recovery(#[from] crate::sequence::RecoveryError),
    /// After a call, the table or one of its GSIs did not become ACTIVE (and done backfilling) in
    /// time ([`ExecOptions::wait_timeout`](crate::schema_steps::ExecOptions::wait_timeout)), or a deleted table
    /// did not disappear.
    #[error(
        "timed out after {waited_s} s waiting for table {table} to become ACTIVE with every index ACTIVE (last seen: {state})"
    )]
    WaitTimeout {
        /// The physical table.
        table: String,
        /// How long the wait lasted, in seconds.
        waited_s: u64,
        /// What was still not ready when it gave up (`index by_name CREATING`, …).
        state: String,
    },
    /// `DescribeTable` returned something the table model cannot hold (a key attribute without a
    /// type, an LSI without a sort key).
    #[error("table {table}: DynamoDB describes it in a way the model cannot hold: {reason}")]
    Unreadable {
        /// The physical table.
        table: String,
        /// What the description lacks.
        reason: String,
    },
    /// A migration's record in the ledger cannot be read as one (an attribute missing or of
    /// another type).
    #[error("ledger table {table}: record {id} cannot be read: {reason}")]
    LedgerRecord {
        /// The ledger's physical table.
        table: String,
        /// The record's item id (`migration#0000000007`).
        id: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// Another run started, resumed or finished this migration's record first: the conditional
    /// write found it in another state.
    #[error(
        "migration {version} ({name}) is being recorded by another run: its ledger record changed under us; see `cargo xtask status --env <environment>`"
    )]
    LedgerConflict {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
    },
    /// A step of a migration failed, and its migration is recorded `failed` (`interrupted` when
    /// the next run can go on); or, in the pre-flight, before anything was written, AWS's rules
    /// would refuse a call of the step ([`Error::Refused`]).
    ///
    /// The message holds the cause's, so the cause is not a `source` (printed once, not twice).
    #[error("migration {version} ({name}), {step}: {cause:#}")]
    Step {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
        /// The step, as [`Step::describe`](crate::Step::describe) says it.
        step: String,
        /// Why the step failed.
        cause: Box<Error>,
    },
    /// Another run held the migration lock for the whole wait
    /// ([`LockOptions::wait`](crate::run::LockOptions::wait)).
    #[error("the migration lock in {table} is held by {holder}; waited {waited_s} s: {advice}")]
    LockHeld {
        /// The ledger table the lock lives in.
        table: String,
        /// How long this run waited, in seconds.
        waited_s: u64,
        /// Who holds it: owner, host and process.
        holder: String,
        /// What to do: wait for the holder, or force the lock of a dead one.
        advice: String,
    },
    /// A fenced ledger write found the lock no longer carrying this run's token: another run
    /// took it over, or it was force-unlocked.
    #[error(
        "ledger table {table}: this run no longer holds the migration lock (it was taken over, or force-unlocked), so it stops without recording more of migration {version}"
    )]
    LockLost {
        /// The ledger table.
        table: String,
        /// The migration whose record was being written.
        version: u32,
    },
    /// The run lost its lock, and stopped before sending anything more (see `lock`).
    #[error(
        "this run lost the migration lock in {table}: {loss}; so it stopped before its next write, and wrote nothing after that. See where it stopped with `cargo xtask status --env {env}`, then go on with `cargo xtask {command} --env {env}`"
    )]
    RunLostLock {
        /// The ledger table the lock lives in.
        table: String,
        /// How the lock was lost.
        loss: crate::lock::LockLoss,
        /// The environment's name, for the commands the message suggests.
        env: String,
        /// The command that was run (`migrate`, `sync`, …), to go on with.
        command: String,
    },
    /// The migration's record is no longer in the state a write expects: `recover` found it
    /// changed since it was read, or a checkpoint found it no longer `running`.
    #[error(
        "ledger table {table}: the record of migration {version} is no longer in the state this run expects (another run or a recover changed it); see `cargo xtask status --env <environment>`"
    )]
    NotDirty {
        /// The ledger table.
        table: String,
        /// The migration's version.
        version: u32,
    },
    /// A worker cannot work the open pass with its own build.
    #[error(
        "{reason}: build the worker from the same commit as the run (`cargo xtask build-runner`), then start it again"
    )]
    WorkerMismatch {
        /// What differs: the open pass's migration is missing from the worker's build, has another
        /// checksum there, or has no data pass at that step.
        reason: String,
    },
    /// The run that opened the pass a worker works no longer owns its migration.
    #[error(
        "the run that opened migration {version}'s pass no longer owns it (it lost the migration lock in {table}, or ended): this worker stopped at its next page and wrote nothing after it"
    )]
    WorkerFenced {
        /// The ledger table.
        table: String,
        /// The migration whose pass the worker worked.
        version: u32,
    },
    /// A checkpoint item changed under this run's write: another worker of the run holds it.
    #[error("ledger table {table}: checkpoint {id} is held by another worker of this run")]
    CheckpointTaken {
        /// The ledger table.
        table: String,
        /// The checkpoint item's id.
        id: String,
    },
    /// Ctrl-C stopped the run between steps (or passes); the migration is `interrupted` and the
    /// next run resumes it.
    #[error("interrupted by Ctrl-C before {before}; run again to resume")]
    Interrupted {
        /// The step (or pass) that did not start.
        before: String,
    },
    /// A data step returned an error, or panicked.
    #[error("{0:#}")]
    Data(anyhow::Error),
    /// A data pass failed: an item it could not read or write, too many failed items, a
    /// checkpoint of another pass, Ctrl-C.
    #[error(transparent)]
    Pass(#[from] crate::data::DataError),
    /// Found by `verify`, which runs every data step a second time over its own output, writing
    /// nothing.
    #[error(
        "data step {step} is not idempotent: run a second time over its own output it would write {written} item(s) and delete {deleted}; a step in place must leave what it already changed alone (after a crash, the page in flight is done again)"
    )]
    NotIdempotent {
        /// The data step's name.
        step: String,
        /// Items the second run would write.
        written: u64,
        /// Items the second run would delete.
        deleted: u64,
    },
    /// `delete_old_table` refused: the old version was written to within the quiet window, so
    /// the application may still use it. The migration is `interrupted`, to run again later.
    #[error(
        "table {table} was last written to at {since} ({quiet_s} s ago), within the quiet window of {window_s} s, so it is not deleted: the application may still write to it. Deploy the code that uses {new} everywhere, then run `cargo xtask sync --env <environment> --until-quiet {window_s}` and `cargo xtask migrate --env <environment>` again"
    )]
    NotQuiet {
        /// The old version's physical table.
        table: String,
        /// The new version's physical table, which the application should use.
        new: String,
        /// When the old version was last written to (RFC 3339).
        since: String,
        /// How long ago that was, in seconds.
        quiet_s: u64,
        /// The quiet window, in seconds.
        window_s: u64,
    },
    /// The convergence check found the new table not the transform of the old one.
    #[error("{new} is not the transform of {old}, so {refused}: {summary}. {what_now}")]
    NotConverged {
        /// The old version's physical table.
        old: String,
        /// The new version's physical table.
        new: String,
        /// What was not done on its word.
        refused: String,
        /// What the check read and found: counts, differing keys, cost.
        summary: String,
        /// The commands to run next.
        what_now: String,
        /// Whether running again later may succeed (before a delete: the application may be
        /// writing the new version), rather than the step having failed.
        resumable: bool,
    },
    /// A rebuild's stream replay failed (an unreadable record, records too old, Ctrl-C).
    #[error(transparent)]
    Replay(Box<crate::data::ReplayError>),
    /// A call AWS would refuse now (see `rules`), found before the run wrote anything.
    #[error("{0} Nothing was applied.")]
    Refused(crate::rules::Refusal),
    /// A rebuild cannot go on: a version that is not the next one, no streams client, a stream
    /// whose view the replay cannot use, a copy estimated to take longer than its limit.
    #[error("rebuild of table {table}: {reason}")]
    Rebuild {
        /// The table's logical name (the old version's physical name for a copy refused as too
        /// long).
        table: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The SDK refused to build a request (a required field missing): a bug in this tool.
    #[error("building a DynamoDB request: {0}")]
    Build(aws_sdk_dynamodb::error::BuildError),
    /// A table that was to be read is not there.
    #[error("table {table} does not exist, so {what}")]
    NoSuchTable {
        /// The physical table.
        table: String,
        /// What could not be done without it.
        what: String,
    },
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

/// The engine's result, [`Error`](enum@Error) unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed AWS call in a few words: the service's error code, its message and the request id
/// (what AWS support asks for), or, when no answer came, what failed on the way. The SDK's own
/// `Debug` output (kilobytes of request and response) stays out of messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SdkFailure {
    /// The service's error code (`ValidationException`), when DynamoDB answered.
    pub code: Option<String>,
    /// The service's message, or when no answer came, the failure's chain of causes.
    pub message: String,
    /// The request id DynamoDB gave its answer, when it answered.
    pub request_id: Option<String>,
}

impl SdkFailure {
    /// What `err` says: the service's code, message and request id when DynamoDB answered; the
    /// cause (no connection, a time-out, an unreadable response) when it did not.
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
