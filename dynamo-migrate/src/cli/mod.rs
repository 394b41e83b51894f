//! The runner's command line: what `cargo xtask` runs once it has built the runner.
//!
//! Exit codes: 0 success, 1 the work failed (a migration, a difference, an unreadable item, a
//! lock held too long), 2 bad usage or configuration, or a guard refusing (clap's own usage
//! errors exit 2 as well).

mod baseline;
mod bench;
mod init;
mod lint;
mod local;
mod migrate;
mod new;
mod plan;
mod recover;
mod rehearse;
mod schemas;
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

/// How a command ended, when it did not succeed: the error, its exit code (1 the work failed,
/// 2 bad usage or configuration, or a guard refusing), and what the command had done by then,
/// for the JSON document.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
    /// The environment's name, for the commands the message suggests.
    environment: Option<String>,
}

impl Failure {
    /// The work failed: exit 1.
    pub fn work(e: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 1, error: e.into(), environment: None }
    }

    /// Bad usage or configuration, or a guard refused: exit 2.
    pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 2, error: e.into(), environment: None }
    }

    pub fn exit_code(&self) -> u8 {
        self.code
    }

    /// The whole error chain, each cause once. The engine does not know how the command line
    /// names the environment: the commands its messages suggest are completed here.
    pub fn message(&self) -> String {
        let message = crate::error::error_chain(self.error.as_ref());
        match &self.environment {
            Some(env) => message.replace(crate::ENVIRONMENT_PLACEHOLDER, env),
            None => message,
        }
    }

    /// The error for the JSON document: its message, and what AWS said when a call failed.
    fn to_json(&self) -> serde_json::Value {
        let aws = self.error.chain().find_map(|e| e.downcast_ref::<crate::error::Error>()?.sdk_failure());
        serde_json::json!({ "message": self.message(), "aws": aws })
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::work(e)
    }
}

pub(crate) fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::usage(e)
}

/// Where a command's output goes. For people, commands print as they go. For CI
/// (`--format json`), they add their facts to one document, which is printed once at the end,
/// with `ok`, `exit_code` and `error`, whether the command succeeded or not: stdout holds exactly
/// one JSON document. Progress and narrative lines go to stderr then.
#[derive(Debug)]
pub struct Output {
    format: Format,
    document: std::sync::Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl Output {
    pub fn new(format: Format) -> Output {
        Output { format, document: Default::default() }
    }

    pub fn is_human(&self) -> bool {
        self.format == Format::Human
    }

    /// Adds the fields of `facts` (an object) to the JSON document.
    pub fn facts(&self, facts: serde_json::Value) {
        if let serde_json::Value::Object(fields) = facts {
            self.document.lock().expect("the document").extend(fields);
        }
    }

    /// A line for people: on stdout, or on stderr when stdout holds the JSON document.
    pub fn line(&self, text: impl std::fmt::Display) {
        match self.format {
            Format::Human => println!("{text}"),
            Format::Json => eprintln!("{text}"),
        }
    }

    /// The document of a command that ended with `result`.
    fn finish(&self, command: &str, result: &Result<(), Failure>) -> serde_json::Value {
        let mut document = serde_json::Map::new();
        document.insert("command".into(), command.into());
        document.insert("ok".into(), result.is_ok().into());
        document.insert("exit_code".into(), result.as_ref().err().map_or(0, Failure::exit_code).into());
        document.insert("error".into(), result.as_ref().err().map(Failure::to_json).into());
        document.extend(std::mem::take(&mut *self.document.lock().expect("the document")));
        serde_json::Value::Object(document)
    }
}

/// The runner: the engine linked with a workspace's schema and migrations.
#[derive(Debug, Parser)]
#[command(name = "runner", bin_name = "cargo xtask", version)]
struct Cli {
    /// Output format: human, or json (one JSON document on stdout, on success and on failure).
    #[arg(long, value_enum, global = true, default_value_t)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(init::InitArgs),
    Verify(verify::VerifyArgs),
    Plan(plan::PlanArgs),
    Migrate(migrate::MigrateArgs),
    Status(status::StatusArgs),
    Sync(sync::SyncArgs),
    Unlock(unlock::UnlockArgs),
    Recover(recover::RecoverArgs),
    Rehearse(rehearse::RehearseArgs),
    Baseline(baseline::BaselineArgs),
    Schemas(schemas::SchemasArgs),
    Local(local::LocalArgs),
    Setup(setup::SetupArgs),
    Bench(bench::BenchArgs),
    New(new::NewArgs),
    Lint(lint::LintArgs),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Verify(_) => "verify",
            Command::Plan(_) => "plan",
            Command::Migrate(_) => "migrate",
            Command::Status(_) => "status",
            Command::Sync(_) => "sync",
            Command::Unlock(_) => "unlock",
            Command::Recover(_) => "recover",
            Command::Rehearse(_) => "rehearse",
            Command::Baseline(_) => "baseline",
            Command::Schemas(_) => "schemas",
            Command::Local(_) => "local",
            Command::Setup(_) => "setup",
            Command::Bench(_) => "bench",
            Command::New(_) => "new",
            Command::Lint(_) => "lint",
        }
    }

    /// The environment the command works on, to complete the commands that messages suggest.
    fn environment(&self) -> Option<&str> {
        match self {
            Command::Plan(a) => Some(&a.env.env),
            Command::Migrate(a) => Some(&a.env.env),
            Command::Status(a) => Some(&a.env.env),
            Command::Sync(a) => Some(&a.env.env),
            Command::Unlock(a) => Some(&a.env.env),
            Command::Recover(a) => Some(&a.env.env),
            Command::Rehearse(a) => Some(&a.env.env),
            Command::Baseline(a) => Some(&a.env.env),
            Command::Local(a) => Some(&a.env),
            Command::Lint(a) => a.env.as_deref(),
            Command::Init(_)
            | Command::Verify(_)
            | Command::Schemas(_)
            | Command::Setup(_)
            | Command::Bench(_)
            | Command::New(_) => None,
        }
    }

    async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        match self {
            Command::Init(args) => args.run(out).await,
            Command::Verify(args) => args.run(project, out).await,
            Command::Plan(args) => args.run(project, out).await,
            Command::Migrate(args) => args.run(project, out).await,
            Command::Status(args) => args.run(project, out).await,
            Command::Sync(args) => args.run(project, out).await,
            Command::Unlock(args) => args.run(out).await,
            Command::Recover(args) => args.run(project, out).await,
            Command::Rehearse(args) => args.run(project, out).await,
            Command::Baseline(args) => args.run(project, out).await,
            Command::Schemas(args) => args.run(project, out).await,
            Command::Local(args) => args.run(project, out).await,
            Command::Setup(args) => args.run(out).await,
            Command::Bench(args) => args.run(out).await,
            Command::New(args) => args.run(project, out).await,
            Command::Lint(args) => args.run(project, out).await,
        }
    }
}

/// Runs the command that `args` (without the program name) name, in this process, prints how it
/// ended (the JSON document, or the error once on stderr), and returns its exit code.
pub async fn run<I, T>(args: I, project: &Project) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(std::iter::once(OsString::from("runner")).chain(args.iter().cloned())) {
        Ok(cli) => cli,
        // --help and --version are answers, not failures.
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            let failure = Failure::usage(anyhow::anyhow!("{}", e.render().to_string().trim_end()));
            if wants_json(&args) {
                let out = Output::new(Format::Json);
                print_json(&out.finish("", &Err(failure)));
            } else {
                let _ = e.print();
            }
            return 2;
        }
    };
    let out = Output::new(cli.format);
    let (name, environment) = (cli.command.name(), cli.command.environment().map(str::to_owned));
    let result = cli.command.run(project, &out).await.map_err(|failure| Failure { environment, ..failure });
    let code = result.as_ref().err().map_or(0, Failure::exit_code);
    match out.format {
        Format::Json => print_json(&out.finish(name, &result)),
        Format::Human => {
            if let Err(failure) = &result {
                eprintln!("error: {}", failure.message());
            }
        }
    }
    code
}

/// True when the arguments ask for JSON, read before they could be parsed (a usage error).
fn wants_json(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.windows(2).any(|w| w == ["--format", "json"]) || args.contains(&"--format=json")
}

/// Parses the process's arguments, runs the command and turns its end into an exit code.
pub fn main(project: Project) -> ExitCode {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    ExitCode::from(runtime.block_on(run(std::env::args_os().skip(1), &project)))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("reports are JSON"));
}
