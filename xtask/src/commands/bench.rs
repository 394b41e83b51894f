use std::process::ExitCode;

use clap::Args;

use super::{Profile, flag, run_runner};

/// Benchmark the data engine on DynamoDB Local (release build): fills a table, then copies it
/// the seeds' way (scan + one PutItem per item), the raw way (8-segment scan + 32 batch writers:
/// the ceiling), and with the engine's typed transform. Prints items/s and peak RSS; the last
/// line is `engine/ceiling = R`.
#[derive(Debug, Args)]
pub struct Bench {
    /// Items in the source table.
    #[arg(long, default_value_t = 50_000)]
    items: u64,
    /// Skip the seeds' one-by-one copy (slow on large tables).
    #[arg(long)]
    skip_seed: bool,
}

impl Bench {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = vec!["bench".to_owned(), "--items".to_owned(), self.items.to_string()];
        flag(&mut args, "--skip-seed", self.skip_seed);
        run_runner(Profile::Release, &args)
    }
}
