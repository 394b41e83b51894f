//! `unlock`: show who holds the migration lock; remove a dead holder's lock when told to.

use anyhow::anyhow;
use clap::Args;

use super::session::EnvArgs;
use super::{Failure, usage};
use crate::lock::{force_unlock, holder};

/// Show who holds the migration lock (owner, since when, last heartbeat, lease). With --force,
/// remove it, but only once its lease has run out: a holder whose heartbeat still renews the
/// lease is alive, and is stopped, not unlocked.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Remove the lock of a holder whose lease has run out.
    #[arg(long)]
    force: bool,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
}

impl UnlockArgs {
    pub async fn run(self) -> Result<(), Failure> {
        let session = self.env.open(self.force, self.yes).await?;
        let Some(lock) = holder(&session.client, session.names.ledger()).await? else {
            println!("environment {}: the migration lock is free", session.env.name);
            return Ok(());
        };
        println!("environment {}: the migration lock is held by {lock}", session.env.name);
        if !self.force {
            println!("to remove it once its lease has run out: unlock --force");
            return Ok(());
        }
        if !lock.expired {
            return Err(usage(anyhow!(
                "the lock's lease has not run out, so its holder is alive: stop that run, or wait for the lease to run out"
            )));
        }
        if force_unlock(&session.client, session.names.ledger(), &lock.token).await? {
            println!("removed; its run, if it still lives, can record nothing more (its ledger writes are fenced)");
            Ok(())
        } else {
            Err(Failure::Work(anyhow!("the lock changed hands meanwhile; run unlock again to see its holder")))
        }
    }
}
