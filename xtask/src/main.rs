//! `cargo xtask`: the workspace's command line.
//!
//! This crate stays light (xshell and anyhow) so that it builds in seconds. The work is done by
//! the runner binary, which links the engine with this workspace's schema and migrations: this
//! builds it with cargo and runs it with the arguments given here, unchanged, so that every
//! command and option is defined once, in the engine's command line (`cargo xtask --help`).
//!
//! On Unix the xtask becomes `cargo run` (exec), which becomes the runner once it is built, as
//! `cargo run` itself does: the shell or the CI runner waits for the runner itself, Ctrl-C and a
//! cancel's SIGTERM reach it, and its exit code is the command's. Elsewhere the xtask waits for
//! cargo and passes its exit code on.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use xshell::cmd;

/// The commands that move data at scale: built in release and without DynamoDB Local (so without
/// testcontainers and its Docker client), as `cargo xtask build-runner` builds the runner for
/// deploy pipelines.
const PRODUCTION_COMMANDS: &[&str] = &["migrate", "sync", "worker", "workers"];
/// The commands that move data through a DynamoDB Local of their own (the benchmark, and a
/// rehearsal's copy of an environment's items): release, with DynamoDB Local, since a dev build
/// moves data at about half the speed.
const RELEASE_WITH_LOCAL: &[&str] = &["bench", "rehearse"];
// Every other command (verify, plan, status, lint, unlock, recover, new, …) reads, applies schema
// or writes files: it runs the dev build, which verify and the tests build anyway, so that none
// of them waits for a second build of the AWS SDK.

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut words = args.iter().map(String::as_str);
    let command = words.find(|a| !a.starts_with('-'));
    // build-runner builds the production runner itself: running it through the dev runner would
    // first build the dev runner, the AWS SDK included, which is what a deploy job must not wait for.
    if command == Some("build-runner") && !args.iter().any(|a| a == "-h" || a == "--help") {
        return build_runner(&args).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        });
    }
    let build = match command {
        Some(c) if PRODUCTION_COMMANDS.contains(&c) => Build::Production,
        Some(c) if RELEASE_WITH_LOCAL.contains(&c) => Build::ReleaseWithLocal,
        _ => Build::Dev,
    };
    match run_runner(build, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().expect("xtask is in the workspace").into()
}

/// How the runner is built for a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    /// The dev profile with every command (DynamoDB Local included).
    Dev,
    /// Release, without DynamoDB Local.
    Production,
    /// Release, with DynamoDB Local.
    ReleaseWithLocal,
}

/// Builds and runs the runner with `args`, from the workspace root.
fn run_runner(build: Build, args: &[String]) -> anyhow::Result<ExitCode> {
    let sh = xshell::Shell::new()?;
    let root = workspace_root();
    sh.change_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let options: &[&str] = match build {
        Build::Dev => &[],
        Build::Production => &["--release", "--no-default-features"],
        Build::ReleaseWithLocal => &["--release"],
    };
    if build != Build::Dev && !target_dir_of(&root).join("release/runner").exists() {
        eprintln!(
            "building the runner in release, once: a few minutes for the AWS SDK (a deploy pipeline can build it ahead with `cargo xtask build-runner`)"
        );
    }
    let run = ["run", "--quiet", "--package", "runner"];
    let cmd = cmd!(sh, "{cargo} {run...} {options...} -- {args...}");
    exec(Command::from(cmd))
}

/// `cargo xtask build-runner [--target-dir D]` (defined with the runner's other commands): the
/// runner as the production commands run it, and where it is.
fn build_runner(args: &[String]) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let mut target_dir = None;
    let mut rest = args.iter().skip_while(|a| *a != "build-runner").skip(1);
    while let Some(arg) = rest.next() {
        match arg.strip_prefix("--target-dir") {
            Some("") => target_dir = rest.next().map(PathBuf::from),
            Some(value) if value.starts_with('=') => target_dir = Some(PathBuf::from(&value[1..])),
            _ => anyhow::bail!(
                "build-runner takes only --target-dir <dir>, not {arg}; run `cargo xtask build-runner --help`"
            ),
        }
    }
    let sh = xshell::Shell::new()?;
    sh.change_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir: Vec<String> = match &target_dir {
        Some(dir) => vec!["--target-dir".into(), dir.display().to_string()],
        None => vec![],
    };
    eprintln!("building the runner in release, without DynamoDB Local (minutes, the first time)");
    let started = std::time::Instant::now();
    let build = ["build", "--release", "--no-default-features"];
    let build = cmd!(sh, "{cargo} {build...} --package runner {dir...}");
    if let Err(e) = build.run() {
        eprintln!("error: {e}; fix what cargo reports above, then run `cargo xtask build-runner`");
        return Ok(ExitCode::from(1));
    }
    let dir = target_dir.map_or_else(|| target_dir_of(&root), |d| root.join(d));
    let binary = dir.join("release/runner");
    println!(
        "built {} in {:.0} s; a deploy job runs it as it runs cargo xtask, from the workspace root: `{} migrate --env prod`",
        binary.display(),
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where cargo builds: `$CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir_of(root: &std::path::Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Becomes `cargo`: nothing of the xtask is left to end before the runner does.
#[cfg(unix)]
fn exec(mut cargo: Command) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    // `exec` returns only when it failed.
    Err(cargo.exec()).context("cannot run cargo")
}

/// Runs `cargo` and passes its exit code on (a build failure is cargo's 101).
#[cfg(not(unix))]
fn exec(mut cargo: Command) -> anyhow::Result<ExitCode> {
    let status = cargo.status().context("cannot run cargo")?;
    let code = status.code().and_then(|c| u8::try_from(c).ok());
    Ok(ExitCode::from(code.unwrap_or(1)))
}
