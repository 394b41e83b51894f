//! `migrate`: apply the pending migrations to an environment, safely.

use std::io::IsTerminal as _;

use anyhow::anyhow;
use clap::Args;

use super::plan::{drift_of, print_drift};
use super::session::{EnvArgs, cancel_on_ctrl_c, lock_options};
use super::verify::print_migration;
use super::{Failure, Format, print_json};
use crate::Project;
use crate::ledger::Ledger;
use crate::migrator::Migrator;

/// Apply the pending migrations: check the credentials' account, take the migration lock,
/// check the ledger (changed, missing, out-of-order or unfinished migrations stop it) and the
/// live tables for drift, then apply one migration at a time, recording each in the ledger.
/// Ctrl-C finishes the call in flight, records where it stopped, and releases the lock; the
/// next run resumes.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
    /// Apply even though the live tables differ from what the applied migrations produced.
    #[arg(long)]
    allow_drift: bool,
    /// Stop after this version.
    #[arg(long)]
    target: Option<u32>,
    /// How long to wait for another run's lock, in seconds.
    #[arg(long, default_value_t = 600)]
    lock_wait: u64,
    /// How long the lock outlives this run's last heartbeat, in seconds.
    #[arg(long, default_value_t = 60)]
    lock_lease: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl MigrateArgs {
    pub async fn run(self, project: &Project) -> Result<(), Failure> {
        let session = self.env.open(true, self.yes).await?;
        let local = session.env.is_local();

        if !self.allow_drift {
            let records = Ledger::new(session.client.clone(), &session.names).records().await?;
            let drifts = drift_of(&session, project, &records).await?;
            if !drifts.is_empty() {
                print_drift(&drifts);
                return Err(Failure::Work(anyhow!(
                    "environment {}: the live tables differ from what the applied migrations produced; nothing was applied. Look at `status`, put the difference right, or pass --allow-drift",
                    session.env.name
                )));
            }
        }

        let cancelled = cancel_on_ctrl_c("finishing the call in flight, then stopping at a checkpoint");
        let lock = lock_options(&session.caller, self.lock_lease, self.lock_wait);
        let migrator = Migrator::new(session.client.clone(), session.names.clone(), local, session.caller.clone())
            .with_lock(lock)
            .with_environment(&session.env.name)
            .with_streams(session.streams.clone())
            .with_cancel(cancelled)
            .with_progress(std::io::stderr().is_terminal() && self.format == Format::Human);
        let result = migrator.run(&project.migrations, self.target).await;
        let (report, error) = match result {
            Ok(report) => (report, None),
            Err(failure) => (failure.report, Some(failure.error)),
        };
        match self.format {
            Format::Json => print_json(&serde_json::json!({
                "environment": session.env.name,
                "ok": error.is_none() && !report.interrupted,
                "report": report,
                "error": error.as_ref().map(|e| format!("{e:#}")),
            })),
            Format::Human => {
                if report.applied.is_empty() && error.is_none() {
                    println!("environment {}: nothing to apply", session.env.name);
                } else {
                    println!("environment {}: applied {} migration(s):", session.env.name, report.applied.len());
                    for m in &report.applied {
                        print_migration(m);
                    }
                }
            }
        }
        match error {
            Some(e) => Err(Failure::Work(e.into())),
            None if report.interrupted => {
                Err(Failure::Work(anyhow!("interrupted by Ctrl-C; run migrate again to go on")))
            }
            None => Ok(()),
        }
    }
}
