//! `unlock`: show who holds the migration lock; remove a dead holder's lock when told to.

use anyhow::anyhow;
use clap::Args;

use super::session::EnvArgs;
use super::{Failure, Output, usage};
use crate::lock::{HolderProcess, Watched, holder, remove_unchanged, watch};

/// Show who holds the migration lock; --force removes a dead one
///
/// Shows who holds the migration lock (owner, since when, last heartbeat, lease). With --force,
/// removes it when its holder is dead: at once when it ran on this machine and its process is
/// gone; otherwise once its heartbeat has not renewed it for a whole lease, which this command
/// watches for (a holder whose heartbeat renews the lock is alive, and is stopped, not unlocked).
///
/// Example: `cargo xtask unlock --env prod --force`
#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Remove the lock of a holder that is dead.
    #[arg(long)]
    force: bool,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
}

impl UnlockArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let session = self.env.open(None, self.force, self.yes).await?;
        let (client, table, env) = (&session.client, session.names.ledger(), &session.env.name);
        let lock = holder(client, table).await?;
        out.facts(serde_json::json!({ "environment": env, "lock": lock, "removed": false }));
        let Some(lock) = lock else {
            out.line(format_args!("environment {env}: the migration lock is free"));
            return Ok(());
        };
        out.line(format_args!("environment {env}: the migration lock is held by {lock}"));
        if !self.force {
            out.line(format_args!("to remove it once its holder is dead: cargo xtask unlock --env {env} --force"));
            return Ok(());
        }
        let process = lock.process();
        let (seen, why) = match process {
            HolderProcess::Dead(pid) => {
                (lock.clone(), format!("its process {pid} on this machine ({}) is dead", lock.host))
            }
            _ => {
                let lease = lock.lease_ms.div_ceil(1000).max(1);
                eprintln!(
                    "watching the lock for up to {lease} s (its lease): a live holder's heartbeat renews it by then"
                );
                match watch(client, table, &lock).await? {
                    Watched::Gone => {
                        out.line("its holder released it meanwhile: the migration lock is free");
                        return Ok(());
                    }
                    Watched::Renewed(now) => {
                        let running = match process {
                            HolderProcess::Alive(pid) => format!("its process {pid} on this machine runs, and "),
                            _ => String::new(),
                        };
                        return Err(usage(anyhow!(
                            "the lock's holder is alive: {running}its heartbeat renewed the lock while this command watched (held by {now}); stop that run, or wait for it to finish"
                        )));
                    }
                    Watched::Stale(now) => {
                        let why = match process {
                            HolderProcess::Alive(pid) => format!(
                                "its process {pid} on this machine still exists but has not renewed the lock for a whole lease ({lease} s): it is stopped or hung"
                            ),
                            _ => format!("its heartbeat has not renewed it for a whole lease ({lease} s)"),
                        };
                        (now, why)
                    }
                }
            }
        };
        if remove_unchanged(client, table, &seen).await? {
            out.facts(serde_json::json!({ "removed": true }));
            out.line(format_args!(
                "removed: {why}. Its run, if it ever resumes, stops before writing anything more (its lease is over by its own clock, and its ledger writes are fenced)"
            ));
            Ok(())
        } else {
            Err(Failure::work(anyhow!(
                "the lock was renewed or changed hands meanwhile, so it was not removed; run `cargo xtask unlock --env {env}` to see its holder"
            )))
        }
    }
}
