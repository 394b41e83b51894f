use std::process::ExitCode;

use clap::Args;

use super::env::EnvOptions;
use super::{Profile, flag, run_runner};

/// Show who holds an environment's migration lock (owner, since when, last heartbeat, lease);
/// with --force, remove it once its lease has run out (its holder is dead).
#[derive(Debug, Args)]
pub struct Unlock {
    #[command(flatten)]
    env: EnvOptions,
    /// Remove the lock of a holder whose lease has run out.
    #[arg(long)]
    force: bool,
    /// Confirm a protected environment without a prompt.
    #[arg(long)]
    yes: bool,
}

impl Unlock {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = self.env.args("unlock", false);
        flag(&mut args, "--force", self.force);
        flag(&mut args, "--yes", self.yes);
        run_runner(Profile::Release, &args)
    }
}
