//! The runner's command line: what `cargo xtask` runs once it has built the runner.
//!
//! Exit codes: 0 success, 1 the work failed (a migration, a difference, an unreadable item),
//! 2 bad usage or configuration (clap's own usage errors exit 2 as well).

mod bench;
mod local;
mod setup;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::Project;

/// Output for people or for CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// How a command ended.
#[derive(Debug)]
pub enum Failure {
    /// The work failed: exit 1.
    Work(anyhow::Error),
    /// Bad usage or configuration: exit 2.
    Usage(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Work(e.into())
    }
}

pub(crate) fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

/// The runner: the engine linked with a workspace's schema and migrations.
#[derive(Debug, Parser)]
#[command(name = "runner", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Verify(verify::VerifyArgs),
    Local(local::LocalArgs),
    Setup(setup::SetupArgs),
    Bench(bench::BenchArgs),
}

/// Parses the arguments, runs the command and turns its end into an exit code.
pub fn main(project: Project) -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Verify(args) => args.run(&project).await,
            Command::Local(args) => args.run(&project).await,
            Command::Setup(args) => args.run().await,
            Command::Bench(args) => args.run().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Work(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("reports are JSON"));
}
