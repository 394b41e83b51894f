use std::process::ExitCode;

use clap::Args;

use super::env::EnvOptions;
use super::{Profile, flag, option, run_runner};

/// Recover a migration left running by a crash, failed, or interrupted, after checking the
/// tables it touches: --rerun makes the next migrate apply it again (done schema steps make no
/// call, data steps resume from their checkpoints), --resolved marks it applied because you
/// completed it by hand. Recorded in the ledger with who did it.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["rerun", "resolved"])))]
pub struct Recover {
    #[command(flatten)]
    env: EnvOptions,
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

impl Recover {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = self.env.args("recover", false);
        option(&mut args, "--version", Some(&self.version.to_string()));
        flag(&mut args, "--rerun", self.rerun);
        flag(&mut args, "--resolved", self.resolved);
        flag(&mut args, "--restart-passes", self.restart_passes);
        flag(&mut args, "--yes", self.yes);
        run_runner(Profile::Release, &args)
    }
}
