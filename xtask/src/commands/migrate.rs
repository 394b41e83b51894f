use std::process::ExitCode;

use clap::Args;

use super::env::EnvOptions;
use super::{Profile, flag, option, run_runner};

/// Apply the pending migrations to an environment: check that the credentials belong to its
/// account, take the migration lock, refuse a changed, missing, out-of-order or unfinished
/// migration and drifted tables, then apply one migration at a time, recording each in the
/// ledger. Ctrl-C finishes the call in flight, records where it stopped and releases the lock.
#[derive(Debug, Args)]
pub struct Migrate {
    #[command(flatten)]
    env: EnvOptions,
    /// Confirm a protected environment without a prompt (for CI).
    #[arg(long)]
    yes: bool,
    /// Apply even though the live tables differ from what the applied migrations produced.
    #[arg(long)]
    allow_drift: bool,
    /// Stop after this version.
    #[arg(long)]
    target: Option<u32>,
    /// How long to wait for another run's lock, in seconds.
    #[arg(long)]
    lock_wait: Option<u64>,
    /// How long the lock outlives this run's last heartbeat, in seconds.
    #[arg(long)]
    lock_lease: Option<u64>,
}

impl Migrate {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = self.env.args("migrate", true);
        flag(&mut args, "--yes", self.yes);
        flag(&mut args, "--allow-drift", self.allow_drift);
        option(&mut args, "--target", self.target.map(|t| t.to_string()).as_deref());
        option(&mut args, "--lock-wait", self.lock_wait.map(|t| t.to_string()).as_deref());
        option(&mut args, "--lock-lease", self.lock_lease.map(|t| t.to_string()).as_deref());
        run_runner(Profile::Release, &args)
    }
}
