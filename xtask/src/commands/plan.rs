use std::process::ExitCode;

use clap::Args;

use super::env::EnvOptions;
use super::{Profile, run_runner};

/// Show what migrate would do on an environment: each pending migration and every DynamoDB call
/// it will make (destructive ones marked), and the drift of the live tables from what the applied
/// migrations produced. Writes nothing.
#[derive(Debug, Args)]
pub struct Plan {
    #[command(flatten)]
    env: EnvOptions,
}

impl Plan {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        run_runner(Profile::Release, &self.env.args("plan", true))
    }
}
