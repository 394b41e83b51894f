use std::process::ExitCode;

use clap::Args;

use super::env::EnvOptions;
use super::{Profile, run_runner};

/// Show an environment's migrations as applied (when, by whom), pending, changed or missing,
/// the lock's holder if any, and the drift of each live table, field by field. Reads only.
#[derive(Debug, Args)]
pub struct Status {
    #[command(flatten)]
    env: EnvOptions,
}

impl Status {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        run_runner(Profile::Release, &self.env.args("status", true))
    }
}
