use std::process::ExitCode;

use clap::Args;

use super::env::EnvOptions;
use super::{Profile, flag, option, run_runner};

/// Replay writes to a rebuilt table's old version until cut-over: every rebuild waiting for
/// cut-over has its old table's pending stream records replayed into the new version, under the
/// migration lock. `--until-quiet SECS` keeps following until the old table has had no write for
/// that long. Ctrl-C stops at a shard checkpoint.
///
/// Example: `cargo xtask sync --env prod --until-quiet 900`
#[derive(Debug, Args)]
pub struct Sync {
    #[command(flatten)]
    env: EnvOptions,
    /// Confirm a protected environment without a prompt (for CI).
    #[arg(long)]
    yes: bool,
    /// Keep following until each old table has had no write for this many seconds.
    #[arg(long, value_name = "SECS")]
    until_quiet: Option<u64>,
    /// How long to wait for another run's lock, in seconds.
    #[arg(long)]
    lock_wait: Option<u64>,
    /// How long the lock outlives this run's last heartbeat, in seconds.
    #[arg(long)]
    lock_lease: Option<u64>,
}

impl Sync {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = self.env.args("sync", true);
        flag(&mut args, "--yes", self.yes);
        option(&mut args, "--until-quiet", self.until_quiet.map(|t| t.to_string()).as_deref());
        option(&mut args, "--lock-wait", self.lock_wait.map(|t| t.to_string()).as_deref());
        option(&mut args, "--lock-lease", self.lock_lease.map(|t| t.to_string()).as_deref());
        run_runner(Profile::Release, &args)
    }
}
