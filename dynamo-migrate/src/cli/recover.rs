//! `recover`: settle a migration left running by a crash, failed, or interrupted.

use std::time::Duration;

use clap::Args;

use super::Failure;
use super::session::EnvArgs;
use crate::ledger::Ledger;
use crate::lock::{Lock, LockOptions};
use crate::sequence::Status;

/// Recover a dirty migration (left running by a crash, failed, or interrupted): after checking
/// the tables it touches, mark it for re-run (the next migrate applies it again: schema steps
/// that are done plan no call, data steps resume from their checkpoints, and a fixed migration
/// file is accepted) or resolved (you made the tables right by hand). Recorded in the ledger
/// with who did it.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["rerun", "resolved"])))]
pub struct RecoverArgs {
    #[command(flatten)]
    env: EnvArgs,
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
    #[arg(long, requires = "rerun")]
    restart_passes: bool,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
}

impl RecoverArgs {
    pub async fn run(self) -> Result<(), Failure> {
        let session = self.env.open(true, self.yes).await?;
        let ledger = Ledger::new(session.client.clone(), &session.names);
        let options = LockOptions {
            wait: Duration::from_secs(30),
            env: Some(session.env.name.clone()),
            announce: true,
            ..LockOptions::new(&session.caller)
        };
        let lock = Lock::acquire(&session.client, ledger.table(), &options).await?;
        let to = if self.rerun { Status::Rerun } else { Status::Succeeded };
        let fenced = Ledger::new(lock.fence(&session.client), &session.names).fenced(lock.token());
        let mut result = fenced.recover(self.version, to, &session.caller).await.map(|()| 0);
        if result.is_ok() && self.restart_passes {
            result = fenced.delete_checkpoints(self.version).await;
        }
        lock.release().await?;
        let forgotten = result?;
        if self.restart_passes {
            println!(
                "environment {}: forgot {forgotten} checkpoint(s) of migration {}: its passes start over",
                session.env.name, self.version
            );
        }
        println!(
            "environment {}: migration {} is marked {}",
            session.env.name,
            self.version,
            if self.rerun { "for re-run by the next migrate" } else { "resolved (applied)" }
        );
        Ok(())
    }
}
