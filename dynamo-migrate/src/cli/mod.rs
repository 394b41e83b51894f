//! The runner's command line: what `cargo xtask` runs once it has built the runner.
//!
//! Exit codes: 0 success, 1 the work failed (a migration, a difference, an unreadable item, a
//! lock held too long), 2 bad usage or configuration, or a guard refusing (clap's own usage
//! errors exit 2 as well).

mod baseline;
#[cfg(feature = "local")]
mod bench;
mod build_runner;
mod completions;
mod iam_policy;
mod init;
mod lint;
#[cfg(feature = "local")]
mod local;
mod migrate;
mod new;
mod plan;
mod recover;
#[cfg(feature = "local")]
mod rehearse;
mod rustfmt;
mod schemas;
mod session;
#[cfg(feature = "local")]
mod setup;
mod status;
mod sync;
mod unlock;
mod verify;
mod worker;
mod workers;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::Project;

/// Output for people or for CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Lines for people on stdout, printed as the command goes (the default).
    #[default]
    Human,
    /// One JSON document on stdout at the end, on success and on failure; other lines on stderr.
    Json,
}

/// How a command ended, when it did not succeed: the error, its exit code (1 the work failed,
/// 2 bad usage or configuration, or a guard refusing), and what the command had done by then,
/// for the JSON document.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
    /// The environment's name, and how the command line named it (`--env dev`, with
    /// `--environments <file>` when that is not the default), for the commands the message
    /// suggests.
    environment: Option<(String, String)>,
    /// The command's name (`status`), for the commands the message suggests.
    command: Option<&'static str>,
}

impl Failure {
    /// The work failed: exit 1.
    pub fn work(e: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 1, error: e.into(), environment: None, command: None }
    }

    /// Bad usage or configuration, or a guard refused: exit 2.
    pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 2, error: e.into(), environment: None, command: None }
    }

    /// The process's exit code: 1 when the work failed, 2 for bad usage or configuration, or a
    /// guard refusing.
    pub fn exit_code(&self) -> u8 {
        self.code
    }

    /// The whole error chain, each cause once. The engine does not know how the command line
    /// names the environment and the command: the commands its messages suggest are completed
    /// here.
    pub fn message(&self) -> String {
        let mut message = crate::error::error_chain(self.error.as_ref());
        if let Some((env, options)) = &self.environment {
            let placeholder = format!("--env {}", crate::error::ENVIRONMENT_PLACEHOLDER);
            message = message.replace(&placeholder, options).replace(crate::error::ENVIRONMENT_PLACEHOLDER, env);
        }
        if let Some(command) = self.command {
            message = message.replace(crate::error::COMMAND_PLACEHOLDER, command);
        }
        message
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

/// An error followed by what to do next. The error stays its source, so that `--format json`
/// still finds what AWS said in it.
#[derive(Debug)]
pub(crate) struct NextStep {
    error: anyhow::Error,
    next: String,
}

impl NextStep {
    pub(crate) fn new(error: impl Into<anyhow::Error>, next: String) -> NextStep {
        NextStep { error: error.into(), next }
    }
}

impl std::fmt::Display for NextStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", crate::error::error_chain(self.error.as_ref()), self.next)
    }
}

impl std::error::Error for NextStep {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
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
    /// Output in `format`, with an empty JSON document (filled by [`Output::facts`]).
    pub fn new(format: Format) -> Output {
        Output { format, document: Default::default() }
    }

    /// True for output for people (`--format human`), which commands print as they go; false for
    /// `--format json`.
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

/// Typed DynamoDB tables and migrations: verify them on DynamoDB Local, apply them to AWS
///
/// The tables are declared in the schema crate, the migrations that make them in the migrations
/// crate. `verify` proves on DynamoDB Local that the migrations give the schema crate's tables;
/// `plan` and `migrate` apply what is pending to an environment of environments.toml. Each
/// command's --help says more, with an example.
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
    #[cfg(feature = "local")]
    Verify(verify::VerifyArgs),
    Plan(plan::PlanArgs),
    Migrate(migrate::MigrateArgs),
    Status(status::StatusArgs),
    Sync(sync::SyncArgs),
    Unlock(unlock::UnlockArgs),
    Recover(recover::RecoverArgs),
    #[cfg(feature = "local")]
    Rehearse(rehearse::RehearseArgs),
    Baseline(baseline::BaselineArgs),
    Schemas(schemas::SchemasArgs),
    #[cfg(feature = "local")]
    Local(local::LocalArgs),
    #[cfg(feature = "local")]
    Setup(setup::SetupArgs),
    #[cfg(feature = "local")]
    Bench(bench::BenchArgs),
    New(new::NewArgs),
    Lint(lint::LintArgs),
    Worker(worker::WorkerArgs),
    IamPolicy(iam_policy::IamPolicyArgs),
    BuildRunner(build_runner::BuildRunnerArgs),
    Completions(completions::CompletionsArgs),
    Workers(workers::WorkersArgs),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            #[cfg(feature = "local")]
            Command::Verify(_) => "verify",
            Command::Plan(_) => "plan",
            Command::Migrate(_) => "migrate",
            Command::Status(_) => "status",
            Command::Sync(_) => "sync",
            Command::Unlock(_) => "unlock",
            Command::Recover(_) => "recover",
            #[cfg(feature = "local")]
            Command::Rehearse(_) => "rehearse",
            Command::Baseline(_) => "baseline",
            Command::Schemas(_) => "schemas",
            #[cfg(feature = "local")]
            Command::Local(_) => "local",
            #[cfg(feature = "local")]
            Command::Setup(_) => "setup",
            #[cfg(feature = "local")]
            Command::Bench(_) => "bench",
            Command::New(_) => "new",
            Command::Lint(_) => "lint",
            Command::Worker(_) => "worker",
            Command::IamPolicy(_) => "iam-policy",
            Command::BuildRunner(_) => "build-runner",
            Command::Completions(_) => "completions",
            Command::Workers(_) => "workers",
        }
    }

    /// The environment the command works on, and its options on the command line, to complete
    /// the commands that messages suggest.
    fn environment(&self) -> Option<(String, String)> {
        let (env, file) = match self {
            Command::Plan(a) => (&a.env.env, &a.env.environments),
            Command::Migrate(a) => (&a.env.env, &a.env.environments),
            Command::Status(a) => (&a.env.env, &a.env.environments),
            Command::Sync(a) => (&a.env.env, &a.env.environments),
            Command::Unlock(a) => (&a.env.env, &a.env.environments),
            Command::Recover(a) => (&a.env.env, &a.env.environments),
            #[cfg(feature = "local")]
            Command::Rehearse(a) => (&a.env.env, &a.env.environments),
            Command::Baseline(a) => (&a.env.env, &a.env.environments),
            #[cfg(feature = "local")]
            Command::Local(a) => (&a.env, &a.environments),
            Command::Lint(a) => (a.env.as_ref()?, &a.environments),
            Command::Worker(a) => (&a.env.env, &a.env.environments),
            Command::IamPolicy(a) => (&a.env.env, &a.env.environments),
            #[cfg(feature = "local")]
            Command::Verify(_) | Command::Setup(_) | Command::Bench(_) => return None,
            Command::Workers(a) => (&a.env.env, &a.env.environments),
            Command::Init(_)
            | Command::Schemas(_)
            | Command::New(_)
            | Command::BuildRunner(_)
            | Command::Completions(_) => return None,
        };
        let args = session::EnvArgs { env: env.clone(), environments: file.clone() };
        Some((env.clone(), args.options()))
    }

    async fn run(self, project: &Project, out: &Output) -> Result<(), Failure> {
        match self {
            Command::Init(args) => args.run(out).await,
            #[cfg(feature = "local")]
            Command::Verify(args) => args.run(project, out).await,
            Command::Plan(args) => args.run(project, out).await,
            Command::Migrate(args) => args.run(project, out).await,
            Command::Status(args) => args.run(project, out).await,
            Command::Sync(args) => args.run(project, out).await,
            Command::Unlock(args) => args.run(out).await,
            Command::Recover(args) => args.run(project, out).await,
            #[cfg(feature = "local")]
            Command::Rehearse(args) => args.run(project, out).await,
            Command::Baseline(args) => args.run(project, out).await,
            Command::Schemas(args) => args.run(project, out).await,
            #[cfg(feature = "local")]
            Command::Local(args) => args.run(project, out).await,
            #[cfg(feature = "local")]
            Command::Setup(args) => args.run(out).await,
            #[cfg(feature = "local")]
            Command::Bench(args) => args.run(out).await,
            Command::New(args) => args.run(project, out).await,
            Command::Lint(args) => args.run(project, out).await,
            Command::Worker(args) => args.run(project, out).await,
            Command::IamPolicy(args) => args.run(project, out).await,
            Command::BuildRunner(args) => args.run(out).await,
            Command::Completions(args) => args.run(out).await,
            Command::Workers(args) => args.run(out).await,
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
    let parsed = command()
        .try_get_matches_from(std::iter::once(OsString::from("runner")).chain(args.iter().cloned()))
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
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
    let (name, environment) = (cli.command.name(), cli.command.environment());
    // Boxed: a command's future (a migration's, with its rebuilds) is large in a debug build, and
    // on the caller's stack it would hold all of it.
    let result = Box::pin(cli.command.run(project, &out)).await.map_err(|failure| Failure {
        environment,
        command: Some(name),
        ..failure
    });
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

/// The command line. An option's value may start with `-`, so that `--items -1` is refused by the
/// option's own check, which names it, rather than read as an unknown option `-1`.
fn command() -> clap::Command {
    Cli::command().mut_subcommands(|command| {
        command.mut_args(|arg| if arg.get_action().takes_values() { arg.allow_negative_numbers(true) } else { arg })
    })
}

/// Whether `args` (without the program name) are a command line this runner accepts, as clap
/// reads it: for files that name commands (a CI workflow, the README), so that a test can check
/// each one.
pub fn check_command_line<I, T>(args: I) -> Result<(), String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = std::iter::once(OsString::from("runner")).chain(args.into_iter().map(Into::into));
    match command().try_get_matches_from(args).and_then(|matches| Cli::from_arg_matches(&matches)) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.render().to_string()),
    }
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

/// Warnings on stderr, in colour only on a terminal. The AWS SDK's own warnings about its
/// credential chain and configuration files are left out unless `RUST_LOG` asks for them: what
/// they mean is said in this tool's words (`session`, `guard`).
fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,aws_config=error,aws_runtime=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("reports are JSON"));
}
