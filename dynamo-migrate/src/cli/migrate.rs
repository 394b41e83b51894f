//! `migrate`: apply the pending migrations to an environment, safely.

use std::io::IsTerminal as _;

use anyhow::anyhow;
use clap::Args;

use super::session::{
    EnvArgs, LEASE_SECS, WAIT_SECS, cancel_on_ctrl_c, check_code, check_target, lock_options, stopped_by,
};
use super::verify::print_migration;
use super::{Failure, NextStep, Output};
use crate::Project;

use crate::migrator::Migrator;

/// Apply the pending migrations: check the credentials' account, take the migration lock,
/// check the ledger (changed, missing, out-of-order or unfinished migrations stop it) and the
/// live tables for drift, then apply one migration at a time, recording each in the ledger.
/// Ctrl-C (or SIGTERM) finishes the call in flight, records where it stopped, releases the
/// lock and exits 1; the next run resumes.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
    /// Apply even though the live tables differ from what the applied migrations produced.
    #[arg(long)]
    allow_drift: bool,
    /// Stop after this version.
    #[arg(long)]
    target: Option<u32>,
    /// Let `delete_old_table` delete an old version although its convergence check found the new
    /// version different: after review, when the differences are the application's own writes
    /// to the new version since it moved there.
    #[arg(long)]
    accept_differences: bool,
    /// How long to wait for another run's lock, in seconds (0 to 86400).
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(WAIT_SECS))]
    lock_wait: u64,
    /// How long the lock outlives this run's last heartbeat, in seconds (3 to 3600).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(LEASE_SECS))]
    lock_lease: u64,
}

impl MigrateArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        check_target(project, self.target, &format!("cargo xtask migrate {}", self.env.options()))?;
        check_code(project)?;
        let session = self.env.open(Some(project), true, self.yes).await?;
        let local = session.env.is_local();

        let cancelled = cancel_on_ctrl_c("finishing the call in flight, then stopping at a checkpoint");
        let lock = lock_options(&session, self.lock_lease, self.lock_wait);
        let migrator = Migrator::new(session.client.clone(), session.names.clone(), local, session.caller.clone())
            .with_lock(lock)
            .with_drift_check(!self.allow_drift)
            .with_accepted_differences(self.accept_differences)
            .with_file_check(true)
            .with_environment(&session.env.name)
            .with_streams(session.streams.clone())
            .with_cancel(cancelled)
            .with_progress(std::io::stderr().is_terminal() && out.is_human());
        let result = migrator.run(&project.migrations, self.target).await;
        let (report, error) = match result {
            Ok(report) => (report, None),
            Err(failure) => (failure.report, Some(failure.error)),
        };
        out.facts(serde_json::json!({ "environment": session.env.name, "report": report }));
        if out.is_human() {
            if report.applied.is_empty() && error.is_none() {
                println!("environment {}: nothing to apply", session.env.name);
            } else {
                println!("environment {}: applied {} migration(s):", session.env.name, report.applied.len());
                for m in &report.applied {
                    print_migration(m);
                }
            }
        }
        match error {
            // The ledger records the migration as failed: the next run refuses until it is
            // recovered, which the message says how to do.
            Some(e @ crate::Error::Step { version, .. })
                if !e.is_interrupted() && !e.is_lock_lost() && !e.is_not_quiet() =>
            {
                let options = self.env.options();
                Err(Failure::work(NextStep::new(
                    e,
                    format!(
                        "the ledger records migration {version} as failed: fix what failed (its file, if it was wrong), then run `cargo xtask recover {options} --version {version} --rerun` to apply it again, or `cargo xtask recover {options} --version {version} --resolved` if you complete it by hand"
                    ),
                )))
            }
            // Stopped at a checkpoint: recorded as interrupted, the lock released.
            Some(e) if e.is_interrupted() => Err(Failure::work(NextStep::new(
                e,
                format!(
                    "stopped by {}: the ledger records where; to go on, run `cargo xtask migrate {}`",
                    stopped_by(),
                    self.env.options()
                ),
            ))),
            Some(e) => Err(Failure::work(e)),
            None if report.interrupted => Err(Failure::work(anyhow!(
                "interrupted by {} between migrations; to go on, run `cargo xtask migrate {}`",
                stopped_by(),
                self.env.options()
            ))),
            None => Ok(()),
        }
    }
}
