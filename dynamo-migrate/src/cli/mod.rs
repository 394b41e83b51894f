//! The runner's command line: what `cargo xtask` runs once it has built the runner.
//!
//! Exit codes: 0 success, 1 the work failed (a migration, a difference, an unreadable item, a
//! lock held too long), 2 bad usage or configuration, or a guard refusing (clap's own usage
//! errors exit 2 as well).

mod bench;
mod local;
mod migrate;
mod plan;
mod recover;
mod session;
mod setup;
mod status;
mod sync;
mod unlock;
mod verify;

use std::ffi::OsString;
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

/// How a command ended, when it did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The work failed: exit 1.
    Work(anyhow::Error),
    /// Bad usage or configuration, or a guard refused: exit 2.
    Usage(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Work(_) => 1,
            Failure::Usage(_) => 2,
        }
    }

    /// The whole error chain.
    pub fn message(&self) -> String {
        match self {
            Failure::Work(e) | Failure::Usage(e) => format!("{e:#}"),
        }
    }
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
    Plan(plan::PlanArgs),
    Migrate(migrate::MigrateArgs),
    Status(status::StatusArgs),
    Sync(sync::SyncArgs),
    Unlock(unlock::UnlockArgs),
    Recover(recover::RecoverArgs),
    Local(local::LocalArgs),
    Setup(setup::SetupArgs),
    Bench(bench::BenchArgs),
}

/// Runs the command that `args` (without the program name) name, in this process.
pub async fn execute<I, T>(args: I, project: &Project) -> Result<(), Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = Cli::try_parse_from(std::iter::once(OsString::from("runner")).chain(args.into_iter().map(Into::into)));
    let cli = match parsed {
        Ok(cli) => cli,
        // --help and --version are answers, not failures.
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return Ok(());
        }
        Err(e) => return Err(usage(e)),
    };
    match cli.command {
        Command::Verify(args) => args.run(project).await,
        Command::Plan(args) => args.run(project).await,
        Command::Migrate(args) => args.run(project).await,
        Command::Status(args) => args.run(project).await,
        Command::Sync(args) => args.run(project).await,
        Command::Unlock(args) => args.run().await,
        Command::Recover(args) => args.run().await,
        Command::Local(args) => args.run(project).await,
        Command::Setup(args) => args.run().await,
        Command::Bench(args) => args.run().await,
    }
}

/// Parses the process's arguments, runs the command and turns its end into an exit code.
pub fn main(project: Project) -> ExitCode {
    init_tracing();
    // Help, version and usage errors print as clap prints them, with clap's exit codes.
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Err(e) = Cli::try_parse_from(&args) {
        e.exit();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(execute(args.into_iter().skip(1), &project)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message());
            ExitCode::from(failure.exit_code())
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
