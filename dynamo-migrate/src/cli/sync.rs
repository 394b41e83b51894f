//! `sync`: replay what the application wrote to rebuilt tables' old versions, until cut-over.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use super::session::{EnvArgs, LEASE_SECS, WAIT_SECS, cancel_on_ctrl_c, lock_options};
use super::{Failure, Output};
use crate::Project;
use crate::migrator::Migrator;
use crate::rebuild::SyncCheck;

/// Replay writes to a rebuilt table's old version until cut-over.
///
/// Every rebuild waiting for cut-over (its migration applied, its old version not yet deleted)
/// has its old table's pending stream records replayed into the new version through the
/// rebuild's transform, from the shard checkpoints in the ledger, under the migration lock.
/// Run it while old instances of the application may still write to the old table; with
/// `--until-quiet SECS` it keeps following until the old table has had no write for that long,
/// after which `delete_old_table` can cut over. Ctrl-C stops it at a shard checkpoint.
///
/// With `--check`, each rebuild's new table is then compared with the transform of its old one
/// (see README, "The proof"); `--repair` also rewrites what differs from the old table, which is
/// right only while no application writes the new version.
///
/// Example: `cargo xtask sync --env prod --until-quiet 900`
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
    /// Keep following until each old table has had no write for this many seconds.
    #[arg(long, value_name = "SECS")]
    until_quiet: Option<u64>,
    /// After the replay, check that each new table is the transform of its old one (a
    /// consistent scan of both; it costs reads of both tables) and report what differs.
    #[arg(long)]
    check: bool,
    /// With --check, rewrite what differs from the old table. Only while no application writes
    /// the new version yet: it would undo the application's writes there.
    #[arg(long, requires = "check")]
    repair: bool,
    /// How long to wait for another run's lock, in seconds (0 to 86400).
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(WAIT_SECS))]
    lock_wait: u64,
    /// How long the lock outlives this run's last heartbeat, in seconds (3 to 3600).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(LEASE_SECS))]
    lock_lease: u64,
}

impl SyncArgs {
    pub async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        let session = self.env.open(Some(project), true, self.yes).await?;
        let cancelled = cancel_on_ctrl_c("stopping at the next shard checkpoint");
        let lock = lock_options(&session, self.lock_lease, self.lock_wait);
        let migrator = Migrator::new(
            session.client.clone(),
            session.names.clone(),
            session.env.is_local(),
            session.caller.clone(),
        )
        .with_lock(lock)
        .with_streams(session.streams.clone())
        .with_cancel(cancelled)
        .with_progress(std::io::stderr().is_terminal() && out.is_human());
        let check = match (self.check, self.repair) {
            (false, _) => SyncCheck::No,
            (true, false) => SyncCheck::Compare,
            (true, true) => SyncCheck::Repair,
        };
        let until_quiet = self.until_quiet.map(Duration::from_secs);
        let result = migrator.sync_and_check(&project.migrations, until_quiet, check).await;
        out.facts(serde_json::json!({ "environment": session.env.name, "rebuilds": result.as_ref().ok() }));
        if out.is_human()
            && let Ok(reports) = &result
        {
            if reports.is_empty() {
                println!("environment {}: no rebuild is waiting for cut-over", session.env.name);
            }
            for r in reports {
                match &r.error {
                    None => {
                        println!(
                            "migration {} step {}: {} -> {}: replayed {} records ({} puts, {} deletes); last write to {} at {}, quiet for {} s",
                            r.version,
                            r.step + 1,
                            r.source,
                            r.target,
                            r.replay.records,
                            r.replay.puts,
                            r.replay.deletes,
                            r.source,
                            r.last_write.as_deref().unwrap_or("(none seen)"),
                            r.quiet_s
                        );
                        if let Some(check) = &r.check {
                            println!("  checked {}", check.summary());
                        }
                    }
                    Some(error) => println!(
                        "migration {} step {}: {} -> {}: stopped after {} records: {error}",
                        r.version,
                        r.step + 1,
                        r.source,
                        r.target,
                        r.replay.records
                    ),
                }
            }
        }
        match result {
            Ok(reports) => match reports.iter().filter(|r| r.error.is_some()).collect::<Vec<_>>().as_slice() {
                [] => Ok(()),
                failed => {
                    let which: Vec<String> = failed
                        .iter()
                        .map(|r| format!("{} -> {} (migration {})", r.source, r.target, r.version))
                        .collect();
                    Err(Failure::work(anyhow!(
                        "{} of {} rebuild(s) could not be synced: {}; the others were. Each stops where its line above says; once its cause is mended, run `cargo xtask sync --env {}` again",
                        failed.len(),
                        reports.len(),
                        which.join(", "),
                        crate::error::ENVIRONMENT_PLACEHOLDER
                    )))
                }
            },
            Err(e) if e.is_interrupted() => Err(Failure::work(anyhow!(
                "interrupted by {} at a shard checkpoint; to go on, run `cargo xtask sync --env {}`",
                super::session::stopped_by(),
                crate::error::ENVIRONMENT_PLACEHOLDER
            ))),
            Err(e) => Err(Failure::work(e)),
        }
    }
}
