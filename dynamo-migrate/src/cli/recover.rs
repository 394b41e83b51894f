//! `recover`: settle a migration left running by a crash, failed, or interrupted.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use super::session::{EnvArgs, versions};
use super::{Failure, Output, usage};
use crate::Project;
use crate::ledger::Ledger;
use crate::lock::{Lock, LockOptions};
use crate::migration::Migration;
use crate::sequence::{Recovery, RecoveryPlan, Status, plan_recovery};

/// Settle a migration a crash left running, or one that failed
///
/// For a migration left running by a crash, failed, interrupted, or marked for re-run.
///
/// After checking the tables it touches (and fixing its file, if it was wrong), mark it for
/// re-run (the next migrate applies it again: schema steps that are done plan no call, data
/// steps resume from their checkpoints, and the fixed file is accepted) or resolved (you made
/// the tables right by hand; it is recorded as applied with the code's checksum). A migration
/// resolved earlier whose file was fixed afterwards can be resolved again to take the new
/// checksum. Recorded in the ledger with who did it.
///
/// Example: `cargo xtask recover --env prod --version 7 --rerun`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["rerun", "resolved"])))]
pub struct RecoverArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// The migration's version.
    #[arg(long)]
    version: u32,
    /// Mark it to be applied again by the next migrate.
    #[arg(long)]
    rerun: bool,
    /// Mark it as applied: its changes were completed by hand.
    #[arg(long)]
    resolved: bool,
    /// With --rerun: forget its data passes' checkpoints, so that they start over from the
    /// beginning (needed after its file was edited, or its passes changed).
    // `requires` alone lets `--resolved --restart-passes` through: `--rerun` conflicts with
    // `--resolved` in the group, and clap counts a requirement that conflicts with a given
    // argument as met.
    #[arg(long, requires = "rerun", conflicts_with = "resolved")]
    restart_passes: bool,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
}

impl RecoverArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        if !project.migrations.iter().any(|m| m.version == self.version) {
            return Err(usage(anyhow!(
                "--version {} names no migration of the code, whose migrations are {}: if the ledger records it, restore its file (migrations are append-only); see which migration is left to recover with `cargo xtask status {}`",
                self.version,
                versions(project),
                self.env.options()
            )));
        }
        let session = self.env.open(Some(project), true, self.yes).await?;
        let env = &session.env.name;
        let ledger = Ledger::new(session.client.clone(), &session.names);
        // Refusals first, without the lock (and without creating a ledger that does not exist);
        // the recovery itself is planned again under the lock.
        self.plan(&ledger, project).await?;
        let options = LockOptions {
            wait: Duration::from_secs(30),
            env: Some(session.env.name.clone()),
            announce: true,
            ..LockOptions::new(&session.caller)
        };
        let lock = Lock::acquire(&session.client, ledger.table(), &options).await?;
        let fenced = Ledger::new(lock.fence(&session.client), &session.names).fenced(lock.token());
        let result = self.recover(&fenced, project, &session.caller).await;
        lock.release().await?;
        let (plan, forgotten) = result?;
        out.facts(serde_json::json!({
            "environment": env,
            "version": plan.version,
            "from": plan.from,
            "to": plan.to,
            "checksum": plan.checksum,
            "checkpoints_forgotten": forgotten,
        }));
        if let Some(forgotten) = forgotten {
            out.line(format_args!(
                "environment {env}: forgot {forgotten} checkpoint(s) of migration {}: its passes start over",
                plan.version
            ));
        }
        let version = plan.version;
        match plan.to {
            Status::Rerun => out.line(format_args!(
                "environment {env}: migration {version} ({} before) is marked for re-run; apply it again with `cargo xtask migrate --env {env}` (steps already done plan no call, data passes resume from their checkpoints)",
                plan.from
            )),
            _ => out.line(format_args!(
                "environment {env}: migration {version} ({} before) is recorded as applied with the code's checksum; go on with `cargo xtask migrate --env {env}`",
                plan.from
            )),
        }
        Ok(())
    }

    /// What the record as it is now allows.
    async fn plan(&self, ledger: &Ledger, project: &Project) -> Result<RecoveryPlan, Failure> {
        let records = ledger.records().await?;
        let record = records.iter().find(|r| r.version == self.version);
        let code = project.migrations.iter().find(|m| m.version == self.version).map(Migration::info);
        let how = if self.rerun { Recovery::Rerun } else { Recovery::Resolved };
        plan_recovery(record, code.as_ref(), self.version, how).map_err(Failure::usage)
    }

    /// Reads the record under the lock, plans the recovery and applies it; returns how many
    /// checkpoints were forgotten with --restart-passes.
    async fn recover(
        &self,
        ledger: &Ledger,
        project: &Project,
        caller: &str,
    ) -> Result<(RecoveryPlan, Option<usize>), Failure> {
        let plan = self.plan(ledger, project).await?;
        ledger.recover(&plan, caller).await?;
        let forgotten = if self.restart_passes { Some(ledger.delete_checkpoints(self.version).await?) } else { None };
        Ok((plan, forgotten))
    }
}
