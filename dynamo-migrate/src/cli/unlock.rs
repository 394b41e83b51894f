//! `unlock`: show who holds the migration lock; remove a dead holder's lock when told to.

use anyhow::anyhow;
use clap::Args;

use super::session::EnvArgs;
use super::{Failure, Output, usage};
use crate::lock::{force_unlock, holder};

/// Show who holds the migration lock (owner, since when, last heartbeat, lease). With --force,
/// remove it, but only once its lease has run out: a holder whose heartbeat still renews the
/// lease is alive, and is stopped, not unlocked.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Remove the lock of a holder whose lease has run out.
    #[arg(long)]
    force: bool,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
}

impl UnlockArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let session = self.env.open(None, self.force, self.yes).await?;
        let lock = holder(&session.client, session.names.ledger()).await?;
        out.facts(serde_json::json!({ "environment": session.env.name, "lock": lock, "removed": false }));
        let Some(lock) = lock else {
            out.line(format_args!("environment {}: the migration lock is free", session.env.name));
            return Ok(());
        };
        out.line(format_args!("environment {}: the migration lock is held by {lock}", session.env.name));
        if !self.force {
            out.line(format_args!(
                "to remove it once its lease has run out: cargo xtask unlock --env {} --force",
                session.env.name
            ));
            return Ok(());
        }
        if !lock.expired {
            return Err(usage(anyhow!(
                "the lock's lease has not run out, so its holder is alive: stop that run, or wait for the lease to run out"
            )));
        }
        if force_unlock(&session.client, session.names.ledger(), &lock.token).await? {
            out.facts(serde_json::json!({ "removed": true }));
            out.line("removed; its run, if it still lives, can record nothing more (its ledger writes are fenced)");
            Ok(())
        } else {
            Err(Failure::work(anyhow!(
                "the lock changed hands meanwhile; to see its holder, run `cargo xtask unlock --env {}`",
                session.env.name
            )))
        }
    }
}
