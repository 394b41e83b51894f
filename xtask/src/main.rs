//! `cargo xtask`: the workspace's command line.
//!
//! This crate stays light (clap, xshell, anyhow) so that it builds in seconds. The work is done by
//! the runner binary, which links the engine with this workspace's schema and migrations; each
//! command here builds it with cargo and runs it, passing its options on.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Typed DynamoDB schemas and migrations: verify them on DynamoDB Local, apply them to AWS.
#[derive(Debug, Parser)]
#[command(bin_name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Verify(commands::verify::Verify),
    Plan(commands::plan::Plan),
    Migrate(commands::migrate::Migrate),
    Status(commands::status::Status),
    Sync(commands::sync::Sync),
    Unlock(commands::unlock::Unlock),
    Recover(commands::recover::Recover),
    Local(commands::local::Local),
    Setup(commands::setup::Setup),
    Bench(commands::bench::Bench),
}

fn main() -> ExitCode {
    let xtask = Xtask::parse();
    let result = match xtask.command {
        Command::Verify(c) => c.run(),
        Command::Plan(c) => c.run(),
        Command::Migrate(c) => c.run(),
        Command::Status(c) => c.run(),
        Command::Sync(c) => c.run(),
        Command::Unlock(c) => c.run(),
        Command::Recover(c) => c.run(),
        Command::Local(c) => c.run(),
        Command::Setup(c) => c.run(),
        Command::Bench(c) => c.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
