use std::process::ExitCode;

use clap::Args;

use super::{Profile, flag, run_runner};

/// Benchmark the data engine on DynamoDB Local (release build).
///
/// Fills a table, then copies it naively (scan + one PutItem per item), the raw way (8-segment
/// scan + 32 batch writers: the copy ceiling) and with the engine's typed transform; then
/// updates it in place the raw way (32 concurrent conditional UpdateItem: the in-place ceiling)
/// and with the engine's typed backfill. Prints items/s and each engine pass's peak RSS; the
/// last lines are `engine/ceiling = R` and `in-place/ceiling = R`.
///
/// Example: `cargo xtask bench --items 20000 --item-bytes 4096`
#[derive(Debug, Args)]
pub struct Bench {
    /// Items in the source table.
    #[arg(long, default_value_t = 50_000)]
    items: u64,
    /// About how many bytes each item has in DynamoDB (300 or more).
    #[arg(long, default_value_t = 300)]
    item_bytes: usize,
    /// Skip the naive one-by-one copy (slow on large tables).
    #[arg(long)]
    skip_naive: bool,
    /// How many times each ceiling and engine pass runs; the best run of each counts.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

impl Bench {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut args = vec!["bench".to_owned(), "--items".to_owned(), self.items.to_string()];
        args.extend(["--item-bytes".to_owned(), self.item_bytes.to_string()]);
        flag(&mut args, "--skip-naive", self.skip_naive);
        args.extend(["--rounds".to_owned(), self.rounds.to_string()]);
        run_runner(Profile::Release, &args)
    }
}
