use std::process::ExitCode;

use clap::Args;

use super::{Profile, flag, run_runner};

/// Start DynamoDB Local for development and print its endpoint; with --apply, apply every
/// migration (with its fixture items) using the environment's table prefix. Runs until Ctrl-C.
#[derive(Debug, Args)]
pub struct Local {
    /// Apply every migration after start-up.
    #[arg(long)]
    apply: bool,
    /// The environment (in environments.toml) whose table prefix to use.
    #[arg(long, default_value = "local")]
    env: String,
    /// Make table and index status changes take time, as on AWS.
    #[arg(long)]
    delay_transient_statuses: bool,
    /// Do not try a Docker engine; start DynamoDB Local with Java.
    #[arg(long)]
    no_docker: bool,
}

impl Local {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = vec!["local".to_owned(), "--env".to_owned(), self.env];
        flag(&mut args, "--apply", self.apply);
        flag(&mut args, "--delay-transient-statuses", self.delay_transient_statuses);
        flag(&mut args, "--no-docker", self.no_docker);
        run_runner(Profile::Dev, &args)
    }
}
