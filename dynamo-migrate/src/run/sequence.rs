//! The pure decision of what to apply: the ledger's records against the migrations in the code.
//!
//! Nothing here talks to DynamoDB, so every refusal is unit-tested. It follows refinery's
//! `verify_migrations`: a changed, missing, out-of-order or unfinished migration stops the run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::migration::MigrationInfo;

/// Where a migration stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A run is applying it. Found by a run that holds the lock, it means the run that started
    /// it died: the record is dirty, and nothing runs until `recover` says what to do with it.
    Running,
    /// Every step succeeded (or `recover --resolved` recorded it so).
    Succeeded,
    /// A step failed; nothing runs until `recover` marks it for a rerun or resolved.
    Failed,
    /// Stopped by Ctrl-C at a checkpoint; the next run resumes it.
    Interrupted,
    /// Marked by an operator to be run again (resuming its data steps' checkpoints).
    Rerun,
}

impl Status {
    /// True when the next run picks the migration up again where it stopped.
    pub fn is_resumable(self) -> bool {
        matches!(self, Status::Interrupted | Status::Rerun)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
            Status::Rerun => "rerun",
        })
    }
}

/// One ledger record: a migration that was started against this environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub name: String,
    /// The checksum of the source that ran (or that `recover` accepted).
    pub checksum: String,
    /// Where it stands.
    pub status: Status,
    /// When its latest attempt started (RFC 3339).
    pub started_at: String,
    /// When its latest attempt ended (RFC 3339); `None` while it runs.
    pub finished_at: Option<String>,
    /// Who ran its latest attempt, as the migrator was told
    /// ([`Migrator::new`](crate::run::Migrator::new)): the runner gives the caller's ARN, as STS says
    /// it, or `local`.
    pub applied_by: String,
    /// The version of this tool that ran it.
    pub tool_version: String,
    /// Why its latest attempt failed or stopped, with the failing step.
    pub error: Option<String>,
    /// Who marked a dirty record resolved or for re-run, and when.
    #[serde(default)]
    pub recovered_by: Option<String>,
    /// When `recover` last changed the record (RFC 3339).
    #[serde(default)]
    pub recovered_at: Option<String>,
}

/// Why the ledger and the code cannot be reconciled; nothing is applied while one stands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SequenceError {
    /// An applied migration's source changed since it was applied.
    #[error(
        "migration {version} ({name}) was applied with checksum {applied}, the code now has {now}: an applied migration must not change; restore its file, put the change in a new migration, and run `cargo xtask plan --env <environment>`"
    )]
    ChangedChecksum {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
        /// The start of the checksum the ledger recorded.
        applied: String,
        /// The start of the checksum of the code's source.
        now: String,
    },
    /// The ledger records a migration the code no longer has.
    #[error(
        "migration {version} ({name}) is in the ledger but not in the code: restore it (migrations are append-only), then run `cargo xtask plan --env <environment>`"
    )]
    Missing {
        /// The migration's version.
        version: u32,
        /// Its name, as the ledger recorded it.
        name: String,
    },
    /// A migration the ledger does not record has a version below one it does: added after a
    /// later migration was applied.
    #[error(
        "migration {version} ({name}) is not applied but the later migration {later} is: give the new migration a version after {later}"
    )]
    OutOfOrder {
        /// The unapplied migration's version.
        version: u32,
        /// The unapplied migration's name.
        name: String,
        /// The highest version the ledger records.
        later: u32,
    },
    /// A migration is `running` or `failed`: a run died or a step failed, and someone must look
    /// before anything else runs.
    #[error(
        "migration {version} ({name}) is {status} since {started_at} (by {applied_by}){}: check the tables it touches, fix its file if it was wrong, then run `cargo xtask recover --env <environment> --version {version} --rerun` to apply it again (resuming its data steps), or `cargo xtask recover --env <environment> --version {version} --resolved` if you completed it by hand",
        .error.as_ref().map(|e| format!(", error: {e}")).unwrap_or_default()
    )]
    Dirty {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
        /// `running` or `failed`.
        status: Status,
        /// When its latest attempt started (RFC 3339).
        started_at: String,
        /// Who ran it.
        applied_by: String,
        /// Why it failed, as recorded.
        error: Option<String>,
    },
    /// Two migrations in the code have the same version.
    #[error(
        "migration version {version} is used twice in the code ({first} and {second}): give {second} the next free version, {next}: rename its file m{next:04}_{second}.rs (and the name in its migration!(..) and lib.rs), then run `cargo xtask verify`"
    )]
    DuplicateVersion {
        /// The version used twice.
        version: u32,
        /// The name of the migration listed first with it.
        first: String,
        /// The name of the one listed second, which should move.
        second: String,
        /// The next free version, one above the highest in the code.
        next: u32,
    },
    /// The code's list of migrations is not in version order.
    #[error("migrations {earlier} and {later} are listed out of order in the code; list them by version")]
    UnsortedCode {
        /// The lower version, listed second.
        earlier: u32,
        /// The higher version, listed first.
        later: u32,
    },
}

/// Every reason found, so that all can be fixed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceErrors(pub Vec<SequenceError>);

impl fmt::Display for SequenceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for SequenceErrors {}

/// The versions to apply, in order (including an interrupted or re-run one, which resumes), or
/// every reason not to apply anything.
pub fn pending(applied: &[AppliedMigration], known: &[MigrationInfo]) -> Result<Vec<u32>, SequenceErrors> {
    let mut errors = Vec::new();

    let mut by_version: BTreeMap<u32, &MigrationInfo> = BTreeMap::new();
    for pair in known.windows(2) {
        if pair[0].version > pair[1].version {
            errors.push(SequenceError::UnsortedCode { earlier: pair[1].version, later: pair[0].version });
        }
    }
    let next = known.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    for info in known {
        if let Some(first) = by_version.insert(info.version, info) {
            errors.push(SequenceError::DuplicateVersion {
                version: info.version,
                first: first.name.clone(),
                second: info.name.clone(),
                next,
            });
        }
    }

    let applied_by_version: BTreeMap<u32, &AppliedMigration> = applied.iter().map(|a| (a.version, a)).collect();
    for record in applied_by_version.values() {
        if matches!(record.status, Status::Running | Status::Failed) {
            errors.push(SequenceError::Dirty {
                version: record.version,
                name: record.name.clone(),
                status: record.status,
                started_at: record.started_at.clone(),
                applied_by: record.applied_by.clone(),
                error: record.error.clone(),
            });
        }
        match by_version.get(&record.version) {
            None => errors.push(SequenceError::Missing { version: record.version, name: record.name.clone() }),
            // A migration that has not finished may be fixed before it runs again.
            Some(info) if info.checksum != record.checksum && !record.status.is_resumable() => {
                errors.push(SequenceError::ChangedChecksum {
                    version: record.version,
                    name: record.name.clone(),
                    applied: short(&record.checksum),
                    now: short(&info.checksum),
                })
            }
            Some(_) => {}
        }
    }

    let last_applied = applied_by_version.keys().next_back().copied();
    let mut pending = Vec::new();
    for info in by_version.values() {
        match applied_by_version.get(&info.version) {
            Some(record) if record.status.is_resumable() => {
                pending.push(info.version);
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        match last_applied {
            Some(later) if later > info.version => {
                errors.push(SequenceError::OutOfOrder { version: info.version, name: info.name.clone(), later })
            }
            _ => pending.push(info.version),
        }
    }

    if errors.is_empty() { Ok(pending) } else { Err(SequenceErrors(errors)) }
}

/// What `recover` is asked to do with a migration's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Apply it again with the next `migrate` (its data passes resume from their checkpoints).
    Rerun,
    /// Its changes were completed by hand: record it as applied, with the code's checksum.
    Resolved,
}

/// A recovery that may go ahead: the record's status now (the write is conditional on it) and
/// the one it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The migration's version.
    pub version: u32,
    /// The record's status now.
    pub from: Status,
    /// The status it gets: `rerun` or `succeeded`.
    pub to: Status,
    /// The checksum the record gets: the code's, since a fixed file is what runs (or counts as
    /// applied) from now on.
    pub checksum: String,
}

/// Why a record cannot be recovered as asked; each says what to run instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The version is not among the code's migrations.
    #[error(
        "migration {version} is not in the code, so there is nothing to run or to record: restore its file (migrations are append-only), then run `cargo xtask status --env <environment>`"
    )]
    NotInCode {
        /// The version asked for.
        version: u32,
    },
    /// The ledger has no record of the migration: `migrate` applies it.
    #[error(
        "migration {version} ({name}) has not started in this environment, so there is nothing to recover: `cargo xtask migrate --env <environment>` applies it"
    )]
    NotStarted {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
    },
    /// The migration succeeded: it never runs again, and only a resolved one whose file was
    /// fixed since takes the code's checksum.
    #[error(
        "migration {version} ({name}) has succeeded; an applied migration never runs again and never changes: put the change in a new migration, then run `cargo xtask migrate --env <environment>`"
    )]
    Applied {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: String,
    },
}

/// The recovery state machine, one record at a time (ARCHITECTURE.md draws it):
///
/// - `running` (its run died), `failed`, `interrupted` or `rerun`, with `Rerun`: becomes `rerun`,
///   which the next `migrate` resumes (a fixed file is accepted);
/// - the same, with `Resolved`: becomes `succeeded`, with the code's checksum;
/// - `succeeded` after an earlier `Resolved` whose checksum is not the code's (the file was fixed
///   after resolving), with `Resolved`: takes the code's checksum;
/// - any other `succeeded`, a version the ledger does not hold, or one the code does not: refused.
pub fn plan_recovery(
    record: Option<&AppliedMigration>,
    code: Option<&MigrationInfo>,
    version: u32,
    how: Recovery,
) -> Result<RecoveryPlan, RecoveryError> {
    let Some(code) = code else { return Err(RecoveryError::NotInCode { version }) };
    let Some(record) = record else {
        return Err(RecoveryError::NotStarted { version, name: code.name.clone() });
    };
    let to = match (record.status, how) {
        (Status::Running | Status::Failed | Status::Interrupted | Status::Rerun, Recovery::Rerun) => Status::Rerun,
        (Status::Running | Status::Failed | Status::Interrupted | Status::Rerun, Recovery::Resolved) => {
            Status::Succeeded
        }
        (Status::Succeeded, Recovery::Resolved)
            if record.recovered_by.is_some() && record.checksum != code.checksum =>
        {
            Status::Succeeded
        }
        (Status::Succeeded, _) => return Err(RecoveryError::Applied { version, name: record.name.clone() }),
    };
    Ok(RecoveryPlan { version, from: record.status, to, checksum: code.checksum.clone() })
}

fn short(checksum: &str) -> String {
    format!("{}…", &checksum[..checksum.len().min(12)])
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
