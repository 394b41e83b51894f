use std::process::ExitCode;

use clap::Args;

use super::{Profile, flag, option, run_runner};

/// Apply every migration from empty on DynamoDB Local, compare the end state with the schema
/// crate field by field, read every item into its Rust type, and check that a second run is a
/// no-op. Never touches a real account: an endpoint that is not local is refused.
/// Exits 0 when all holds, 1 when something does not, 2 on bad usage or setup.
#[derive(Debug, Args)]
pub struct Verify {
    /// Use this running DynamoDB Local instead of starting one (must be a loopback address).
    #[arg(long)]
    endpoint: Option<String>,
    /// Make table and index status changes take time, as on AWS (exercises the waiters).
    #[arg(long)]
    delay_transient_statuses: bool,
    /// Do not try a Docker engine; start DynamoDB Local with Java.
    #[arg(long)]
    no_docker: bool,
    /// Output format: human or json.
    #[arg(long, default_value = "human")]
    format: String,
}

impl Verify {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = vec!["verify".to_owned(), "--format".to_owned(), self.format];
        option(&mut args, "--endpoint", self.endpoint.as_deref());
        flag(&mut args, "--delay-transient-statuses", self.delay_transient_statuses);
        flag(&mut args, "--no-docker", self.no_docker);
        run_runner(Profile::Dev, &args)
    }
}
